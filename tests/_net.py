"""Helpers of the tests that start servers: a free loopback port and waiting for a condition.

A plain module (not a conftest) so that module-scoped fixtures and tests import the same
functions; ``pythonpath = ["tests"]`` in pyproject.toml puts it on ``sys.path`` under
``--import-mode=importlib``.
"""

from __future__ import annotations

import socket
import time
from typing import Callable, TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll ``predicate`` every ``interval`` seconds until it returns something truthy and
    return that; after ``timeout`` seconds fail with an AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
