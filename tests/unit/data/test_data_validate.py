"""Unit tests of raypipe.data.validate: every rule, casting, once-per-row quarantine, inference."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raypipe.config import SchemaConfig
from raypipe.data import provenance as prov
from raypipe.data.validate import (
    QUARANTINE_COLUMNS,
    BatchValidator,
    infer_schema,
    inferred_schema,
    schema_from_inferred,
    schema_section,
    validate_batch,
)
from raypipe.errors import SchemaError


def schema(extra: str = "drop", **columns) -> SchemaConfig:
    return SchemaConfig(columns=columns, extra_columns=extra)


def rules(q: pa.Table) -> list[tuple]:
    return list(zip(q["__rp_rule"].to_pylist(), q["__rp_column"].to_pylist(), q["__rp_value"].to_pylist()))


# --------------------------------------------------------------------------- each rule


def test_type_rule_quarantines_text_in_numeric_column():
    valid, q = validate_batch(pa.table({"age": ["41", "forty", "7"]}), schema(age={"type": "int"}), "src")
    assert valid["age"].to_pylist() == [41, 7]
    assert rules(q) == [("type", "age", "forty")]
    assert q["__rp_source"].to_pylist() == ["src"]


def test_not_null_rule_and_nullable_columns():
    t = pa.table({"a": ["1", None, "3"], "b": [None, "x", None]})
    valid, q = validate_batch(t, schema(a={"type": "int"}, b={"type": "string", "nullable": True}), "s")
    assert valid["a"].to_pylist() == [1, 3]
    assert valid["b"].to_pylist() == [None, None]
    assert rules(q) == [("not_null", "a", None)]


def test_min_and_max_rules():
    t = pa.table({"age": ["16", "17", "100", "101"], "w": [0.5, -0.1, 2.0, 9.5]})
    s = schema(age={"type": "int", "min": 17, "max": 100}, w={"type": "float", "min": 0, "max": 5})
    valid, q = validate_batch(t, s, "s")
    assert valid["age"].to_pylist() == [100]
    assert rules(q) == [("min", "age", "16"), ("min", "w", "-0.1"), ("max", "age", "101")]


def test_allowed_rule():
    valid, q = validate_batch(
        pa.table({"sex": ["Male", "Female", "male", None]}),
        schema(sex={"type": "category", "allowed": ["Female", "Male"], "nullable": True}),
        "s",
    )
    assert valid["sex"].to_pylist() == ["Male", "Female", None]
    assert rules(q) == [("allowed", "sex", "male")]


def test_regex_rule_is_a_full_match():
    t = pa.table({"email": ["a@x.com", "a@x.com.evil", "nope"]})
    valid, q = validate_batch(t, schema(email={"type": "string", "regex": r"[a-z]+@x\.com"}), "s")
    assert valid["email"].to_pylist() == ["a@x.com"]
    assert [r[0] for r in rules(q)] == ["regex", "regex"]


def test_regex_that_re2_cannot_run_falls_back_to_python():
    # Look-ahead is not RE2; the rule still works (via Python's re on distinct values).
    t = pa.table({"code": ["AB12", "AB1X", "ZZ99"]})
    valid, q = validate_batch(t, schema(code={"type": "string", "regex": r"(?=AB)[A-Z]{2}\d{2}"}), "s")
    assert valid["code"].to_pylist() == ["AB12"]
    assert q["code"].to_pylist() == ["AB1X", "ZZ99"]


@pytest.mark.parametrize(
    "error, rule, value",
    [
        ("ragged_line: expected 3 fields, got 2", "ragged_line", "expected 3 fields, got 2"),
        ("no_match", "no_match", "GARBAGE LINE"),
        ("parse: Expecting value: line 1 column 1 (char 0)", "parse", "Expecting value: line 1 column 1 (char 0)"),
    ],
)
def test_reader_errors_are_quarantined_first(error, rule, value):
    t = pa.table(
        {
            "a": pa.array(["1", None], pa.string()),
            prov.FILE: ["f.csv", "f.csv"],
            prov.LINE: pa.array([1, 2], pa.int64()),
            prov.ERROR: pa.array([None, error], pa.string()),
            prov.RAW: pa.array([None, "GARBAGE LINE"], pa.string()),
        }
    )
    valid, q = validate_batch(t, schema(a={"type": "int"}), "s")
    assert valid.num_rows == 1
    # The data columns of a reader error row are null, yet it counts once, as the reader error.
    assert rules(q) == [(rule, None, value)]
    assert q["__rp_rules"].to_pylist() == [rule]
    assert q[prov.FILE].to_pylist() == ["f.csv"]
    assert q[prov.LINE].to_pylist() == [2]
    assert q[prov.RAW].to_pylist() == ["GARBAGE LINE"]


# --------------------------------------------------------------------------- once per row


def test_row_breaking_several_rules_is_quarantined_once_under_the_first():
    t = pa.table({"age": ["x", "200", "5"], "sex": ["Q", "Q", "M"], "n": ["1", None, "2"]})
    s = schema(age={"type": "int", "max": 120}, sex={"type": "category", "allowed": ["M", "F"]}, n={"type": "int"})
    valid, q = validate_batch(t, s, "s")
    assert valid.num_rows == 1 and q.num_rows == 2
    assert rules(q) == [("type", "age", "x"), ("max", "age", "200")]
    assert q["__rp_rules"].to_pylist() == ["type(age); allowed(sex)", "max(age); allowed(sex); not_null(n)"]
    # Raw values of every column are kept as strings.
    assert q["age"].to_pylist() == ["x", "200"] and q["n"].to_pylist() == ["1", None]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(-50, 200).map(str), st.sampled_from(["", "x", "1.5", " 3 "])),
            st.one_of(st.none(), st.sampled_from(["a", "b", "zz", ""])),
        ),
        max_size=40,
    )
)
def test_every_input_row_is_valid_or_quarantined_exactly_once(rows):
    t = pa.table({"n": pa.array([r[0] for r in rows], pa.string()), "c": pa.array([r[1] for r in rows], pa.string())})
    s = schema(n={"type": "int", "min": 0, "max": 120}, c={"type": "category", "allowed": ["a", "b"], "nullable": True})
    valid, q = validate_batch(t, s, "s")
    assert valid.num_rows + q.num_rows == t.num_rows
    assert set(q["__rp_rule"].to_pylist()) <= {"type", "not_null", "min", "max", "allowed"}
    assert all(0 <= v <= 120 for v in valid["n"].to_pylist())


# --------------------------------------------------------------------------- casting


def test_casting_to_declared_types():
    t = pa.table(
        {
            "i": ["+7", "7.0", " 8 ", "-3"],
            "f": ["1e3", "2", "nan", "-0.5"],
            "b": ["TRUE", "no", "1", "f"],
            "d": ["2024-01-02", "2024-01-02 03:04:05", "2024-01-02T03:04:05Z", "2024-01-02T03:04:05+01:00"],
            "s": ["x", "y", "z", "w"],
        }
    )
    s = schema(i={"type": "int"}, f={"type": "float"}, b={"type": "bool"}, d={"type": "datetime"}, s={"type": "category"})
    valid, q = validate_batch(t, s, "s")
    assert q.num_rows == 0
    assert valid.schema.types == [pa.int64(), pa.float64(), pa.bool_(), pa.timestamp("us"), pa.string()]
    assert valid["i"].to_pylist() == [7, 7, 8, -3]
    f = valid["f"].to_pylist()
    assert f[0] == 1000.0 and f[1] == 2.0 and f[2] != f[2] and f[3] == -0.5  # NaN is a value
    assert valid["b"].to_pylist() == [True, False, True, False]
    assert valid["d"].to_pylist() == [
        dt.datetime(2024, 1, 2),
        dt.datetime(2024, 1, 2, 3, 4, 5),
        dt.datetime(2024, 1, 2, 3, 4, 5),
        dt.datetime(2024, 1, 2, 2, 4, 5),  # +01:00 → UTC
    ]


def test_datetime_with_format_and_typed_inputs():
    t = pa.table({"d": ["31/01/2024", "2024-01-31"], "n": pa.array([1.0, 2.5]), "k": pa.array([10, 11], pa.int32())})
    s = schema(d={"type": "datetime", "format": "%d/%m/%Y"}, n={"type": "int"}, k={"type": "string"})
    valid, q = validate_batch(t, s, "s")
    assert valid["d"].to_pylist() == [dt.datetime(2024, 1, 31)]
    assert valid["n"].to_pylist() == [1] and valid["k"].to_pylist() == ["10"]
    assert rules(q) == [("type", "d", "2024-01-31")]  # the first rule: d comes before n (2.5 is not an int)
    assert q["__rp_rules"].to_pylist() == ["type(d); type(n)"]


def test_empty_string_is_missing_for_numbers():
    valid, q = validate_batch(pa.table({"n": ["", "4"]}), schema(n={"type": "int", "nullable": True}), "s")
    assert valid["n"].to_pylist() == [None, 4] and q.num_rows == 0
    _, q = validate_batch(pa.table({"n": ["", "4"]}), schema(n={"type": "int"}), "s")
    assert rules(q) == [("not_null", "n", "")]


def test_min_and_max_compare_integers_exactly_past_2_to_the_53():
    # Arrow would cast the int64 column to float64 to meet the float bound and refuse
    # these values (a 500 on /predict); 2**53 + 1 must also not round down to the bound.
    t = pa.table({"n": ["9007199254740994", "9007199254740993", "9007199254740992", "-9007199254740995", "5"]})
    valid, q = validate_batch(t, schema(n={"type": "int", "min": -(2**53), "max": 2**53}), "s")
    assert valid["n"].to_pylist() == [9007199254740992, 5]
    assert rules(q) == [("max", "n", "9007199254740994"), ("max", "n", "9007199254740993"),
                        ("min", "n", "-9007199254740995")]
    big = pa.table({"age": ["9007199254744099", "40"]})
    valid, q = validate_batch(big, schema(age={"type": "int", "min": 0.5, "max": 120.5}), "s")
    assert valid["age"].to_pylist() == [40]
    assert rules(q) == [("max", "age", "9007199254744099")]
    # Bounds outside int64: nothing is above 1e300; everything is above -1e300.
    valid, q = validate_batch(t, schema(n={"type": "int", "max": 1e300, "min": -1e300}), "s")
    assert valid.num_rows == 5 and q.num_rows == 0


def test_int64_edges():
    t = pa.table({"n": ["9223372036854775807", "9223372036854775808", "12345678901234567890123", "x"]})
    valid, q = validate_batch(t, schema(n={"type": "int"}), "s")
    assert valid["n"].to_pylist() == [9223372036854775807]
    assert [r[0] for r in rules(q)] == ["type", "type", "type"]


# --------------------------------------------------------------------------- columns


def test_missing_declared_column_names_column_and_file():
    t = pa.table({"a": ["1"], prov.FILE: ["data/adult/adult.data"]})
    with pytest.raises(SchemaError) as err:
        validate_batch(t, schema(a={"type": "int"}, income={"type": "string"}), "s")
    assert str(err.value).startswith("data.source: data/adult/adult.data: column 'income' is missing (file columns: a).")


@pytest.mark.parametrize("policy, expected", [("drop", ["a"]), ("keep", ["a", "extra"])])
def test_extra_columns_drop_and_keep(policy, expected):
    t = pa.table({"a": ["1"], "extra": [3.5], prov.FILE: ["f"], prov.LINE: pa.array([1], pa.int64())})
    valid, _ = validate_batch(t, schema(policy, a={"type": "int"}), "s")
    assert valid.column_names == expected + [prov.FILE, prov.LINE]


def test_extra_columns_error():
    with pytest.raises(SchemaError, match="undeclared column\\(s\\) extra"):
        validate_batch(pa.table({"a": ["1"], "extra": [1]}), schema("error", a={"type": "int"}), "s")


def test_output_schema_is_fixed_even_for_empty_or_all_bad_batches():
    s = schema(a={"type": "int"}, b={"type": "float", "nullable": True})
    v1, q1 = validate_batch(pa.table({"a": ["x"], "b": ["1"]}), s, "s")
    v2, q2 = validate_batch(pa.table({"a": pa.array([], pa.string()), "b": pa.array([], pa.string())}), s, "s")
    assert v1.schema == v2.schema and v1.num_rows == 0
    assert q1.schema == q2.schema
    assert q1.column_names[: len(QUARANTINE_COLUMNS)] == [c for c, _ in QUARANTINE_COLUMNS]


def test_empty_schema_passes_through_with_inferred_types():
    t = pa.table({"n": ["1", "2", None], "x": ["1.5", "a", "b"], "f": [0.5, 1.5, 2.5]})
    valid, q = validate_batch(t, SchemaConfig(), "s")
    assert q.num_rows == 0
    assert valid.schema.field("n").type == pa.int64()
    assert valid.schema.field("x").type == pa.string()
    assert valid.schema.field("f").type == pa.float64()


# --------------------------------------------------------------------------- inference


def test_infer_schema_types_nullability_profile():
    t = pa.table(
        {
            "age": ["39", "50", None, "38"],
            "w": ["1.5", "2", "3", "4"],
            "flag": ["true", "False", "true", "true"],
            "when": ["2024-01-01", "2024-02-01", "2024-03-01", "2024-03-01 10:00:00"],
            "sex": ["M", "F", "M", "M"],
            "id": ["a1", "b2", "c3", "d4"],
            prov.FILE: ["f"] * 4,
        }
    )
    out = infer_schema(t)
    assert out["rows"] == 4
    assert out["columns"] == {
        "age": {"type": "int", "nullable": True},
        "w": {"type": "float", "nullable": False},
        "flag": {"type": "bool", "nullable": False},
        "when": {"type": "datetime", "nullable": False},
        "sex": {"type": "category", "nullable": False},
        "id": {"type": "string", "nullable": False},
    }
    assert out["profile"]["age"] == {"nulls": 1, "distinct": 3, "min": 38, "max": 50}
    assert out["profile"]["sex"]["categories"] == ["F", "M"]
    assert out["profile"]["when"]["max"] == "2024-03-01T10:00:00"
    # The inferred columns are a valid schema.
    assert list(schema_from_inferred(out).columns) == ["age", "w", "flag", "when", "sex", "id"]


def test_infer_schema_ignores_reader_error_rows():
    t = pa.table({"n": ["1", None], prov.ERROR: pa.array([None, "no_match"], pa.string())})
    assert infer_schema(t)["columns"]["n"] == {"type": "int", "nullable": False}


def test_validator_reused_across_batches():
    v = BatchValidator(schema(a={"type": "int", "max": 5}), "s")
    assert v(pa.table({"a": ["1", "9"]}))[1].num_rows == 1
    assert v(pa.table({"a": ["2"]}))[0]["a"].to_pylist() == [2]


def test_pure_modules_do_not_import_ray():
    code = "import sys, raypipe.data, raypipe.data.validate, raypipe.data.split, raypipe.data._formats; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_block_of_only_reader_errors_needs_no_columns():
    # A JSON file of garbage lines yields error rows without any data column.
    t = pa.table({prov.FILE: ["b.jsonl"], prov.LINE: pa.array([1], pa.int64()), prov.ERROR: ["parse: junk"], prov.RAW: ["junk"]})
    valid, q = validate_batch(t, schema(age={"type": "int"}), "s")
    assert valid.num_rows == 0 and valid.column_names == ["age", prov.FILE, prov.LINE]
    assert rules(q) == [("parse", None, "junk")]


def test_missing_columns_null_policy_for_inferred_schemas():
    v = BatchValidator(schema(a={"type": "int", "nullable": True}, x={"type": "string", "nullable": True}), "s", "null")
    valid, q = v(pa.table({"a": ["1"]}))
    assert valid.to_pylist() == [{"a": 1, "x": None}] and q.num_rows == 0


def test_inferred_schema_keeps_nullability_and_roles():
    t = pa.table({"rid": ["a", "b", "c"], "x": ["1", None, "3"], "y": ["p", "q", "p"]})
    declared = SchemaConfig(label="y", id="rid")
    schema = inferred_schema(infer_schema(t), declared)
    assert (schema.label, schema.id, schema.weight) == ("y", "rid", None)
    assert {n: (c.type, c.nullable) for n, c in schema.columns.items()} == {
        "rid": ("string", False), "x": ("int", True), "y": ("category", False),
    }
    assert schema_section(schema) == {
        "label": "y", "id": "rid",
        "columns": {"rid": {"type": "string", "nullable": False}, "x": {"type": "int", "nullable": True},
                    "y": {"type": "category", "nullable": False}},
    }
    # A row missing a value the sample never missed is quarantined, not predicted.
    valid, bad = BatchValidator(schema, "s")(pa.table({"rid": ["d"], "x": ["4"], "y": [None]}))
    assert valid.num_rows == 0 and bad.column("__rp_rule").to_pylist() == ["not_null"]


def test_inferred_schema_names_a_role_missing_from_the_source():
    with pytest.raises(SchemaError, match=r"data.schema.id: column 'row' is not in the source .*Did you mean 'rowid'"):
        inferred_schema(infer_schema(pa.table({"rowid": ["1"], "y": ["a"]})), SchemaConfig(label="y", id="row"))
