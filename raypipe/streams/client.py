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
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import Any, Protocol

from raypipe.streams.landing import Message

__all__ = ["BrokerClient", "Secret", "make_client", "masked_url"]


class Secret:
    """A password handed to a consumer actor; its repr never shows it."""

    def __init__(self, value: str | None):
        self._value = value

    def get(self) -> str | None:
        """The secret value."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)" if self._value else "Secret(None)"


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


def masked_url(url: str) -> str:
    """The URL without its password (for messages)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


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
        from raypipe.streams.mqtt import MqttClient

        return MqttClient(subscription, subscription.client_id or f"raypipe-{pipeline}-{subscription.key}", secret)
    if subscription.type == "nats":
        from raypipe.streams.jetstream import JetStreamClient

        return JetStreamClient(subscription, subscription.durable or f"raypipe-{pipeline}-{subscription.key}", secret)
    if subscription.type == "redis":
        from raypipe.streams.redis_streams import RedisStreamClient

        return RedisStreamClient(
            subscription, subscription.group or f"raypipe-{pipeline}", subscription.consumer or subscription.key, secret
        )
    if subscription.type == "kafka":
        from raypipe.streams.kafka import KafkaClient

        return KafkaClient(subscription, state)
    raise ValueError(f"unknown subscription type {subscription.type!r}")
