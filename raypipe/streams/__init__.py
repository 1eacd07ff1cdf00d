"""Streams: broker messages landed as Parquet micro-batches, each exactly once.

``raypipe ingest-stream CONFIG`` starts one :class:`StreamConsumer` actor per
subscription of the config's ``type: stream`` source (MQTT, NATS JetStream, Redis
Streams, Kafka); each lands micro-batches in the landing zone and acknowledges
them only once they are on disk. ``raypipe run`` reads the landing zone like any
other source. Layers::

    landing.py        LandingZone, Message, messages_to_table   (pure: pyarrow)
    secret.py         Secret, masked_url (credentials out of reprs and messages)
    mqtt.py, jetstream.py, redis_streams.py, kafka.py           (one per broker)
    client.py         the BrokerClient protocol, make_client (imports the brokers)
    consumer.py       ConsumerLoop, StreamConsumer (Ray actor), ingest_stream
    source.py         read_landing_zone (the `stream` source type, a plugin of
                      raypipe.data.sources through the `raypipe.sources` entry point)

Names that need Ray are imported on first use, so the landing zone can be used
without it.
"""

from __future__ import annotations

import importlib

from raypipe.streams.landing import LandingZone, Message, landed_files

__all__ = [
    "LandingZone",
    "Message",
    "landed_files",
    "StreamConsumer",
    "ingest_stream",
    "start_consumers",
    "stop_consumers",
    "actor_name",
    "kafka_read_args",
    "read_landing_zone",
]

_LAZY = {
    "StreamConsumer": "raypipe.streams.consumer",
    "ingest_stream": "raypipe.streams.consumer",
    "start_consumers": "raypipe.streams.consumer",
    "stop_consumers": "raypipe.streams.consumer",
    "actor_name": "raypipe.streams.consumer",
    "kafka_read_args": "raypipe.streams.kafka",
    "read_landing_zone": "raypipe.streams.source",
}


def __getattr__(name: str) -> object:
    # PEP 562: the Ray-backed names import Ray only when first used.
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'raypipe.streams' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(globals()))
