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
