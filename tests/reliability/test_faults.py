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
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from _net import free_port

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
RAYPIPE = str(Path(sys.executable).with_name("raypipe"))
ADULT_TRAIN_ROWS = 32_561
#: Seconds within which nothing of a kill -9'd driver's local Ray may be left: its reaper
#: waits 1 s (raypipe/runtime/reaper.py), then kills; the rest is a loaded machine's slack
#: (Ray's agents alone stayed 62-63 s before the reaper).
REAPED_WITHIN_S = 10


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


def _small_config(tmp_path: Path, rounds: int, reg: Path | None = None, out: Path | None = None,
                  early_stopping_rounds: int | None = 20, **training) -> Path:
    rows = ["x1,x2,y"] + [f"{i % 17},{(i * 7) % 13},{'a' if (i % 17) + (i * 7) % 13 > 14 else 'b'}" for i in range(400)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    cfg = {
        "version": 1, "name": "tiny",
        "data": {"source": {"type": "csv", "paths": [str(tmp_path / "d.csv")]},
                 "schema": {"label": "y", "columns": {"x1": {"type": "int"}, "x2": {"type": "int"}, "y": {"type": "category"}}}},
        "model": {"task": "binary_classification", "positive_class": "a", "num_boost_round": rounds,
                  "early_stopping_rounds": early_stopping_rounds,
                  "params": {"max_depth": 2, "eta": 0.0001}, "training": {"num_workers": 1, **training}},
        "evaluate": {"primary_metric": "roc_auc", "gates": {"min": {"roc_auc": 0.5}}},
        "registry": {"uri": str(reg or tmp_path / "reg")},
        "output": {"uri": str(out or tmp_path / "runs")},
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
        mid_stream = publisher.is_alive()
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        else:
            ray_processes = _descendants(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)  # the driver alone, as a crash would
            proc.wait(timeout=30)
            # A consumer outliving its driver would be a second writer next to the restart's.
            killed_at = time.monotonic()
            left = _wait_gone(ray_processes, timeout_s=REAPED_WITHIN_S)
            assert left == [], f"still alive {REAPED_WITHIN_S} s after the driver: {_names(ray_processes, left)}"
            print(f"\ningest-stream kill -9: the {len(ray_processes)} processes of its Ray were gone "
                  f"{time.monotonic() - killed_at:.1f} s after the driver")
        assert mid_stream, "the stop came after the publisher finished: not mid-stream"
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


# --------------------------------------------------------------------------- runs and the registry


def _raypipe(*args: str, cwd: Path, ray_tmp: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([RAYPIPE, *args], cwd=cwd, env=_env(ray_tmp), capture_output=True, text=True, timeout=timeout)


def _start_run(config: Path, cwd: Path, ray_tmp: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([RAYPIPE, "run", str(config), "--log-level", "DEBUG", *extra], cwd=cwd, env=_env(ray_tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _descendants(pid: int) -> dict[int, bytes]:
    """The live descendants of ``pid`` (the Ray it started: GCS, raylet, workers), pid -> command line.

    Ray renames its worker processes (``ray::Monitor``), so their command lines no longer
    name the session; the process tree still does.
    """
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                with contextlib.suppress(OSError):
                    found[child] = Path(f"/proc/{child}/cmdline").read_bytes()
                    frontier.append(child)
    return found


def _alive(pids) -> list[int]:
    left = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                left.append(pid)
    return left


def _wait_gone(pids, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := _alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _names(processes: dict[int, bytes], pids) -> list[str]:
    return sorted(processes[pid].split(b"\0")[0].decode(errors="replace") for pid in pids)


def _one_process(pid: int, title: bytes) -> int:
    matches = [p for p, cmd in _descendants(pid).items() if title in cmd]
    assert len(matches) == 1, f"processes titled {title!r} under {pid}: {matches}"
    return matches[0]


def _verify(config: Path, cwd: Path, ray_tmp: str) -> dict:
    proc = _raypipe("models", "verify", str(config), "--json", cwd=cwd, ray_tmp=ray_tmp, timeout=120)
    body = json.loads(proc.stdout)
    assert (proc.returncode, body["problems"]) == (0, []), proc.stderr[-2000:]
    return body


def _events(reg: Path) -> list[dict]:
    (log_file,) = reg.glob("*/events.jsonl")
    return [json.loads(line) for line in log_file.read_text().splitlines()]


def _champion(reg: Path) -> int | None:
    aliases = list(reg.glob("*/aliases.json"))
    return json.loads(aliases[0].read_text()).get("champion") if aliases else None  # {"champion": N, ...}


@pytest.fixture(scope="module")
def trained_registry(tmp_path_factory):
    """A registry whose champion is version 1 of the tiny model: trained once, copied by each test."""
    where = tmp_path_factory.mktemp("trained")
    ray_tmp = tempfile.mkdtemp(prefix="rp-relm-", dir="/tmp")
    try:
        proc = _raypipe("run", str(_small_config(where, rounds=20)), cwd=where, ray_tmp=ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return where / "reg"


def _kill_mid_training(tmp_path: Path, ray_tmp: str, num_workers: int, ready_glob: str, victim,
                       rounds: int = 6000, every: int = 500) -> tuple[dict, dict, float]:
    """Run ``rounds`` rounds checkpointed every ``every`` with one retry; once ``ready_glob``
    exists under the run folder, SIGKILL ``victim(driver pid)``; the run's result, its report
    and the seconds it took after the kill."""
    config = _small_config(tmp_path, rounds=rounds, checkpoint_every=every, max_failures=1, early_stopping_rounds=None,
                           num_workers=num_workers)
    proc = _start_run(config, tmp_path, ray_tmp, "--json")
    try:
        seen = _wait_for_line(proc, "stage train: start", timeout_s=240)
        deadline = time.monotonic() + 240
        while not list((tmp_path / "runs").glob(ready_glob)):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(seen)[-3000:]
            time.sleep(0.05)
        os.kill(victim(proc.pid), signal.SIGKILL)
        killed_at = time.monotonic()
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    assert proc.returncode == 0, "".join(seen)[-3000:]
    result = json.loads(out)
    report = json.loads(Path(result["report"]).read_text())
    assert result["status"] == "succeeded" and result["model"]["version"] == 1
    resumed = report["evaluation"]["resumed_from_round"]
    assert resumed is not None and resumed % every == 0 and every <= resumed < rounds
    assert report["evaluation"]["best_iteration"] == rounds - 1
    return result, report, time.monotonic() - killed_at


def test_kill_9_of_the_train_worker_resumes_from_its_checkpoint(tmp_path, ray_tmp):
    # One worker: the training loop in one Ray task; killed once a checkpoint is on disk.
    result, report, after = _kill_mid_training(tmp_path, ray_tmp, 1, "*/train/*/checkpoint_*",
                                               lambda driver: _one_process(driver, b"raypipe.train["))
    print(f"\ntrain worker kill -9: resumed from round {report['evaluation']['resumed_from_round']} of 6000; "
          f"run {result['status']} {after:.1f} s after the kill")


def test_kill_9_of_one_worker_of_a_train_group_resumes_from_its_checkpoint(tmp_path, ray_tmp):
    # Two Ray Train workers (a worker group, not the one-worker task): 0.5 CPU each on the
    # 2 CPUs, the other CPU left to Ray Data (raypipe/train/_resources.py). A checkpoint the
    # group can resume from is on disk AND registered by Ray Train's controller, which then
    # writes its snapshot (a checkpoint folder alone is not enough: killed while rank 0
    # persisted it, the group restarted from round 0, measured once).
    def one_worker(driver: int) -> int:
        workers = sorted(p for p, cmd in _descendants(driver).items() if b"RayTrainWorker" in cmd)
        assert len(workers) == 2, f"Ray Train workers under {driver}: {workers}"
        return workers[-1]

    # 2,000 rounds: a group's round costs an all-reduce per tree level (6,000 took 172 s in CI).
    result, report, after = _kill_mid_training(tmp_path, ray_tmp, 2, "*/train/*/checkpoint_manager_snapshot.json", one_worker,
                                               rounds=2000, every=250)
    print(f"\ntrain group kill -9 (1 of {report['evaluation']['num_workers']} workers): resumed from round "
          f"{report['evaluation']['resumed_from_round']} of 2000; run {result['status']} {after:.1f} s after the kill")
    assert report["evaluation"]["num_workers"] == 2


@pytest.mark.parametrize("when", ["train", "register", "gate"])
def test_kill_9_of_the_driver_leaves_a_consistent_registry(tmp_path, ray_tmp, trained_registry, when):
    reg = tmp_path / "reg"
    shutil.copytree(trained_registry, reg)  # version 1, champion
    config = _small_config(tmp_path, rounds=200_000 if when == "train" else 30)
    proc = _start_run(config, tmp_path, ray_tmp)
    version_2 = reg / "tiny" / "versions" / "2"
    try:
        seen = _wait_for_line(proc, f"stage {'train' if when == 'train' else 'register'}: start", timeout_s=300)
        if when == "train":
            time.sleep(5)  # boosting
        else:
            # register: as soon as version 2's folder exists (its files half written, version.json,
            # written last, usually missing); gate: as soon as its version.json exists, before
            # the gate (which re-scores the champion first) decides it.
            target = version_2 if when == "register" else version_2 / "version.json"
            deadline = time.monotonic() + 60
            while not target.exists() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.001)
        ray_processes = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone, as a crash would
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    killed_at = time.monotonic()
    # The driver's reaper kills what Ray leaves (its agents wait 60 s on the dead GCS).
    left = _wait_gone(ray_processes, timeout_s=REAPED_WITHIN_S)
    gone_after = time.monotonic() - killed_at
    versions_after_kill = sorted(int(p.name) for p in reg.glob("*/versions/*"))
    complete_after_kill = sorted(int(p.parent.name) for p in reg.glob("*/versions/*/version.json"))
    verify = _verify(config, tmp_path, ray_tmp)
    champion_after_kill = _champion(reg)
    again = _raypipe("run", str(_small_config(tmp_path, rounds=30)), "--json", cwd=tmp_path, ray_tmp=ray_tmp)
    abandoned = [(e["version"], e["reason"]) for e in _events(reg) if e["event"] == "abandoned"]
    print(f"\ndriver kill -9 during {when}: {len(ray_processes)} processes of its Ray, "
          f"{'all gone' if not left else f'{len(left)} left'} after {gone_after:.1f} s; versions after the kill "
          f"{versions_after_kill} (complete: {complete_after_kill}), champion {champion_after_kill}, verify: {verify['versions']} versions "
          f"{verify['files']} files {verify['events']} events, 0 problems, abandoned {verify['abandoned']}; "
          f"next run exit {again.returncode}, abandoned events after it {abandoned}")
    assert left == [], f"processes of the killed run still alive after {REAPED_WITHIN_S} s: {_names(ray_processes, left)}"
    assert champion_after_kill == 1
    assert proc.returncode == -signal.SIGKILL
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["status"] == "succeeded"
    if when == "gate":
        assert complete_after_kill == [1, 2]
    if 2 in complete_after_kill:
        # Registered, never gated: verify names it at once, the next run's first write records it.
        run_id = json.loads((version_2 / "version.json").read_text())["run_id"]
        reason = f"abandoned: its run {run_id} (pid {proc.pid} on {socket.gethostname()}) ended before the gate"
        assert verify["abandoned"] == [{"model": "tiny", "version": 2, "reason": reason, "recorded": False}]
        assert abandoned == [(2, reason)]
        assert _verify(config, tmp_path, ray_tmp)["abandoned"] == [{"model": "tiny", "version": 2, "reason": reason,
                                                                    "recorded": True}]
    else:
        assert (verify["abandoned"], abandoned) == ([], [])
        _verify(config, tmp_path, ray_tmp)


def test_two_runs_at_once_on_one_registry(tmp_path, ray_tmp):
    reg = tmp_path / "reg"
    configs = [_small_config(tmp_path / f"r{i}", rounds=30, reg=reg) for i in range(2) if (tmp_path / f"r{i}").mkdir() is None]
    tmps = [tempfile.mkdtemp(prefix="rp-rel2-", dir="/tmp"), ray_tmp]
    try:
        procs = [subprocess.Popen([RAYPIPE, "run", str(c), "--json"], cwd=c.parent, env=_env(t), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True) for c, t in zip(configs, tmps)]
        outs = [p.communicate(timeout=900) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                _kill_group(p)
        shutil.rmtree(tmps[0], ignore_errors=True)
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    results = [json.loads(o) for o, _ in outs]
    versions = sorted(r["model"]["version"] for r in results)
    events = _events(reg)
    promotions = [e for e in events if e["event"] == "promoted"]
    verify = _verify(configs[0], tmp_path, ray_tmp)
    print(f"\ntwo runs at once: versions {versions}, champion {_champion(reg)}, {len(events)} events "
          f"({len(promotions)} promotions), verify {verify['versions']} versions, 0 problems")
    assert versions == [1, 2]
    assert _champion(reg) in (1, 2)
    assert sum(r["promoted"] for r in results) >= 1
    assert [e["version"] for e in events if e["event"] == "registered"] in ([1, 2], [2, 1])
    assert promotions[-1]["version"] == _champion(reg)
    assert verify["versions"] == 2


def test_a_full_disk_under_output_and_registry_is_one_clear_error(tmp_path, ray_tmp, trained_registry):
    if os.geteuid() != 0:
        pytest.skip("mounting the small tmpfs that plays the full disk needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    try:
        shutil.copytree(trained_registry, disk / "reg")  # version 1, champion
        # Leave 64 KiB: the preflight probe fits, the first training checkpoint (1,000 trees) does not.
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        with open(disk / "filler", "wb") as fh:
            fh.write(b"\0" * (free - 64 * 1024))
        config = _small_config(tmp_path, rounds=3000, reg=disk / "reg", out=disk / "runs", checkpoint_every=1000,
                               early_stopping_rounds=None)
        proc = _raypipe("run", str(config), cwd=tmp_path, ray_tmp=ray_tmp)
        err = proc.stderr
        verify = _verify(config, tmp_path, ray_tmp)
        versions = sorted(int(p.name) for p in (disk / "reg").glob("*/versions/*"))
        error_line = next((line for line in err.splitlines() if line.startswith("error: ")), None)
        print(f"\nfull disk: exit {proc.returncode}; {error_line}; champion {_champion(disk / 'reg')}, "
              f"versions {versions}, verify {verify['versions']} versions 0 problems")
        assert proc.returncode == 1, err[-3000:]
        assert error_line is not None and "No space left on device" in error_line and str(disk) in error_line, err[-3000:]
        assert "Traceback" not in err
        assert _champion(disk / "reg") == 1
        assert verify["versions"] == 1
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


# --------------------------------------------------------------------------- the endpoint under load


class _Load:
    """Threads posting one-row predictions until stopped; every 200 answer's prediction id is kept."""

    def __init__(self, url: str, threads: int = 3):
        self.url, self.served, self.failed = url, [], 0
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self._post, args=(i,), daemon=True) for i in range(threads)]

    def _post(self, k: int) -> None:
        import requests

        session, i = requests.Session(), 0
        while not self.stop.is_set():
            i += 1
            try:
                resp = session.post(f"{self.url}/predict", json={"instances": [{"x1": (i + k) % 17, "x2": i % 13}]}, timeout=30)
            except requests.RequestException:
                with self.lock:
                    self.failed += 1
                time.sleep(0.05)
                continue
            with self.lock:
                if resp.status_code == 200:
                    self.served.extend(resp.json()["prediction_ids"])
                else:
                    self.failed += 1

    def __enter__(self) -> _Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def count(self) -> int:
        with self.lock:
            return len(self.served)


def _monitor_report(url: str) -> dict:
    import requests

    return requests.get(f"{url}/monitor", timeout=10).json()


def test_monitor_kill_9_and_endpoint_sigterm_under_load_lose_no_logged_prediction(tmp_path, ray_tmp, trained_registry):
    from raypipe.monitor.log import PREDICTIONS, read_all

    shutil.copytree(trained_registry, tmp_path / "reg")
    config = _small_config(tmp_path, rounds=20)
    cfg = json.loads(config.read_text())
    port = free_port()
    cfg["serve"] = {"http": {"port": port}, "autoscaling": {"min_replicas": 1, "max_replicas": 1}}
    cfg["monitor"] = {"log_uri": str(tmp_path / "plog"), "flush_s": 1.0, "poll_s": 0.5}
    config.write_text(json.dumps(cfg))
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([RAYPIPE, "serve", str(config), "--log-level", "DEBUG"], cwd=tmp_path, env=_env(ray_tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        seen = _wait_for_line(proc, "press Ctrl-C to stop", timeout_s=300)
        with _Load(url) as load:
            time.sleep(5)
            os.kill(_one_process(proc.pid, b"ray::Monitor"), signal.SIGKILL)
            time.sleep(5)
            load.stop.set()
            for t in load.threads:
                t.join(timeout=60)
            served_before = load.count()
            # The restarted monitor re-reads the log: every prediction served so far is counted.
            deadline, logged = time.monotonic() + 120, None
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    logged = _monitor_report(url).get("logged_rows")
                if logged == served_before:
                    break
                time.sleep(0.5)
            assert logged == served_before, f"monitor logged_rows {logged} after its kill -9, served {served_before}"
        with _Load(url) as load2:
            time.sleep(5)
            proc.send_signal(signal.SIGTERM)  # under load
            proc.wait(timeout=180)
        time.sleep(0.5)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    err = "".join(seen)
    served = load.served + load2.served
    table = read_all(str(tmp_path / "plog" / "tiny"), PREDICTIONS)
    logged = table.column("prediction_id").to_pylist() if table is not None else []
    stop_line = next((line for line in err.splitlines() if line.startswith("stopped (SIGTERM)")), None)
    print(f"\nmonitor kill -9 under load: {served_before} served, {served_before} counted by the restarted monitor; "
          f"endpoint SIGTERM under load: exit {proc.returncode}, served {len(served)} in all ({load2.failed} refused while "
          f"stopping), logged {len(logged)}, unique {len(set(logged))}, served and not logged "
          f"{len(set(served) - set(logged))}; {stop_line}")
    assert proc.returncode == 0, err[-3000:]
    assert stop_line is not None, err[-3000:]
    assert "*** SIG" not in err and "stack trace" not in err.lower()
    assert len(logged) == len(set(logged))
    # A prediction is on disk before it is answered: every served one is logged. And the stop
    # lets HAProxy answer what it holds before Serve stops it (a soft stop; Serve alone
    # SIGKILLed it with an answer in flight: 339 logged for 338 served, once), so nothing
    # logged went unanswered.
    assert sorted(logged) == sorted(served)
