"""Which Ray cluster runs the work: connect to the configured one, or start raypipe's own.

With no address (argument, ``cluster.address`` or ``RAY_ADDRESS``) raypipe starts a local
Ray of its own (``address="local"``): it never joins a cluster someone else started on the
machine, and a stale ``ray_current_cluster`` file left by a crashed cluster cannot make it
hang. To join an existing cluster on purpose, name it: ``--address auto`` (the cluster
started on this machine with ``ray start``), ``--address HOST:PORT`` or ``ray://HOST:10001``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from raypipe.runtime import haproxy, reaper
from raypipe.runtime.haproxy import SERVE_FAST_PATH_ENV
from raypipe.runtime.storage import working_dir

__all__ = ["LOCAL_RAY_ENV", "SERVE_FAST_PATH_ENV", "METRICS_EXPORT_PORT", "Endpoints", "use_local_ray_env", "connect", "free_port",
           "endpoints", "resolve_address", "ClusterUnreachable"]

log = logging.getLogger("raypipe")

#: Environment a local Ray started by raypipe gets (a value already set wins). Ray Serve
#: runs the router in its own event loop and each replica's user code in its own thread
#: by default; on the endpoint's hot path both cost a cross-loop hop per request
#: (measured on 2 cores: p50 15.3 -> 12.1 ms, 137 -> 162 req/s at 8 clients). On a
#: cluster, set them where the cluster is started.
LOCAL_RAY_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0", "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"}

#: Only for a local Ray on this machine (not in a cluster's environment): Ray Train starts
#: a ``PreemptionWatcher`` actor with every worker group, which polls for draining
#: (preempted) nodes and only logs them: one more Python process (110 MiB PSS, 194 MiB
#: RSS in the quickstart, see benchmarks/pair_memory.py) starting while the workers do,
#: for nodes that one machine never drains.
_ONE_MACHINE_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}

#: Port of the Prometheus metrics export of a local Ray (``cluster.metrics_export_port``):
#: fixed, so a Prometheus scrape config can name it; bound to loopback. When it is taken
#: (another local Ray), a free port is used and printed instead.
METRICS_EXPORT_PORT = 8085

#: Seconds to wait for a named cluster's head to accept a connection before giving up.
CONNECT_TIMEOUT_S = 10.0


class ClusterUnreachable(ConnectionError):
    """The Ray address given does not answer."""


def use_local_ray_env(serve_fast_path: bool = False) -> None:
    """Put :data:`LOCAL_RAY_ENV` and ``_ONE_MACHINE_ENV`` (and, with ``serve_fast_path``, Serve's fast path:
    :func:`raypipe.runtime.haproxy.fast_path_env`) in this process's environment (values
    already set win) before it starts a local Ray: every Ray process inherits it.

    Raises:
        FileNotFoundError: ``serve_fast_path`` and no HAProxy binary is installed.
    """
    env = {**LOCAL_RAY_ENV, **_ONE_MACHINE_ENV}
    # Prepared once per process: a second local Ray (tests) reuses the folder and ports.
    if serve_fast_path and haproxy.DIR_PREFIX not in os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH", ""):
        stats = metrics = free_port(0)
        while metrics == stats:
            metrics = free_port(0)
        env.update(haproxy.fast_path_env(stats, metrics))
        # Not left to a value already set: the launcher wraps the binary that one names.
        os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] = env["RAY_SERVE_HAPROXY_BINARY_PATH"]
    for key, value in env.items():
        os.environ.setdefault(key, value)


def resolve_address(address: str | None, configured: str | None) -> str | None:
    """The address to join: the argument, then ``cluster.address``, then ``RAY_ADDRESS``;
    ``None`` (or ``"local"``) means start raypipe's own local Ray."""
    chosen = address or configured or os.environ.get("RAY_ADDRESS") or None
    return None if chosen in (None, "", "local") else chosen


def _check_reachable(address: str, timeout_s: float) -> None:
    """Fail within ``timeout_s`` when ``address``'s head does not accept TCP connections.

    Ray's own connect retries a dead GCS for minutes; this names the address at once.
    ``auto`` is checked against the cluster file Ray would read.
    """
    target = address
    if address == "auto":
        target = _current_cluster_address()
        if target is None:
            raise ClusterUnreachable(
                "--address auto: no Ray cluster was started on this machine (no ray_current_cluster file). "
                "Hint: start one with `ray start --head`, or drop --address to let raypipe start its own."
            )
    hostport = target.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # a form Ray resolves itself (e.g. a KubeRay service name without a port)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterUnreachable(
            f"Ray cluster {address}{f' ({target})' if target != address else ''} does not answer: "
            f"{type(exc).__name__}: {exc}. Hint: check the address and that the cluster is running, or drop "
            "--address / cluster.address / RAY_ADDRESS to let raypipe start its own local Ray."
        ) from None


def _current_cluster_address() -> str | None:
    """The address in Ray's ``ray_current_cluster`` file, if any."""
    tmp = os.environ.get("RAY_TMPDIR") or "/tmp/ray"
    try:
        with open(os.path.join(tmp, "ray_current_cluster"), encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


@contextlib.contextmanager
def _installed_package_first() -> Iterator[None]:
    """Start Ray from the installed raypipe's parent folder when the working directory
    shadows it.

    Ray puts the driver's working directory first on every worker's ``sys.path``, so a
    ``raypipe`` folder there (a clone, run from its parent folder) replaced the
    installed package inside Ray Data and Ray Train.  Raypipe hands workers absolute
    paths, so their working directory does not matter.
    """
    installed = Path(__file__).resolve().parents[2]
    cwd = Path.cwd()
    shadow = cwd / "raypipe"
    if cwd.resolve() == installed or not (shadow.is_dir() or shadow.with_suffix(".py").exists()):
        yield
        return
    os.chdir(installed)
    try:
        yield
    finally:
        os.chdir(cwd)


_reaper: reaper.Reaper | None = None


@contextlib.contextmanager
def _reaped() -> Iterator[reaper.Reaper | None]:
    """Within the block, the Ray processes started here carry this driver's reaper mark
    (:mod:`raypipe.runtime.reaper`); the block hands the reaper the session folder of the
    Ray it started (``Reaper.watch``): none of that Ray's processes outlives this one.

    Started once per process (a second local Ray after ``ray.shutdown()`` gets the same
    reaper); the mark is in the environment only while the node starts, so a process the
    driver starts later is not taken for Ray's. Without ``/proc`` (not Linux) it yields None.
    """
    global _reaper
    if not sys.platform.startswith("linux"):
        yield None
        return
    if _reaper is None or not _reaper.mark.startswith(f"{os.getpid()}-") or not _reaper.alive():
        try:
            _reaper = reaper.start()
        except OSError as exc:
            log.warning("ray: could not start the reaper of the local Ray (%s): if this process is killed, "
                        "Ray's agents may outlive it by about a minute", exc)
            yield None
            return
    previous = os.environ.get(reaper.MARK_ENV)
    os.environ[reaper.MARK_ENV] = _reaper.mark
    try:
        yield _reaper
    finally:
        if previous is None:
            os.environ.pop(reaper.MARK_ENV, None)
        else:
            os.environ[reaper.MARK_ENV] = previous


class Endpoints(dict):
    """Where an operator looks at the Ray that :func:`connect` started: ``dashboard`` (URL or
    None), ``metrics`` (the Prometheus export URL or None), ``token_path`` (the dashboard's
    sign-in token file when token authentication is on, else None), ``local`` (bool)."""

    def lines(self) -> list[str]:
        """Human lines for the terminal."""
        out = []
        if self.get("dashboard"):
            sign_in = (f"; sign in with the token in {self['token_path']} (`ray get-auth-token`)"
                       if self.get("token_path") else "")
            out.append(f"Ray dashboard: {self['dashboard']}{sign_in}")
        if self.get("metrics"):
            out.append(f"Prometheus metrics: {self['metrics']}")
        return out


_endpoints = Endpoints()


def endpoints() -> Endpoints:
    """The dashboard, metrics and token of the Ray this process connected to (empty before)."""
    return _endpoints


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands to outgoing connections (Linux's ``ip_local_port_range``)."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port(preferred: int = 0) -> int:
    """``preferred`` (0: none) when nothing listens on it on loopback, else a free port outside the
    ephemeral range.

    The port is bound later by another process (HAProxy, Ray's metrics agent), seconds
    after this check, while Ray opens hundreds of loopback connections: a free port of the
    ephemeral range can meanwhile become the local port of one of them, and the bind fails
    (measured: HAProxy's stats listener, "cannot bind socket (Address already in use)",
    once in a CI run). The kernel never picks a port below the range for a connection.
    """
    if preferred:
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind(("127.0.0.1", preferred))
            return preferred
    lo, _ = _ephemeral_range()
    candidates = list(range(max(1024, lo - 20_000), lo))
    random.shuffle(candidates)
    for port in candidates[:200] + [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise OSError("no free TCP port on 127.0.0.1")


def _token_path() -> str | None:
    """Where the sign-in token of a local Ray in token mode is (Ray's own lookup order:
    ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``); None when the
    cluster runs without token authentication (``RAY_AUTH_MODE=disabled``).

    Ray 2.60 puts a new local cluster in token mode (setting ``RAY_AUTH_MODE=token`` in
    this process) unless the variable says otherwise; it is read after ``ray.init``.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return None
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "$RAY_AUTH_TOKEN"
    return os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(os.path.expanduser("~"), ".ray", "auth_token")


@contextlib.contextmanager
def _loopback_node() -> Iterator[None]:
    """Within the block, a Ray started here takes 127.0.0.1 as its node address.

    ``ray.init(_node_ip_address="127.0.0.1")`` alone is not enough: Ray replaces a
    loopback address with the machine's reachable one (``resolve_ip_for_localhost``),
    and its agents then bind the metrics export on every interface and themselves on
    that address (measured with ``ss -ltnp``: ``0.0.0.0:8085``). Ray keeps loopback only
    where clusters are switched off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), which is
    what a local Ray of one node is: the driver reads the flag it imported, the processes
    Ray starts read the environment.
    """
    from ray._private import ray_constants

    name = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    previous = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(name)
    os.environ[name] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = previous[0]
        if previous[1] is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous[1]


def connect(address: str | None = None, *, configured_address: str | None = None, num_cpus: int | None = None,
            runtime_env: dict[str, Any] | None = None, connect_timeout_s: float = CONNECT_TIMEOUT_S,
            dashboard: bool = True, metrics_export_port: int | None = METRICS_EXPORT_PORT,
            serve_fast_path: bool = False) -> None:
    """Connect to the named Ray cluster, or start raypipe's own local one.

    Reuses a Ray already initialized in this process (tests, notebooks). Sets this
    process's Ray Data context for raypipe's runs (ordered blocks, block counts sized to
    the cluster).

    Args:
        address: the caller's address (``--address``); wins over the others.
        configured_address: ``cluster.address`` of the config.
        num_cpus: CPUs of a local Ray (``None``: all of the machine's).
        runtime_env: Ray runtime environment of the job.
        connect_timeout_s: how long a named address may take to answer.
        dashboard: start the Ray dashboard with a local Ray (on loopback).
        metrics_export_port: preferred port of a local Ray's Prometheus export (on
            loopback); ``None`` lets Ray pick one.
        serve_fast_path: a local Ray started here runs Serve's fast path (:func:`use_local_ray_env`).

    Raises:
        ClusterUnreachable: a named address does not answer within ``connect_timeout_s``.
    """
    import ray
    import ray.data

    if not ray.is_initialized():
        working_dir()  # remembered: a job's working directory may be replaced during ray.init
        target = resolve_address(address, configured_address)
        kwargs: dict[str, Any] = {"runtime_env": dict(runtime_env or {}) or None, "log_to_driver": True}
        if target:
            _check_reachable(target, connect_timeout_s)
            with _installed_package_first():
                info = ray.init(address=target, **kwargs)
            _endpoints.clear()
            _endpoints.update(dashboard=info.dashboard_url and f"http://{info.dashboard_url}", metrics=None, token_path=None,
                              local=False)
            working_dir()  # back into it if the job's runtime env unpacked it again
        else:
            use_local_ray_env(serve_fast_path)
            port = free_port(metrics_export_port) if metrics_export_port else None
            for attempt in (1, 2):
                try:
                    with _installed_package_first(), _loopback_node(), _reaped() as local_reaper:
                        info = ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard, dashboard_host="127.0.0.1",
                                        _node_ip_address="127.0.0.1", _metrics_export_port=port, **kwargs)
                        if local_reaper is not None and info.address_info.get("session_dir"):
                            try:
                                local_reaper.watch(info.address_info["session_dir"])
                            except OSError as exc:  # the reaper died: the mark still covers most
                                log.warning("ray: could not hand the session folder to the reaper: %s", exc)
                    break
                except Exception as exc:
                    # Ray waits a fixed 30 s for its raylet to register; on an overloaded
                    # machine (load 20 on 2 cores, measured) that is not enough: try once more.
                    if attempt == 2 or "timed out during startup" not in str(exc):
                        raise
                    log.warning("ray: the local Ray did not start within Ray's 30 s (%s); starting it again", exc)
                    with contextlib.suppress(Exception):
                        ray.shutdown()
            _endpoints.clear()
            _endpoints.update(dashboard=f"http://{info.dashboard_url}" if dashboard and info.dashboard_url else None,
                              metrics=f"http://127.0.0.1:{port}/metrics" if port else None,
                              token_path=_token_path() if dashboard else None, local=True)
        log.info("ray: %s", ray.cluster_resources())
    ctx = ray.data.DataContext.get_current()
    # Block order decides which rows each training worker gets; a fixed order
    # makes the same config, data and seed give the same model bytes.
    ctx.execution_options.preserve_order = True
    # Ray Data cuts every read into at least 200 blocks by default, and each of the
    # pipeline's passes runs one task per block: on 2 CPUs a 2M-row CSV became 486
    # blocks and ingest + split + transform took 110 s instead of 16 s. Two blocks per
    # CPU keep every core busy; large inputs still get more (128 MiB per block at most).
    ctx.read_op_min_num_blocks = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
