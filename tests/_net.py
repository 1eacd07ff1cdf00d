"""Helpers of the tests that start servers: a free loopback port, waiting for a condition,
and `raypipe serve` as a subprocess.

A plain module (not a conftest) so that module-scoped fixtures and tests import the same
functions; ``pythonpath = ["tests"]`` in pyproject.toml puts it on ``sys.path`` under
``--import-mode=importlib``.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, below the ephemeral range (so no
    loopback connection takes it before the server binds it: raypipe.runtime.cluster.free_port)."""
    from raypipe.runtime.cluster import free_port as _free

    return _free()


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 1.0) -> T:
    """Poll ``predicate`` every ``interval`` seconds until it returns something truthy and
    return that; after ``timeout`` seconds fail with an AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextmanager
def raypipe_serve(exe: str, config: str, args: list[str], env: dict, folder: Path, cwd: Path) -> Iterator[subprocess.Popen]:
    """``raypipe serve config *args`` as an operator runs it, stdout and stderr in
    ``folder/serve.out`` and ``folder/serve.err``; entered once it prints "press Ctrl-C",
    stopped with Ctrl-C (SIGINT; killed after 60 s) on exit."""
    err_path = folder / "serve.err"
    with open(folder / "serve.out", "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([exe, "serve", config, *args], cwd=cwd, env=env, stdout=out, stderr=err)
        try:
            wait_for(lambda: "press Ctrl-C" in err_path.read_text() or proc.poll() is not None, 600, "raypipe serve")
            assert proc.poll() is None, f"raypipe serve exited with {proc.returncode}:\n{err_path.read_text()[-3000:]}"
            yield proc
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def refuses_without_ray_token(port: int) -> bool:
    """Whether the gRPC server on ``port`` refuses a call without Ray's auth token
    (UNAUTHENTICATED) and answers none: Ray's token mode guards the core workers' servers
    and a replica's inter-deployment server, both bound on every interface by Ray itself.
    A method a server does not have answers UNIMPLEMENTED, so both kinds are tried."""
    import grpc

    codes = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        for method in ("/ray.rpc.CoreWorkerService/NumPendingTasks", "/ray.serve.ASGIService/HandleRequest"):
            try:
                channel.unary_unary(method)(b"", timeout=10)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
    return grpc.StatusCode.UNAUTHENTICATED in codes and grpc.StatusCode.OK not in codes
