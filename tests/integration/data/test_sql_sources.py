"""SQL sources on Ray Data: range-partitioned parallel reads and incremental watermarks.

Against the real local servers (URLs from ``RAYPIPE_TEST_POSTGRES_URL`` /
``RAYPIPE_TEST_MYSQL_URL``; skipped without them) and SQLite. Every read is checked
against one SQL query over the same rows: row count and sums (a checksum that
misses no lost or doubled row). Tables get random names: other test sessions may
share the servers.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from raypipe import Pipeline
from raypipe.config import parse_config
from raypipe.data.sources import read_source, unwrap_task_errors
from raypipe.data.watermark import watermark_session
from raypipe.errors import ConfigError, DataError, StageError

pytestmark = pytest.mark.ray


def _source(source: dict):
    return parse_config({"name": "t", "data": {"source": source}}, "test.yaml").data.source


def _service_url(var: str) -> str:
    url = os.environ.get(var)
    if not url:
        pytest.skip(f"{var} is not set (e.g. {var}=postgresql://postgres@127.0.0.1:5432/test)")
    return url


def _partial_sums(table: pa.Table) -> pa.Table:
    sums = [pc.sum(table[c]).as_py() or 0 for c in ("id", "value")]
    return pa.table({"n": [table.num_rows], "ids": [sums[0]], "values": [float(sums[1])]})


def _totals(ds) -> tuple:
    """(rows, sum of id, sum of value) of a dataset: per-block sums, added up here.

    Ray's ``Dataset.aggregate`` would shuffle through aggregator actors, which
    costs more than the read on a 2-CPU test machine.
    """
    import ray

    with unwrap_task_errors("test"):
        parts = ray.get(ds.map_batches(_partial_sums, batch_format="pyarrow", batch_size=None).to_arrow_refs())
    rows = [r for t in parts for r in t.to_pylist()]
    return sum(r["n"] for r in rows), sum(r["ids"] for r in rows), sum(r["values"] for r in rows)


def _read_tasks(ds) -> int:
    found = re.search(r"ReadSQL\S*: (\d+) tasks executed", ds.stats())
    assert found, ds.stats()
    return int(found.group(1))


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def pg_million():
    """A PostgreSQL table of 1,000,000 rows, made in the database with generate_series."""
    import psycopg

    url = _service_url("RAYPIPE_TEST_POSTGRES_URL")
    table = f"rp_million_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        # No index on id: each partition query scans the table, which takes PostgreSQL well
        # under a second here, less than building the index would.
        conn.execute(f"CREATE UNLOGGED TABLE {table} (id bigint, value double precision)")
        conn.execute(f"INSERT INTO {table} SELECT g, (g % 1000) * 0.5 FROM generate_series(1, 1000000) AS g")
        conn.execute(f"ANALYZE {table}")
    yield url, table
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


def _pg_totals(url: str, sql: str) -> tuple:
    import psycopg

    with psycopg.connect(url) as conn:
        n, ids, values = conn.execute(sql).fetchone()
    return n, int(ids or 0), float(values or 0)


@pytest.mark.services
def test_postgres_million_rows_partitioned_then_incremental(ray_cluster, tmp_path, pg_million):
    import psycopg

    url, table = pg_million
    source = _source(
        {
            "type": "sql",
            "name": "million",
            "url": url,
            "table": table,
            "partition": {"column": "id", "num_partitions": 4},
            "incremental": {"column": "id", "state_uri": str(tmp_path / "state")},
        }
    )
    expected = _pg_totals(url, f"SELECT count(*), sum(id), sum(value) FROM {table}")
    assert expected == (1_000_000, 500_000_500_000, 249_750_000.0)

    started = time.perf_counter()
    with watermark_session(None) as session:
        ds = read_source(source).materialize()
    seconds = time.perf_counter() - started
    assert _totals(ds) == expected
    assert _read_tasks(ds) == 4
    print(f"\n1M rows, 4 partitions: {seconds:.2f} s")
    [wm] = session.watermarks
    assert (wm.source, wm.column, wm.previous, wm.current) == ("million", "id", None, 1_000_000)
    wm.commit("run-1")

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {table} SELECT g, (g % 1000) * 0.5 FROM generate_series(1000001, 1001000) AS g")
    new = _pg_totals(url, f"SELECT count(*), sum(id), sum(value) FROM {table} WHERE id > 1000000")
    assert new[0] == 1000
    # A run that reads the new rows but fails before committing: the next run reads them again.
    for _ in range(2):
        with watermark_session(None) as session:
            assert _totals(read_source(source)) == new
        [wm] = session.watermarks
        assert (wm.previous, wm.current) == (1_000_000, 1_001_000)
    wm.commit("run-3")
    assert json.loads((tmp_path / "state" / "million.json").read_text())["value"] == 1_001_000
    with watermark_session(None) as session:
        assert read_source(source).count() == 0
    assert session.watermarks[0].current is None and not session.watermarks[0].advanced


@pytest.mark.services
def test_postgres_errors_name_the_column_and_keep_secrets(ray_cluster, pg_million, monkeypatch):
    url, table = pg_million
    with pytest.raises(DataError, match=rf"data.source.partition.column: .*#{table} has no column 'idd' .*Did you mean 'id'\?"):
        read_source(_source({"type": "sql", "url": url, "table": table, "partition": {"column": "idd"}}))
    with pytest.raises(DataError, match=r"data.source.incremental.column: .* has no column 'updated_at'"):
        read_source(_source({"type": "sql", "url": url, "table": table, "incremental": {"column": "updated_at"}}))
    # PostgreSQL folds unquoted names to lower case; the column is found as the user wrote it.
    ds = read_source(_source({"type": "sql", "url": url, "query": f"SELECT id, value FROM {table} WHERE id <= 10", "partition": {"column": "ID", "num_partitions": 3}}))
    assert _totals(ds) == (10, 55, 27.5)
    # The probe (LIMIT 0) cannot see a failure that only rows trigger: the read task reports it.
    boom = _source({"type": "sql", "url": url, "query": f"SELECT id, value, 1 / (id - 5) AS boom FROM {table} WHERE id < 10"})
    with pytest.raises(DataError, match=r"data.source: reading postgresql://.* failed \(division by zero"):
        _totals(read_source(boom))
    monkeypatch.setenv("RP_TEST_DB_PASSWORD", "s3cr#t-pw")
    unreachable = _source({"type": "sql", "url": "postgresql://alice@127.0.0.1:1/test", "password_env": "RP_TEST_DB_PASSWORD", "table": "t"})
    with pytest.raises(DataError, match="cannot connect to postgresql://alice@127.0.0.1:1/test") as err:
        read_source(unreachable)
    assert "s3cr" not in str(err.value)
    monkeypatch.delenv("RP_TEST_DB_PASSWORD")
    with pytest.raises(ConfigError, match="data.source.password_env: environment variable RP_TEST_DB_PASSWORD is not set"):
        read_source(unreachable)


# --------------------------------------------------------------------------- MariaDB / MySQL


@pytest.mark.services
def test_mysql_partitioned_by_timestamp_with_incremental_id(ray_cluster, tmp_path):
    from raypipe.data.sql_source import _connector

    url = _service_url("RAYPIPE_TEST_MYSQL_URL")
    table = f"rp_ts_{uuid.uuid4().hex[:8]}"

    def execute(*statements: str) -> tuple:
        conn = _connector(url)()
        try:
            cur = conn.cursor()
            for sql in statements:
                cur.execute(sql)
            row = cur.fetchone()
            conn.commit()
            return row
        finally:
            conn.close()

    def totals(where: str) -> tuple:
        n, ids, values = execute(f"SELECT count(*), sum(id), sum(value) FROM {table} WHERE {where}")
        return n, int(ids or 0), float(values or 0)

    execute(
        f"CREATE TABLE {table} (id INT PRIMARY KEY, value DOUBLE, ts DATETIME(6) NULL)",
        # seq_1_to_N is MariaDB's sequence engine: the rows are made in the server.
        f"INSERT INTO {table} SELECT seq, (seq % 1000) * 0.5, TIMESTAMP('2024-01-01') + INTERVAL seq * 7 SECOND FROM seq_1_to_20000",
        f"UPDATE {table} SET ts = NULL WHERE id % 2000 = 0",
    )
    try:
        source = _source(
            {
                "type": "sql",
                "name": "by_time",
                "url": url,
                "table": table,
                "partition": {"column": "ts", "num_partitions": 3},
                "incremental": {"column": "id", "state_uri": str(tmp_path / "state")},
            }
        )
        with watermark_session(None) as session:
            ds = read_source(source).materialize()
        assert _totals(ds) == totals("TRUE") and _totals(ds)[0] == 20_000
        assert _read_tasks(ds) == 3
        [wm] = session.watermarks
        assert (wm.previous, wm.current) == (None, 20_000)
        wm.commit()
        execute(f"INSERT INTO {table} SELECT seq, seq * 0.25, NULL FROM seq_20001_to_20100")
        with watermark_session(None) as session:
            assert _totals(read_source(source)) == totals("id > 20000") == (100, sum(range(20001, 20101)), 0.25 * sum(range(20001, 20101)))
        assert session.watermarks[0].current == 20_100
    finally:
        execute(f"DROP TABLE IF EXISTS {table}")


# --------------------------------------------------------------------------- SQLite


@pytest.fixture
def events_db(tmp_path) -> Path:
    path = tmp_path / "events.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE events (id INTEGER, value REAL, ts TEXT, kind TEXT)")
    rows = [(i, i * 0.5, f"2024-01-01 {i // 60 % 24:02d}:{i % 60:02d}:00", "k") for i in range(1, 1001)]
    rows += [(None, 1.0, None, "k")] * 5  # a null partition key is still read, once
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return path


def test_sqlite_partitions_read_rows_outside_the_bounds_and_nulls_once(ray_cluster, events_db):
    url = f"sqlite:///{events_db}"
    # Bounds narrower than the data: rows below go to the first partition, above to the last.
    source = _source({"type": "sql", "url": url, "table": "events", "partition": {"column": "id", "num_partitions": 4, "lower": 100, "upper": 200}})
    ds = read_source(source).materialize()
    assert _totals(ds) == (1005, 500_500, 250_250.0 + 5)
    assert _read_tasks(ds) == 4
    # Timestamps kept as text are split as timestamps.
    by_time = _source({"type": "sql", "url": url, "query": "SELECT id, value, ts FROM events", "partition": {"column": "ts", "num_partitions": 3}})
    assert _totals(read_source(by_time)) == (1005, 500_500, 250_255.0)


def test_sqlite_incremental_text_timestamp_from_start(ray_cluster, events_db, tmp_path):
    url = f"sqlite:///{events_db}"
    spec = {"type": "sql", "name": "ev", "url": url, "table": "events", "incremental": {"column": "ts", "start": "2024-01-01 16:00:00"}}
    # No session and no state_uri: the read starts at `start` and records nothing.
    ds = read_source(_source(spec))
    expected_ids = [i for i in range(1, 1001) if f"2024-01-01 {i // 60 % 24:02d}:{i % 60:02d}:00" > "2024-01-01 16:00:00"]
    assert _totals(ds) == (len(expected_ids), sum(expected_ids), 0.5 * sum(expected_ids))
    with watermark_session(str(tmp_path / "state")) as session:
        read_source(_source(spec))
    [wm] = session.watermarks
    assert (wm.previous, wm.current, wm.path) == ("2024-01-01 16:00:00", "2024-01-01 16:40:00", str(tmp_path / "state" / "ev.json"))


def test_sqlite_plan_errors_are_clear(ray_cluster, events_db):
    url = f"sqlite:///{events_db}"
    with pytest.raises(DataError, match=r"data.source.partition.column: .*#events has no column 'idx' \(its columns: id, value, ts, kind\). Did you mean 'id'\?"):
        read_source(_source({"type": "sql", "url": url, "table": "events", "partition": {"column": "idx"}}))
    with pytest.raises(DataError, match=r"data.source.partition.column: .*cannot split the range 'k' .. 'z'.*Hint: partition by a numeric"):
        read_source(_source({"type": "sql", "url": url, "table": "events", "partition": {"column": "kind", "lower": "k", "upper": "z"}}))


# --------------------------------------------------------------------------- the pipeline commits


def test_pipeline_commits_the_watermark_only_after_a_successful_run(ray_cluster, tmp_path, events_db, monkeypatch):
    import raypipe.pipeline.run as pl

    cfg = parse_config(
        {
            "name": "inc",
            "data": {
                "source": {"type": "sql", "name": "events", "url": f"sqlite:///{events_db}", "query": "SELECT id, value FROM events WHERE id IS NOT NULL", "incremental": {"column": "id"}},
                "schema": {"label": "value", "columns": {"id": {"type": "int"}, "value": {"type": "float"}}},
            },
            "output": {"uri": str(tmp_path / "runs")},
            "registry": {"uri": str(tmp_path / "registry")},
        },
        "inc.yaml",
    )
    # Only ingest does real work here: the later stages are stand-ins.
    for stage in ("_split", "_transform", "_evaluate", "_register"):
        monkeypatch.setattr(pl, stage, lambda cfg, state: None)

    def failing_train(cfg, state):
        raise StageError("train: injected failure")

    state_file = tmp_path / "runs" / "state" / "inc" / "events.json"
    monkeypatch.setattr(pl, "_train", failing_train)
    with pytest.raises(StageError, match="injected failure"):
        Pipeline(cfg).run()
    assert not state_file.exists()

    monkeypatch.setattr(pl, "_train", lambda cfg, state: None)
    first = Pipeline(cfg).run()
    assert first.rows["ingested"] == 1000
    assert first.watermarks == [{"source": "events", "column": "id", "previous": None, "current": 1000, "state": str(state_file), "committed": True}]
    assert json.loads(Path(first.report).read_text())["watermarks"][0]["committed"] is True

    conn = sqlite3.connect(events_db)
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", [(i, 1.0, None, "k") for i in range(1001, 1006)])
    conn.commit()
    partial = Pipeline(cfg).run(until="ingest")  # a partial run does not move the watermark either
    assert partial.rows["ingested"] == 5 and partial.watermarks[0]["committed"] is False
    second = Pipeline(cfg).run()
    assert second.rows["ingested"] == 5 and (second.watermarks[0]["previous"], second.watermarks[0]["current"]) == (1000, 1005)
    # Nothing new to ingest is a success (issue 14: a scheduler must not see a failure), with the reason.
    idle = Pipeline(cfg).run()
    assert idle.status == "nothing_new" and idle.stages_run == []
    assert re.search(r"no rows above the committed watermark \(events: id > 1005\)", idle.message)
    assert json.loads(state_file.read_text())["value"] == 1005
