"""MQTT (paho-mqtt): a persistent session, QoS 1, acknowledged only after landing.

The client connects with a fixed client id and ``clean_start=False`` (MQTT 5, with a
session expiry) or ``clean_session=False`` (3.1.1), and ``manual_ack=True``: a
PUBACK leaves only after the message's batch has landed. A consumer that dies
before that reconnects under the same id and the broker sends every unacknowledged
message again. MQTT packet ids are reused over time, so the landed id comes from
the publisher: ``<topic>:<payload[id_field]>`` (see
:func:`raypipe.streams.landing.payload_id`).

Brokers bound what a session keeps: Mosquitto's ``max_queued_messages`` (default
1000) caps messages queued for a disconnected or lagging client, and drops the
rest. Raise it (and ``max_inflight_messages``, which bounds MQTT 3.1.1 batches) for
a consumer that may be down for a while.
"""

from __future__ import annotations

import queue
import threading
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

from raypipe.errors import StageError
from raypipe.streams.secret import Secret, masked_url
from raypipe.streams.landing import Message, payload_id

__all__ = ["MqttClient"]


class MqttClient:
    """A paho-mqtt client for one :class:`~raypipe.config.MqttSubscription`.

    Args:
        subscription: the config model.
        client_id: the fixed client id of the persistent session.
        password: the broker password, if any.
    """

    def __init__(self, subscription: Any, client_id: str, password: Secret):
        self.sub = subscription
        self.client_id = client_id
        self._password = password
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._connected = threading.Event()
        self._failure: str | None = None
        self._client: Any = None

    def connect(self) -> None:
        try:
            import paho.mqtt.client as mqtt
            from paho.mqtt.enums import CallbackAPIVersion
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
        except ImportError as exc:
            raise StageError("MQTT needs paho-mqtt. Hint: pip install 'raypipe[streams]'.") from exc
        url = urllib.parse.urlsplit(self.sub.url)
        if url.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise StageError(f"subscription {self.sub.key}: url '{masked_url(self.sub.url)}' must start with mqtt:// or mqtts://.")
        tls = url.scheme in ("mqtts", "ssl")
        v5 = self.sub.protocol == "5"
        kwargs: dict[str, Any] = {} if v5 else {"clean_session": False}
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            manual_ack=True,
            **kwargs,
        )
        if url.username or self._password.get():
            client.username_pw_set(urllib.parse.unquote(url.username or ""), self._password.get() or url.password)
        if tls:
            client.tls_set()
        client.reconnect_delay_set(1, 30)
        topics = [(t, self.sub.qos) for t in self.sub.topics]
        id_field = self.sub.id_field

        def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
            if getattr(reason, "is_failure", False):
                self._failure = str(reason)
                return
            c.subscribe(topics)
            self._connected.set()

        def on_disconnect(*args: Any) -> None:
            self._connected.clear()

        def on_message(c: Any, userdata: Any, msg: Any) -> None:
            payload = bytes(msg.payload)
            mid, fields = payload_id(msg.topic, payload, id_field)
            self._queue.put(Message(mid, msg.topic, payload, None, fields, None, msg.mid))

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        connect_kwargs: dict[str, Any] = {"keepalive": self.sub.keepalive_s}
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.sub.session_expiry_s
            props.ReceiveMaximum = 65535
            connect_kwargs.update(clean_start=False, properties=props)
        try:
            client.connect(url.hostname or "127.0.0.1", url.port or (8883 if tls else 1883), **connect_kwargs)
        except OSError as exc:
            raise StageError(f"subscription {self.sub.key}: cannot reach the MQTT broker {masked_url(self.sub.url)} ({exc}).") from exc
        client.loop_start()
        self._client = client
        deadline = time.monotonic() + 30
        while not self._connected.wait(0.1):
            if self._failure or time.monotonic() > deadline:
                client.loop_stop()
                raise StageError(
                    f"subscription {self.sub.key}: the MQTT broker {masked_url(self.sub.url)} refused the connection "
                    f"({self._failure or 'no CONNACK in 30 s'})."
                )

    def fetch(self, max_messages: int, timeout_s: float) -> list[Message]:
        out: list[Message] = []
        try:
            out.append(self._queue.get(timeout=timeout_s))
        except queue.Empty:
            return out
        while len(out) < max_messages:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return out

    def ack(self, messages: Sequence[Message]) -> None:
        # PUBACKs go out in the order the messages arrived, as MQTT asks.
        for m in messages:
            self._client.ack(m.token, self.sub.qos)

    def resume_state(self, messages: Sequence[Message]) -> None:
        return None

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
