"""Kafka through ``ray.data.read_kafka``: repeated bounded reads, offsets kept with the landing.

Each read goes from the next offset of every partition to the latest offset at the
time of the read (``trigger="once"``: one Ray Data read task per partition). The
next offsets are committed by landing them: every landed file stores, in its
Parquet metadata, the offsets that follow its messages; a restarted consumer reads
them from the newest file and goes on from there. Nothing is committed to a Kafka
consumer group, so the landing zone is the one source of truth of what was read.
The landed id is ``<topic>:<partition>:<offset>``; ``_key`` holds the message key.

Example (the mapping, no broker needed)::

    kafka_read_args(sub, {"events": {"0": 120, "1": 98}})
    # {'topics': ['events'], 'bootstrap_servers': ['kafka:9092'], 'trigger': 'once',
    #  'start_offset': {'events': {0: 120, 1: 98}}, 'end_offset': 'latest', ...}
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from raypipe.errors import StageError
from raypipe.streams.landing import Message

__all__ = ["KafkaClient", "kafka_read_args"]

Offsets = dict[str, dict[str, int]]  # topic -> partition (as text: JSON keys) -> next offset


def kafka_read_args(subscription: Any, next_offsets: Offsets | None = None) -> dict[str, Any]:
    """The keyword arguments of ``ray.data.read_kafka`` for one bounded read.

    Args:
        subscription: a :class:`~raypipe.config.KafkaSubscription`.
        next_offsets: the next offset of each partition already landed from; None or
            empty on the first read.

    Returns:
        ``topics``, ``bootstrap_servers``, ``trigger="once"``, ``start_offset``
        (``subscription.start_offset`` on the first read, then per-partition
        offsets ``{topic: {partition: offset}}``, where partitions not listed start
        from "earliest"), ``end_offset="latest"``, ``consumer_config`` (None when
        empty) and ``timeout_ms``.
    """
    start: Any = subscription.start_offset
    if next_offsets:
        start = {
            topic: {int(p): int(o) for p, o in parts.items()}
            for topic, parts in next_offsets.items()
            if topic in subscription.topics
        } or subscription.start_offset
    return {
        "topics": list(subscription.topics),
        "bootstrap_servers": list(subscription.bootstrap_servers),
        "trigger": "once",
        "start_offset": start,
        "end_offset": "latest",
        "consumer_config": dict(subscription.consumer_config) or None,
        "timeout_ms": subscription.timeout_ms,
    }


class KafkaClient:
    """Bounded ``read_kafka`` reads for one :class:`~raypipe.config.KafkaSubscription`.

    Args:
        subscription: the config model.
        state: the resume state of the newest landed file (``{"next": offsets}``).
    """

    def __init__(self, subscription: Any, state: dict[str, Any] | None):
        self.sub = subscription
        self._landed: Offsets = {t: dict(p) for t, p in ((state or {}).get("next") or {}).items()}
        self._read: Offsets = {t: dict(p) for t, p in self._landed.items()}
        self._rows: Iterator[Message] | None = None
        self._idle_until = 0.0

    def connect(self) -> None:
        import importlib.util

        if importlib.util.find_spec("confluent_kafka") is None:  # read_kafka's client
            raise StageError("Kafka needs confluent-kafka. Hint: pip install confluent-kafka.")
        self._read = {t: dict(p) for t, p in self._landed.items()}  # re-read what has not landed
        self._rows = None

    def _read_batches(self) -> Iterator[Message]:
        import ray.data

        ds = ray.data.read_kafka(**kafka_read_args(self.sub, self._read))
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=10_000):
            cols = {name: batch.column(name).to_pylist() for name in ("topic", "partition", "offset", "key", "value", "timestamp")}
            for topic, part, offset, key, value, ts in zip(*cols.values()):
                parts = self._read.setdefault(topic, {})
                parts[str(part)] = max(parts.get(str(part), 0), offset + 1)
                yield Message(
                    f"{topic}:{part}:{offset}",
                    topic,
                    value or b"",
                    ts,
                    key=key.decode("utf-8", errors="replace") if key is not None else None,
                    token=(topic, part, offset),
                )

    def fetch(self, max_messages: int, timeout_s: float) -> list[Message]:
        if self._rows is None:
            wait = self._idle_until - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, timeout_s))
                return []
            self._rows = self._read_batches()
        out: list[Message] = []
        for msg in self._rows:
            out.append(msg)
            if len(out) >= max_messages:
                return out
        self._rows = None  # this bounded read is done; the next starts after poll_interval_s
        if not out:
            self._idle_until = time.monotonic() + self.sub.poll_interval_s
        return out

    def resume_state(self, messages: Sequence[Message]) -> dict[str, Any]:
        nxt = {t: dict(p) for t, p in self._landed.items()}
        for m in messages:
            topic, part, offset = m.token
            parts = nxt.setdefault(topic, {})
            parts[str(part)] = max(parts.get(str(part), 0), offset + 1)
        return {"next": nxt}

    def ack(self, messages: Sequence[Message]) -> None:
        self._landed = self.resume_state(messages)["next"]

    def close(self) -> None:
        self._rows = None
