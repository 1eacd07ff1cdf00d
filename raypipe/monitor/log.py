"""The prediction log: served predictions and feedback labels as Parquet files.

Pure (pyarrow only, no Ray). Each replica owns two :class:`LogWriter` s, one for
predictions and one for feedback, under ``<monitor.log_uri>/<model>/``::

    predictions/date=2026-11-26/<writer>-00000001.parquet
    feedback/date=2026-11-26/<writer>-00000001.parquet

A writer appends each request's rows to a local spill file before it returns (so a
prediction is on disk before it is answered, and a replica killed with ``-9`` loses
nothing: :func:`fold_spills`, run by the next writer and by every reader, turns a dead
writer's spill into the Parquet file it would have written), buffers them in memory
(bounded by ``flush_rows``) and writes a file when
the buffer is full, every ``flush_s`` seconds and on close; a local file is written
under a dot-name and renamed into place, so readers never see half a file. Readers
(:func:`read_new`, :func:`labeled_rows`) skip dot-files.

Prediction rows: ``prediction_id``, ``ts`` (UTC), ``model_version``, ``prediction``,
``probability`` (classification), then the request's input columns, typed by the
model's schema. Columns marked ``pii: true`` are hashed (sha256) or left out.
Feedback rows: ``prediction_id``, ``ts``, ``label`` (as text).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import struct
import tempfile
import threading
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

__all__ = ["LogWriter", "fold_spills", "read_new", "read_all", "labeled_rows", "prediction_rows", "feedback_rows", "PREDICTIONS", "FEEDBACK"]

PREDICTIONS = "predictions"
FEEDBACK = "feedback"


def _filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    if "://" in root:
        return pafs.FileSystem.from_uri(root)
    return pafs.LocalFileSystem(), os.path.abspath(root)


class LogWriter:
    """Buffered, append-only Parquet writer of one kind of rows for one writer (replica).

    Args:
        root: ``<log_uri>/<model>`` (a folder or any pyarrow URI).
        kind: :data:`PREDICTIONS` or :data:`FEEDBACK`.
        writer_id: unique per writer (file names never collide between replicas).
        flush_rows: write once this many rows are buffered.
        flush_s: write buffered rows at least this often (a background thread).
    """

    def __init__(self, root: str, kind: str, writer_id: str | None = None, flush_rows: int = 5000, flush_s: float = 2.0):
        self.fs, base = _filesystem(root)
        self.folder = f"{base}/{kind}"
        self.writer_id = writer_id or uuid.uuid4().hex[:12]
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self.rows_written = 0
        self._parts: list[pa.Table] = []
        self._buffered = 0
        self._seq = 0
        self._lock = threading.Lock()
        self._io = threading.Lock()
        self._closed = threading.Event()
        # Durable before answered: every append lands in a local spill file first, so a
        # replica killed with -9 loses nothing; whoever opens the log next folds it in.
        self._spill_dir = _spill_dir(root, kind)
        os.makedirs(self._spill_dir, exist_ok=True)
        self.recovered = fold_spills(root, kind)
        self._spill = self._open_spill()
        self._thread = threading.Thread(target=self._timer, name=f"raypipe-log-{kind}", daemon=True)
        self._thread.start()

    def _open_spill(self) -> tuple[int, str]:
        """Open (and lock, for as long as this writer lives) the spill of the next file."""
        path = os.path.join(self._spill_dir, f"{self.writer_id}-{self._seq + 1:08d}{_SPILL}")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a folder skips spills whose writer lives
        return fd, path

    def append(self, table: pa.Table) -> None:
        """Buffer rows; writes a file when ``flush_rows`` are buffered."""
        if table.num_rows == 0:
            return
        frame = _frame(table)
        with self._lock:
            os.write(self._spill[0], frame)  # in the kernel before the caller answers: survives kill -9
            self._parts.append(table)
            self._buffered += table.num_rows
            full = self._buffered >= self.flush_rows
        if full:
            self.flush()

    def flush(self) -> int:
        """Write the buffered rows as one file; returns the rows written."""
        with self._io:
            with self._lock:
                if not self._parts:
                    return 0
                parts, self._parts, self._buffered = self._parts, [], 0
                # The spill of these rows is closed; new rows go to the next file's spill.
                spill, self._spill = self._spill, None
                self._seq += 1
                seq = self._seq
                self._spill = self._open_spill()
            table = pa.concat_tables(parts, promote_options="permissive")
            name = f"{self.writer_id}-{seq:08d}.parquet"
            try:
                _write_log_file(self.fs, self.folder, name, table)
            except Exception:
                # The spill stays on disk (folded in by the next writer); the rows stay
                # buffered in the next spill too, so a retry writes them once.
                with self._lock:
                    self._parts.insert(0, table)
                    self._buffered += table.num_rows
                    os.write(self._spill[0], _frame(table))
                _close_spill(spill, remove=True)
                raise
            _close_spill(spill, remove=True)
            self.rows_written += table.num_rows
            return table.num_rows

    def _timer(self) -> None:
        while not self._closed.wait(self.flush_s):
            try:
                self.flush()
            except Exception:  # e.g. a full disk: report it and keep the timer alive
                logging.getLogger("raypipe.monitor").exception("prediction log: flush failed")

    def close(self) -> None:
        """Stop the timer and write what is buffered."""
        self._closed.set()
        self.flush()
        with self._lock:
            spill, self._spill = self._spill, None
        if spill is not None:
            _close_spill(spill, remove=True)  # empty: everything is in Parquet


_SPILL = ".spill"


def _spill_dir(root: str, kind: str) -> str:
    """Where the writers of ``root`` spill: next to the log for a local root, else in
    this machine's temp folder (a remote log is folded in by a writer on the same node)."""
    if "://" not in root:
        return os.path.join(os.path.abspath(root), kind, ".spill")
    key = hashlib.sha256(f"{root}/{kind}".encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), "raypipe-log-spill", key)


def _frame(table: pa.Table) -> bytes:
    """One length-prefixed, self-contained Arrow IPC stream holding ``table``."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    body = sink.getvalue().to_pybytes()
    return struct.pack("<Q", len(body)) + body


def _unframe(data: bytes) -> list[pa.Table]:
    """The tables of a spill file; a torn last frame (a kill mid-write) is dropped:
    its request was never answered."""
    tables, at = [], 0
    while at + 8 <= len(data):
        (size,) = struct.unpack_from("<Q", data, at)
        if at + 8 + size > len(data):
            break
        tables.append(pa.ipc.open_stream(pa.py_buffer(data[at + 8 : at + 8 + size])).read_all())
        at += 8 + size
    return tables


def _close_spill(spill: tuple[int, str], remove: bool) -> None:
    fd, path = spill
    if remove:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)  # removed while still locked: no folder can pick it up half-gone
    os.close(fd)


def _write_log_file(fs: pafs.FileSystem, kind_folder: str, name: str, table: pa.Table) -> None:
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    folder = f"{kind_folder}/date={day}"
    fs.create_dir(folder, recursive=True)
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{folder}/.{name}.tmp"
        pq.write_table(table, tmp, filesystem=fs)
        fs.move(tmp, f"{folder}/{name}")  # readers see whole files only
    else:
        pq.write_table(table, f"{folder}/{name}", filesystem=fs)  # object stores: atomic put


def _already_written(fs: pafs.FileSystem, kind_folder: str, name: str) -> bool:
    return any(i.base_name == name for i in _files(fs, kind_folder))


def fold_spills(root: str, kind: str) -> int:
    """Write the spill files of dead writers of ``root`` into the Parquet log; return the rows.

    A spill whose writer lives is locked and skipped.  A spill becomes the Parquet
    file its writer would have written (same name), so a writer that died after
    writing that file but before removing its spill is not logged twice.
    """
    spill_dir = _spill_dir(root, kind)
    try:
        names = sorted(n for n in os.listdir(spill_dir) if n.endswith(_SPILL))
    except FileNotFoundError:
        return 0
    fs, base = _filesystem(root)
    folded = 0
    for spill_name in names:
        path = os.path.join(spill_dir, spill_name)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is alive
            with os.fdopen(os.dup(fd), "rb") as fh:
                tables = _unframe(fh.read())
            name = spill_name[: -len(_SPILL)] + ".parquet"
            if tables and not _already_written(fs, f"{base}/{kind}", name):
                table = pa.concat_tables(tables, promote_options="permissive")
                _write_log_file(fs, f"{base}/{kind}", name, table)
                folded += table.num_rows
                logging.getLogger("raypipe.monitor").warning(
                    "prediction log: folded %d rows of a stopped writer's spill %s into %s", table.num_rows, path, name)
            os.remove(path)
        finally:
            os.close(fd)
    return folded


def _files(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    infos = fs.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True))
    return [i for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".parquet") and not i.base_name.startswith(".")]


def read_new(root: str, kind: str, seen: set[str]) -> tuple[pa.Table | None, list[str]]:
    """Rows of the log files of ``kind`` not in ``seen`` (oldest first), and their paths.

    The caller adds the paths to ``seen`` once it has used the rows.
    """
    fold_spills(root, kind)  # rows of replicas that died before their flush
    fs, base = _filesystem(root)
    new = sorted((i for i in _files(fs, f"{base}/{kind}") if i.path not in seen), key=lambda i: (i.mtime_ns or 0, i.path))
    if not new:
        return None, []
    tables = [pq.read_table(i.path, filesystem=fs) for i in new]
    return pa.concat_tables(tables, promote_options="permissive"), [i.path for i in new]


def read_all(root: str, kind: str) -> pa.Table | None:
    """Every row of the log files of ``kind``, or None when there are none."""
    table, _ = read_new(root, kind, set())
    return table


def labeled_rows(root: str) -> pa.Table | None:
    """Logged predictions joined with their feedback (the newest label of each id wins).

    Returns the prediction rows that have a label, with a ``label`` column (text), or None.
    """
    preds, feedback = read_all(root, PREDICTIONS), read_all(root, FEEDBACK)
    if preds is None or feedback is None:
        return None
    # Newest label per prediction id: sort by time, keep the last occurrence.
    feedback = feedback.sort_by([("ts", "ascending")])
    ids = feedback.column("prediction_id").to_pylist()
    last = {pid: i for i, pid in enumerate(ids)}
    feedback = feedback.take(pa.array(sorted(last.values()), pa.int64())).select(["prediction_id", "label"])
    return preds.join(feedback, "prediction_id", join_type="inner")


def _now(n: int) -> pa.Array:
    return pa.array([datetime.now(timezone.utc)] * n, pa.timestamp("us", tz="UTC"))


def _hash(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    return pa.array([None if v is None else hashlib.sha256(str(v).encode()).hexdigest() for v in arr.to_pylist()], pa.string())


def prediction_rows(
    inputs: pa.Table,
    out: dict[str, Any],
    ids: list[str],
    version: int,
    pii: Iterable[str] = (),
    pii_mode: str = "hash",
) -> pa.Table:
    """The log rows of one request: ids, time, version, outputs, then the inputs."""
    n = inputs.num_rows
    pred = out["prediction"]
    arrays = [pa.array(ids, pa.string()), _now(n), pa.repeat(pa.scalar(version, pa.int64()), n),
              pa.array(pred.tolist() if pred.dtype == object else pred)]
    names = ["prediction_id", "ts", "model_version", "prediction"]
    if "probability" in out:
        proba = out["probability"]
        arrays.append(pa.array(proba) if proba.ndim == 1 else pa.array(proba.tolist(), pa.list_(pa.float64())))
        names.append("probability")
    pii = set(pii)
    for name in inputs.column_names:
        if name in pii:
            if pii_mode == "drop":
                continue
            arrays.append(_hash(inputs.column(name)))
        else:
            arrays.append(inputs.column(name))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def feedback_rows(items: list[dict[str, Any]]) -> pa.Table:
    """The log rows of ``/feedback`` items (labels kept as text: the schema types them later)."""
    labels = [v if isinstance(v, str) else ("true" if v is True else "false" if v is False else repr(v) if isinstance(v, float) else str(v))
              for v in (i["label"] for i in items)]
    return pa.table({
        "prediction_id": pa.array([i["prediction_id"] for i in items], pa.string()),
        "ts": _now(len(items)),
        "label": pa.array(labels, pa.string()),
    })

