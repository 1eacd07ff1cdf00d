"""Errors raised inside Ray Data tasks, brought back to the driver as raypipe's own.

A ``SchemaError`` raised in a read task reaches the driver as
``RayTaskError(SchemaError)`` (or, by default, as Ray's ``UserCodeException``, losing
its class). :func:`original_task_errors` keeps the class on the datasets created
inside it; :func:`unwrap_task_errors` turns what surfaces back into the plain raypipe
error, and anything else into a :class:`~raypipe.errors.StageError` naming the stage::

    with unwrap_task_errors("predict"):
        read_source(cfg.data.source).write_parquet(out)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray

from raypipe.errors import RaypipeError, StageError

__all__ = ["original_task_errors", "unwrap_task_errors"]


@contextmanager
def original_task_errors() -> Iterator[None]:
    """Datasets created inside raise a task's own exception (a ``RayTaskError(SchemaError)``).

    By default Ray Data replaces an exception raised in a UDF with ``UserCodeException``,
    losing its class; a dataset copies the ``DataContext`` when it is created, so the
    setting sticks to the datasets built here and leaves the caller's context as it was.
    """
    ctx = ray.data.DataContext.get_current()
    before = ctx.raise_original_map_exception
    ctx.raise_original_map_exception = True
    try:
        yield
    finally:
        ctx.raise_original_map_exception = before


def _user_error(exc: BaseException) -> RaypipeError | None:
    """The raypipe error a Ray task raised, unwrapped from Ray's task error."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if isinstance(e, RaypipeError) and not isinstance(cause, RaypipeError):
            return e
        stack.extend([cause, e.__cause__, e.__context__])
    return None


@contextmanager
def unwrap_task_errors(stage: str) -> Iterator[None]:
    """Run Ray Data work so that a raypipe error raised in a task surfaces as itself.

    A ``SchemaError`` raised in a read task reaches the driver as
    ``RayTaskError(SchemaError)``, whose message is a remote traceback; inside this
    block it is re-raised as a plain ``SchemaError`` with the original message. Any
    other failure becomes a :class:`StageError` naming ``stage``. Datasets copy the
    ``DataContext`` when created, so create and execute them inside the block::

        with unwrap_task_errors("predict"):
            read_source(cfg.data.source).write_parquet(out)
    """
    try:
        with original_task_errors():
            yield
    except Exception as exc:
        if isinstance(exc, RaypipeError) and type(exc).__module__.startswith("raypipe"):
            raise  # raised on the driver: already clean
        found = _user_error(exc)
        if found is not None:
            # A fresh instance: no Ray wrapper class, no notes about UDF retries.
            cls = next(c for c in type(found).__mro__ if c.__module__.startswith("raypipe"))
            message = str(found.args[0]) if found.args else str(found)
            raise cls(message.split("\nFailed to apply UDF transform", 1)[0]) from None
        first = str(getattr(exc, "cause", None) or exc).strip().splitlines()
        raise StageError(f"{stage}: Ray Data failed ({first[-1] if first else type(exc).__name__}).") from exc
