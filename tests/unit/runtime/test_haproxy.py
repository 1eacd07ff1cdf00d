"""The fast path's HAProxy launcher without Ray: config rewrite, error pages, parent death, sweep.

A fake ``haproxy`` (a Python script recording its pid and arguments) stands in for the
real binary where a process must be exec'd; the live HAProxy is checked in
tests/integration/serving and tests/reliability/test_serving_faults.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from raypipe.runtime import haproxy

from _net import wait_for

# The parts of the haproxy.cfg Ray 2.60 renders (haproxy_templates.py) that the launcher
# rewrites, verbatim, around lines it must leave alone.
RAY_CONFIG = """global
    log 127.0.0.1:514 local0 info
    stats socket /x/admin.sock mode 666 level admin expose-fd listeners
defaults
    mode http
    option redispatch 1
    retry-on conn-failure
    # Normalize 502/503/504 to 500 per Serve's default behavior. 503
    # covers HAProxy's own "all retries exhausted / no server" response.
    errorfile 502 /x/500.http
    errorfile 503 /x/500.http
    errorfile 504 /x/500.http
    load-server-state-from-file global
    balance leastconn
frontend prometheus
    bind :9101
    mode http
    http-request use-service prometheus-exporter if { path /metrics }
    no log
frontend http_frontend
    bind 127.0.0.1:8021
    acl routes path -i /-/routes
    default_backend default_backend
backend http-adult-income
    server SERVE_REPLICA_x 127.0.0.1:30000 check
listen stats
  bind *:8404
  stats enable
  stats uri /stats
"""


def test_rewrite_puts_stats_and_metrics_on_loopback_and_keeps_the_endpoint_bind():
    out = haproxy.rewrite_config(RAY_CONFIG, "/rp")
    binds = [line.strip() for line in out.splitlines() if line.strip().startswith("bind")]
    assert binds == ["bind 127.0.0.1:9101", "bind 127.0.0.1:8021", "bind 127.0.0.1:8404"]
    # serve.http.host 0.0.0.0 asks for every interface: the endpoint's own bind is Ray's.
    public = haproxy.rewrite_config(RAY_CONFIG.replace("bind 127.0.0.1:8021", "bind *:8021"), "/rp")
    assert [line.strip() for line in public.splitlines() if "bind" in line] == [
        "bind 127.0.0.1:9101", "bind *:8021", "bind 127.0.0.1:8404"]


def test_rewrite_replaces_the_plain_500_pages_and_never_replays_feedback():
    out = haproxy.rewrite_config(RAY_CONFIG, "/rp")
    lines = out.splitlines()
    defaults = lines[lines.index("defaults") + 1: lines.index("frontend prometheus")]
    assert [line.strip() for line in defaults if "errorfile" in line] == [
        f"errorfile {code} /rp/{code}.http" for code in (400, 408, 500, 502, 503, 504)]
    assert "/x/500.http" not in out
    frontend = lines[lines.index("frontend http_frontend") + 1]
    assert frontend.strip() == "http-request disable-l7-retry if { path_beg /feedback }"
    # Everything else is Ray's, line for line; rewriting twice changes nothing.
    untouched = [line for line in RAY_CONFIG.splitlines() if "bind" not in line and "errorfile" not in line]
    assert [line for line in lines if line in untouched] == untouched
    assert haproxy.rewrite_config(out, "/rp") == out


@pytest.mark.parametrize("code, status, type_", [(502, 503, "unavailable"), (503, 503, "unavailable"),
                                                 (504, 503, "unavailable"), (400, 400, "malformed"),
                                                 (408, 408, "request_timeout"), (500, 500, "internal_error")])
def test_error_pages_are_json_in_the_spec_format(code, status, type_):
    page = haproxy._error_page(*haproxy.ERROR_PAGES[code])
    head, body = page.split(b"\r\n\r\n", 1)
    status_line, *headers = head.decode().split("\r\n")
    fields = dict(h.split(": ", 1) for h in headers)
    assert status_line.split(" ", 2)[:2] == ["HTTP/1.1", str(status)]
    assert fields["Content-Type"] == "application/json" and int(fields["Content-Length"]) == len(body)
    assert fields.get("Retry-After") == ("1" if status == 503 else None)
    error = json.loads(body)["error"]
    assert error["type"] == type_ and error["details"] == [] and error["message"]


@pytest.fixture
def fake_haproxy(tmp_path, monkeypatch):
    """A base folder and a fake binary named by RAY_SERVE_HAPROXY_BINARY_PATH, which the
    launcher must wrap."""
    base = tempfile.mkdtemp(prefix="rph-", dir="/tmp")
    fake = tmp_path / "haproxy"
    fake.write_text(f"#!{sys.executable}\nimport json, os, sys, time\n"
                    "open(os.environ['FAKE_OUT'] + '.tmp', 'w').write(json.dumps({'pid': os.getpid(), 'argv': sys.argv}))\n"
                    "os.rename(os.environ['FAKE_OUT'] + '.tmp', os.environ['FAKE_OUT'])\ntime.sleep(300)\n")
    fake.chmod(0o755)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(fake))
    monkeypatch.setenv("FAKE_OUT", str(tmp_path / "fake.json"))
    yield fake, Path(base), tmp_path / "fake.json"
    subprocess.run(["rm", "-rf", base], check=False)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # killed, not yet reaped
    except FileNotFoundError:
        return True


def test_the_launcher_rewrites_execs_the_real_binary_and_dies_with_its_parent(fake_haproxy):
    fake, base, record = fake_haproxy
    env = haproxy.fast_path_env(stats_port=18404, metrics_port=19101, base=base)
    folder = Path(env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"]).parent
    assert folder == base / f"rp-hap-{os.getpid()}" and folder.stat().st_mode & 0o777 == 0o700
    assert env["RAY_SERVE_HAPROXY_BINARY_PATH"] == str(folder / "haproxy")
    config = folder / "haproxy.cfg"
    config.write_text(RAY_CONFIG)
    # Serve's HAProxyManager stands in as the parent: it starts the binary and is killed with -9.
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                               "subprocess.Popen(sys.argv[1:]); time.sleep(300)",
                               env["RAY_SERVE_HAPROXY_BINARY_PATH"], "-db", "-f", str(config), "-dR"])
    try:
        wait_for(record.exists, 60, "the fake haproxy to start", interval=0.1)
        started = json.loads(record.read_text())
        assert started["argv"] == [str(fake), "-db", "-f", str(config), "-dR"]  # Ray's arguments, the real binary
        assert config.read_text() == haproxy.rewrite_config(RAY_CONFIG, str(folder))
        assert not _gone(started["pid"])
    finally:
        parent.kill()
        parent.wait()
    wait_for(lambda: _gone(started["pid"]), 60, "the orphaned haproxy to be killed", interval=0.1)


def test_a_new_driver_sweeps_the_folder_and_haproxy_of_a_dead_one(fake_haproxy):
    fake, base, record = fake_haproxy
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = base / f"rp-hap-{dead.pid}"
    stale.mkdir()
    (stale / "haproxy.cfg").write_text(RAY_CONFIG)
    orphan = subprocess.Popen([str(fake), "-db", "-f", str(stale / "haproxy.cfg")], start_new_session=True)
    wait_for(record.exists, 60, "the stale haproxy to start", interval=0.1)
    alive_driver = base / "rp-hap-1"  # pid 1 is alive: its folder stays
    alive_driver.mkdir()
    try:
        haproxy.fast_path_env(stats_port=18404, metrics_port=19101, base=base)
        assert orphan.wait(timeout=30) == -signal.SIGKILL
        assert not stale.exists() and alive_driver.exists()
        assert sorted(p.name for p in base.iterdir()) == sorted(["rp-hap-1", f"rp-hap-{os.getpid()}"])
    finally:
        if orphan.poll() is None:
            orphan.kill()


def test_the_folder_goes_under_ray_tmpdir_only_where_haproxy_socket_paths_fit(monkeypatch):
    # HAProxy refuses a unix socket path over 97 bytes; Ray puts <node id>/metrics.sock there.
    monkeypatch.setenv("RAY_TMPDIR", "/tmp/r")
    assert str(haproxy._base_dir()) == "/tmp/r"
    monkeypatch.setenv("RAY_TMPDIR", "/tmp/rp-sf-ynzx1rjf")
    assert str(haproxy._base_dir()) == "/tmp"


def _handles_usr1(pid: int) -> bool:
    """Whether ``pid`` has a handler for SIGUSR1 or ignores it (its masks in /proc)."""
    masks = dict(line.split(":\t") for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)
    bit = 1 << (signal.SIGUSR1 - 1)
    return bool((int(masks["SigCgt"], 16) | int(masks["SigIgn"], 16)) & bit)


def test_soft_stop_signals_this_driver_s_haproxy_and_waits_for_it(fake_haproxy, monkeypatch):
    fake, base, record = fake_haproxy
    env = haproxy.fast_path_env(stats_port=18404, metrics_port=19101, base=base)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", env["RAY_SERVE_HAPROXY_BINARY_PATH"])
    config = Path(env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"])
    # HAProxy's soft stop: SIGUSR1, then it exits once what it holds is answered (0.3 s here).
    soft = ("import signal, sys, time; signal.signal(signal.SIGUSR1, lambda *_: (time.sleep(0.3), sys.exit(0))); "
            "time.sleep(300)")
    stuck = "import signal, time; signal.signal(signal.SIGUSR1, signal.SIG_IGN); time.sleep(300)"
    procs = [subprocess.Popen([sys.executable, "-c", code, "-f", str(config)]) for code in (soft, stuck)]
    try:
        wait_for(lambda: sorted(haproxy.haproxy_pids(str(config.parent))) == sorted(p.pid for p in procs)
                 and all(_handles_usr1(p.pid) for p in procs), 30, "the two fake HAProxy processes", interval=0.05)
        assert haproxy.soft_stop(timeout_s=2.0) == (2, 1)  # one exited, one still running (Serve kills it)
        assert procs[0].wait(timeout=5) == 0 and procs[1].poll() is None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    # Without this driver's fast path: nothing to stop.
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(fake))
    assert haproxy.soft_stop() == (0, 0)
