"""Monitoring windows: cut a stream of Arrow batches into windows by rows and/or time.

Pure (pyarrow, no Ray): the monitor actor appends each batch of logged
predictions to a :class:`WindowBuffer` and checks every window it closes with
:func:`raypipe.monitor.drift.check_window`. Time comes from an injected clock
(``time.monotonic`` by default), so tests drive it by hand.

Example:
    >>> import pyarrow as pa
    >>> buf = WindowBuffer(rows=3)
    >>> [w.rows for w in buf.append(pa.table({"x": [1, 2, 3, 4, 5]}))]
    [3]
    >>> buf.pending_rows
    2
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

__all__ = ["Window", "WindowBuffer", "DEFAULT_MAX_ROWS"]

DEFAULT_MAX_ROWS = 100_000
"""Most rows a time-only window holds before it closes early (bounded memory)."""


@dataclass(frozen=True)
class Window:
    """One closed window.

    Attributes:
        table: its rows, in arrival order.
        opened_at: clock time of its first row.
        closed_at: clock time at which it closed.
        reason: why it closed: ``"rows"`` (it reached ``rows``), ``"seconds"``
            (``seconds`` passed since it opened), ``"max_rows"`` (a time-only
            window reached ``max_rows``) or ``"flush"``.
    """

    table: pa.Table
    opened_at: float
    closed_at: float
    reason: str

    @property
    def rows(self) -> int:
        """Rows in the window."""
        return self.table.num_rows


def _positive(param: str, value: float | None, integer: bool) -> None:
    if value is None:
        return
    ok = isinstance(value, int) and not isinstance(value, bool) if integer else isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value <= 0:
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"The '{param}' parameter of WindowBuffer must be {kind} > 0 or None. Got {value!r} instead.")


class WindowBuffer:
    """Collects Arrow batches and closes tumbling windows by row count and/or time.

    A window closes when it holds ``rows`` rows (batches are sliced, zero
    copy, so every such window has exactly ``rows`` rows; the rest of a batch
    opens the next window), or when ``seconds`` have passed since its first
    row, whichever comes first. Time is checked on :meth:`append` and
    :meth:`poll` (call it periodically so a quiet stream still closes its
    window). Memory is bounded: the buffer never holds more than ``rows``
    rows, or ``max_rows`` for a time-only buffer.

    Args:
        rows: rows per window (``monitor.window_rows``), or None.
        seconds: seconds per window (``monitor.window_s``), or None.
        max_rows: cap of a time-only window; it closes early with reason
            ``"max_rows"`` (ignored when ``rows`` is set).
        clock: returns the current time in seconds; injected in tests.

    Raises:
        ValueError: neither ``rows`` nor ``seconds`` is set, or one is not > 0.

    Example:
        >>> import pyarrow as pa
        >>> now = [0.0]
        >>> buf = WindowBuffer(seconds=60, clock=lambda: now[0])
        >>> buf.append(pa.table({"x": [1, 2]}))
        []
        >>> now[0] = 61.0
        >>> [(w.rows, w.reason) for w in buf.poll()]
        [(2, 'seconds')]
    """

    def __init__(
        self,
        rows: int | None = None,
        seconds: float | None = None,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rows is None and seconds is None:
            raise ValueError(
                "WindowBuffer: expected rows and/or seconds. Got neither; "
                "pass rows=monitor.window_rows and/or seconds=monitor.window_s."
            )
        _positive("rows", rows, integer=True)
        _positive("seconds", seconds, integer=False)
        _positive("max_rows", max_rows, integer=True)
        self.rows = rows
        self.seconds = seconds
        self.max_rows = max_rows
        self._clock = clock
        self._parts: list[pa.Table] = []
        self._pending = 0
        self._opened_at: float | None = None
        self._schema: pa.Schema | None = None

    @property
    def pending_rows(self) -> int:
        """Rows of the open window (not yet closed)."""
        return self._pending

    @property
    def _cap(self) -> int:
        return self.rows if self.rows is not None else self.max_rows

    def _close(self, now: float, reason: str) -> Window:
        table = pa.concat_tables(self._parts, promote_options="default") if len(self._parts) > 1 else self._parts[0]
        window = Window(table=table, opened_at=self._opened_at if self._opened_at is not None else now, closed_at=now, reason=reason)
        self._parts, self._pending, self._opened_at = [], 0, None
        return window

    def _expired(self, now: float) -> bool:
        return self.seconds is not None and self._opened_at is not None and self._pending > 0 and now - self._opened_at >= self.seconds

    def poll(self, now: float | None = None) -> list[Window]:
        """Close the open window if its time is up; returns the closed window, if any.

        Args:
            now: the current time; default the buffer's clock.
        """
        now = self._clock() if now is None else now
        return [self._close(now, "seconds")] if self._expired(now) else []

    def append(self, batch: pa.Table | pa.RecordBatch, now: float | None = None) -> list[Window]:
        """Add a batch of rows; returns the windows that closed, oldest first.

        The open window is first closed if its time is up (the new rows then
        open the next one); the batch is then cut at every ``rows`` boundary.

        Args:
            batch: rows with the same columns as the earlier batches (a column
                that was all-null may gain a type).
            now: arrival time; default the buffer's clock.

        Raises:
            ValueError: ``batch`` is not Arrow, or its schema does not fit the earlier batches'.
        """
        now = self._clock() if now is None else now
        if isinstance(batch, pa.RecordBatch):
            batch = pa.Table.from_batches([batch])
        elif not isinstance(batch, pa.Table):
            raise ValueError(f"WindowBuffer.append: batch: expected a pyarrow.Table or RecordBatch. Got {type(batch).__name__}.")
        closed = self.poll(now)
        if batch.num_rows == 0:
            return closed
        if self._schema is None:
            self._schema = batch.schema
        elif not batch.schema.equals(self._schema):
            try:
                # "default" promotion only widens null columns: real type clashes still fail.
                self._schema = pa.unify_schemas([self._schema, batch.schema], promote_options="default")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise ValueError(
                    f"WindowBuffer.append: batch: expected the schema of the earlier batches ({self._schema}). "
                    f"Got {batch.schema}. Hint: cast every batch to the model's input schema."
                ) from exc
        start = 0
        while start < batch.num_rows:
            if self._opened_at is None:
                self._opened_at = now
            take = min(self._cap - self._pending, batch.num_rows - start)
            self._parts.append(batch.slice(start, take))
            self._pending += take
            start += take
            if self._pending >= self._cap:
                closed.append(self._close(now, "rows" if self.rows is not None else "max_rows"))
        return closed

    def flush(self, now: float | None = None) -> Window | None:
        """Close the open window now, whatever its size (e.g. at shutdown); None if it is empty."""
        now = self._clock() if now is None else now
        return self._close(now, "flush") if self._pending else None
