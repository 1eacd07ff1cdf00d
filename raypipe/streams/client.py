"""What a broker client does for a consumer, and how one is chosen by ``type``.

=========  ======================  ==============================================  ==================================
type       module                  message id (``_message_id``)                    acknowledged after landing by
=========  ======================  ==============================================  ==================================
mqtt       :mod:`.mqtt`            ``<topic>:<payload id_field>``                  PUBACK (manual ack, QoS 1)
nats       :mod:`.jetstream`       ``<stream>:<stream sequence>``                  ``+ACK`` of each message
redis      :mod:`.redis_streams`   ``<stream key>:<entry id>``                     ``XACK``
kafka      :mod:`.kafka`           ``<topic>:<partition>:<offset>``                the next offsets stored in the
                                                                                   landed file's metadata
=========  ======================  ==============================================  ==================================

Every client delivers at least once; the consumer drops what has already landed
(:class:`~raypipe.streams.landing.LandingZone`), so each message lands exactly once.

The broker modules take :class:`~raypipe.streams.secret.Secret` from its own module,
not from here, so this factory imports them without a cycle; each imports its broker's
library only when it connects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from raypipe.streams.jetstream import JetStreamClient
from raypipe.streams.kafka import KafkaClient
from raypipe.streams.landing import Message
from raypipe.streams.mqtt import MqttClient
from raypipe.streams.redis_streams import RedisStreamClient
from raypipe.streams.secret import Secret, masked_url

__all__ = ["BrokerClient", "Secret", "make_client", "masked_url"]


class BrokerClient(Protocol):
    """One subscription's connection to its broker, used by one consumer thread."""

    def connect(self) -> None:
        """Connect (and subscribe, create the group or durable consumer if missing)."""

    def fetch(self, max_messages: int, timeout_s: float) -> list[Message]:
        """Up to ``max_messages`` messages, waiting at most ``timeout_s`` for the first."""

    def ack(self, messages: Sequence[Message]) -> None:
        """Acknowledge messages whose batch has landed (or that had already landed)."""

    def resume_state(self, messages: Sequence[Message]) -> dict[str, Any] | None:
        """State to store with the batch of ``messages`` (where to resume), or None."""

    def close(self) -> None:
        """Disconnect; unacknowledged messages stay with the broker."""


def make_client(pipeline: str, subscription: Any, password: Secret | None = None, state: dict[str, Any] | None = None) -> BrokerClient:
    """The client of a subscription config model (chosen by its ``type``).

    Args:
        pipeline: the pipeline name (default client ids, durable and group names).
        subscription: a ``MqttSubscription``, ``NatsSubscription``, ``RedisSubscription``
            or ``KafkaSubscription``.
        password: the broker password read on the driver from ``password_env``.
        state: the resume state stored with the newest landed file.
    """
    secret = password or Secret(None)
    if subscription.type == "mqtt":
        return MqttClient(subscription, subscription.client_id or f"raypipe-{pipeline}-{subscription.key}", secret)
    if subscription.type == "nats":
        return JetStreamClient(subscription, subscription.durable or f"raypipe-{pipeline}-{subscription.key}", secret)
    if subscription.type == "redis":
        return RedisStreamClient(
            subscription, subscription.group or f"raypipe-{pipeline}", subscription.consumer or subscription.key, secret
        )
    if subscription.type == "kafka":
        return KafkaClient(subscription, state)
    raise ValueError(f"unknown subscription type {subscription.type!r}")
