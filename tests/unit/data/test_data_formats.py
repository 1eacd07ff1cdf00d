"""Unit tests of the per-file parsers (raypipe.data._formats): no Ray, byte streams in memory."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raypipe.data import provenance as prov
from raypipe.data._formats import (
    CsvFormat,
    parse_lines,
    read_csv_stream,
    read_json_buffer,
    read_parquet_file,
    read_text_stream,
)
from raypipe.data.columns import ColumnMap
from raypipe.errors import DataError, SchemaError

import numpy as np


def read_csv(data: bytes | str, **fmt) -> pa.Table:
    raw = data.encode() if isinstance(data, str) else data
    tables = list(read_csv_stream(io.BytesIO(raw), "f.csv", CsvFormat(**fmt)))
    return pa.concat_tables(tables) if tables else pa.table({})


def good(t: pa.Table) -> pa.Table:
    return t.filter(pa.compute.is_null(t[prov.ERROR]))


def bad(t: pa.Table) -> pa.Table:
    return t.filter(pa.compute.is_valid(t[prov.ERROR]))


# --------------------------------------------------------------------------- CSV


def test_csv_header_strings_trim_and_na():
    t = read_csv("a, b ,c\n1, ? ,x\n 2 ,NA,\n", na_values=("?", "NA", ""))
    assert t.schema.names == ["a", "b", "c", *prov.READER_COLUMNS]
    assert all(t.schema.field(n).type == pa.string() for n in "abc")
    assert t.select(["a", "b", "c"]).to_pylist() == [{"a": "1", "b": None, "c": "x"}, {"a": "2", "b": None, "c": None}]
    assert t[prov.LINE].to_pylist() == [2, 3]
    assert t[prov.FILE].to_pylist() == ["f.csv", "f.csv"]


def test_csv_without_header_uses_column_names_and_keeps_spaces_when_asked():
    t = read_csv("1, x\n2, y\n", header=False, column_names=("n", "s"), trim_whitespace=False, na_values=())
    assert t["s"].to_pylist() == [" x", " y"]
    assert t[prov.LINE].to_pylist() == [1, 2]


def test_csv_ragged_lines_become_error_rows_with_exact_line_numbers():
    data = "a,b,c\n1,2,3\n\n4,5\n6,7,8,9\n10,11,12\n   \n13,14,15\n"
    t = read_csv(data)
    assert good(t)[prov.LINE].to_pylist() == [2, 6, 8]  # blank lines are not rows but count
    assert good(t)["a"].to_pylist() == ["1", "10", "13"]
    errs = bad(t)
    assert errs[prov.LINE].to_pylist() == [4, 5]
    assert errs[prov.ERROR].to_pylist() == ["ragged_line: expected 3 fields, got 2", "ragged_line: expected 3 fields, got 4"]
    assert errs[prov.RAW].to_pylist() == ["4,5", "6,7,8,9"]
    assert errs["a"].null_count == 2


def test_csv_line_numbers_across_many_blocks():
    lines, expected_bad = [], []
    for i in range(1, 20001):
        if i % 997 == 0:
            lines.append("x,y,z")
            expected_bad.append(i + 1)
        elif i % 1499 == 0:
            lines.append("")
        else:
            lines.append(f"{i},v")
        # line i + 1 of the file (after the header) holds record i
    data = "n,s\n" + "\n".join(lines) + "\n"
    t = read_csv(data, block_size=1 << 12, na_values=())
    ok = good(t)
    # Each good row's value is its record number, so its line is value + 1.
    assert ok[prov.LINE].to_pylist() == [int(v) + 1 for v in ok["n"].to_pylist()]
    assert sorted(bad(t)[prov.LINE].to_pylist()) == expected_bad


def test_csv_crlf_bom_and_delimiter():
    t = read_csv("\ufeffa;b\r\n1;2\r\n\r\n3;4\r\n".encode(), delimiter=";")
    assert t.select(["a", "b"]).to_pylist() == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]
    assert t[prov.LINE].to_pylist() == [2, 4]


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16", "cp1252"])
def test_csv_encodings(encoding):
    t = read_csv("name,city\nJosé,Zürich\n".encode(encoding), encoding=encoding)
    assert t.select(["name", "city"]).to_pylist() == [{"name": "José", "city": "Zürich"}]


def test_csv_empty_files_and_header_only():
    assert read_csv("").num_rows == 0
    assert read_csv("a,b\n").num_rows == 0


def test_csv_duplicate_header_is_a_schema_error():
    with pytest.raises(SchemaError, match="duplicate column names a"):
        read_csv("a,a\n1,2\n")


def test_csv_invalid_utf8_is_a_data_error_naming_the_file():
    with pytest.raises(DataError, match="f.csv"):
        read_csv(b"a,b\n1,\xff\xfe\n")


def test_csv_explicit_names_override_header():
    t = read_csv("x,y\n1,2\n", column_names=("p", "q"))
    assert t.select(["p", "q"]).to_pylist() == [{"p": "1", "q": "2"}]


# --------------------------------------------------------------------------- text

LOG = r"(?P<ts>\S+) (?P<level>[A-Z]+) (?P<msg>.*)"


def test_text_regex_named_groups_and_no_match():
    data = b"2024-01-01T00:00:00 INFO started\ngarbage\n\n2024-01-01T00:00:01 WARN disk  \r\n"
    t = pa.concat_tables(read_text_stream(io.BytesIO(data), "app.log", LOG))
    assert t.column_names == ["ts", "level", "msg", *prov.READER_COLUMNS]
    assert t[prov.LINE].to_pylist() == [1, 2, 4]
    assert t["level"].to_pylist() == ["INFO", None, "WARN"]
    assert t["msg"].to_pylist() == ["started", None, "disk  "]
    assert t[prov.ERROR].to_pylist() == [None, "no_match", None]
    assert t[prov.RAW].to_pylist() == [None, "garbage", None]


def test_text_streams_in_chunks_with_continuous_line_numbers():
    data = "".join(f"x{i} INFO m{i}\n" for i in range(5000)).encode()
    t = pa.concat_tables(read_text_stream(io.BytesIO(data), "a.log", LOG, chunk_bytes=997))
    assert t.num_rows == 5000
    assert t[prov.LINE].to_pylist() == list(range(1, 5001))
    assert t["ts"].to_pylist()[4999] == "x4999"


def test_text_pattern_re2_cannot_run_uses_python():
    lines = pa.array(["ab1", "ab", "xy2"])
    t = parse_lines(lines, np.array([1, 2, 3]), "f", r"(?P<w>[a-z]+)(?=\d)(?P<d>\d)")
    assert t["w"].to_pylist() == ["ab", None, "xy"]
    assert t[prov.ERROR].to_pylist() == [None, "no_match", None]


def test_text_decoding_error_names_file():
    with pytest.raises(DataError, match="app.log"):
        list(read_text_stream(io.BytesIO(b"ok\n\xff\n"), "app.log", LOG))


# --------------------------------------------------------------------------- JSON


def test_jsonl_fast_path_line_numbers():
    data = b'{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n'
    t = pa.concat_tables(read_json_buffer(data, "f.jsonl"))
    assert t["a"].to_pylist() == [1, 2] and t[prov.LINE].to_pylist() == [1, 2]


def test_jsonl_bad_lines_are_parse_error_rows():
    data = b'{"a": 1}\n\n{"a": 2,,}\n[1, 2]\n{"a": "three"}\n'
    tables = list(read_json_buffer(data, "f.jsonl"))
    t = pa.concat_tables(tables, promote_options="permissive")
    assert good(t)["a"].to_pylist() == ["1", "three"]  # mixed types: kept, as text
    assert good(t)[prov.LINE].to_pylist() == [1, 5]
    errs = bad(t)
    assert errs[prov.LINE].to_pylist() == [3, 4]
    assert [e.split(":")[0] for e in errs[prov.ERROR].to_pylist()] == ["parse", "parse"]
    assert errs[prov.RAW].to_pylist() == ['{"a": 2,,}', "[1, 2]"]


def test_json_top_level_array_and_single_object():
    rows = [{"a": 1, "b": None}, {"a": 2, "b": "z"}]
    t = pa.concat_tables(read_json_buffer(json.dumps(rows, indent=2).encode(), "f.json"))
    assert t.select(["a", "b"]).to_pylist() == rows and t[prov.LINE].to_pylist() == [1, 2]
    one = pa.concat_tables(read_json_buffer(b'{\n  "a": 5\n}\n', "o.json"))
    assert one["a"].to_pylist() == [5]


def test_json_broken_array_is_a_data_error():
    with pytest.raises(DataError, match="f.json: not valid JSON"):
        list(read_json_buffer(b'[{"a": 1}, {"a": ', "f.json"))


# --------------------------------------------------------------------------- Parquet


def test_parquet_row_numbers_and_projection(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"a": list(range(10)), "b": [str(i) for i in range(10)]}), path, row_group_size=3)
    t = pa.concat_tables(read_parquet_file(str(path), str(path), columns=["b"], batch_rows=4))
    assert t.column_names == ["b", *prov.READER_COLUMNS]
    assert t[prov.LINE].to_pylist() == list(range(1, 11))


# --------------------------------------------------------------------------- rename / select


def test_column_map_renames_then_selects_and_reports_missing_columns():
    t = prov.with_provenance(pa.table({"x": [1], "y": [2]}), "d/f.csv", None)
    out = ColumnMap({"x": "a"}, ("y", "a")).apply(t)
    assert out.column_names == ["y", "a", *prov.READER_COLUMNS]
    with pytest.raises(SchemaError) as err:
        ColumnMap({}, ("z",)).apply(t)
    assert str(err.value) == "data.source: d/f.csv: column 'z' is missing (file columns: x, y)."


def test_reserved_prefix_is_refused():
    with pytest.raises(SchemaError, match="reserved prefix"):
        ColumnMap({}, None).apply(pa.table({"__rp_mine": [1]}))
