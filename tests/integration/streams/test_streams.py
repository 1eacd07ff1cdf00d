"""Streams against the real local brokers: 20,000 messages, a consumer killed twice, none lost or doubled.

For each broker the consumer actor is killed in the middle two ways: once right
after a batch has landed and before it is acknowledged (``inject_fault``: the
process exits, so the broker redelivers messages that have landed and the dedup
path must drop them), once by ``ray.kill(actor, no_restart=False)`` at whatever
point it has reached. Ray restarts it each time and it resumes by itself. Then
exactly ``RAYPIPE_TEST_STREAM_MESSAGES`` (20,000 by default, to keep the suite's time;
100,000 was run by hand: see the README's stream figures) unique ids must have landed.

Broker URLs come from ``RAYPIPE_TEST_REDIS_URL``, ``RAYPIPE_TEST_MQTT_URL``,
``RAYPIPE_TEST_NATS_URL`` (``.ci/run`` sets them) and ``RAYPIPE_TEST_KAFKA``
(bootstrap servers; no Kafka runs here); a test skips with the reason when its
variable is unset or its broker unreachable. Each test prints its messages/s.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raypipe.config import parse_config
from raypipe.streams.consumer import actor_name, start_consumers, stop_consumers
from raypipe.streams.landing import LandingZone, landed_files

pytestmark = [pytest.mark.ray, pytest.mark.services]

N = int(os.environ.get("RAYPIPE_TEST_STREAM_MESSAGES", "20000"))


def broker_url(var: str) -> str:
    url = os.environ.get(var)
    if not url:
        pytest.skip(f"{var} is not set (the URL of the local broker; .ci/run sets it)")
    parts = urllib.parse.urlsplit(url if "://" in url else f"tcp://{url.split(',')[0]}")
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
    except OSError as exc:
        pytest.skip(f"{var}={url}: broker unreachable ({exc})")
    return url


def stream_config(tmp_path, subscription: dict, **source):
    raw = {
        "name": "streamtest",
        "data": {
            "source": {
                "type": "stream",
                "landing_uri": str(tmp_path / "landing"),
                "batch_max_messages": 5000,
                "batch_max_seconds": 1.0,
                "num_cpus": 0.1,
                "subscriptions": [subscription],
                **source,
            },
            "schema": {"label": None},
        },
    }
    return parse_config(raw, "streams-test.yaml")


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.2, failures: list | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if failures:
            raise AssertionError(f"the publisher failed while waiting for {what}") from failures[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


class Watch:
    """Polls one consumer actor: its status per process, and the rows its folder holds."""

    def __init__(self, cfg, handle):
        self.actor = handle.actor
        self.zone = LandingZone(handle.source.landing_uri, handle.subscription)
        self.by_pid: dict[int, dict] = {}

    def status(self) -> dict | None:
        import ray

        try:
            status = ray.get(self.actor.status.remote(), timeout=10)
        except Exception:  # restarting
            return None
        self.by_pid[status["pid"]] = status
        return status

    def landed(self) -> int:
        self.status()
        return self.zone.count_rows()

    def duplicates(self) -> int:
        self.status()
        return sum(s["duplicates"] for s in self.by_pid.values())

    def running(self, not_pid: int | None = None) -> bool:
        s = self.status()
        return s is not None and s["state"] == "running" and s["pid"] != not_pid


def kill_in_the_middle(watch: Watch, how: str) -> None:
    import ray

    pid = watch.status()["pid"]
    if how == "exit_before_ack":
        try:
            ray.get(watch.actor.inject_fault.remote("exit_before_ack"), timeout=30)
        except (ray.exceptions.ActorUnavailableError, ray.exceptions.RayActorError):
            pass  # the armed fault fired before the reply left the process: that is the fault
    else:
        ray.kill(watch.actor, no_restart=False)
    wait_for(lambda: watch.running(not_pid=pid), 120, f"the consumer to restart after {how}", poll_s=0.5)


def assert_exactly_once(cfg, expected: set[str]) -> None:
    files = landed_files(cfg.data.source.landing_uri)
    ids = pa.concat_tables([pq.read_table(f, columns=["_message_id"]) for f in files]).column("_message_id").to_pylist()
    unique = set(ids)
    assert len(ids) == len(unique), f"{len(ids) - len(unique)} ids landed twice"
    assert unique == expected, f"{len(expected - unique)} missing, {len(unique - expected)} unexpected"
    assert len(ids) == N


def consume_with_two_kills(
    cfg, expected: set[str], publish: Callable[[Watch], None] | None = None, redelivers: bool = True
) -> float:
    """Start the consumer, kill it at 20% and 60% landed, wait for all N; returns seconds spent consuming."""
    handles = start_consumers(cfg)
    watch = Watch(cfg, handles[0])
    publisher, failures = None, []

    def publish_or_record() -> None:
        try:
            publish(watch)
        except BaseException as exc:
            failures.append(exc)

    try:
        wait_for(watch.running, 120, "the consumer to connect")
        started = time.perf_counter()
        if publish is not None:
            publisher = threading.Thread(target=publish_or_record, daemon=True)
            publisher.start()
        wait_for(lambda: watch.landed() >= N // 5, 300, f"{N // 5} messages to land", failures=failures)
        kill_in_the_middle(watch, "exit_before_ack")
        wait_for(lambda: watch.landed() >= 3 * N // 5, 300, f"{3 * N // 5} messages to land", failures=failures)
        kill_in_the_middle(watch, "ray.kill")
        wait_for(lambda: watch.landed() >= N, 300, f"all {N} messages to land", poll_s=0.5, failures=failures)
        seconds = time.perf_counter() - started
        if redelivers:
            # The batch landed before the first kill was never acknowledged: it came back and was dropped.
            wait_for(lambda: watch.duplicates() > 0, 60, "the redelivered batch to be dropped")
        assert watch.landed() == N
    finally:
        stop_consumers(handles)
        if publisher is not None:
            publisher.join(timeout=60)
    assert_exactly_once(cfg, expected)
    print(f"\n{cfg.data.source.subscriptions[0].type}: {N} messages landed exactly once in {seconds:.1f} s "
          f"({N / seconds:,.0f} msg/s) across 3 consumer processes, {watch.duplicates()} redelivered dropped")
    return seconds


# --------------------------------------------------------------------------- Redis Streams


def test_redis_streams_exactly_once_with_two_kills(ray_cluster, tmp_path):
    import redis

    url = broker_url("RAYPIPE_TEST_REDIS_URL")
    key = f"raypipe-test-{uuid.uuid4().hex[:8]}"
    r = redis.Redis.from_url(url)
    try:
        pipe = r.pipeline(transaction=False)
        for i in range(N):
            pipe.xadd(key, {"id": str(i), "device": f"d{i % 7}", "temperature": str(20 + i % 10)})
            if i % 10_000 == 9_999:
                pipe.execute()
        pipe.execute()
        ids = [e[0].decode() for e in r.xrange(key, count=N + 1)]
        assert len(ids) == N
        cfg = stream_config(tmp_path, {"type": "redis", "url": url, "stream": key})
        consume_with_two_kills(cfg, {f"{key}:{i}" for i in ids})
        assert r.xpending(key, "raypipe-streamtest")["pending"] == 0
    finally:
        r.delete(key)
        r.close()


# --------------------------------------------------------------------------- MQTT


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, b = divmod(n, 128)
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mqtt_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def mqtt_publish_qos1(url: str, messages: list[tuple[str, bytes]], window: int = 5000) -> None:
    """Publish at QoS 1 over a plain socket, ``window`` packets then their PUBACKs (paho does ~2k/s here)."""
    parts = urllib.parse.urlsplit(url)
    s = socket.create_connection((parts.hostname, parts.port or 1883), timeout=60)
    try:
        body = _mqtt_str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + _mqtt_str(f"raypipe-test-pub-{uuid.uuid4().hex[:8]}")
        s.sendall(b"\x10" + _varint(len(body)) + body)
        assert s.recv(4)[:2] == b"\x20\x02", "no CONNACK"
        for start in range(0, len(messages), window):
            chunk = messages[start : start + window]
            buf = bytearray()
            for j, (topic, payload) in enumerate(chunk):
                rest = _mqtt_str(topic) + struct.pack("!H", j + 1) + payload
                buf += b"\x32" + _varint(len(rest)) + rest
            s.sendall(buf)
            got = bytearray()
            while len(got) < 4 * len(chunk):
                data = s.recv(4 * len(chunk) - len(got))
                if not data:
                    raise ConnectionError("the broker closed the connection")
                got += data
            assert bytes(got[0::4]) == b"\x40" * len(chunk), "expected one PUBACK per message"
        s.sendall(b"\xe0\x00")
    finally:
        s.close()


def mqtt_forget_session(url: str, client_id: str) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    parts = urllib.parse.urlsplit(url)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.connect(parts.hostname, parts.port or 1883, clean_start=True)
    c.loop_start()
    time.sleep(0.2)
    c.disconnect()
    c.loop_stop()


def test_mqtt_qos1_exactly_once_with_wildcards_and_two_kills(ray_cluster, tmp_path):
    url = broker_url("RAYPIPE_TEST_MQTT_URL")
    run = uuid.uuid4().hex[:8]
    client_id = f"raypipe-test-{run}"
    topics = [f"rptest/{run}/site{i % 3}/dev{i % 5}/telemetry" for i in range(15)]
    messages = [
        (topics[i % 15], json.dumps({"id": i, "temperature": 20 + i % 10, "pressure": 1.5}).encode()) for i in range(N)
    ]
    cfg = stream_config(
        tmp_path,
        {"type": "mqtt", "url": url, "topics": [f"rptest/{run}/+/+/telemetry"], "client_id": client_id},
    )

    def publish(watch: Watch) -> None:
        # Mosquitto keeps at most 65,535 unacknowledged + max_queued_messages (1,000) for a
        # session and drops the rest, so the publisher stays within 40,000 of what has landed
        # (and waits while the consumer is down).
        sent = 0
        while sent < N:
            if sent - watch.zone.count_rows() > 40_000:
                time.sleep(0.2)
                continue
            mqtt_publish_qos1(url, messages[sent : sent + 10_000])
            sent += 10_000

    try:
        consume_with_two_kills(cfg, {f"{topics[i % 15]}:{i}" for i in range(N)}, publish)
    finally:
        mqtt_forget_session(url, client_id)


# --------------------------------------------------------------------------- NATS JetStream


def test_nats_jetstream_exactly_once_with_two_kills(ray_cluster, tmp_path):
    import nats

    url = broker_url("RAYPIPE_TEST_NATS_URL")
    run = uuid.uuid4().hex[:8].upper()
    stream, subject = f"RPTEST_{run}", f"rptest.{run}"

    async def setup() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{subject}.>"])
        for i in range(N):  # core publishes, stored by the stream; flushed below
            await nc.publish(f"{subject}.dev{i % 5}", json.dumps({"id": i, "temperature": 20 + i % 10}).encode())
            if i % 10_000 == 9_999:
                await nc.flush()
        await nc.flush()
        for _ in range(100):
            if (await js.stream_info(stream)).state.messages == N:
                break
            await asyncio.sleep(0.1)
        assert (await js.stream_info(stream)).state.messages == N
        await nc.close()

    async def teardown() -> None:
        nc = await nats.connect(url)
        await nc.jetstream().delete_stream(stream)
        await nc.close()

    asyncio.run(setup())
    try:
        cfg = stream_config(tmp_path, {"type": "nats", "url": url, "stream": stream, "ack_wait_s": 5})
        consume_with_two_kills(cfg, {f"{stream}:{i}" for i in range(1, N + 1)})
    finally:
        asyncio.run(teardown())


# --------------------------------------------------------------------------- Kafka


def test_kafka_subscription_maps_to_read_kafka_arguments():
    import inspect

    import ray.data

    from raypipe.streams.kafka import kafka_read_args

    cfg = stream_config(
        Path("unused"),
        {
            "type": "kafka",
            "bootstrap_servers": "k1:9092",
            "topics": ["events", "clicks"],
            "consumer_config": {"security.protocol": "SASL_SSL"},
        },
    )
    sub = cfg.data.source.subscriptions[0]
    first = kafka_read_args(sub)
    assert first == {
        "topics": ["events", "clicks"],
        "bootstrap_servers": ["k1:9092"],
        "trigger": "once",
        "start_offset": "earliest",
        "end_offset": "latest",
        "consumer_config": {"security.protocol": "SASL_SSL"},
        "timeout_ms": 10_000,
    }
    later = kafka_read_args(sub, {"events": {"0": 120, "1": 98}, "gone": {"0": 5}})
    assert later["start_offset"] == {"events": {0: 120, 1: 98}}
    # The arguments fit Ray's own signature (Ray 2.60: read_kafka(topics, *, bootstrap_servers, ...)).
    inspect.signature(ray.data.read_kafka).bind(**first)
    inspect.signature(ray.data.read_kafka).bind(**later)


def test_kafka_exactly_once_with_two_kills(ray_cluster, tmp_path):
    servers = os.environ.get("RAYPIPE_TEST_KAFKA")
    if not servers:
        pytest.skip("RAYPIPE_TEST_KAFKA is not set (Kafka bootstrap servers; no Kafka broker runs on this machine)")
    pytest.importorskip("confluent_kafka", reason="Kafka needs confluent-kafka")
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"raypipe-test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": servers})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 20})
    for i in range(N):
        producer.produce(topic, json.dumps({"id": i}).encode(), key=str(i).encode(), partition=i % 3)
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    try:
        cfg = stream_config(
            tmp_path,
            {"type": "kafka", "bootstrap_servers": servers.split(","), "topics": [topic], "poll_interval_s": 1},
        )
        expected = {f"{topic}:{i % 3}:{i // 3}" for i in range(N)}
        # Offsets are committed with each landed file: nothing is redelivered, nothing to drop.
        consume_with_two_kills(cfg, expected, redelivers=False)
    finally:
        admin.delete_topics([topic])


# --------------------------------------------------------------------------- the landing zone as a source


def test_landing_zone_is_a_source_for_raypipe_run(ray_cluster, tmp_path):
    import redis
    from click.testing import CliRunner

    from raypipe.cli import cli
    from raypipe.data.ingest import ingest

    url = broker_url("RAYPIPE_TEST_REDIS_URL")
    key = f"raypipe-test-{uuid.uuid4().hex[:8]}"
    r = redis.Redis.from_url(url)
    for i in range(1000):
        payload = "not json {" if i % 100 == 99 else json.dumps({"id": i, "device": f"d{i % 4}", "temperature": 20 + i % 9, "failure": i % 2})
        r.xadd(key, {"data": payload})
    config = tmp_path / "stream.yaml"
    config.write_text(
        json.dumps(
            {
                "name": "streamsource",
                "data": {
                    "source": {
                        "type": "stream",
                        "landing_uri": str(tmp_path / "landing"),
                        "batch_max_messages": 200,
                        "num_cpus": 0.1,
                        "subscriptions": [{"type": "redis", "name": "events", "url": url, "stream": key, "payload_field": "data"}],
                    },
                    "schema": {
                        "label": "failure",
                        "id": "_message_id",
                        "columns": {
                            "_message_id": {"type": "string"},
                            "device": {"type": "category"},
                            "temperature": {"type": "float", "min": 0},
                            "failure": {"type": "int"},
                        },
                    },
                    "validation": {"max_invalid_fraction": 0.05},
                },
            }
        )
    )
    try:
        runner = CliRunner()
        first = runner.invoke(cli, ["ingest-stream", str(config), "--max-messages", "600", "--json"])
        assert first.exit_code == 0, first.output
        summary = json.loads(first.stdout.strip().splitlines()[-1])
        assert summary["landed"] == 600 and summary["subscriptions"]["events"]["actor"] == actor_name("streamsource", "events")
        second = runner.invoke(cli, ["ingest-stream", str(config), "--max-messages", "400"])
        assert second.exit_code == 0, second.output
        assert "events: landed" in second.output and "landed 400 messages" in second.output

        cfg = parse_config(json.loads(config.read_text()), str(config))
        result = ingest(cfg, quarantine_uri=str(tmp_path / "quarantine"))
        assert result.counts["ingested"] == 1000
        assert (result.counts["valid"], result.counts["quarantined"]) == (990, 10)
        assert result.counts["by_rule"] == {"parse": 10}
        rows = result.dataset.to_pandas()
        assert {str(m).rsplit(":", 1)[0] for m in rows["_message_id"]} == {key}
        assert rows["temperature"].dtype.kind == "f" and rows["failure"].sum() == sum(i % 2 for i in range(1000) if i % 100 != 99)
    finally:
        r.delete(key)
        r.close()
