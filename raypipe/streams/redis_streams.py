"""Redis Streams (redis-py): a consumer group, XACK after landing.

The consumer reads with ``XREADGROUP``; entries stay in its pending list until the
batch holding them has landed and is acknowledged with ``XACK``. On (re)start it
first reads its own pending entries (id ``0`` onwards), then new ones (``>``). The
landed id is ``<stream key>:<entry id>``; ``_time`` is the entry id's millisecond
part. An entry trimmed from the stream while pending is acknowledged and counted,
there being nothing left to land.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from raypipe.errors import StageError
from raypipe.streams.secret import Secret, masked_url
from raypipe.streams.landing import Message

__all__ = ["RedisStreamClient"]


class RedisStreamClient:
    """A consumer-group reader of one :class:`~raypipe.config.RedisSubscription`.

    Args:
        subscription: the config model.
        group: the consumer group.
        consumer: this consumer's name within the group.
        password: the password, if any.
    """

    def __init__(self, subscription: Any, group: str, consumer: str, password: Secret):
        self.sub = subscription
        self.group = group
        self.consumer = consumer
        self._password = password
        self._redis: Any = None
        self._pending_from: str | None = "0"
        self.trimmed = 0

    def connect(self) -> None:
        try:
            import redis
        except ImportError as exc:
            raise StageError("Redis Streams need redis-py. Hint: pip install 'raypipe[streams]'.") from exc
        kwargs = {"password": self._password.get()} if self._password.get() else {}
        r = redis.Redis.from_url(
            self.sub.url,
            socket_connect_timeout=10,
            health_check_interval=30,
            decode_responses=True,  # decoded by the (hiredis) parser, much faster than per field here
            encoding_errors="replace",
            **kwargs,
        )
        try:
            r.xgroup_create(self.sub.stream, self.group, id="0" if self.sub.start == "earliest" else "$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise StageError(f"subscription {self.sub.key}: cannot create group '{self.group}' ({exc}).") from exc
        except redis.RedisError as exc:
            raise StageError(f"subscription {self.sub.key}: cannot reach Redis at {masked_url(self.sub.url)} ({exc}).") from exc
        self._redis = r
        self._pending_from = "0"  # first this consumer's unacknowledged entries

    def fetch(self, max_messages: int, timeout_s: float) -> list[Message]:
        entries: list[tuple[Any, Any]] = []
        acks: list[Any] = []
        if self._pending_from is not None:
            resp = self._redis.xreadgroup(self.group, self.consumer, {self.sub.stream: self._pending_from}, count=max_messages)
            entries = resp[0][1] if resp else []
            if entries:
                self._pending_from = entries[-1][0]
            else:
                self._pending_from = None
        if not entries:
            resp = self._redis.xreadgroup(
                self.group, self.consumer, {self.sub.stream: ">"}, count=max_messages, block=max(1, int(timeout_s * 1000))
            )
            entries = resp[0][1] if resp else []
        out = []
        key = self.sub.stream
        field = self.sub.payload_field
        for entry_id, values in entries:
            if not values:  # trimmed while pending
                acks.append(entry_id)
                continue
            ms = int(entry_id.split("-", 1)[0])
            if field is not None and field in values:
                out.append(Message(f"{key}:{entry_id}", key, values[field], ms, token=entry_id))
            else:
                out.append(Message(f"{key}:{entry_id}", key, None, ms, fields=values, token=entry_id))
        if acks:
            self._redis.xack(self.sub.stream, self.group, *acks)
            self.trimmed += len(acks)
        return out

    def ack(self, messages: Sequence[Message]) -> None:
        ids = [m.token for m in messages]
        for i in range(0, len(ids), 10_000):
            self._redis.xack(self.sub.stream, self.group, *ids[i : i + 10_000])

    def resume_state(self, messages: Sequence[Message]) -> None:
        return None

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None
