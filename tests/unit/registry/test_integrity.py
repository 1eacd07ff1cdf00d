"""What the registry holds stays what was registered: checksums on every load,
an event log that survives torn and garbage lines, promotions gated against the
champion current under the lock, dead lock holders, ``verify``."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys

import pytest

from raypipe.registry import ChampionChangedError, ModelRegistry, RegistryCorruptError

MODEL_BYTES = b"\x00booster-bytes\x01" * 4


@pytest.fixture
def artifacts(tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "model.ubj").write_bytes(MODEL_BYTES)
    (folder / "features.json").write_text('{"steps": []}')
    return folder


@pytest.fixture
def reg(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYPIPE_ACTOR", "tester@box")
    return ModelRegistry(tmp_path / "reg", lock_timeout_s=2)


def _model_file(tmp_path, version: int = 1):
    return tmp_path / "reg" / "adult" / "versions" / str(version) / "model.ubj"


def test_local_load_checks_sha256_naming_file_expected_and_actual(reg, artifacts, tmp_path):
    reg.register("adult", artifacts, {}, "r-1")
    assert reg.local_path("adult", 1) == _model_file(tmp_path).parent
    expected = hashlib.sha256(MODEL_BYTES).hexdigest()
    tampered = bytearray(MODEL_BYTES)
    tampered[5] ^= 1  # one byte changed, same size: a "still valid" model rewritten in place
    _model_file(tmp_path).write_bytes(bytes(tampered))
    actual = hashlib.sha256(bytes(tampered)).hexdigest()
    with pytest.raises(RegistryCorruptError) as info:
        reg.local_path("adult", 1)
    assert str(_model_file(tmp_path)) in str(info.value)
    assert f"has sha256 {actual}, expected {expected} from version.json" in str(info.value)


def test_truncated_model_is_one_clear_error(reg, artifacts, tmp_path):
    reg.register("adult", artifacts, {}, "r-1")
    reg.promote("adult", 1)
    with open(_model_file(tmp_path), "r+b") as fh:
        fh.truncate(7)
    with pytest.raises(RegistryCorruptError, match=r"model.ubj has sha256 [0-9a-f]{64}, expected [0-9a-f]{64}"):
        reg.local_path("adult", "champion")
    report = reg.verify("adult")
    assert (report["versions"], report["files"], len(report["problems"])) == (1, 0, 1)
    assert str(_model_file(tmp_path)) in report["problems"][0]


def test_missing_artifact_is_named(reg, artifacts, tmp_path):
    reg.register("adult", artifacts, {}, "r-1")
    (tmp_path / "reg" / "adult" / "versions" / "1" / "features.json").unlink()
    with pytest.raises(RegistryCorruptError, match=r"features.json is missing; version.json lists it with sha256"):
        reg.local_path("adult", 1)


def test_append_after_torn_line_starts_a_new_line(reg, artifacts, tmp_path, caplog):
    reg.register("adult", artifacts, {}, "r-1")
    events = tmp_path / "reg" / "adult" / "events.jsonl"
    with open(events, "a") as fh:
        fh.write('{"ts": "2024-01-01", "ev')  # a writer died mid-append
    reg.promote("adult", 1)
    reg.register("adult", artifacts, {}, "r-2")
    reg.promote("adult", 2)
    with caplog.at_level(logging.WARNING):
        kinds = [(e.event, e.version) for e in reg.events("adult")]
    assert kinds == [("registered", 1), ("promoted", 1), ("registered", 2), ("promoted", 2)]
    assert f"{events} line 2: not a valid event" in caplog.text
    assert reg.rollback("adult").version == 1
    report = reg.verify("adult")
    assert report["events"] == 5 and len(report["problems"]) == 1
    assert report["problems"][0].startswith(f"{events} line 2: not a valid event")


def test_garbage_line_is_reported_with_its_line_number(reg, artifacts, tmp_path, caplog):
    reg.register("adult", artifacts, {}, "r-1")
    events = tmp_path / "reg" / "adult" / "events.jsonl"
    with open(events, "a") as fh:
        fh.write("garbage\n")
    reg.register("adult", artifacts, {}, "r-2")
    reg.promote("adult", 2)
    with caplog.at_level(logging.WARNING):
        assert [e.event for e in reg.events("adult")] == ["registered", "registered", "promoted"]
    assert f"{events} line 2: not a valid event" in caplog.text
    assert [p.split(":")[0] for p in reg.verify()["problems"]] == [f"{events} line 2"]


def test_promote_checks_the_champion_under_the_lock(reg, artifacts):
    for run in range(3):
        reg.register("adult", artifacts, {}, f"r-{run}")
    reg.promote("adult", 1, expected_champion=None)
    reg.promote("adult", 2, expected_champion=1)  # another run promoted 2 meanwhile
    with pytest.raises(ChampionChangedError, match=r"version 3 was compared with champion 1, but the champion is now 2") as info:
        reg.promote("adult", 3, expected_champion=1)
    assert info.value.current == 2
    assert reg.get("adult").version == 2
    assert reg.promote("adult", 3, expected_champion=2).status == "champion"


def test_lock_of_a_dead_process_on_this_host_is_broken_at_once(tmp_path, artifacts):
    reg = ModelRegistry(tmp_path / "reg", lock_timeout_s=0.5, stale_lock_s=3600)
    reg.register("adult", artifacts, {}, "r-1")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    lock = tmp_path / "reg" / "adult" / ".lock"
    import socket

    lock.write_text(json.dumps({"token": "t", "pid": int(dead.stdout), "host": socket.gethostname(), "ts": "t0"}))
    assert reg.promote("adult", 1).status == "champion"
    assert not lock.exists()
    # A live holder (this process) is waited for, and the timeout names it.
    lock.write_text(json.dumps({"token": "t", "pid": os.getpid(), "host": socket.gethostname(), "ts": "t0"}))
    with pytest.raises(Exception, match=rf"locked by {socket.gethostname()} pid {os.getpid()} since t0"):
        reg.reject("adult", 1)


def test_abandoned_event_and_verify_counts(reg, artifacts):
    reg.register("adult", artifacts, {}, "r-1")
    reg.log_event("adult", "abandoned", 1, reason="abandoned: StageError: disk full")
    assert [(e.event, e.reason) for e in reg.events("adult")][-1] == ("abandoned", "abandoned: StageError: disk full")
    assert reg.verify() == {"models": 1, "versions": 1, "files": 2, "events": 2, "problems": [], "abandoned": [
        {"model": "adult", "version": 1, "reason": "abandoned: StageError: disk full", "recorded": True}]}
    assert reg.verify("adult", 1) == {"models": 1, "versions": 1, "files": 2, "events": 0, "problems": [], "abandoned": []}


REGISTER_AND_DIE = """
import os, sys
from raypipe.registry import ModelRegistry

reg = ModelRegistry(sys.argv[1])
reg.register("adult", sys.argv[2], {}, "run-a", awaiting_gate=True)  # a run, killed before its gate
reg.register("adult", sys.argv[2], {}, "by-hand")  # registered without a gate to come
print(os.getpid())
"""


def test_a_version_whose_run_ended_before_its_gate_is_marked_abandoned_by_the_next_writer(reg, artifacts, tmp_path):
    import socket

    gone = subprocess.run([sys.executable, "-c", REGISTER_AND_DIE, str(tmp_path / "reg"), str(artifacts)],
                          capture_output=True, text=True, check=True)
    pid, host = int(gone.stdout), socket.gethostname()
    record = json.loads((tmp_path / "reg" / "adult" / "versions" / "1" / "version.json").read_text())
    assert record["writer"] == {"pid": pid, "host": host, "awaiting_gate": True}
    reason = f"abandoned: its run run-a (pid {pid} on {host}) ended before the gate"
    # Before any writer: verify sees it (not a problem), the log does not have it yet.
    report = reg.verify()
    assert (report["problems"], report["abandoned"]) == ([], [{"model": "adult", "version": 1, "reason": reason, "recorded": False}])
    assert [e.event for e in reg.events("adult")] == ["registered", "registered"]
    # The next writer (here a run registering version 3, alive: its own version is not touched).
    reg.register("adult", artifacts, {}, "run-b", awaiting_gate=True)
    events = reg.events("adult")
    assert [(e.event, e.version) for e in events] == [("registered", 1), ("registered", 2), ("abandoned", 1), ("registered", 3)]
    assert (events[2].reason, events[2].actor) == (reason, "tester@box")
    assert events[2].details == {"run_id": "run-a", "writer": {"pid": pid, "host": host, "awaiting_gate": True}}
    assert reg.abandoned("adult") == [{"version": 1, "reason": reason, "recorded": True}]
    assert reg.get("adult", 1).status == "candidate"
    # Recorded once: later writes add nothing; deciding the version ends it.
    reg.promote("adult", 3)
    assert [e.event for e in reg.events("adult")].count("abandoned") == 1
    reg.reject("adult", 1, reason="checked by hand")
    assert reg.abandoned("adult") == []
    assert reg.verify()["abandoned"] == []


def test_a_version_on_another_host_or_of_a_live_writer_is_never_marked(reg, artifacts, tmp_path):
    reg.register("adult", artifacts, {}, "run-live", awaiting_gate=True)  # this process: alive
    reg.register("adult", artifacts, {}, "run-elsewhere", awaiting_gate=True)
    path = tmp_path / "reg" / "adult" / "versions" / "2" / "version.json"
    record = json.loads(path.read_text())
    record["writer"]["host"] = "another-host"  # its pid cannot be checked from here
    path.write_text(json.dumps(record))
    reg.log_event("adult", "alert", reason="a write")
    assert [e.event for e in reg.events("adult")] == ["registered", "registered", "alert"]
    assert reg.abandoned("adult") == []
