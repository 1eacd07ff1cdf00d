"""The fetch → land → acknowledge loop against an in-memory broker (no Ray, no server).

The broker redelivers, on a new session, every message it handed out and never got
an acknowledgement for, as MQTT, JetStream and Redis consumer groups do.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raypipe.config import parse_config
from raypipe.streams import consumer as consumer_mod
from raypipe.streams.consumer import ConsumerLoop
from raypipe.streams.landing import Message, landed_files


class Broker:
    def __init__(self, n: int):
        self.messages = [Message(f"k:{i}", "k", json.dumps({"id": i, "v": i % 3}).encode(), 1000 + i) for i in range(n)]
        self.next = 0
        self.unacked: dict[str, Message] = {}
        self.acks = 0


class Client:
    def __init__(self, broker: Broker, fail_ack_on_batch: int | None = None):
        self.broker = broker
        self.fail_ack_on_batch = fail_ack_on_batch
        self.batches = 0
        self.redeliver: list[Message] = []

    def connect(self) -> None:
        self.redeliver = sorted(self.broker.unacked.values(), key=lambda m: m.time_ms)  # a new session

    def fetch(self, max_messages: int, timeout_s: float) -> list[Message]:
        out = self.redeliver[:max_messages]
        self.redeliver = self.redeliver[len(out):]
        b = self.broker
        while len(out) < max_messages and b.next < len(b.messages):
            out.append(b.messages[b.next])
            b.next += 1
        for m in out:
            b.unacked[m.id] = m
        return out

    def ack(self, messages) -> None:
        self.batches += 1
        if self.batches == self.fail_ack_on_batch:
            raise ConnectionError("broker went away before the acknowledgement")
        for m in messages:
            self.broker.unacked.pop(m.id, None)
            self.broker.acks += 1

    def resume_state(self, messages):
        return None

    def close(self) -> None:
        pass


@pytest.fixture
def source(tmp_path):
    raw = {
        "name": "p",
        "data": {
            "source": {
                "type": "stream",
                "landing_uri": str(tmp_path),
                "batch_max_messages": 10,
                "batch_max_seconds": 60,
                "subscriptions": [{"type": "redis", "stream": "k"}],
            }
        },
    }
    return parse_config(raw).data.source


def run_loop(monkeypatch, source, client, until_rows):
    monkeypatch.setattr(consumer_mod, "make_client", lambda *a, **k: client)
    loop = ConsumerLoop("p", source, "redis", None, until_rows)
    loop.run()
    return loop


def landed_ids(path) -> list[str]:
    table = pa.concat_tables([pq.read_table(f) for f in landed_files(str(path))])
    return table.column("_message_id").to_pylist()


def test_landed_but_unacknowledged_batch_is_redelivered_and_dropped(monkeypatch, source, tmp_path):
    broker = Broker(100)
    first = run_loop(monkeypatch, source, Client(broker, fail_ack_on_batch=2), until_rows=30)
    assert first.state == "finished"
    assert first.counts == {"received": 30, "landed": 30, "duplicates": 0, "acked": 20, "ack_failures": 1, "files": 3}
    assert sorted(broker.unacked) == sorted(f"k:{i}" for i in range(10, 20))

    second = run_loop(monkeypatch, source, Client(broker), until_rows=100)
    assert second.state == "finished"
    assert second.counts["duplicates"] == 10 and second.counts["landed"] == 70
    ids = landed_ids(tmp_path)
    assert len(ids) == 100 and set(ids) == {f"k:{i}" for i in range(100)}
    assert broker.unacked == {} and broker.acks == 100  # 20 + the 10 redelivered + 70 new


def test_stop_lands_and_acknowledges_a_partial_batch(monkeypatch, source, tmp_path):
    broker = Broker(7)
    client = Client(broker)
    monkeypatch.setattr(consumer_mod, "make_client", lambda *a, **k: client)
    loop = ConsumerLoop("p", source, "redis")
    original = client.fetch

    def fetch_then_stop(n, timeout_s):
        out = original(n, timeout_s)
        if not out:
            loop.stop()
        return out

    client.fetch = fetch_then_stop
    loop.run()
    assert loop.state == "stopped" and loop.counts["landed"] == 7 and broker.unacked == {}
    assert len(landed_ids(tmp_path)) == 7


def test_a_batch_that_cannot_land_is_never_acknowledged(monkeypatch, source, tmp_path):
    broker = Broker(5)
    client = Client(broker)
    monkeypatch.setattr(consumer_mod, "make_client", lambda *a, **k: client)
    loop = ConsumerLoop("p", source, "redis", None, 5)

    def disk_full(*args, **kwargs):
        loop.stop()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(consumer_mod.LandingZone, "land", disk_full)
    loop.run()
    assert loop.state == "stopped" and loop.error == "OSError: [Errno 28] No space left on device"
    assert broker.acks == 0 and len(broker.unacked) == 5 and landed_files(str(tmp_path)) == []
