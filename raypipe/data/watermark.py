"""Incremental ingestion: the watermark of a source, read at ingest, committed after a successful run.

A source with ``incremental: {column: updated_at}`` reads only rows whose column is
above the watermark of the last successful run, and up to the column's current
maximum, taken when the read is planned. That maximum becomes the pending
watermark; :class:`raypipe.Pipeline` commits it only after every stage succeeded,
so a failed run reads the same rows again next time (at least once, never lost).

The watermark lives in one small JSON file per source,
``<state folder>/<source name>.json`` (the state folder defaults to
``<output.uri>/state/<pipeline name>``), replaced atomically: written next to the
target, then moved over it::

    {"version": 1, "source": "orders", "column": "id", "type": "int", "value": 1000000,
     "run_id": "shop-20240101T000000Z-1a2b3c", "updated_at": "2024-01-01T00:00:07+00:00"}

Readers find the state folder through a :func:`watermark_session`, which also
collects the pending watermarks of one ingest::

    with watermark_session("runs/state/shop") as session:
        ds = read_source(cfg.data.source)      # plans the read, records the watermark
        ...                                    # the rest of the run
    for wm in session.watermarks:
        wm.commit(run_id)                      # only after the run succeeded

Files are resolved by :mod:`raypipe.runtime.storage` and read and replaced with the
registry's :class:`~raypipe.registry.Store` primitives. This module is pure (pyarrow
filesystems, no Ray).
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pyarrow.fs as pafs

from raypipe.errors import DataError
from raypipe.registry import Store
from raypipe.runtime.storage import resolve

__all__ = [
    "Watermark",
    "WatermarkSession",
    "watermark_session",
    "current_session",
    "state_file",
    "read_watermark",
    "encode_value",
    "decode_value",
]

_FORMAT = 1


def encode_value(value: Any) -> tuple[str, Any]:
    """A watermark value as ``(type name, JSON value)``; :func:`decode_value` reverses it.

    Raises:
        TypeError: the value is not a number, a date, a timestamp or a string.
    """
    if isinstance(value, bool):
        raise TypeError("a boolean column cannot be a watermark")
    for cls, name in ((int, "int"), (float, "float"), (str, "string")):
        if isinstance(value, cls):
            return name, value
    if isinstance(value, Decimal):
        return "decimal", str(value)
    if isinstance(value, datetime):
        return "datetime", value.isoformat()
    if isinstance(value, date):
        return "date", value.isoformat()
    raise TypeError(f"a {type(value).__name__} value cannot be a watermark (expected a number, date, timestamp or text)")


def decode_value(kind: str, value: Any) -> Any:
    """The value :func:`encode_value` encoded (``kind`` is its type name)."""
    if value is None:
        return None
    decoders = {
        "int": int,
        "float": float,
        "string": str,
        "decimal": Decimal,
        "datetime": datetime.fromisoformat,
        "date": date.fromisoformat,
    }
    return decoders[kind](value)


def _json_value(value: Any) -> Any:
    return None if value is None else encode_value(value)[1]


def _state_filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and path of a watermark file; a state URI nothing can open is a DataError."""
    try:
        return resolve(path, what="data.source.incremental.state_uri")
    except ValueError as exc:
        raise DataError(str(exc)) from exc


def state_file(state_dir: str, source: str) -> str:
    """Where the watermark of ``source`` is kept under ``state_dir``."""
    return f"{state_dir.rstrip('/')}/{source}.json"


def read_watermark(path: str, column: str) -> Any:
    """The committed watermark in ``path``, or None when no run committed one yet.

    Raises:
        DataError: the file is unreadable, or holds the watermark of another column.
    """
    fs, local = _state_filesystem(path)
    try:
        data = Store(fs, "/", path).read_bytes(local)
    except OSError as exc:
        raise DataError(f"data.source.incremental: cannot read the watermark file {path} ({exc}).") from exc
    if data is None:
        return None
    try:
        body = json.loads(data)
        stored, kind, value = body["column"], body["type"], body["value"]
        decoded = decode_value(kind, value)
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"data.source.incremental: the watermark file {path} is damaged ({type(exc).__name__}: {exc}). "
            "Hint: fix it, or delete it to read every row again."
        ) from None
    if stored != column:
        raise DataError(
            f"data.source.incremental.column: expected the watermark of '{column}', but {path} holds one of "
            f"'{stored}'. Hint: delete the file to start over with the new column, or set another state_uri."
        )
    return decoded


@dataclass
class Watermark:
    """The pending watermark of one source in one run.

    Attributes:
        source: the source's name.
        column: the watermark column.
        previous: the committed watermark the read started above (None: first run).
        current: the column's maximum among the rows read (None: no new rows).
        path: the state file (None: no state folder, nothing to commit to).
        committed: whether :meth:`commit` wrote it.
    """

    source: str
    column: str
    previous: Any
    current: Any
    path: str | None
    committed: bool = False

    @property
    def advanced(self) -> bool:
        """Whether this run read rows beyond the previous watermark."""
        return self.current is not None and self.current != self.previous

    def commit(self, run_id: str | None = None) -> None:
        """Write ``current`` as the committed watermark (atomically); nothing to do if not advanced."""
        if not self.advanced or self.path is None:
            return
        kind, value = encode_value(self.current)
        body = {
            "version": _FORMAT,
            "source": self.source,
            "column": self.column,
            "type": kind,
            "value": value,
            "run_id": run_id,
            "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        fs, local = _state_filesystem(self.path)
        try:
            Store(fs, "/", self.path).write_atomic(local, (json.dumps(body, indent=2) + "\n").encode())
        except OSError as exc:
            raise DataError(f"data.source.incremental: cannot write the watermark file {self.path} ({exc}).") from exc
        self.committed = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for run reports."""
        return {
            "source": self.source,
            "column": self.column,
            "previous": _json_value(self.previous),
            "current": _json_value(self.current),
            "state": self.path,
            "committed": self.committed,
        }


@dataclass
class WatermarkSession:
    """The pending watermarks of one ingest, and the default state folder of its sources."""

    state_dir: str | None
    watermarks: list[Watermark] = field(default_factory=list)

    def add(self, watermark: Watermark) -> None:
        """Record a source's pending watermark.

        Raises:
            DataError: another source of this ingest keeps its watermark in the same file.
        """
        for other in self.watermarks:
            if other.path == watermark.path:
                raise DataError(
                    f"data.source: two incremental sources would share the watermark file {watermark.path}. "
                    "Hint: give each source its own name."
                )
        self.watermarks.append(watermark)


_SESSION: contextvars.ContextVar[WatermarkSession | None] = contextvars.ContextVar("raypipe_watermarks", default=None)


@contextmanager
def watermark_session(state_dir: str | None) -> Iterator[WatermarkSession]:
    """Collect the pending watermarks of the sources read inside the block.

    Args:
        state_dir: the state folder of sources without their own ``state_uri``;
            None leaves them without one (they read from ``start``, and nothing
            can be committed).
    """
    session = WatermarkSession(state_dir)
    token = _SESSION.set(session)
    try:
        yield session
    finally:
        _SESSION.reset(token)


def current_session() -> WatermarkSession | None:
    """The innermost open :func:`watermark_session`, if any."""
    return _SESSION.get()
