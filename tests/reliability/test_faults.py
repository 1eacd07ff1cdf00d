"""Fault injection with real processes and real signals: each test ends in exact figures.

Run with ``pytest -m reliability tests/reliability`` (``.ci/run`` runs it as its own
step).  Every Ray these tests start is raypipe's own local one, in a private
``RAY_TMPDIR``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
RAYPIPE = str(Path(sys.executable).with_name("raypipe"))
ADULT_TRAIN_ROWS = 32_561


@pytest.fixture
def ray_tmp():
    # Ray's socket paths must stay short: not under pytest's deep tmp_path.
    path = tempfile.mkdtemp(prefix="rp-rel-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env(ray_tmp: str) -> dict[str, str]:
    return dict(os.environ, RAY_ADDRESS="", RAY_TMPDIR=ray_tmp, PYTHONUNBUFFERED="1")


def _run_until_transform(cwd: Path, config: Path, out: Path, ray_tmp: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RAYPIPE, "run", str(config), "--json", "--until", "transform", "--set", f"output.uri={out}",
         "--set", f"registry.uri={out}/registry", "--set", "cluster.num_cpus=2", *extra],
        cwd=cwd, env=_env(ray_tmp), capture_output=True, text=True, timeout=900,
    )


def test_stale_cluster_file_does_not_stop_a_run(tmp_path, ray_tmp):
    # A cluster that died without cleaning up: its file names a GCS nobody answers on.
    Path(ray_tmp, "ray_current_cluster").write_text("127.0.0.1:1\n")
    proc = _run_until_transform(ROOT, ROOT / "configs" / "quickstart.yaml", tmp_path / "runs", ray_tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert (result["status"], result["stages_run"]) == ("succeeded", ["ingest", "split", "transform"])
    assert result["rows"]["ingested"] == ADULT_TRAIN_ROWS + 16_281


def test_an_address_that_does_not_answer_fails_fast_naming_it(tmp_path, ray_tmp):
    proc = subprocess.run(
        [RAYPIPE, "run", "configs/quickstart.yaml", "--address", "127.0.0.1:1", "--set", f"output.uri={tmp_path}"],
        cwd=ROOT, env=_env(ray_tmp), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "Ray cluster 127.0.0.1:1 does not answer: ConnectionRefusedError" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_workers_import_the_installed_raypipe_not_a_folder_in_the_cwd(tmp_path, ray_tmp):
    # A clone in ./raypipe, run from its parent folder: its inner raypipe/ package has
    # nothing of ours, so a worker importing it fails at once.
    clone = tmp_path / "raypipe"
    (clone / "raypipe").mkdir(parents=True)
    (clone / "raypipe" / "__init__.py").write_text("raise ImportError('the shadowing clone was imported')\n")
    (tmp_path / "raypipe" / "__init__.py").write_text("raise ImportError('the shadowing folder was imported')\n")
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    os.symlink(ROOT / "data", tmp_path / "data")
    proc = _run_until_transform(tmp_path, tmp_path / "configs" / "quickstart.yaml", tmp_path / "runs", ray_tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["rows"]["ingested"] == ADULT_TRAIN_ROWS + 16_281
    assert "shadowing" not in proc.stderr


def _small_config(tmp_path: Path, rounds: int) -> Path:
    rows = ["x1,x2,y"] + [f"{i % 17},{(i * 7) % 13},{'a' if (i % 17) + (i * 7) % 13 > 14 else 'b'}" for i in range(400)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    cfg = {
        "version": 1, "name": "tiny",
        "data": {"source": {"type": "csv", "paths": [str(tmp_path / "d.csv")]},
                 "schema": {"label": "y", "columns": {"x1": {"type": "int"}, "x2": {"type": "int"}, "y": {"type": "category"}}}},
        "model": {"task": "binary_classification", "positive_class": "a", "num_boost_round": rounds,
                  "params": {"max_depth": 2, "eta": 0.0001}, "training": {"num_workers": 1}},
        "evaluate": {"primary_metric": "roc_auc", "gates": {"min": {"roc_auc": 0.5}}},
        "registry": {"uri": str(tmp_path / "reg")},
        "output": {"uri": str(tmp_path / "runs")},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(cfg))
    return path


def _wait_for_line(proc: subprocess.Popen, text: str, timeout_s: float) -> list[str]:
    """Read the process's stderr (in a thread, so a line that never comes cannot hang the
    test) until a line holds ``text``; returns a live list that keeps filling."""
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            seen.append(line)
            if text in line:
                found.set()
        found.set()  # EOF: the process ended

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout_s) or not any(text in line for line in seen):
        _kill_group(proc)
        pytest.fail(f"{text!r} never reached stderr within {timeout_s} s; stderr:\n{''.join(seen)[-3000:]}")
    return seen


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_run_is_reported_interrupted(tmp_path, ray_tmp, sig):
    config = _small_config(tmp_path, rounds=200_000)
    # DEBUG keeps raypipe's records ("stage train: start") and Ray's own lines (where a C++
    # stack dump would show) on the terminal.
    proc = subprocess.Popen([RAYPIPE, "run", str(config), "--log-level", "DEBUG"], cwd=tmp_path, env=_env(ray_tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = _wait_for_line(proc, "stage train: start", timeout_s=240)
    time.sleep(8)  # let Ray Train's worker start boosting
    proc.send_signal(sig)
    try:
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    time.sleep(0.5)  # the reader thread drains the pipe's last lines
    err = "".join(seen)
    assert proc.returncode == 130, err[-3000:]
    reports = list((tmp_path / "runs").glob("*/report.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["status"] == "interrupted"
    assert report["error"] == {"type": "Interrupted",
                               "message": f"stage train: interrupted ({sig.name}); nothing was promoted."}
    assert report["stages_run"] == ["ingest", "split", "transform"]
    assert not (tmp_path / "reg").exists() or not list((tmp_path / "reg").glob("*/aliases.json"))
    assert f"error: stage train: interrupted ({sig.name}); nothing was promoted." in err
    assert "stack trace" not in err.lower() and "*** SIG" not in err


# --------------------------------------------------------------------------- ingest-stream

STREAM_MESSAGES = 3000


def _redis_url() -> str:
    url = os.environ.get("RAYPIPE_TEST_REDIS_URL")
    if not url:
        pytest.skip("RAYPIPE_TEST_REDIS_URL is not set (the URL of the local Redis; .ci/run sets it)")
    return url


def _stream_config(tmp_path: Path, url: str, key: str) -> Path:
    cfg = {
        "version": 1, "name": "relstream",
        "data": {"source": {"type": "stream", "landing_uri": str(tmp_path / "landing"), "batch_max_messages": 200,
                            "batch_max_seconds": 0.5, "num_cpus": 0.1,
                            "subscriptions": [{"type": "redis", "name": "events", "url": url, "stream": key}]},
                 "schema": {"label": None}},
    }
    path = tmp_path / "stream.yaml"
    path.write_text(json.dumps(cfg))
    return path


def _landed_files(tmp_path: Path) -> list[str]:
    from raypipe.streams.landing import landed_files

    return landed_files(str(tmp_path / "landing"))


def _landed_ids(tmp_path: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = _landed_files(tmp_path)
    if not files:
        return []
    return pa.concat_tables([pq.read_table(f, columns=["_message_id"]) for f in files]).column("_message_id").to_pylist()


def _publish_slowly(url: str, key: str, sent: list[str], per_s: float) -> None:
    import redis

    r = redis.Redis.from_url(url)
    for i in range(STREAM_MESSAGES):
        sent.append(f"{key}:{r.xadd(key, {'id': str(i), 'v': str(i % 10)}).decode()}")
        if i % 50 == 49:
            time.sleep(50 / per_s)
    r.close()


@pytest.mark.parametrize("how", ["SIGTERM", "kill -9"])
def test_ingest_stream_stopped_mid_stream_lands_every_message_once(tmp_path, ray_tmp, how):
    import redis

    url = _redis_url()
    key = f"raypipe-rel-{os.getpid()}-{int(time.time() * 1000)}"
    config = _stream_config(tmp_path, url, key)
    sent: list[str] = []
    publisher = threading.Thread(target=_publish_slowly, args=(url, key, sent, 300.0), daemon=True)
    proc = subprocess.Popen([RAYPIPE, "ingest-stream", str(config)], cwd=tmp_path, env=_env(ray_tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    r = redis.Redis.from_url(url)
    try:
        seen = _wait_for_line(proc, "events: running", timeout_s=240)
        publisher.start()
        deadline = time.monotonic() + 120
        while sum("events: landed" in line for line in seen) < 3:  # mid-stream: files landing, publisher busy
            assert time.monotonic() < deadline, "".join(seen)[-3000:]
            time.sleep(0.1)
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        else:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
            proc.wait(timeout=30)
        assert publisher.is_alive(), "the stop came after the publisher finished: not mid-stream"
        time.sleep(0.5)
        err = "".join(seen)
        landed_at_stop = _landed_ids(tmp_path)
        if how == "SIGTERM":
            assert proc.returncode == 0, err[-3000:]
            line = next(x for x in err.splitlines() if x.startswith("stopped (SIGTERM)"))
            assert line.endswith(f"{len(landed_at_stop)} messages landed by this run in "
                                 f"{len(_landed_files(tmp_path))} files")
            # A clean stop acknowledged everything it landed: nothing pending in the group.
            assert r.xpending(key, "raypipe-relstream")["pending"] == 0
        else:
            assert proc.returncode == -signal.SIGKILL
        publisher.join(timeout=60)
        assert len(sent) == STREAM_MESSAGES
        # A restart lands the rest: at-least-once from the broker, duplicates dropped by id.
        rest = STREAM_MESSAGES - len(set(landed_at_stop))
        again = subprocess.run([RAYPIPE, "ingest-stream", str(config), "--max-messages", str(rest), "--json"], cwd=tmp_path,
                               env=_env(ray_tmp), capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]
        assert json.loads(again.stdout)["landed"] == rest
        ids = _landed_ids(tmp_path)
        print(f"\ningest-stream {how} mid-stream: {len(landed_at_stop)} landed at the stop, {rest} after the restart; "
              f"sent {len(sent)}, landed {len(ids)}, unique {len(set(ids))}")
        assert (len(ids), len(set(ids))) == (STREAM_MESSAGES, STREAM_MESSAGES)
        assert set(ids) == set(sent)
        assert r.xpending(key, "raypipe-relstream")["pending"] == 0
    finally:
        if proc.poll() is None:
            _kill_group(proc)
        r.delete(key)
        r.close()

