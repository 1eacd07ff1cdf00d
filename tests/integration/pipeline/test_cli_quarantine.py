"""`raypipe run` on a CSV with corrupted rows: quarantine with reasons, exact counts, exit codes."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import yaml
from click.testing import CliRunner

from raypipe.cli import cli

CSV = """id,age,income,city
1,34,52000.5,Paris
2,forty,61000,Lyon
3,29,48000,Nice
4,150,39000,Paris
5,41,70000
6,38,45000,Lyon,extra
7,,52000,Nice
8,45,-5,Paris
9,52,88000,Berlin
10,23,31000,Lyon
"""


def _config(tmp_path, max_invalid: float) -> str:
    (tmp_path / "people.csv").write_text(CSV)
    cfg = {
        "version": 1,
        "name": "people",
        "data": {
            "source": {"type": "csv", "paths": [str(tmp_path / "people.csv")]},
            "schema": {
                "label": "income",
                "id": "id",
                "columns": {
                    "id": {"type": "int"},
                    "age": {"type": "int", "min": 0, "max": 120},
                    "income": {"type": "float", "min": 0},
                    "city": {"type": "category", "allowed": ["Paris", "Lyon", "Nice"]},
                },
            },
            "validation": {"max_invalid_fraction": max_invalid},
            "split": {"method": "random", "test_fraction": 0.2, "valid_fraction": 0.0, "seed": 1},
        },
        "features": [{"type": "categorical", "columns": ["city"]}],
        "model": {"task": "regression"},
        "output": {"uri": str(tmp_path / "runs")},
    }
    path = tmp_path / "people.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_corrupted_rows_are_quarantined_with_reasons(tmp_path, ray_cluster):
    result = CliRunner().invoke(cli, ["run", _config(tmp_path, 0.9), "--until", "split", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    rows = out["rows"]
    # 10 data lines: row 2 text in a numeric column, row 4 out of range, row 5 and 6 ragged,
    # row 7 null age, row 8 negative income, row 9 a city not allowed → 3 valid rows.
    assert rows["ingested"] == 10
    assert rows["quarantined"] == 7
    assert rows["valid"] == 3
    assert rows["ingested"] == rows["valid"] + rows["quarantined"]
    assert rows["train"] + rows["valid_split"] + rows["test"] == rows["valid"]
    by_rule = out["quarantine"]["by_rule"]
    assert by_rule == {"type": 1, "max": 1, "ragged_line": 2, "not_null": 1, "min": 1, "allowed": 1}
    table = pq.read_table(out["quarantine"]["path"])
    assert table.num_rows == 7
    records = {r["__rp_line"]: r for r in table.to_pylist()}
    assert records[3]["__rp_rule"] == "type" and records[3]["__rp_column"] == "age" and records[3]["__rp_value"] == "forty"
    assert records[5]["__rp_rule"] == "max" and records[5]["__rp_value"] == "150"
    assert records[10]["__rp_rule"] == "allowed" and records[10]["__rp_value"] == "Berlin"
    assert all(r["__rp_file"].endswith("people.csv") for r in records.values())


def test_too_many_invalid_rows_fail_the_run_with_exit_1(tmp_path, ray_cluster):
    result = CliRunner().invoke(cli, ["run", _config(tmp_path, 0.1), "--until", "split"])
    assert result.exit_code == 1
    assert "7 of 10" in result.output or "70" in result.output
    assert "max_invalid_fraction" in result.output
    assert "Traceback" not in result.output
