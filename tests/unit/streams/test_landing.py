"""Unit tests of the landing zone (no Ray, no broker): rows, files, restart bookkeeping."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from raypipe.config import parse_config
from raypipe.errors import ConfigError
from raypipe.streams.landing import (
    LANDING_COLUMNS,
    LandingZone,
    Message,
    landed_files,
    messages_to_table,
    payload_id,
)


def msg(i: int, topic: str = "t", **fields) -> Message:
    return Message(f"{topic}:{i}", topic, json.dumps({"id": i, **fields}).encode(), 1_700_000_000_000 + i)


def test_json_payload_fields_land_as_text_with_landing_columns():
    table = messages_to_table(
        [msg(1, temp=21.5, ok=True, tags=["a"]), Message("t:2", "t", b"not json"), Message("t:3", "t", b"[1, 2]")], "json"
    )
    assert table.column_names == ["id", "temp", "ok", "tags", *LANDING_COLUMNS]
    rows = table.to_pylist()
    assert [rows[0][c] for c in ("id", "temp", "ok", "tags")] == ["1", "21.5", "true", '["a"]']
    assert rows[0]["_payload"] is None and rows[0]["_error"] is None
    assert rows[1]["_error"].startswith("parse: payload is not JSON") and rows[1]["_payload"] == "not json"
    assert rows[2]["_error"] == "parse: payload is a JSON list, expected an object" and rows[2]["id"] is None
    assert [r["_message_id"] for r in rows] == ["t:1", "t:2", "t:3"]
    assert rows[0]["_time"].timestamp() == 1_700_000_000.001


def test_payload_field_named_like_a_landing_column_is_an_error_row_not_a_silent_loss():
    table = messages_to_table([Message("a", "t", b'{"_topic": "x", "v": 1}'), msg(2, v=2)], "json")
    rows = table.to_pylist()
    assert rows[0]["_error"] == "parse: payload field '_topic' clashes with a landing column"
    assert rows[0]["_payload"] == '{"_topic": "x", "v": 1}' and rows[0]["v"] is None and rows[0]["_topic"] == "t"
    assert rows[1]["v"] == "2" and rows[1]["_error"] is None


def test_raw_format_keeps_the_text_and_parsed_fields_are_written_back():
    table = messages_to_table([msg(1, v=1), Message("r:1", "s", None, fields={"a": "1"})], "raw")
    assert table.column_names == list(LANDING_COLUMNS)
    assert table.column("_payload").to_pylist() == ['{"id": 1, "v": 1}', '{"a": "1"}']


def test_mqtt_ids_come_from_the_payload_else_from_its_hash():
    assert payload_id("s/1", b'{"id": 7, "v": 1}', "id") == ("s/1:7", {"id": 7, "v": 1})
    assert payload_id("s/1", b'{"id": "x"}', "id")[0] == "s/1:x"
    anon, fields = payload_id("s/1", b'{"v": 1}', "id")
    assert anon.startswith("s/1:sha256:") and len(anon) == len("s/1:sha256:") + 32 and fields == {"v": 1}
    assert payload_id("s/1", b"\xff", "id")[0] == payload_id("s/1", b"\xff", "id")[0]


def test_land_writes_whole_files_in_time_folders_and_restart_remembers_ids(tmp_path):
    zone = LandingZone(str(tmp_path), "sensors").open()
    first = zone.land([msg(i) for i in range(3)], "json")
    second = zone.land([msg(i) for i in range(3, 5)], "json", state={"next": {"t": {"0": 5}}})
    assert (first.seq, first.rows, second.seq, second.rows) == (0, 3, 1, 2)
    rel = os.path.relpath(first.path, tmp_path).split(os.sep)
    assert rel[0] == "sensors" and rel[1].startswith("date=") and rel[2].startswith("hour=") and rel[3] == "part-000000000000.parquet"
    # A batch that was being written when the process died: never acknowledged, removed on start.
    tmp = os.path.join(os.path.dirname(second.path), ".part-000000000002.abcd.tmp")
    open(tmp, "wb").write(b"partial")
    again = LandingZone(str(tmp_path), "sensors").open()
    assert not os.path.exists(tmp)
    assert all(again.is_landed(f"t:{i}") for i in range(5)) and not again.is_landed("t:5")
    assert again.state == {"next": {"t": {"0": 5}}}
    third = again.land([msg(5)], "json")
    assert third.seq == 2 and again.count_rows() == 6
    assert landed_files(str(tmp_path)) == [first.path, second.path, third.path]
    assert [pq.read_metadata(p).num_rows for p in landed_files(str(tmp_path), ["sensors"])] == [3, 2, 1]
    assert landed_files(str(tmp_path), ["other"]) == []


def test_dedup_window_keeps_the_newest_files_ids(tmp_path):
    zone = LandingZone(str(tmp_path), "s", dedup_files=2).open()
    for i in range(4):
        zone.land([msg(i)], "json")
    assert [zone.is_landed(f"t:{i}") for i in range(4)] == [False, False, True, True]
    reopened = LandingZone(str(tmp_path), "s", dedup_files=2).open()
    assert [reopened.is_landed(f"t:{i}") for i in range(4)] == [False, False, True, True]


def test_stream_source_config_errors_name_the_place_and_the_fix():
    def parse(subs, **extra):
        raw = {"name": "p", "data": {"source": {"type": "stream", "landing_uri": "l", "subscriptions": subs, **extra}}}
        return parse_config(raw, "s.yaml")

    cfg = parse([{"type": "mqtt", "topics": "plant/+/t"}, {"type": "redis", "stream": "k", "name": "events"}])
    assert cfg.data.source.subscriptions[0].topics == ["plant/+/t"]
    assert [s.key for s in cfg.data.source.subscriptions] == ["mqtt", "events"]
    with pytest.raises(ConfigError, match=r"s\.yaml: data\.source\.subscriptions\[0\]\.type: unknown type 'mqt'\. Did you mean 'mqtt'\?"):
        parse([{"type": "mqt", "topics": ["a"]}])
    with pytest.raises(ConfigError, match=r"subscriptions\[0\]\.qso: unknown key 'qso'.*Did you mean 'qos'\?"):
        parse([{"type": "mqtt", "topics": ["a"], "qso": 1}])
    with pytest.raises(ConfigError, match=r"subscriptions\[0\]\.qos: .*Got 0"):
        parse([{"type": "mqtt", "topics": ["a"], "qos": 0}])
    with pytest.raises(ConfigError, match=r"subscription names must be unique.*repeated: redis"):
        parse([{"type": "redis", "stream": "a"}, {"type": "redis", "stream": "b"}])
    with pytest.raises(ConfigError, match=r"max_ack_pending \(100\) must be at least batch_max_messages \(500\)"):
        parse([{"type": "nats", "stream": "S", "max_ack_pending": 100}], batch_max_messages=500)


def test_example_config_validates_and_ingest_stream_refuses_a_batch_source_before_starting_ray():
    from click.testing import CliRunner

    from raypipe.cli import cli
    from raypipe.config import check_config, load_config

    cfg = load_config("configs/stream-mqtt.yaml")
    assert check_config(cfg, "configs/stream-mqtt.yaml") == []
    sub = cfg.data.source.subscriptions[0]
    assert (sub.type, sub.topics, sub.qos, sub.client_id) == ("mqtt", ["plant/+/+/telemetry", "lab/#"], 1, "raypipe-plant-sensors")

    result = CliRunner().invoke(cli, ["ingest-stream", "configs/quickstart.yaml"])
    assert result.exit_code == 2
    assert "data.source.type: ingest-stream needs a 'stream' source, got 'csv'" in result.output
    result = CliRunner().invoke(cli, ["ingest-stream", "configs/stream-mqtt.yaml", "--subscription", "telemetri"])
    assert result.exit_code == 2 and "--subscription telemetri: no such subscription. Did you mean 'telemetry'?" in result.output
