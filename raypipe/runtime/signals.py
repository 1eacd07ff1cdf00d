"""Stop signals for raypipe's long-running commands: SIGTERM behaves like Ctrl-C.

``ray.init`` installs its own SIGTERM handler in the driver (``sys.exit(15)``, and
Ray's core worker may print a C++ stack dump on the way out); Ray Train raises
``SystemExit`` on SIGINT.  Kubernetes, systemd and ``docker stop`` send SIGTERM, so
raypipe wants one behaviour for both signals: raise :class:`KeyboardInterrupt` in the
main thread, let the command drain and flush what it holds, and exit with a
documented status.  Call :func:`stop_on_signals` *after* Ray has started, so it
replaces Ray's handler.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["stop_on_signals", "stop_signal", "ignore_stop_signals", "stop_requested", "StopRequest", "STOP_SIGNALS"]

#: The signals that ask a raypipe command to stop gracefully.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


#: The name of the last stop signal received inside :func:`stop_on_signals`.
_received: str | None = None


def stop_signal() -> str | None:
    """The name of the stop signal that ended the last :func:`stop_on_signals` block, if any.

    Ray's ``ray.get`` turns the ``KeyboardInterrupt`` raised by the handler into a new one
    without arguments, so the exception alone cannot say which signal it was.
    """
    return _received


def _raise_interrupt(signum: int, frame: Any) -> None:
    global _received
    _received = signal.Signals(signum).name
    raise KeyboardInterrupt(_received)


@contextlib.contextmanager
def _handling(handler: Any) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM within the block, the previous ones after it;
    nothing outside the main thread (Python only delivers signals there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise ``KeyboardInterrupt`` in the main thread
    (:func:`stop_signal` then names it).

    The previous handlers come back when the block ends.  Outside the main thread
    (Python only delivers signals there) this does nothing.
    """
    global _received
    _received = None
    with _handling(_raise_interrupt):
        yield


def ignore_stop_signals() -> contextlib.AbstractContextManager[None]:
    """Within the block, SIGINT and SIGTERM are ignored: a second Ctrl-C while a command
    flushes what it holds must not cut the flush short.  Outside the main thread this does
    nothing."""
    return _handling(signal.SIG_IGN)


class StopRequest:
    """What :func:`stop_requested` yields: false until SIGINT or SIGTERM arrives, then
    ``signal`` names it."""

    def __init__(self) -> None:
        self.signal: str | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


@contextlib.contextmanager
def stop_requested() -> Iterator[StopRequest]:
    """Within the block, SIGINT and SIGTERM only set the yielded :class:`StopRequest`.

    For loops of small units of work (an HTTP call and its follow-up): the loop checks the
    request between units, so the unit in flight completes and nothing is left half done.
    Outside the main thread the request is never set.
    """
    request = StopRequest()

    def record(signum: int, frame: Any) -> None:
        request.signal = request.signal or signal.Signals(signum).name

    with _handling(record):
        yield request
