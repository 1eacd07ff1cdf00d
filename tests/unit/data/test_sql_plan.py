"""The SQL text of partitioned and incremental reads, and the watermark store (no Ray).

Partition conditions are checked by running them: an in-memory SQLite table counts
the rows each condition selects, and every row must be selected exactly once.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date, datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pytest

from raypipe.data._sql import quote_identifier, range_conditions, rows_to_table, select, split_range, sql_literal
from raypipe.data.watermark import Watermark, decode_value, encode_value, read_watermark, state_file, watermark_session
from raypipe.errors import DataError


def test_split_range_integers_dates_timestamps_and_text():
    assert split_range(1, 1_000_000, 4) == [250_001, 500_001, 750_001]
    assert split_range(1, 2, 4) == [2]  # two values: two partitions, not four
    assert split_range(5, 5, 4) == [] and split_range(None, 9, 4) == [] and split_range(1, 9, 1) == []
    assert split_range(0.0, 1.0, 4) == [0.25, 0.5, 0.75]
    assert split_range(0, Decimal("3"), 3) == [Decimal(1), Decimal(2)]
    assert split_range(datetime(2024, 1, 1), datetime(2024, 1, 2), 4) == [datetime(2024, 1, 1, h) for h in (6, 12, 18)]
    assert split_range(date(2024, 1, 1), date(2024, 1, 3), 4) == [date(2024, 1, 2), date(2024, 1, 3)]
    # SQLite keeps timestamps as text: the cuts come back as text in the same format.
    assert split_range("2024-01-01 00:00:00", "2024-01-02 00:00:00", 2) == ["2024-01-01 12:00:00"]
    assert split_range("2024-01-01T00:00:00", "2024-01-01T00:00:02", 2) == ["2024-01-01T00:00:01"]
    assert split_range(date(2024, 1, 1), "2024-01-02T00:00:00", 2) == [datetime(2024, 1, 1, 12)]
    with pytest.raises(TypeError, match="expected numbers, dates or timestamps"):
        split_range("apple", "pear", 2)
    with pytest.raises(TypeError, match="got int and datetime"):
        split_range(1, datetime(2024, 1, 1), 2)


@pytest.mark.parametrize(
    "values, n, lower, upper",
    [
        (list(range(-5, 95)) + [None, None], 4, None, None),
        (list(range(100)), 7, 10, 20),  # bounds narrower than the data: outside rows still read
        ([1.5, 2.25, 2.25, 9.0, None], 3, None, None),
        ([7] * 10, 4, None, None),
    ],
)
def test_range_conditions_select_every_row_exactly_once(values, n, lower, upper):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (k)")
    db.executemany("INSERT INTO t VALUES (?)", [(v,) for v in values])
    present = [v for v in values if v is not None]
    lo = lower if lower is not None else min(present)
    hi = upper if upper is not None else max(present)
    conds = range_conditions(quote_identifier("k", "sqlite"), split_range(lo, hi, n), "sqlite")
    assert len(conds) <= n
    counts = [db.execute(select("t", None, [c], "COUNT(*)")).fetchone()[0] for c in conds]
    assert sum(counts) == len(values)
    rows = sorted((r for c in conds for r in db.execute(select("t", None, [c], "k")).fetchall()), key=repr)
    assert rows == sorted(((v,) for v in values), key=repr)


def test_select_filters_a_table_directly_and_wraps_a_query():
    assert select("orders", None, [None]) == "SELECT * FROM orders"
    assert select("orders", None, ["a > 1", None, "b < 2"]) == "SELECT * FROM orders WHERE (a > 1) AND (b < 2)"
    assert select(None, "SELECT x FROM y", ["x = 1"], "MAX(x)") == "SELECT MAX(x) FROM (SELECT x FROM y) AS _rp_src WHERE (x = 1)"


@pytest.mark.parametrize("value", ["o'brien", "back\\slash", "2024-01-01 10:00:00", 42, -7, 2.5, 1e-05])
def test_literals_round_trip_through_sqlite(value):
    assert sqlite3.connect(":memory:").execute(f"SELECT {sql_literal(value, 'sqlite')}").fetchone()[0] == value


def test_literals_of_each_kind():
    assert sql_literal(datetime(2024, 1, 2, 3, 4, 5, 6), "postgresql") == "'2024-01-02 03:04:05.000006'"
    assert sql_literal(datetime(2024, 1, 1, tzinfo=timezone.utc), "postgresql") == "'2024-01-01 00:00:00+00:00'"
    assert sql_literal(date(2024, 1, 2), "mysql") == "'2024-01-02'"
    assert sql_literal(Decimal("12.50"), "mysql") == "12.50"
    assert sql_literal("a\\'b", "mysql") == "'a\\\\''b'"  # MySQL reads backslash escapes
    assert sql_literal(True, "postgresql") == "TRUE"
    assert quote_identifier("Id", "postgresql") == '"Id"' and quote_identifier("id", "mysql") == "`id`"
    with pytest.raises(ValueError):
        sql_literal(float("nan"), "sqlite")
    with pytest.raises(TypeError, match="no SQL literal for a bytes"):
        sql_literal(b"x", "sqlite")


def test_rows_to_table_keeps_mixed_columns_as_text():
    t = rows_to_table(["age", "score", "tag"], [(36, 1.5, b"a"), ("forty", 2, None), (7, None, b"c")])
    assert t.schema.field("age").type == pa.string() and t["age"].to_pylist() == ["36", "forty", "7"]
    assert t.schema.field("score").type == pa.float64() and t["score"].to_pylist() == [1.5, 2.0, None]
    assert t["tag"].to_pylist() == [b"a", None, b"c"]
    assert rows_to_table(["a"], []).num_rows == 0


# --------------------------------------------------------------------------- watermarks


@pytest.mark.parametrize(
    "value", [7, 2.5, "2024-01-01 00:00:00", Decimal("10.25"), datetime(2024, 1, 2, 3, 4, 5), datetime(2024, 1, 1, tzinfo=timezone.utc), date(2024, 5, 6)]
)
def test_watermark_values_round_trip(value):
    kind, encoded = encode_value(value)
    json.dumps(encoded)
    assert decode_value(kind, encoded) == value and type(decode_value(kind, encoded)) is type(value)


def test_watermark_commit_is_atomic_and_checked(tmp_path):
    path = state_file(str(tmp_path / "state"), "orders")
    assert read_watermark(path, "id") is None
    wm = Watermark("orders", "id", None, 1000, path)
    wm.commit("run-1")
    assert wm.committed and read_watermark(path, "id") == 1000
    body = json.loads((tmp_path / "state" / "orders.json").read_text())
    assert body["column"] == "id" and body["value"] == 1000 and body["run_id"] == "run-1"
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["orders.json"]  # no temporary left
    assert wm.to_dict() == {"source": "orders", "column": "id", "previous": None, "current": 1000, "state": path, "committed": True}
    unchanged = Watermark("orders", "id", 1000, 1000, path)
    unchanged.commit()
    assert not unchanged.committed
    with pytest.raises(DataError, match=r"expected the watermark of 'ts', but .* holds one of 'id'"):
        read_watermark(path, "ts")
    (tmp_path / "state" / "orders.json").write_text("{broken")
    with pytest.raises(DataError, match="is damaged"):
        read_watermark(path, "id")


def test_session_refuses_two_sources_sharing_a_state_file(tmp_path):
    with watermark_session(str(tmp_path)) as session:
        session.add(Watermark("sql", "id", None, 1, state_file(str(tmp_path), "sql")))
        with pytest.raises(DataError, match="give each source its own name"):
            session.add(Watermark("sql", "ts", None, 1, state_file(str(tmp_path), "sql")))
