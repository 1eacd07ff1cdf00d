"""raypipe.registry: versions, aliases, events, atomicity and locking on pyarrow filesystems."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

import raypipe.registry as registry
from raypipe.errors import RaypipeError
from raypipe.registry import (
    AliasNotFoundError,
    InvalidReferenceError,
    LockTimeoutError,
    ModelNotFoundError,
    ModelRegistry,
    PromotionError,
    RegistryCorruptError,
    RegistryError,
    VersionNotFoundError,
    parse_model_ref,
    split_model_ref,
)
from raypipe.registry._store import Store

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    (folder / "extra").mkdir(parents=True)
    (folder / "model.ubj").write_bytes(b"\x00booster-bytes\x01")
    (folder / "features.json").write_text('{"steps": []}')
    (folder / "extra" / "profile.json").write_text('{"age": [1, 2]}')
    return folder


@pytest.fixture
def reg(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "reg", actor="tester@box")


def _register(reg: ModelRegistry, artifacts: Path, n: int, name: str = "adult") -> list[int]:
    return [reg.register(name, artifacts, {"roc_auc": 0.8 + i / 100}, run_id=f"run-{i}").version for i in range(n)]


def _kinds(reg: ModelRegistry, name: str = "adult") -> list[tuple[str, int | None]]:
    return [(e.event, e.version) for e in reg.events(name)]


# ------------------------------------------------------------------ register / list / get


def test_register_list_get(reg, artifacts, tmp_path):
    v1 = reg.register("adult", artifacts, {"roc_auc": np.float64(0.91), "cm": np.array([[1, 2], [3, 4]])}, "r-1",
                      tags={"git": "abc"})
    v2 = reg.register("adult", artifacts, {"roc_auc": 0.92}, "r-2")
    assert (v1.version, v2.version) == (1, 2)
    assert v1.status == "candidate" and v1.aliases == () and v1.actor == "tester@box"
    assert v1.metrics == {"roc_auc": 0.91, "cm": [[1, 2], [3, 4]]} and v1.tags == {"git": "abc"}
    assert v1.run_id == "r-1" and v1.ref == "adult@1"
    assert v1.files["model.ubj"] == {
        "size": 15,
        "sha256": hashlib.sha256(b"\x00booster-bytes\x01").hexdigest(),
    }
    assert set(v1.files) == {"model.ubj", "features.json", "extra/profile.json"}

    folder = tmp_path / "reg" / "adult" / "versions" / "1"
    assert sorted(p.name for p in folder.iterdir()) == ["extra", "features.json", "model.ubj", "version.json"]
    assert json.loads((folder / "version.json").read_text())["status"] == "candidate"
    assert v1.uri == str(folder)

    assert [v.version for v in reg.list_versions("adult")] == [1, 2]
    assert reg.get("adult", 1) == v1
    assert reg.get("adult", "2") == v2
    assert reg.get("adult", "latest") == v2
    assert reg.get("adult@1") == v1
    assert reg.models() == ["adult"]
    assert json.loads(json.dumps(v1.to_dict()))["aliases"] == []


def test_local_path_and_download(reg, artifacts, tmp_path):
    reg.register("adult", artifacts, {}, "r-1")
    assert reg.local_path("adult", 1) == tmp_path / "reg" / "adult" / "versions" / "1"
    dest = reg.download("adult", 1, tmp_path / "copy")
    assert (dest / "model.ubj").read_bytes() == (artifacts / "model.ubj").read_bytes()
    assert (dest / "extra" / "profile.json").exists() and (dest / "version.json").exists()
    with pytest.raises(RegistryError, match=r"new or empty folder. Got '.*copy', which has files"):
        reg.download("adult", 1, dest)


def test_lookup_errors_name_what_exists(reg, artifacts):
    _register(reg, artifacts, 3)
    with pytest.raises(VersionNotFoundError, match=r"model 'adult' has no version 7 \(versions: 1, 2, 3\)\.$"):
        reg.get("adult", 7)
    with pytest.raises(ModelNotFoundError, match=r"no model 'adlt' \(models: adult\)\. Did you mean 'adult'\?"):
        reg.get("adlt", 1)
    with pytest.raises(AliasNotFoundError, match=r"has no alias 'champion' \(aliases: none\)\. Promote a version"):
        reg.get("adult")  # the default reference is the champion
    reg.set_alias("adult", "challenger", 2)
    with pytest.raises(AliasNotFoundError, match=r"\(aliases: challenger=2\)\. Did you mean 'challenger'\?"):
        reg.get("adult", "challengr")
    with pytest.raises(InvalidReferenceError, match=r"a version is an integer >= 1. Got 0"):
        reg.get("adult", 0)
    for err in (VersionNotFoundError, ModelNotFoundError, AliasNotFoundError, InvalidReferenceError):
        assert issubclass(err, RegistryError) and issubclass(err, RaypipeError)


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "-x", "a b", "x" * 129, 3])
def test_register_rejects_bad_model_names(reg, artifacts, name):
    with pytest.raises(InvalidReferenceError, match="model name must be"):
        reg.register(name, artifacts, {}, "r")


def test_register_rejects_bad_artifacts(reg, artifacts, tmp_path):
    with pytest.raises(RegistryError, match=r"artifact_dir must be an existing local folder. Got '.*nope'"):
        reg.register("adult", tmp_path / "nope", {}, "r")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="holds no files"):
        reg.register("adult", tmp_path / "empty", {}, "r")
    with pytest.raises(RegistryError, match="expected JSON-serializable values. Got a object value"):
        reg.register("adult", artifacts, {"bad": object()}, "r")
    (artifacts / "version.json").write_text("{}")
    with pytest.raises(RegistryError, match="contains 'version.json', a name the registry reserves"):
        reg.register("adult", artifacts, {}, "r")
    assert reg.models() == []


def test_parse_model_ref():
    assert parse_model_ref("adult@champion") == ("adult", "champion")
    assert parse_model_ref("adult@12") == ("adult", 12)
    assert parse_model_ref("adult") == ("adult", None)
    assert parse_model_ref("adult-income.v2@latest") == ("adult-income.v2", "latest")
    for bad in ("", "@champion", "adult@", "a@b@c", "adult@bad alias", "adult@0"):
        with pytest.raises(InvalidReferenceError, match=f"model reference '{bad}'"):
            parse_model_ref(bad)


def test_split_model_ref_fills_in_the_defaults():
    assert split_model_ref("adult@3", "bike") == ("adult", "3")
    assert split_model_ref("adult@champion", "bike", "latest") == ("adult", "champion")
    assert split_model_ref("challenger", "bike") == ("bike", "challenger")
    assert split_model_ref("7", "bike") == ("bike", "7")
    assert split_model_ref(None, "bike") == ("bike", "champion")
    assert split_model_ref("", "bike", 2) == ("bike", "2")
    with pytest.raises(InvalidReferenceError, match="model reference 'adult@'"):
        split_model_ref("adult@", "bike")


def test_resolve_a_model_option(reg, artifacts):
    _register(reg, artifacts, 3)
    _register(reg, artifacts, 1, name="bike")
    reg.promote("adult", 2)
    reg.set_alias("adult", "challenger", 3)
    assert reg.resolve(None, default_name="adult").version == 2
    assert reg.resolve("challenger", default_name="adult").version == 3
    assert reg.resolve("1", default_name="adult").version == 1
    assert reg.resolve("latest", default_name="adult").version == 3
    assert reg.resolve(None, default_name="adult", default_ref="latest").version == 3
    found = reg.resolve("bike@1", default_name="adult")
    assert (found.model, found.version) == ("bike", 1)
    with pytest.raises(AliasNotFoundError, match="model 'bike' has no alias 'champion'"):
        reg.resolve("bike@champion", default_name="adult")
    with pytest.raises(VersionNotFoundError, match="has no version 9"):
        reg.resolve("9", default_name="adult")
    with pytest.raises(ModelNotFoundError, match="no model 'nope'"):
        reg.resolve(None, default_name="nope")
    with pytest.raises(InvalidReferenceError):
        reg.resolve("adult@bad alias", default_name="adult")


# ------------------------------------------------------------------ aliases, promote, reject, rollback


def test_aliases(reg, artifacts, tmp_path):
    _register(reg, artifacts, 2)
    v = reg.set_alias("adult", "challenger", 2, reason="shadow")
    assert v.aliases == ("challenger",) and v.status == "candidate"
    assert reg.get("adult@challenger").version == 2
    assert reg.aliases("adult") == {"challenger": 2}
    assert json.loads((tmp_path / "reg" / "adult" / "aliases.json").read_text()) == {"challenger": 2}
    reg.set_alias("adult", "challenger", 2)  # unchanged: no second event
    reg.set_alias("adult", "champion", "challenger", reason="via alias")  # champion moves by promote
    assert reg.aliases("adult") == {"challenger": 2, "champion": 2}
    assert reg.get("adult", 2).aliases == ("challenger", "champion")
    assert _kinds(reg)[-2:] == [("alias_set", 2), ("promoted", 2)]
    for bad in ("latest", "3", "bad alias", "", "x" * 65):
        with pytest.raises(InvalidReferenceError, match="alias must be"):
            reg.set_alias("adult", bad, 1)
    with pytest.raises(VersionNotFoundError):
        reg.set_alias("adult", "challenger", 9)


def test_promote_reject_rollback(reg, artifacts):
    _register(reg, artifacts, 4)
    assert reg.promote("adult", 1, reason="first").status == "champion"
    reg.promote("adult", 2, reason="better", details={"gate": {"passed": True}})
    assert [v.status for v in reg.list_versions("adult")] == ["archived", "champion", "candidate", "candidate"]

    rejected = reg.reject("adult", 3, reason="auc 0.81 < 0.85", details={"gate": {"passed": False}})
    assert rejected.status == "rejected"
    with pytest.raises(PromotionError, match="version 2 is the champion and cannot be rejected"):
        reg.reject("adult", "champion")

    reg.promote("adult", 2)  # already champion: nothing happens, nothing is logged
    reg.promote("adult", 4)
    assert reg.get("adult").version == 4

    assert reg.rollback("adult", reason="latency").version == 2
    assert reg.get("adult", 4).status == "archived"
    assert reg.rollback("adult").version == 1
    with pytest.raises(PromotionError, match="version 1 is the first champion"):
        reg.rollback("adult")

    reg.promote("adult", 3, reason="human override of the gate")  # a rejected version may be promoted
    assert reg.rollback("adult").version == 1

    promoted = [e for e in reg.events("adult") if e.event == "promoted"]
    assert [(e.version, e.details["previous_champion"]) for e in promoted] == [(1, None), (2, 1), (4, 2), (3, 1)]
    assert promoted[1].details["gate"] == {"passed": True}
    rolled = [e for e in reg.events("adult") if e.event == "rolled_back"]
    assert [(e.version, e.details["from_version"], e.reason) for e in rolled] == [
        (2, 4, "latency"), (1, 2, ""), (1, 3, ""),
    ]


def test_rollback_without_champion(reg, artifacts):
    _register(reg, artifacts, 1)
    with pytest.raises(PromotionError, match="has no champion, so nothing to roll back"):
        reg.rollback("adult")


def test_events_order_and_actor(reg, artifacts, tmp_path, monkeypatch):
    _register(reg, artifacts, 2)
    reg.promote("adult", 1)
    reg.reject("adult", 2, reason="gate", details={"checks": [{"metric": "roc_auc", "min": 0.9, "got": 0.8}]})
    monkeypatch.setenv("RAYPIPE_ACTOR", "ci@runner")
    ModelRegistry(tmp_path / "reg").log_event("adult", "retrain_triggered", reason="drift", details={"psi": 0.3})
    events = reg.events("adult")
    assert [(e.event, e.version) for e in events] == [
        ("registered", 1), ("registered", 2), ("promoted", 1), ("rejected", 2), ("retrain_triggered", None),
    ]
    assert [e.actor for e in events] == ["tester@box"] * 4 + ["ci@runner"]
    assert events[3].details["checks"][0]["got"] == 0.8
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    lines = (tmp_path / "reg" / "adult" / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == [e.event for e in events]
    assert set(json.loads(lines[0])) == {"ts", "event", "model", "version", "alias", "actor", "reason", "details"}

    with pytest.raises(InvalidReferenceError, match=r"Got 'retrain_trigered' instead. Did you mean 'retrain_triggered'"):
        reg.log_event("adult", "retrain_trigered")


def test_default_actor_is_user_at_host(tmp_path, artifacts, monkeypatch):
    monkeypatch.delenv("RAYPIPE_ACTOR", raising=False)
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("LOGNAME", "alice")
    v = ModelRegistry(tmp_path / "reg").register("adult", artifacts, {}, "r")
    assert v.actor.startswith("alice@")


def test_torn_last_event_line_is_skipped(reg, artifacts, tmp_path):
    _register(reg, artifacts, 1)
    with open(tmp_path / "reg" / "adult" / "events.jsonl", "a") as f:
        f.write('{"ts": "2024-01-01", "ev')
    assert _kinds(reg) == [("registered", 1)]


# ------------------------------------------------------------------ numbering and incomplete versions


def test_version_numbers_across_instances(tmp_path, artifacts):
    a, b = ModelRegistry(tmp_path / "reg"), ModelRegistry(str(tmp_path / "reg"))
    got = [r.register("adult", artifacts, {}, "r").version for r in (a, b, a, b)]
    assert got == [1, 2, 3, 4]
    assert [v.version for v in a.list_versions("adult")] == [1, 2, 3, 4]


def test_incomplete_version_is_not_listed_and_never_reused(reg, artifacts, tmp_path):
    _register(reg, artifacts, 2)
    partial = tmp_path / "reg" / "adult" / "versions" / "3"
    partial.mkdir()
    (partial / "model.ubj").write_bytes(b"half")  # died before version.json
    assert [v.version for v in reg.list_versions("adult")] == [1, 2]
    assert reg.get("adult", "latest").version == 2
    with pytest.raises(VersionNotFoundError, match=r"no version 3 \(versions: 1, 2\)\. Version 3 is an interrupted"):
        reg.get("adult", 3)
    with pytest.raises(AliasNotFoundError):
        reg.get("adult")
    assert reg.clean_incomplete("adult") == []  # too recent: may still be uploading
    assert reg.register("adult", artifacts, {}, "r").version == 4
    assert reg.clean_incomplete("adult", older_than_s=0) == [3]
    assert not partial.exists()
    assert reg.register("adult", artifacts, {}, "r").version == 5


def test_failed_upload_leaves_nothing_and_retires_the_number(reg, artifacts, tmp_path, monkeypatch):
    _register(reg, artifacts, 1)
    real_upload = Store.upload_dir

    def broken(self, local_dir, dest):
        real_upload(self, local_dir, dest)
        raise OSError("connection reset")

    monkeypatch.setattr(Store, "upload_dir", broken)
    with pytest.raises(RegistryError, match="uploading version 2 .* failed: connection reset. Nothing was registered"):
        reg.register("adult", artifacts, {}, "r")
    monkeypatch.undo()
    assert not (tmp_path / "reg" / "adult" / "versions" / "2").exists()
    assert reg.register("adult", artifacts, {}, "r").version == 3
    assert _kinds(reg) == [("registered", 1), ("registered", 3)]


# ------------------------------------------------------------------ crash safety


def test_failed_rename_keeps_previous_aliases(reg, artifacts, tmp_path, monkeypatch):
    _register(reg, artifacts, 2)
    reg.promote("adult", 1)
    aliases_file = tmp_path / "reg" / "adult" / "aliases.json"
    before = aliases_file.read_bytes()

    def crash(self, src, dst):
        assert Path(src).read_bytes() != before  # the new content was fully written to the temp file
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(Store, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        reg.promote("adult", 2)
    monkeypatch.undo()
    assert aliases_file.read_bytes() == before
    assert reg.get("adult").version == 1
    assert [p.name for p in aliases_file.parent.iterdir() if ".tmp-" in p.name] == []
    assert _kinds(reg)[-1] == ("promoted", 1)
    assert not (tmp_path / "reg" / "adult" / ".lock").exists()  # released on error
    assert reg.promote("adult", 2).status == "champion"


def test_process_killed_between_temp_write_and_rename(tmp_path, artifacts):
    reg = ModelRegistry(tmp_path / "reg", stale_lock_s=60)
    _register(reg, artifacts, 2)
    reg.promote("adult", 1)
    model_dir = tmp_path / "reg" / "adult"
    before = (model_dir / "aliases.json").read_bytes()
    code = textwrap.dedent(
        f"""
        import os
        from raypipe.registry import ModelRegistry
        from raypipe.registry._store import Store
        real = Store.replace
        def die(self, src, dst):
            if dst.endswith("aliases.json"):
                os._exit(17)  # no cleanup, no lock release: a real crash
            real(self, src, dst)
        Store.replace = die
        ModelRegistry({str(tmp_path / "reg")!r}).promote("adult", 2)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 17
    assert (model_dir / "aliases.json").read_bytes() == before
    assert len(list(model_dir.glob(".aliases.json.tmp-*"))) == 1  # the orphan is ignored
    assert reg.get("adult").version == 1
    assert (model_dir / ".lock").exists()

    # Its holder's pid is gone on this host: the lock is broken at once, not after stale_lock_s.
    assert ModelRegistry(tmp_path / "reg", lock_timeout_s=0.2).promote("adult", 2).status == "champion"
    assert not (model_dir / ".lock").exists()
    assert [p.name for p in model_dir.iterdir() if ".stale-" in p.name] == []


# ------------------------------------------------------------------ concurrency


def _check_serialized(reg: ModelRegistry, name: str = "adult") -> None:
    """Each promotion saw the previous one: no two promoters read the same champion."""
    champion = None
    for e in reg.events(name):
        if e.event == "promoted":
            assert e.details["previous_champion"] == champion
            champion = e.version
    assert reg.aliases(name)["champion"] == champion
    assert reg.get(name).status == "champion"
    assert [v.version for v in reg.list_versions(name) if v.status == "champion"] == [champion]


def test_concurrent_promotions_from_threads(tmp_path, artifacts):
    _register(ModelRegistry(tmp_path / "reg"), artifacts, 4)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            r = ModelRegistry(tmp_path / "reg", actor=f"t{i}")
            for k in range(6):
                r.promote("adult", (i + k) % 4 + 1)
                r.log_event("adult", "retrain_triggered", details={"thread": i, "k": k})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    reg = ModelRegistry(tmp_path / "reg")
    _check_serialized(reg)
    triggers = [(e.details["thread"], e.details["k"]) for e in reg.events("adult") if e.event == "retrain_triggered"]
    assert sorted(triggers) == [(i, k) for i in range(6) for k in range(6)]


def test_concurrent_register_and_promote_from_processes(tmp_path, artifacts):
    code = textwrap.dedent(
        """
        import sys
        from raypipe.registry import ModelRegistry
        reg = ModelRegistry(sys.argv[1], actor="p" + sys.argv[2])
        for k in range(3):
            v = reg.register("adult", sys.argv[3], {"k": k}, run_id=sys.argv[2])
            reg.promote("adult", v.version)
            reg.log_event("adult", "retrain_triggered", details={"proc": sys.argv[2], "k": k})
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "reg"), str(i), str(artifacts)], cwd=REPO, env=env)
        for i in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    reg = ModelRegistry(tmp_path / "reg")
    assert [v.version for v in reg.list_versions("adult")] == list(range(1, 10))
    events = reg.events("adult")
    assert sorted(e.version for e in events if e.event == "registered") == list(range(1, 10))
    assert len([e for e in events if e.event == "promoted"]) == 9  # each new version differs from the champion
    assert len([e for e in events if e.event == "retrain_triggered"]) == 9
    _check_serialized(reg)


# ------------------------------------------------------------------ URIs and other filesystems


def test_file_uri(tmp_path, artifacts):
    reg = ModelRegistry(f"file://{tmp_path}/reg")
    v = reg.register("adult", artifacts, {"r2": 0.5}, "r")
    reg.promote("adult", v.version)
    assert (tmp_path / "reg" / "adult" / "versions" / "1" / "version.json").exists()
    assert ModelRegistry(tmp_path / "reg").get("adult@champion").metrics == {"r2": 0.5}
    assert reg.local_path("adult") == tmp_path / "reg" / "adult" / "versions" / "1"
    assert repr(reg) == f"ModelRegistry('file://{tmp_path}/reg')"


def test_bad_uri():
    with pytest.raises(RegistryError, match=r"registry nosuch://x: cannot open this URI"):
        ModelRegistry("nosuch://x")


class _NoAppendFS(pafs.FileSystemHandler):
    """A local folder seen as an object store: not a LocalFileSystem, no append."""

    def __init__(self, root: str):
        self.fs = pafs.SubTreeFileSystem(root, pafs.LocalFileSystem())

    def get_type_name(self):
        return "noappend"

    def normalize_path(self, path):
        return path

    def equals(self, other):
        return self is other

    def get_file_info(self, paths):
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.fs.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        self.fs.delete_dir_contents("", accept_root_dir=True)

    def delete_file(self, path):
        self.fs.delete_file(path)

    def move(self, src, dest):
        self.fs.move(src, dest)

    def copy_file(self, src, dest):
        self.fs.copy_file(src, dest)

    def open_input_stream(self, path):
        return self.fs.open_input_stream(path)

    def open_input_file(self, path):
        return self.fs.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return self.fs.open_output_stream(path)

    def open_append_stream(self, path, metadata):
        raise pa.ArrowNotImplementedError("append is not supported by object stores")


def test_generic_pyarrow_filesystem(tmp_path, artifacts):
    fs = pafs.PyFileSystem(_NoAppendFS(str(tmp_path)))
    reg = ModelRegistry("reg", filesystem=fs, actor="obj@store")
    _register(reg, artifacts, 3)
    reg.promote("adult", 1)
    reg.promote("adult", 3)
    assert reg.rollback("adult").version == 1
    assert _kinds(reg) == [
        ("registered", 1), ("registered", 2), ("registered", 3), ("promoted", 1), ("promoted", 3), ("rolled_back", 1),
    ]
    assert not (tmp_path / "reg" / "adult" / ".lock").exists()
    assert reg.get("adult").uri == "noappend://reg/adult/versions/1"

    cache = tmp_path / "cache"
    local = reg.local_path("adult", "champion", cache_dir=cache)
    assert local.parent.parent.parent == cache
    assert (local / "model.ubj").read_bytes() == (artifacts / "model.ubj").read_bytes()
    assert reg.local_path("adult", 1, cache_dir=cache) == local  # cached

    (tmp_path / "reg" / "adult" / "versions" / "2" / "model.ubj").write_bytes(b"tampered")
    with pytest.raises(RegistryCorruptError, match=r"model.ubj has sha256 .* expected .* from version.json"):
        reg.download("adult", 2, tmp_path / "dl")


def test_generic_filesystem_lock_times_out(tmp_path, artifacts):
    fs = pafs.PyFileSystem(_NoAppendFS(str(tmp_path)))
    reg = ModelRegistry("reg", filesystem=fs, lock_timeout_s=0.2)
    _register(reg, artifacts, 1)
    (tmp_path / "reg" / "adult" / ".lock").write_text(json.dumps({"host": "h1", "pid": 42, "ts": "t0"}))
    with pytest.raises(LockTimeoutError, match="locked by h1 pid 42 since t0"):
        reg.promote("adult", 1)
    old = time.time() - 3600
    os.utime(tmp_path / "reg" / "adult" / ".lock", (old, old))
    assert reg.promote("adult", 1).status == "champion"


# ------------------------------------------------------------------ package surface


def test_public_names():
    public = {n for n in dir(registry) if not n.startswith("_")}
    assert set(registry.__all__) == public
    for name in registry.__all__:
        assert getattr(registry, name).__doc__, name


def test_import_does_not_pull_in_ray():
    code = "import sys, raypipe.registry; sys.exit('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False).returncode == 0
