"""Nothing of a local Ray outlives the driver that started it, however the driver ends.

Ray ties its GCS and raylet to the driver that started them (``PR_SET_PDEATHSIG``), and
the workers to the raylet; but when the raylet dies unexpectedly (the driver was killed
with ``-9``), each of Ray's agents (``DashboardAgent``, ``RuntimeEnvAgent``) sees its
parent gone and publishes an error to the GCS, which died with it, under a hard-coded
60 s timeout before it exits (``ray/_private/process_watcher.py``,
``report_raylet_error_logs``): measured, they outlived a ``kill -9``'d ``raypipe run`` by
62-63 s, holding ports and the session folder.

So when raypipe starts a local Ray it first starts this reaper (:func:`start`): a small
process that holds the read end of a pipe whose write end only the driver holds (not
inheritable: Ray's processes never get it). The read returns end-of-file when the driver
is gone, whatever ended it (exit, exception, signal, ``kill -9``, the OOM killer); the
reaper then waits :data:`GRACE_S` for a normal shutdown to finish and SIGKILLs every process
of this uid that belongs to that Ray: one that holds a file in the Ray session's folder
open for writing (every Ray process writes its logs there: GCS, raylet, dashboard and its
modules, agents, workers; a reader such as ``tail -f`` is left alone), or one whose
environment holds the driver's mark (:data:`MARK_ENV`, set in the driver's environment only
while ``ray.init`` starts the node, so that a process a Ray worker starts is covered too).
Command lines do not tell: Ray renames its workers and agents (``ray::IDLE``,
``ray::DashboardAgent``) and their command lines no longer name the session folder; nor
does the mark alone (measured: renaming overwrote the start of an agent's environment,
mark included, in 7 of 10 runs). The driver sends the session folder down the pipe once
Ray has started (:meth:`Reaper.watch`).

This module runs as the reaper with only the standard library (it is run by path, not
imported through the ``raypipe`` package, so it starts in milliseconds).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

__all__ = ["MARK_ENV", "GRACE_S", "Reaper", "start", "ray_pids", "reap", "main"]

#: Environment variable that marks the processes of one driver's local Ray; its value is
#: ``<driver pid>-<random token>``.
MARK_ENV = "RAYPIPE_RAY_OWNER"

#: Seconds the reaper waits after the driver is gone before it kills what is left (a
#: normal ``ray.shutdown()`` has finished by then: it runs before the process exits).
GRACE_S = 1.0


def _environ_has(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return entry in fh.read().split(b"\0")
    except OSError:  # gone, or not ours to read
        return False


def _writes_under(pid: int, folders: tuple[str, ...]) -> bool:
    """Whether ``pid`` holds a file under one of ``folders`` open for writing."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if not target.startswith(folders):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as fh:
                flags = next(int(line.split()[1], 8) for line in fh if line.startswith("flags:"))
        except (OSError, StopIteration, ValueError, IndexError):
            continue
        if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
            return True
    return False


def ray_pids(mark: str, folders: list[str] | tuple[str, ...] = (), uid: int | None = None) -> list[int]:
    """Pids of the live processes of ``uid`` (default: this process's) that belong to the
    Ray marked with ``mark``: the environment holds ``MARK_ENV=mark``, or a file under one of
    ``folders`` (the session's) is open for writing. This process is left out (read from
    ``/proc``; a zombie has neither, so a killed process is not found again)."""
    uid = os.getuid() if uid is None else uid
    entry = f"{MARK_ENV}={mark}".encode()
    prefixes = tuple(os.path.join(folder, "") for folder in folders if folder)
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
        except OSError:
            continue
        if _environ_has(int(name), entry) or (prefixes and _writes_under(int(name), prefixes)):
            found.append(int(name))
    return found


def reap(mark: str, folders: list[str] | tuple[str, ...] = (), rounds: int = 20, pause_s: float = 0.05) -> list[int]:
    """SIGKILL every process of :func:`ray_pids` until none is left (a process may start
    another while a round runs); returns the pids killed."""
    killed: list[int] = []
    for _ in range(rounds):
        pids = ray_pids(mark, folders)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
            if pid not in killed:
                killed.append(pid)
        time.sleep(pause_s)
    return killed


class Reaper:
    """The driver's side of a running reaper: its process, the mark of this driver's Ray
    and the write end of the pipe (closed only by this process's end)."""

    def __init__(self, process: subprocess.Popen, mark: str, write_fd: int):
        self.process, self.mark, self._write_fd = process, mark, write_fd

    def alive(self) -> bool:
        """Whether the reaper process still runs."""
        return self.process.poll() is None

    def watch(self, folder: str) -> None:
        """Add ``folder`` (a Ray session's) to the folders whose writers are reaped."""
        if "\n" in folder:
            raise ValueError(f"reaper: a folder name with a newline cannot be sent: {folder!r}")
        os.write(self._write_fd, folder.encode() + b"\n")


def start(grace_s: float = GRACE_S) -> Reaper:
    """Start the reaper of this driver's local Ray.

    The caller puts ``MARK_ENV=reaper.mark`` in its environment while it starts Ray (only
    then: a process started later by the driver is not Ray's), and keeps the process
    running: the reaper acts when this process is gone.

    Returns:
        The :class:`Reaper` (its mark and process).

    Raises:
        OSError: the reaper could not be started.
    """
    mark = f"{os.getpid()}-{secrets.token_hex(8)}"
    read_fd, write_fd = os.pipe()  # both not inheritable (PEP 446): Ray's processes never hold the write end
    try:
        # -I -S: the standard library only, nothing from the working directory or site-packages.
        # Its own session: a Ctrl-C sent to the terminal's process group does not stop it.
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), str(read_fd), mark, str(grace_s)],
            pass_fds=(read_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, env={key: value for key, value in os.environ.items() if key != MARK_ENV},
        )
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)
    return Reaper(process, mark, write_fd)


def main(argv: list[str]) -> None:
    """The reaper: ``argv`` is ``[read fd, mark, grace seconds]``. Reads the session
    folders the driver sends (one a line) until the driver is gone (end-of-file), waits
    the grace, kills the processes of that Ray (:func:`reap`)."""
    read_fd, mark, grace_s = int(argv[0]), argv[1], float(argv[2])
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        # The driver's stop signals are the driver's: the reaper acts when the driver is gone.
        signal.signal(sig, signal.SIG_IGN)
    received = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except InterruptedError:
            continue
        except OSError:
            break
        if not chunk:
            break
        received += chunk
    folders = [line.decode(errors="surrogateescape") for line in received.split(b"\n") if line.strip()]
    time.sleep(grace_s)
    reap(mark, folders)


if __name__ == "__main__":
    main(sys.argv[1:])
