"""NATS JetStream (nats-py): a durable pull consumer, explicit acks after landing.

The durable consumer (created if missing, with ``ack_policy=explicit``) remembers
what was acknowledged, so a restarted consumer goes on where the last landed batch
ended; messages handed out but never acknowledged (their batch did not land, or
landed just before a crash) are redelivered once ``ack_wait_s`` has passed. The
landed id is ``<stream>:<stream sequence>``, unique and stable across redeliveries.

nats-py is asyncio; the consumer thread runs its own event loop.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Sequence
from typing import Any

from raypipe.errors import StageError
from raypipe.streams.secret import Secret, masked_url
from raypipe.streams.landing import Message

__all__ = ["JetStreamClient"]


class JetStreamClient:
    """A JetStream pull consumer for one :class:`~raypipe.config.NatsSubscription`.

    Args:
        subscription: the config model.
        durable: the durable consumer name.
        password: the password (or token, when the URL names no user), if any.
    """

    def __init__(self, subscription: Any, durable: str, password: Secret):
        self.sub = subscription
        self.durable = durable
        self._password = password
        self._loop = asyncio.new_event_loop()
        self._nc: Any = None
        self._psub: Any = None

    def _run(self, coro: Any) -> Any:
        return self._loop.run_until_complete(coro)

    def connect(self) -> None:
        try:
            import nats
            from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
            from nats.js.errors import NotFoundError
        except ImportError as exc:
            raise StageError("NATS needs nats-py. Hint: pip install 'raypipe[streams]'.") from exc
        sub = self.sub
        url = urllib.parse.urlsplit(sub.url)
        options: dict[str, Any] = {"max_reconnect_attempts": -1, "reconnect_time_wait": 1, "connect_timeout": 10}
        secret = self._password.get() or (urllib.parse.unquote(url.password) if url.password else None)
        if url.username:
            options.update(user=urllib.parse.unquote(url.username), password=secret)
        elif secret:
            options["token"] = secret
        server = urllib.parse.urlunsplit(url._replace(netloc=url.hostname + (f":{url.port}" if url.port else "")))

        async def connect() -> None:
            try:
                self._nc = await nats.connect(servers=[server], allow_reconnect=True, **options)
            except Exception as exc:  # nats-py raises several unrelated classes here
                raise StageError(f"subscription {sub.key}: cannot reach NATS at {masked_url(sub.url)} ({exc}).") from exc
            js = self._nc.jetstream()
            try:
                await js.stream_info(sub.stream)
            except NotFoundError:
                raise StageError(
                    f"subscription {sub.key}: JetStream stream '{sub.stream}' does not exist on {masked_url(sub.url)}. "
                    "Hint: create it (nats stream add) with the subjects to keep."
                ) from None
            try:
                await js.consumer_info(sub.stream, self.durable)
            except NotFoundError:
                await js.add_consumer(
                    sub.stream,
                    ConsumerConfig(
                        durable_name=self.durable,
                        ack_policy=AckPolicy.EXPLICIT,
                        deliver_policy=DeliverPolicy.ALL if sub.deliver == "all" else DeliverPolicy.NEW,
                        filter_subject=sub.subject,
                        ack_wait=sub.ack_wait_s,
                        max_ack_pending=sub.max_ack_pending,
                    ),
                )
            self._psub = await js.pull_subscribe_bind(self.durable, stream=sub.stream)

        self._run(connect())

    def fetch(self, max_messages: int, timeout_s: float) -> list[Message]:
        import nats.errors

        async def fetch() -> list[Any]:
            try:
                return await self._psub.fetch(batch=max_messages, timeout=max(timeout_s, 0.05))
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                return []

        out = []
        for msg in self._run(fetch()):
            meta = msg.metadata
            ts = meta.timestamp
            out.append(
                Message(
                    f"{self.sub.stream}:{meta.sequence.stream}",
                    msg.subject,
                    msg.data,
                    int(ts.timestamp() * 1000) if ts is not None else None,
                    token=msg,
                )
            )
        return out

    def ack(self, messages: Sequence[Message]) -> None:
        async def ack() -> None:
            for m in messages:
                await m.token.ack()
            await self._nc.flush()

        if messages:
            self._run(ack())

    def resume_state(self, messages: Sequence[Message]) -> None:
        return None

    def close(self) -> None:
        if self._nc is not None:
            try:
                self._run(self._nc.close())
            finally:
                self._nc = None
        self._loop.close()
