"""The endpoint under faults: real ``raypipe serve`` processes, real signals, real HTTP load.

Run with ``pytest -m reliability tests/reliability/test_serving_faults.py``. Each endpoint
is raypipe's own local Ray (the fast path, the default: HAProxy ingress) in a private
``RAY_TMPDIR``, started in its own session so the test finds its processes (Serve's
replica actors are the ``ray::ServeReplica:…`` processes of that session) and kills
only what it started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.csv as pacsv
import pytest
import requests

from raypipe.runtime.haproxy import haproxy_pids

from _net import free_port, wait_for

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
RAYPIPE = str(Path(sys.executable).with_name("raypipe"))
CONFIG = ROOT / "configs" / "quickstart.yaml"
COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
           "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country", "income"]
INTS = {"age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"}


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _session_processes(sid: int, prefix: str) -> list[int]:
    """Pids of the processes of session ``sid`` whose command line starts with ``prefix``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z" and cmdline.startswith(prefix):
            pids.append(int(entry))
    return pids


@pytest.fixture(scope="module")
def registry():
    """The quickstart model (test profile) trained once into a fresh registry by `raypipe run`."""
    base = Path(tempfile.mkdtemp(prefix="rp-sf-", dir="/tmp"))
    ray_tmp = tempfile.mkdtemp(prefix="rp-sfr-", dir="/tmp")
    try:
        proc = subprocess.run(
            [RAYPIPE, "run", str(CONFIG), "--profile", "test", "--json", "--set", f"registry.uri={base}/registry",
             "--set", f"output.uri={base}/runs", "--set", "cluster.num_cpus=2", "--set", "model.training.num_workers=1",
             "--set", "cluster.dashboard=false"],
            cwd=ROOT, env=dict(os.environ, RAY_ADDRESS="", RAY_TMPDIR=ray_tmp), capture_output=True, text=True, timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)


class Endpoint:
    """A `raypipe serve` process of the quickstart model in its own session and RAY_TMPDIR."""

    def __init__(self, registry: Path, log_dir: Path, *overrides: str):
        self.port = free_port()
        self.ray_tmp = tempfile.mkdtemp(prefix="rp-sf-", dir="/tmp")
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [RAYPIPE, "serve", str(CONFIG), "--profile", "test", "--json", "--set", f"registry.uri={registry}/registry",
             "--set", f"serve.http.port={self.port}", "--set", f"monitor.log_uri={log_dir}", "--set", "cluster.num_cpus=2",
             "--set", "cluster.dashboard=false", *[a for o in overrides for a in ("--set", o)]],
            cwd=ROOT, env=dict(os.environ, RAY_ADDRESS="", RAY_TMPDIR=self.ray_tmp, PYTHONUNBUFFERED="1"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        line = self.proc.stdout.readline()  # --json: one line once the endpoint answers
        assert line, f"raypipe serve exited with {self.proc.wait()}: {self.proc.stderr.read()[-3000:]}"
        assert json.loads(line)["status"] == "serving", line
        # Under RAY_TMPDIR where HAProxy's socket paths fit, else /tmp (raypipe.runtime.haproxy).
        self.haproxy_folder, = [folder for folder in (os.path.join(base, f"rp-hap-{self.proc.pid}")
                                                      for base in (self.ray_tmp, "/tmp")) if os.path.isdir(folder)]

    def replicas(self) -> list[int]:
        return _session_processes(self.proc.pid, "ray::ServeReplica:")

    def close(self) -> None:
        """Kill whatever of this endpoint's session is left (Ray's agents outlive a kill -9
        of their driver for a while), then its RAY_TMPDIR."""
        for pid in _session_processes(self.proc.pid, ""):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
        shutil.rmtree(self.haproxy_folder, ignore_errors=True)  # left by a kill -9 (the next raypipe sweeps it)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_no_haproxy_outlives_raypipe_serve(registry, tmp_path, sig):
    endpoint = Endpoint(registry, tmp_path / "logs")
    try:
        haproxies = haproxy_pids(endpoint.haproxy_folder)
        assert haproxies, f"no haproxy runs from {endpoint.haproxy_folder}"
        assert requests.get(endpoint.url + "/healthz", timeout=10).json() == {"status": "ok"}
        endpoint.proc.send_signal(sig)
        code = endpoint.proc.wait(timeout=180)
        if sig == signal.SIGTERM:
            err = endpoint.proc.stderr.read()
            assert code == 0, err[-3000:]
            # The console keeps Ray's lines (and, with --json, the stop line) in its log file.
            log = Path(re.search(r"^Ray's logs: (\S+)", err, re.M).group(1)).read_text()
            assert "stopped (SIGTERM): endpoint drained" in log
            # Replicas drain in seconds: Serve's 30 s shutdown timeout is not hit.
            assert "Controller failed to shut down" not in log
        else:
            assert code == -signal.SIGKILL
        wait_for(lambda: not haproxy_pids(endpoint.haproxy_folder), 120,
                 f"the haproxy of {endpoint.url} to exit after {sig.name}", interval=0.2)
        wait_for(lambda: _port_free(endpoint.port), 120, f"port {endpoint.port} to be free after {sig.name}", interval=0.2)
        assert all(not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
                   for pid in haproxies)
    finally:
        endpoint.close()


def _adult_rows(n: int) -> list[dict]:
    table = pacsv.read_csv(ROOT / "data/adult/adult.test", read_options=pacsv.ReadOptions(column_names=COLUMNS))
    rows = []
    for rec in table.slice(0, n).to_pylist():
        row = {k: (v.strip() if isinstance(v, str) else v) for k, v in rec.items() if k != "income"}
        rows.append({k: None if v == "?" else (int(v) if k in INTS else v) for k, v in row.items()})
    return rows


class _Clients:
    """Client threads posting one Adult row each in a loop; keep every answer's status and ids."""

    def __init__(self, url: str, clients: int):
        self.url, self.stop = url + "/predict", threading.Event()
        self.rows = _adult_rows(50)
        self.statuses: dict[int, int] = {}
        self.failures: list[str] = []
        self.killed_at = None  # monotonic time of the kill: failures say how long after it
        self.ids: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, i: int) -> None:
        session = requests.Session()
        n = 0
        while not self.stop.is_set():
            row = self.rows[(i + n) % len(self.rows)]
            n += 1
            try:
                r = session.post(self.url, json={"instances": [row]}, timeout=60)
                status, body = r.status_code, r.text
            except requests.RequestException as exc:
                status, body = 0, f"{type(exc).__name__}: {exc}"
            with self.lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status == 200:
                    self.ids.extend(json.loads(body)["prediction_ids"])
                else:
                    after = f"{time.monotonic() - self.killed_at:+.2f} s from the kill" if self.killed_at else "before the kill"
                    self.failures.append(f"{status} ({after}): {body[:300]}")

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)


def test_a_replica_killed_under_load_fails_no_request(registry, tmp_path):
    from raypipe.monitor.log import PREDICTIONS, read_all

    logs = tmp_path / "logs"
    endpoint = Endpoint(registry, logs, "serve.autoscaling.min_replicas=2", "serve.autoscaling.max_replicas=2",
                        "serve.replica_cpus=0.25", "monitor.sample_rate=1.0")
    try:
        wait_for(lambda: len(endpoint.replicas()) == 2, 120, "two replicas", interval=0.2)
        with _Clients(endpoint.url, clients=8) as clients:
            wait_for(lambda: sum(clients.statuses.values()) >= 300, 120, "300 answers before the kill", interval=0.2)
            victim = endpoint.replicas()[0]
            os.kill(victim, signal.SIGKILL)
            clients.killed_at = time.monotonic()
            before = sum(clients.statuses.values())
            # Load goes on while Serve notices the death and starts a replacement.
            wait_for(lambda: victim not in endpoint.replicas() and len(endpoint.replicas()) == 2, 120,
                     "a replacement replica", interval=0.2)
            wait_for(lambda: sum(clients.statuses.values()) >= before + 1000, 120, "1,000 answers after the kill", interval=0.2)
        endpoint.proc.send_signal(signal.SIGTERM)
        assert endpoint.proc.wait(timeout=180) == 0, endpoint.proc.stderr.read()[-3000:]
        logged = read_all(str(logs / "adult-income"), PREDICTIONS)
        logged_ids = logged.column("prediction_id").to_pylist() if logged is not None else []
        total = sum(clients.statuses.values())
        print(f"replica kill: {total} requests ({total - before} after the kill), statuses {clients.statuses}, "
              f"served {len(clients.ids)} predictions, logged {len(logged_ids)} rows")
        # Never a 5xx, never an error page: what fails is a connection HAProxy closes without
        # an answer, only for the requests the killed replica held (its 8 clients at most).
        # The target is 0 (README, Availability: 0, 1 and 2 such closes in three runs, at +0.16 s).
        closed = [f for f in clients.failures if f.startswith("0 (") and "RemoteDisconnected" in f]
        assert clients.failures == closed, clients.failures[:5]
        assert len(closed) <= 8 and set(clients.statuses) <= {200, 0}
        assert len(set(clients.ids)) == len(clients.ids) == clients.statuses[200]
        assert sorted(logged_ids) == sorted(clients.ids)  # served == logged, no row twice
    finally:
        endpoint.close()
