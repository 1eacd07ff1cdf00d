"""The reaper of a local Ray without Ray: a driver process starts it, then plain Python
processes stand in for Ray's (one with the driver's mark in its environment, one writing
a log in the session folder), next to processes that are not Ray's (one reading a file in
that folder, one unrelated). The live Ray case is tests/reliability/test_faults.py
(``test_kill_9_of_the_driver_leaves_a_consistent_registry``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raypipe.runtime import reaper

from _net import wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper reads /proc (Linux)")

# The driver loads the reaper module by path, as the launcher does: importing the raypipe
# package would only make the test slower.
DRIVER = """
import importlib.util, json, os, subprocess, sys, time

spec = importlib.util.spec_from_file_location("reaper", sys.argv[3])
reaper = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reaper)
folder, how = sys.argv[1], sys.argv[2]
r = reaper.start(grace_s=0.2)
sleep = "import time; time.sleep(300)"
procs = {
    "marked": subprocess.Popen([sys.executable, "-c", sleep], env=dict(os.environ, **{reaper.MARK_ENV: r.mark})),
    "writer": subprocess.Popen([sys.executable, "-c", f"f = open({folder + '/w.log'!r}, 'a'); {sleep}"]),
    "reader": subprocess.Popen([sys.executable, "-c", f"f = open({folder + '/r.log'!r}); {sleep}"]),
    "other": subprocess.Popen([sys.executable, "-c", sleep]),
}
r.watch(folder)
print(json.dumps({"mark": r.mark, "reaper": r.process.pid, **{k: p.pid for k, p in procs.items()}}), flush=True)
if how == "exit":
    sys.stdin.readline()  # the test says when
    sys.exit(0)
time.sleep(300)
"""


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.parametrize("how", ["kill -9", "exit"])
def test_the_driver_s_ray_processes_die_with_it_and_nothing_else(tmp_path, how):
    folder = tmp_path / "session_x"
    folder.mkdir()
    (folder / "r.log").write_text("a log someone reads\n")
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(folder), how, reaper.__file__], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    pids = json.loads(driver.stdout.readline())
    try:
        # What the reaper would kill now: the marked process and the writer, not the reader.
        found = wait_for(lambda: sorted(reaper.ray_pids(pids["mark"], [str(folder)])) == sorted([pids["marked"], pids["writer"]]),
                         timeout=10, what="the stand-ins to be found", interval=0.05)
        assert found
        if how == "kill -9":
            driver.kill()
        else:
            driver.stdin.write("\n")
            driver.stdin.flush()
        assert driver.wait(timeout=10) == (-signal.SIGKILL if how == "kill -9" else 0)
        gone_at = time.monotonic()
        wait_for(lambda: not any(_running(pids[k]) for k in ("marked", "writer", "reaper")), timeout=10,
                 what="the marked process, the writer and the reaper to be gone", interval=0.05)
        # The grace (0.2 s) and one round; a loaded machine takes longer, never a minute.
        assert time.monotonic() - gone_at < 5
        assert _running(pids["reader"]) and _running(pids["other"])
    finally:
        for key in ("marked", "writer", "reader", "other"):
            try:
                os.kill(pids[key], signal.SIGKILL)
            except OSError:
                pass
        if driver.poll() is None:
            driver.kill()


def _ignored_signals(pid: int) -> set[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split()[1], 16)
            return {sig for sig in range(1, 65) if mask >> (sig - 1) & 1}
    return set()


def test_the_reaper_is_out_of_reach_of_the_terminal_s_stop_signals(tmp_path):
    r = reaper.start(grace_s=0.0)
    try:
        # Its own session: a Ctrl-C to the driver's process group never reaches it ...
        assert os.getsid(r.process.pid) == r.process.pid != os.getsid(0)
        # ... and the driver's stop signals sent to it directly are ignored.
        stop = {signal.SIGINT, signal.SIGHUP, signal.SIGTERM}
        wait_for(lambda: stop <= _ignored_signals(r.process.pid), timeout=10, what="the reaper's handlers", interval=0.02)
        for sig in stop:
            os.kill(r.process.pid, sig)
        with pytest.raises(subprocess.TimeoutExpired):  # still running half a second later
            r.process.wait(timeout=0.5)
    finally:
        r.process.kill()
        r.process.wait(timeout=10)


def test_a_folder_with_a_newline_is_refused(tmp_path):
    r = reaper.start(grace_s=0.0)
    try:
        with pytest.raises(ValueError, match="newline"):
            r.watch("a\nb")
    finally:
        r.process.kill()
        r.process.wait(timeout=10)
