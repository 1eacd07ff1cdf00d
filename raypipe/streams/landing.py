"""The landing zone: broker messages as Parquet micro-batches, each landed once.

A subscription's messages land under ``<landing_uri>/<subscription>/``, one Parquet
file per micro-batch, in folders of the landing time (UTC)::

    landing/sensors/date=2025-06-01/hour=13/part-000000000042.parquet

A file is written under a temporary name (a dot name, which readers skip), flushed
to disk, then renamed into place: a file is either whole or absent, and only then
is the batch acknowledged to the broker. On object stores (``s3://``, ``gs://``) the
single upload is itself atomic. On start, :meth:`LandingZone.open` deletes
leftover temporary files (never acknowledged, so the broker sends them again) and
loads the message ids of the newest ``dedup_files`` files, so a message the broker
redelivers because its batch landed but was not yet acknowledged is not written
twice.

Every row carries these columns besides the payload's own:

================  ====================  ===============================================
column            type                  meaning
================  ====================  ===============================================
``_message_id``   string                the broker's message id (see each client)
``_topic``        string                MQTT topic, NATS subject, Redis stream key or
                                        Kafka topic
``_time``         timestamp[ms, UTC]    the broker's timestamp, else the receive time
``_landed_at``    timestamp[ms, UTC]    when the batch was landed
``_payload``      string                the payload text: always with ``format: raw``;
                                        with ``json`` only where it did not parse
``_error``        string                ``"parse: ..."`` when the payload is not a JSON
                                        object (the row is quarantined by ``raypipe run``)
================  ====================  ===============================================

Payload fields land as strings (numbers as written in JSON, nested values as JSON
text), so micro-batches never disagree on a column's type; ``data.schema`` types
them when ``raypipe run`` reads the zone. This module is pure (pyarrow only).

Example::

    zone = LandingZone("./landing", "sensors").open()
    fresh = [m for m in messages if not zone.is_landed(m.id)]
    zone.land(fresh, "json")          # durable when it returns: now acknowledge
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from raypipe.errors import DataError
from raypipe.runtime.storage import is_local, resolve

__all__ = [
    "Message",
    "LandingZone",
    "LandedFile",
    "messages_to_table",
    "landed_files",
    "payload_id",
    "LANDING_COLUMNS",
    "MESSAGE_ID",
    "TOPIC",
    "TIME",
    "LANDED_AT",
    "PAYLOAD",
    "ERROR",
]

MESSAGE_ID = "_message_id"
TOPIC = "_topic"
TIME = "_time"
LANDED_AT = "_landed_at"
PAYLOAD = "_payload"
ERROR = "_error"
#: Columns every landed file has, in this order, after the payload's fields.
LANDING_COLUMNS = (MESSAGE_ID, TOPIC, TIME, LANDED_AT, PAYLOAD, ERROR)
_RESERVED = set(LANDING_COLUMNS) | {"_key"}

_PART = re.compile(r"^part-(\d+)\.parquet$")
_STATE_KEY = b"raypipe.stream.state"
_TS = pa.timestamp("ms", tz="UTC")


@dataclass(slots=True)
class Message:
    """One message as a broker client hands it over.

    Attributes:
        id: the broker's message id (unique within the subscription, stable across
            redeliveries).
        topic: topic, subject or stream key.
        payload: the raw payload (bytes or text); None when ``fields`` is the message.
        time_ms: the broker's timestamp in epoch milliseconds, None if it has none.
        fields: the payload already parsed into a mapping (a Redis entry's fields,
            or JSON a client parsed to find the id), else None.
        key: a Kafka message key (landed as ``_key``), else None.
        token: what the client needs to acknowledge it (never landed).
    """

    id: str
    topic: str
    payload: bytes | str | None
    time_ms: int | None = None
    fields: dict[str, Any] | None = None
    key: str | None = None
    token: Any = field(default=None, repr=False)


def payload_id(topic: str, payload: bytes, id_field: str) -> tuple[str, dict[str, Any] | None]:
    """The id of a message whose broker has no stable id (MQTT), and its parsed payload.

    ``'<topic>:<payload[id_field]>'`` for a JSON object carrying the field; otherwise
    ``'<topic>:sha256:<first 32 hex digits>'`` of the payload (identical payloads
    without an id then count as one message).
    """
    try:
        parsed = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if isinstance(parsed, dict) and parsed.get(id_field) is not None:
        value = parsed[id_field]
        return f"{topic}:{value if isinstance(value, str) else json.dumps(value)}", parsed
    digest = hashlib.sha256(payload).hexdigest()[:32]
    return f"{topic}:sha256:{digest}", parsed if isinstance(parsed, dict) else None


def _text(value: Any) -> str | None:
    """A JSON value as the text it was written as (strings as themselves)."""
    cls = value.__class__
    if cls is str or value is None:
        return value
    if cls is int or cls is float:
        return str(value)  # the same digits json.dumps writes
    if cls is bool:
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _payload_text(msg: Message) -> str:
    payload = msg.payload
    if payload is None:  # a client that handed over parsed fields only
        return json.dumps(msg.fields, ensure_ascii=False)
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload).decode("utf-8", errors="replace")
    return str(payload)


def messages_to_table(messages: Sequence[Message], fmt: str, landed_at: datetime | None = None) -> pa.Table:
    """The rows of one micro-batch: payload fields as strings, then :data:`LANDING_COLUMNS`.

    Args:
        messages: the batch (already free of duplicates).
        fmt: ``"json"`` (fields become columns) or ``"raw"`` (the text in ``_payload``).
        landed_at: the landing time (default: now).
    """
    landed_at = landed_at or datetime.now(timezone.utc)
    columns: dict[str, list[Any]] = {}
    payloads: list[str | None] = [None] * len(messages)
    errors: list[str | None] = [None] * len(messages)
    n = len(messages)
    parse = fmt == "json"
    for i, msg in enumerate(messages):
        fields = msg.fields if parse else None
        if parse and fields is None:
            try:
                fields = json.loads(msg.payload)
            except (ValueError, UnicodeDecodeError) as exc:
                errors[i] = f"parse: payload is not JSON ({exc})"
            else:
                if not isinstance(fields, dict):
                    errors[i] = f"parse: payload is a JSON {type(fields).__name__}, expected an object"
                    fields = None
        if fields is None:
            payloads[i] = _payload_text(msg)
            continue
        for k, v in fields.items():
            col = columns.get(k)
            if col is None:
                col = columns[k] = [None] * n
            col[i] = v if v.__class__ is str else _text(v)
    clashed: set[int] = set()
    for name in [k for k in columns if k in _RESERVED or k.startswith("__rp_")]:
        # A payload field named like a landing column: the row keeps its text and is quarantined.
        for i, value in enumerate(columns.pop(name)):
            if value is not None and i not in clashed:
                clashed.add(i)
                errors[i] = f"parse: payload field {name!r} clashes with a landing column"
                payloads[i] = _payload_text(messages[i])
    for col in columns.values() if clashed else ():
        for i in clashed:
            col[i] = None
    arrays = {k: pa.array(v, pa.string()) for k, v in columns.items()}
    if any(m.key is not None for m in messages):
        arrays["_key"] = pa.array([m.key for m in messages], pa.string())
    now_ms = int(landed_at.timestamp() * 1000)
    arrays[MESSAGE_ID] = pa.array([m.id for m in messages], pa.string())
    arrays[TOPIC] = pa.array([m.topic for m in messages], pa.string())
    arrays[TIME] = pa.array([m.time_ms if m.time_ms is not None else now_ms for m in messages], pa.int64()).cast(_TS)
    arrays[LANDED_AT] = pa.array([now_ms] * n, pa.int64()).cast(_TS)
    arrays[PAYLOAD] = pa.array(payloads, pa.string())
    arrays[ERROR] = pa.array(errors, pa.string())
    return pa.table(arrays)


# --------------------------------------------------------------------------- files


def _open(landing_uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of a landing zone (a URI nothing can open is a DataError)."""
    try:
        return resolve(landing_uri, what="data.source.landing_uri")
    except ValueError as exc:
        raise DataError(str(exc)) from exc


def _seq(path: str) -> int | None:
    m = _PART.match(path.rsplit("/", 1)[-1])
    return int(m.group(1)) if m else None


def landed_files(landing_uri: str, subscriptions: Iterable[str] | None = None) -> list[str]:
    """The landed Parquet files of a landing zone (optionally of some subscriptions), in landing order.

    Returns full paths (with the URI scheme for remote filesystems); temporary files
    of a batch being written are never included.
    """
    filesystem, root = _open(landing_uri)
    subs = list(subscriptions) if subscriptions is not None else None
    bases = [f"{root}/{s}" for s in subs] if subs is not None else [root]
    found: list[tuple[str, int, str]] = []
    for base in bases:
        for info in filesystem.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True)):
            seq = _seq(info.path) if info.type == pafs.FileType.File else None
            if seq is not None:
                sub = info.path[len(root) + 1 :].split("/", 1)[0]
                found.append((sub, seq, info.path))
    found.sort()
    if is_local(landing_uri):
        return [p for _, _, p in found]
    scheme = landing_uri.split("://", 1)[0]
    return [f"{scheme}://{p.lstrip('/')}" for _, _, p in found]


@dataclass(frozen=True)
class LandedFile:
    """A landed micro-batch: its path, row count and sequence number."""

    path: str
    rows: int
    seq: int


class LandingZone:
    """One subscription's part of a landing zone: writes micro-batches, remembers landed ids.

    Args:
        landing_uri: the zone's folder (local path or pyarrow URI).
        subscription: the subscription name (its sub-folder).
        dedup_files: how many of the newest files' ids are remembered.

    Only one writer per subscription may run at a time (the consumer actor's unique
    name ensures it on one cluster).
    """

    def __init__(self, landing_uri: str, subscription: str, dedup_files: int = 1000):
        self.landing_uri = landing_uri
        self.subscription = subscription
        self.dedup_files = dedup_files
        self._fs, root = _open(landing_uri)
        self._local = is_local(landing_uri)
        self.root = f"{root}/{subscription}"
        self._ids: set[str] = set()
        self._window: deque[list[str]] = deque()
        self._next_seq = 0
        self._state: dict[str, Any] | None = None
        self.files_landed = 0
        self.rows_landed = 0

    # ------------------------------------------------------------------ start

    def open(self) -> LandingZone:
        """Scan the folder: drop temporary files, load the newest files' ids and the last state."""
        infos = self._fs.get_file_info(pafs.FileSelector(self.root, recursive=True, allow_not_found=True))
        parts: list[tuple[int, str]] = []
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            name = info.path.rsplit("/", 1)[-1]
            if name.startswith(".") and name.endswith(".tmp"):
                self._fs.delete_file(info.path)  # a batch that never landed, never acknowledged
                continue
            seq = _seq(info.path)
            if seq is not None:
                parts.append((seq, info.path))
        parts.sort()
        self._next_seq = parts[-1][0] + 1 if parts else 0
        for _, path in parts[-self.dedup_files :]:
            ids = pq.read_table(path, columns=[MESSAGE_ID], filesystem=self._fs).column(MESSAGE_ID).to_pylist()
            self._remember(ids)
        if parts:
            meta = pq.read_schema(parts[-1][1], filesystem=self._fs).metadata or {}
            raw = meta.get(_STATE_KEY)
            self._state = json.loads(raw) if raw else None
        return self

    def _remember(self, ids: list[str]) -> None:
        self._window.append(ids)
        self._ids.update(ids)
        while len(self._window) > self.dedup_files:
            self._ids.difference_update(self._window.popleft())

    # ------------------------------------------------------------------ queries

    def is_landed(self, message_id: str) -> bool:
        """Whether a message with this id is in one of the remembered files."""
        return message_id in self._ids

    @property
    def state(self) -> dict[str, Any] | None:
        """The client state stored with the newest file (Kafka's next offsets), or None."""
        return self._state

    def count_rows(self) -> int:
        """Rows landed by this subscription so far (from the Parquet footers)."""
        infos = self._fs.get_file_info(pafs.FileSelector(self.root, recursive=True, allow_not_found=True))
        return sum(
            pq.read_metadata(i.path, filesystem=self._fs).num_rows
            for i in infos
            if i.type == pafs.FileType.File and _seq(i.path) is not None
        )

    # ------------------------------------------------------------------ writing

    def land(self, messages: Sequence[Message], fmt: str, state: dict[str, Any] | None = None) -> LandedFile:
        """Write one micro-batch durably; when this returns the batch may be acknowledged.

        Args:
            messages: the batch, free of already-landed ids.
            fmt: ``"json"`` or ``"raw"`` (see :func:`messages_to_table`).
            state: a small JSON-able mapping stored in the file's metadata
                (the client's resume point), returned by :attr:`state` after a restart.
        """
        landed_at = datetime.now(timezone.utc)
        table = messages_to_table(messages, fmt, landed_at)
        if state is not None:
            table = table.replace_schema_metadata({_STATE_KEY: json.dumps(state).encode()})
        seq = self._next_seq
        folder = f"{self.root}/date={landed_at:%Y-%m-%d}/hour={landed_at:%H}"
        final = f"{folder}/part-{seq:012d}.parquet"
        if self._local:
            os.makedirs(folder, exist_ok=True)
            tmp = f"{folder}/.part-{seq:012d}.{uuid.uuid4().hex[:8]}.tmp"
            pq.write_table(table, tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            if os.path.exists(final):
                os.unlink(tmp)
                raise FileExistsError(f"{final} exists: is another consumer writing to {self.root}?")
            os.rename(tmp, final)
            dfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dfd)  # the rename itself survives a crash
            finally:
                os.close(dfd)
        else:
            self._fs.create_dir(folder, recursive=True)
            with self._fs.open_output_stream(final) as out:  # one upload: whole or absent
                pq.write_table(table, out)
        self._next_seq = seq + 1
        self._remember([m.id for m in messages])
        if state is not None:
            self._state = state
        self.files_landed += 1
        self.rows_landed += table.num_rows
        return LandedFile(final, table.num_rows, seq)
