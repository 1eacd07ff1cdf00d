"""Integration tests of raypipe.data on a local Ray cluster (num_cpus=2).

Every source type is read by Ray Data and pushed through ``ingest`` (validation,
quarantine, counts) with exact expected numbers; PostgreSQL and MariaDB tests read
their URLs from ``RAYPIPE_TEST_POSTGRES_URL`` / ``RAYPIPE_TEST_MYSQL_URL``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raypipe.config import load_config, parse_config
from raypipe.data import provenance as prov
from raypipe.data.ingest import infer_source_schema, ingest, split
from raypipe.data.sources import read_source
from raypipe.data.ray_split import split_dataset
from raypipe.errors import ConfigError, DataError, SchemaError, ValidationError

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for this module (the integrator moves it to a shared conftest)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    # Left running, like the session fixture: other modules may share it; Ray stops at exit.


def config(source: dict, columns: dict | None = None, **data) -> object:
    raw = {"name": "t", "data": {"source": source, "schema": {"label": None, "columns": columns or {}}, **data}}
    return parse_config(raw, "test.yaml")


def arrow(ds) -> pa.Table:
    import ray

    tables = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    return pa.concat_tables(tables, promote_options="permissive")


def quarantine(result) -> pa.Table:
    return pq.read_table(result.quarantine_path).sort_by([(prov.FILE, "ascending"), (prov.LINE, "ascending")])


PEOPLE = {"age": {"type": "int", "min": 0, "max": 120}, "name": {"type": "string"}, "score": {"type": "float", "nullable": True}}


# --------------------------------------------------------------------------- CSV


def test_csv_with_header(ray_cluster, tmp_path):
    (tmp_path / "people.csv").write_text("name,age,score\nada,36,1.5\nbob,41,\ncy,7,2\n")
    result = ingest(config({"type": "csv", "paths": [str(tmp_path / "people.csv")]}, PEOPLE), str(tmp_path / "q"))
    assert result.counts == {"ingested": 3, "valid": 3, "quarantined": 0, "by_rule": {}, "by_column": {}}
    assert result.quarantine_path is None and not (tmp_path / "q").exists()
    t = arrow(result.dataset).sort_by("age")
    assert t.schema.names == ["age", "name", "score", prov.FILE, prov.LINE]
    assert t.schema.field("age").type == pa.int64() and t.schema.field("score").type == pa.float64()
    assert t["score"].to_pylist() == [2.0, 1.5, None]
    assert t[prov.LINE].to_pylist() == [4, 2, 3]
    assert t[prov.FILE].to_pylist() == [str(tmp_path / "people.csv")] * 3


def test_csv_without_header_question_mark_na_and_glob(ray_cluster, tmp_path):
    (tmp_path / "a.data").write_text("39, State-gov, <=50K\n50, ?, >50K\n")
    (tmp_path / "b.data").write_text("38, Private, ?\n")
    source = {
        "type": "csv",
        "paths": [str(tmp_path / "*.data")],
        "header": False,
        "column_names": ["age", "workclass", "income"],
        "na_values": ["?"],
    }
    columns = {"age": {"type": "int"}, "workclass": {"type": "category", "nullable": True}, "income": {"type": "category"}}
    result = ingest(config(source, columns, validation={"max_invalid_fraction": 0.5}), str(tmp_path / "q"))
    assert result.counts["ingested"] == 3 and result.counts["valid"] == 2
    assert result.counts["by_rule"] == {"not_null": 1} and result.counts["by_column"] == {"income": 1}
    t = arrow(result.dataset).sort_by("age")
    assert t["workclass"].to_pylist() == ["State-gov", None]  # '?' trimmed and read as missing
    q = quarantine(result)
    assert q[prov.FILE].to_pylist() == [str(tmp_path / "b.data")] and q[prov.LINE].to_pylist() == [1]


CORRUPT = """age,name,score
30,a,1
31,b,2
abc,c,3
32,d
33,e,4,extra
150,f,5
-1,,6
34,g,7
"""


def test_corrupted_csv_rows_are_quarantined_with_reasons_and_exact_counts(ray_cluster, tmp_path):
    path = tmp_path / "corrupt.csv"
    path.write_text(CORRUPT)
    cfg = config({"type": "csv", "paths": [str(path)]}, PEOPLE, validation={"max_invalid_fraction": 0.9})
    result = ingest(cfg, str(tmp_path / "quarantine"))
    c = result.counts
    assert (c["ingested"], c["valid"], c["quarantined"]) == (8, 3, 5)
    assert c["ingested"] == c["valid"] + c["quarantined"] == sum(c["by_rule"].values()) + c["valid"]
    assert c["by_rule"] == {"ragged_line": 2, "type": 1, "max": 1, "min": 1}
    assert c["by_column"] == {"age": 3}
    q = quarantine(result)
    assert q[prov.LINE].to_pylist() == [4, 5, 6, 7, 8]
    assert q["__rp_rule"].to_pylist() == ["type", "ragged_line", "ragged_line", "max", "min"]
    assert q["__rp_value"].to_pylist() == ["abc", "expected 3 fields, got 2", "expected 3 fields, got 4", "150", "-1"]
    assert q["__rp_rules"].to_pylist()[4] == "min(age); not_null(name)"  # one row, two rules, counted once
    assert q[prov.RAW].to_pylist()[1:3] == ["32,d", "33,e,4,extra"]
    assert q["age"].to_pylist() == ["abc", None, None, "150", "-1"]
    assert sorted(arrow(result.dataset)["age"].to_pylist()) == [30, 31, 34]


def test_invalid_fraction_fails_with_counts_and_quarantine_path(ray_cluster, tmp_path):
    path = tmp_path / "corrupt.csv"
    path.write_text(CORRUPT)
    qdir = tmp_path / "quarantine"
    with pytest.raises(ValidationError) as err:
        ingest(config({"type": "csv", "paths": [str(path)]}, PEOPLE), str(qdir))
    message = str(err.value)
    assert "5 of 8 rows (62.50%) were quarantined, more than the 1.00% allowed" in message
    assert "By rule: ragged_line=2, " in message and "type=1" in message and str(qdir) in message
    assert pq.read_table(qdir).num_rows == 5  # written before failing, for inspection


def test_missing_declared_column_and_missing_path(ray_cluster, tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("name,age\nada,36\n")
    with pytest.raises(SchemaError) as err:
        ingest(config({"type": "csv", "paths": [str(path)]}, PEOPLE), str(tmp_path / "q"))
    assert str(err.value).startswith(f"data.source: {path}: column 'score' is missing (file columns: name, age).")
    with pytest.raises(DataError, match="does not exist"):
        read_source(config({"type": "csv", "paths": [str(tmp_path / "nope.csv")]}).data.source)
    with pytest.raises(SchemaError, match="column 'agee' is missing"):
        read_source(config({"type": "csv", "paths": [str(path)], "columns": ["agee"]}).data.source).materialize()


def test_schema_less_source_is_inferred_then_validated(ray_cluster, tmp_path):
    (tmp_path / "m.csv").write_text("id,score,tag\n1,0.5,a\n2,1.5,b\n3,,a\n")
    source = {"type": "csv", "paths": [str(tmp_path / "m.csv")]}
    inferred = infer_source_schema(config(source).data.source)
    assert inferred["columns"] == {
        "id": {"type": "int", "nullable": False},
        "score": {"type": "float", "nullable": True},
        "tag": {"type": "category", "nullable": False},
    }
    result = ingest(config(source), str(tmp_path / "q"))
    assert result.counts["valid"] == 3 and list(result.schema.columns) == ["id", "score", "tag"]
    t = arrow(result.dataset).sort_by("id")
    assert t.schema.types[:3] == [pa.int64(), pa.float64(), pa.string()]
    assert t["score"].to_pylist() == [0.5, 1.5, None]


# --------------------------------------------------------------------------- Parquet, JSON, text, union


def test_parquet_folder_with_rename_and_columns(ray_cluster, tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    pq.write_table(pa.table({"AGE": [30, 40], "nm": ["a", "b"], "junk": [1, 2]}), folder / "part-0.parquet")
    pq.write_table(pa.table({"AGE": [50, 200, 60], "nm": ["c", "d", "e"], "junk": [3, 4, 5]}), folder / "part-1.parquet")
    source = {"type": "parquet", "paths": [str(folder)], "rename": {"AGE": "age", "nm": "name"}, "columns": ["age", "name"]}
    columns = {"age": {"type": "int", "max": 120}, "name": {"type": "string"}}
    result = ingest(config(source, columns, validation={"max_invalid_fraction": 0.5}), str(tmp_path / "q"))
    assert (result.counts["valid"], result.counts["quarantined"]) == (4, 1)
    q = quarantine(result)
    assert q[prov.FILE].to_pylist() == [str(folder / "part-1.parquet")] and q[prov.LINE].to_pylist() == [2]
    assert q.column_names[-2:] == ["age", "name"]  # the renamed, selected columns only


def test_json_array_and_jsonl_with_a_broken_line(ray_cluster, tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"age": 30, "name": "a"}, {"age": "31", "name": "b"}], indent=1))
    (tmp_path / "b.jsonl").write_text('{"age": 40, "name": "c"}\n{"age": 41, name: "d"}\n{"age": 42.0, "name": "e"}\n')
    columns = {"age": {"type": "int"}, "name": {"type": "string"}}
    arr = ingest(config({"type": "json", "paths": [str(tmp_path / "a.json")]}, columns), str(tmp_path / "qa"))
    assert arr.counts["valid"] == 2 and sorted(arrow(arr.dataset)["age"].to_pylist()) == [30, 31]
    lines = ingest(
        config({"type": "jsonl", "paths": [str(tmp_path / "b.jsonl")]}, columns, validation={"max_invalid_fraction": 0.5}),
        str(tmp_path / "qb"),
    )
    assert lines.counts == {"ingested": 3, "valid": 2, "quarantined": 1, "by_rule": {"parse": 1}, "by_column": {}}
    q = quarantine(lines)
    assert q[prov.LINE].to_pylist() == [2] and q[prov.RAW].to_pylist() == ['{"age": 41, name: "d"}']
    assert sorted(arrow(lines.dataset)["age"].to_pylist()) == [40, 42]


def test_text_regex_logs(ray_cluster, tmp_path):
    log = tmp_path / "app.log"
    log.write_text(
        "2024-01-01T00:00:00 INFO 12 started\n"
        "-- rotated --\n"
        "2024-01-01T00:00:05 WARN 250 slow\n"
        "\n"
        "2024-01-01T00:00:09 ERROR x crashed\n"
        "2024-01-01T00:00:10 INFO 3 ok\n"
    )
    source = {"type": "text", "paths": [str(log)], "pattern": r"^(?P<ts>\S+) (?P<level>[A-Z]+) (?P<ms>\S+) (?P<msg>.*)$"}
    columns = {
        "ts": {"type": "datetime"},
        "level": {"type": "category", "allowed": ["INFO", "WARN", "ERROR"]},
        "ms": {"type": "int", "max": 1000},
        "msg": {"type": "string"},
    }
    result = ingest(config(source, columns, validation={"max_invalid_fraction": 0.5}), str(tmp_path / "q"))
    assert result.counts == {
        "ingested": 5,
        "valid": 3,
        "quarantined": 2,
        "by_rule": {"no_match": 1, "type": 1},
        "by_column": {"ms": 1},
    }
    q = quarantine(result)
    assert q[prov.LINE].to_pylist() == [2, 5] and q[prov.RAW].to_pylist()[0] == "-- rotated --"
    t = arrow(result.dataset).sort_by(prov.LINE)
    assert t[prov.LINE].to_pylist() == [1, 3, 6] and t["ms"].to_pylist() == [12, 250, 3]


def test_union_aligns_columns_by_name(ray_cluster, tmp_path):
    (tmp_path / "a.csv").write_text("name,age\nada,36\n")
    pq.write_table(pa.table({"years": [41], "who": ["bob"]}), tmp_path / "b.parquet")
    source = {
        "type": "union",
        "name": "people",
        "sources": [
            {"type": "csv", "paths": [str(tmp_path / "a.csv")]},
            {"type": "parquet", "paths": [str(tmp_path / "b.parquet")], "rename": {"years": "age", "who": "name"}},
        ],
    }
    result = ingest(config(source, {"name": {"type": "string"}, "age": {"type": "int"}}), str(tmp_path / "q"))
    t = arrow(result.dataset).sort_by("age")
    assert t.select(["name", "age"]).to_pylist() == [{"name": "ada", "age": 36}, {"name": "bob", "age": 41}]
    assert t[prov.FILE].to_pylist() == [str(tmp_path / "a.csv"), str(tmp_path / "b.parquet")]


# --------------------------------------------------------------------------- SQL


@pytest.fixture
def sqlite_db(tmp_path) -> Path:
    path = tmp_path / "people.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE people (name TEXT, age, score REAL)")
    conn.executemany(
        "INSERT INTO people VALUES (?, ?, ?)", [("ada", 36, 1.5), ("bob", "forty", None), ("cy", 7, 2.0), ("di", 130, 3.0)]
    )
    conn.commit()
    conn.close()
    return path


def test_sqlite_table_and_query(ray_cluster, tmp_path, sqlite_db):
    url = f"sqlite:///{sqlite_db}"
    table = ingest(
        config({"type": "sql", "url": url, "table": "people"}, PEOPLE, validation={"max_invalid_fraction": 0.5}),
        str(tmp_path / "q"),
    )
    # 'forty' sits in an integer column (SQLite allows it): quarantined, not a crash.
    assert table.counts["by_rule"] == {"type": 1, "max": 1} and table.counts["valid"] == 2
    q = quarantine(table)
    assert set(q[prov.FILE].to_pylist()) == {f"{url}#people"} and q[prov.LINE].null_count == 2
    query = ingest(
        config({"type": "sql", "url": url, "query": "SELECT name, age, score FROM people WHERE age < 100;"}, PEOPLE),
        str(tmp_path / "q2"),
    )
    assert sorted(arrow(query.dataset)["name"].to_pylist()) == ["ada", "cy"]


def test_sql_errors_are_clear(ray_cluster, tmp_path, sqlite_db):
    url = f"sqlite:///{sqlite_db}"
    with pytest.raises(DataError, match=r"cannot read table 'nobody' .*no such table: nobody"):
        read_source(config({"type": "sql", "url": url, "table": "nobody"}).data.source)
    with pytest.raises(DataError, match="the query failed"):
        read_source(config({"type": "sql", "url": url, "query": "SELECT nope FROM people"}).data.source)
    with pytest.raises(DataError, match="does not exist"):
        read_source(config({"type": "sql", "url": f"sqlite:///{tmp_path}/missing.db", "table": "t"}).data.source)
    with pytest.raises(DataError, match="unsupported database scheme 'oracle'"):
        read_source(config({"type": "sql", "url": "oracle://u:p@h/db", "table": "t"}).data.source)


@pytest.mark.parametrize("url", ["postgresql://alice:s3cr%23t@127.0.0.1:1/test", "mysql://alice:s3cr%23t@127.0.0.1:1/test"])
def test_unreachable_server_message_masks_the_password(url):
    # No Ray work happens: the connection is probed on the driver first.
    with pytest.raises(DataError) as err:
        read_source(config({"type": "sql", "url": url, "table": "people"}).data.source)
    message = str(err.value)
    assert "cannot connect to" in message and "alice:***@127.0.0.1:1" in message
    assert "s3cr" not in message


def _service_url(var: str) -> str:
    url = os.environ.get(var)
    if not url:
        pytest.skip(f"{var} is not set (e.g. {var}=postgresql://postgres@127.0.0.1:5432/test)")
    return url


def _fill_people(conn, placeholder: str) -> None:
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS rp_people")
    cur.execute("CREATE TABLE rp_people (name VARCHAR(20), age INTEGER, score DOUBLE PRECISION)")
    cur.executemany(
        f"INSERT INTO rp_people VALUES ({placeholder}, {placeholder}, {placeholder})",
        [("ada", 36, 1.5), ("bob", 41, None), ("cy", 300, 2.0)],
    )
    conn.commit()


@pytest.mark.services
def test_postgres_table(ray_cluster, tmp_path):
    import psycopg

    url = _service_url("RAYPIPE_TEST_POSTGRES_URL")
    with psycopg.connect(url) as conn:
        _fill_people(conn, "%s")
    try:
        cfg = config({"type": "sql", "url": url, "table": "rp_people"}, PEOPLE, validation={"max_invalid_fraction": 0.5})
        result = ingest(cfg, str(tmp_path / "q"))
        assert result.counts == {"ingested": 3, "valid": 2, "quarantined": 1, "by_rule": {"max": 1}, "by_column": {"age": 1}}
        assert sorted(arrow(result.dataset)["name"].to_pylist()) == ["ada", "bob"]
        with pytest.raises(DataError, match="cannot read table 'rp_nobody'"):
            read_source(config({"type": "sql", "url": url, "table": "rp_nobody"}).data.source)
    finally:
        with psycopg.connect(url) as conn:
            conn.execute("DROP TABLE IF EXISTS rp_people")


@pytest.mark.services
def test_mysql_query(ray_cluster, tmp_path):
    import pymysql

    from raypipe.data.sql_source import _connector

    url = _service_url("RAYPIPE_TEST_MYSQL_URL")
    conn = _connector(url)()
    try:
        _fill_people(conn, "%s")
    finally:
        conn.close()
    try:
        cfg = config({"type": "sql", "url": url, "query": "SELECT name, age, score FROM rp_people WHERE age < 100"}, PEOPLE)
        result = ingest(cfg, str(tmp_path / "q"))
        assert result.counts["valid"] == 2 and result.counts["quarantined"] == 0
        assert arrow(result.dataset).schema.field("score").type == pa.float64()
        with pytest.raises(DataError, match="the query failed"):
            read_source(config({"type": "sql", "url": url, "query": "SELECT nope FROM rp_people"}).data.source)
    finally:
        conn = _connector(url)()
        try:
            conn.cursor().execute("DROP TABLE IF EXISTS rp_people")
            conn.commit()
        finally:
            conn.close()
        assert pymysql  # the extra is installed


# --------------------------------------------------------------------------- Adult and splits


@pytest.fixture(scope="module")
def adult(ray_cluster, tmp_path_factory):
    cwd = os.getcwd()
    os.chdir(ROOT)  # the quickstart's paths are relative to the project folder
    try:
        cfg = load_config("configs/quickstart.yaml")
        result = ingest(cfg, str(tmp_path_factory.mktemp("adult") / "quarantine"))
        yield cfg, result
    finally:
        os.chdir(cwd)


def test_adult_quickstart_ingest(adult):
    _, result = adult
    assert result.counts == {"ingested": 48842, "valid": 48842, "quarantined": 0, "by_rule": {}, "by_column": {}}
    assert result.quarantine_path is None
    schema = result.dataset.schema()
    assert schema.names[:3] == ["age", "workclass", "fnlwgt"] and schema.names[-2:] == [prov.FILE, prov.LINE]
    nulls = arrow(result.dataset.select_columns(["workclass", "occupation", "native_country"]))
    # '?' is missing: 1836 + 963 workclass, 1843 + 966 occupation, 583 + 274 native_country.
    assert [nulls[c].null_count for c in nulls.column_names] == [2799, 2809, 857]


def test_adult_files_split(adult):
    cfg, result = adult
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        parts = split(cfg, result.dataset)
    finally:
        os.chdir(cwd)
    assert parts.counts["test"] == 16281
    assert parts.counts["train"] + parts.counts["valid"] == 32561
    assert parts.counts == {"train": 29338, "valid": 3223, "test": 16281}  # the seeded hash is fixed
    assert parts.train.schema().names[-1] == "income"  # provenance dropped


def test_random_split_is_the_same_for_any_block_layout(ray_cluster, tmp_path):
    lines = "".join(f"{i},{i % 7}\n" for i in range(2000))
    (tmp_path / "n.csv").write_text("id,k\n" + lines)
    cfg = config({"type": "csv", "paths": [str(tmp_path / "n.csv")]}, {"id": {"type": "int"}, "k": {"type": "int"}})
    ds = ingest(cfg, str(tmp_path / "q")).dataset
    a = split_dataset(ds, cfg.data.split)
    b = split_dataset(ds.repartition(7), cfg.data.split)
    assert a.counts == b.counts and sum(a.counts.values()) == 2000
    for name in ("train", "valid", "test"):
        assert sorted(arrow(getattr(a, name))["id"].to_pylist()) == sorted(arrow(getattr(b, name))["id"].to_pylist())


@pytest.mark.parametrize(
    "split_cfg",
    [
        {"method": "random", "test_fraction": 0.2, "valid_fraction": 0.1, "seed": 7},
        {"method": "files", "test_paths": ["b.csv"], "valid_fraction": 0.25},
        {"method": "time", "time_column": "ts", "valid_from": "2024-01-01T00:20:00", "test_from": "2024-01-01T00:30:00"},
    ],
    ids=["random", "files", "time"],
)
def test_split_assigned_in_the_validation_pass_equals_the_split_stage(ray_cluster, tmp_path, monkeypatch, split_cfg):
    """``ingest(assign_split=True)`` (what ``raypipe run`` does) gives every row the split
    the separate split stage gives it, with quarantined rows in the same blocks."""
    monkeypatch.chdir(tmp_path)  # the files split's relative paths
    for name, lines in (("a.csv", range(0, 1200)), ("b.csv", range(1200, 2400))):
        rows = "".join(f"{i},2024-01-01T00:{i // 60 % 60:02d}:{i % 60:02d},{'x' if i % 97 == 0 else i % 11}\n" for i in lines)
        (tmp_path / name).write_text("id,ts,k\n" + rows)
    cfg = config(
        {"type": "csv", "paths": [str(tmp_path / "*.csv")]},
        {"id": {"type": "int"}, "ts": {"type": "datetime"}, "k": {"type": "int"}},
        split=split_cfg,
        validation={"max_invalid_fraction": 0.05},
    )
    fused = ingest(cfg, str(tmp_path / "q1"), assign_split=True)
    plain = ingest(cfg, str(tmp_path / "q2"))
    quarantined = len(range(0, 2400, 97))
    assert fused.counts == plain.counts and fused.counts["quarantined"] == quarantined
    assert fused.split_counts is not None and plain.split_counts is None
    a, b = split(cfg, fused), split(cfg, plain)
    assert a.counts == b.counts == fused.split_counts and sum(a.counts.values()) == 2400 - quarantined
    for name in ("train", "valid", "test"):
        ours, theirs = arrow(getattr(a, name)), arrow(getattr(b, name))
        assert sorted(ours["id"].to_pylist()) == sorted(theirs["id"].to_pylist())
        assert ours.column_names == theirs.column_names == ["id", "ts", "k"]
    assert min(a.counts.values()) > 0


def test_a_split_that_needs_the_whole_data_is_not_assigned_in_the_validation_pass(ray_cluster, tmp_path):
    (tmp_path / "t.csv").write_text("ts,v\n" + "".join(f"2024-01-01T00:00:{i:02d},{i}\n" for i in range(50)))
    cfg = config(
        {"type": "csv", "paths": [str(tmp_path / "t.csv")]},
        {"ts": {"type": "datetime"}, "v": {"type": "int"}},
        split={"method": "time", "time_column": "ts", "test_fraction": 0.2, "valid_fraction": 0.2},
    )
    result = ingest(cfg, str(tmp_path / "q"), assign_split=True)
    assert result.split_counts is None  # thresholds come from the quantiles: the split stage's own pass
    assert split(cfg, result).counts == {"train": 30, "valid": 10, "test": 10}


def test_time_split_by_quantiles(ray_cluster, tmp_path):
    lines = "".join(f"2024-01-01T00:{i // 60:02d}:{i % 60:02d},{i}\n" for i in range(1000))
    (tmp_path / "t.csv").write_text("ts,v\n" + lines)
    cfg = config(
        {"type": "csv", "paths": [str(tmp_path / "t.csv")]},
        {"ts": {"type": "datetime"}, "v": {"type": "int"}},
        split={"method": "time", "time_column": "ts", "test_fraction": 0.2, "valid_fraction": 0.1},
    )
    parts = split(cfg, ingest(cfg, str(tmp_path / "q")).dataset)
    assert parts.counts == {"train": 700, "valid": 100, "test": 200}
    assert min(arrow(parts.test)["v"].to_pylist()) == 800


def test_unknown_source_type_is_a_config_error():
    class Fake:
        type = "csvv"

    with pytest.raises(ConfigError, match="Did you mean 'csv'"):
        read_source(Fake())
