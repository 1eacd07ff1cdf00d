"""`raypipe predict` output semantics and the one inferred schema, on a model trained here.

The config declares no columns (the schema is inferred) and an id column: the run, the
bundle and `raypipe infer-schema` must agree on types, nullability and roles, and batch
prediction must carry the id, write one file, refuse to append and replace atomically.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from raypipe import api
from raypipe.cli import cli
from raypipe.errors import ConfigError

N = 400


def _rows(start: int, n: int, missing_at: int | None = None) -> str:
    lines = ["row_id,a,b,city,y"]
    for i in range(start, start + n):
        a = "" if i == missing_at else str(i % 17)
        lines.append(f"r{i},{a},{(i * 7) % 11 / 10},{['Paris', 'Lyon', 'Nice'][i % 3]},{'yes' if (i % 17) > 8 else 'no'}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ray_cluster):
    """A binary model trained on a source with no declared columns and `id: row_id`."""
    from raypipe import Pipeline

    base = tmp_path_factory.mktemp("predict")
    (base / "train.csv").write_text(_rows(0, N))
    cfg = {
        "version": 1,
        "name": "toy",
        "data": {
            "source": {"type": "csv", "paths": [str(base / "train.csv")]},
            "schema": {"label": "y", "id": "row_id"},
            "split": {"method": "random", "test_fraction": 0.2, "valid_fraction": 0.1, "seed": 3},
        },
        "features": [{"type": "categorical", "columns": ["city"]}],
        "model": {"task": "binary_classification", "positive_class": "yes", "num_boost_round": 5,
                  "early_stopping_rounds": None, "training": {"num_workers": 1}},
        "evaluate": {"primary_metric": "roc_auc", "gates": {"min": {}}},
        "registry": {"uri": str(base / "registry"), "model_name": "toy"},
        "output": {"uri": str(base / "runs")},
    }
    path = base / "toy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = Pipeline.from_yaml(str(path)).run()
    return str(path), base, result


def _predict(config: str, inp, out, *extra: str):
    return CliRunner().invoke(cli, ["predict", config, "--input", str(inp), "--output", str(out), "--model", "toy@1", *extra])


def test_run_report_and_bundle_hold_the_schema_infer_schema_prints(trained):
    config, base, result = trained
    printed = api.infer_schema(config)
    assert printed == {
        "label": "y",
        "id": "row_id",
        "columns": {
            "row_id": {"type": "string", "nullable": False},
            "a": {"type": "int", "nullable": False},
            "b": {"type": "float", "nullable": False},
            "city": {"type": "category", "nullable": False},
            "y": {"type": "category", "nullable": False},
        },
    }
    report = json.loads(open(result.report).read())
    assert report["schema"] == {"inferred": True, **printed}
    from raypipe.registry import ModelRegistry

    bundle_dir = ModelRegistry(str(base / "registry")).local_path("toy", 1)
    schema = json.loads((bundle_dir / "schema.json").read_text())
    assert schema["id"] == "row_id" and schema["label"] == "y"
    assert {k: (v["type"], v["nullable"]) for k, v in schema["columns"].items()} == {
        k: (v["type"], v["nullable"]) for k, v in printed["columns"].items()
    }


def test_predict_writes_one_file_with_ids_and_quarantines_missing_values(trained, tmp_path):
    config, _, _ = trained
    (tmp_path / "in.csv").write_text(_rows(1000, 30, missing_at=1004))
    res = _predict(config, tmp_path / "in.csv", tmp_path / "preds.csv")
    assert res.exit_code == 0, res.output
    assert "29 of 30 rows predicted" in res.output
    # One file, one header line.
    assert (tmp_path / "preds.csv").is_file()
    text = (tmp_path / "preds.csv").read_text().splitlines()
    assert text[0] == '"row_id","source_file","source_line","prediction","probability"'
    assert len(text) == 30 and sum(line.startswith('"row_id"') for line in text) == 1
    out = pacsv.read_csv(tmp_path / "preds.csv")
    assert sorted(out.column("row_id").to_pylist()) == sorted(f"r{i}" for i in range(1000, 1030) if i != 1004)
    # A missing value where the inferred schema says not nullable: quarantined, not predicted.
    quarantine = pq.read_table(tmp_path / "preds.csv.quarantine")
    assert quarantine.column("__rp_rule").to_pylist() == ["not_null"]
    assert quarantine.column("__rp_column").to_pylist() == ["a"]


def test_existing_output_is_refused_and_overwrite_replaces_output_and_quarantine(trained, tmp_path):
    config, _, _ = trained
    (tmp_path / "in.csv").write_text(_rows(2000, 20, missing_at=2003))
    assert _predict(config, tmp_path / "in.csv", tmp_path / "p.csv").exit_code == 0
    before = (tmp_path / "p.csv").read_bytes()
    again = _predict(config, tmp_path / "in.csv", tmp_path / "p.csv")
    assert again.exit_code == 2, again.output
    assert "already exists" in again.output and "--overwrite" in again.output
    assert (tmp_path / "p.csv").read_bytes() == before  # nothing appended
    with pytest.raises(ConfigError, match="already exists"):
        api.predict(config, str(tmp_path / "in.csv"), str(tmp_path / "p.csv"), model="toy@1")
    # --overwrite with clean rows: the output is replaced, the old quarantine goes with it.
    (tmp_path / "clean.csv").write_text(_rows(3000, 7))
    res = _predict(config, tmp_path / "clean.csv", tmp_path / "p.csv", "--overwrite")
    assert res.exit_code == 0, res.output
    assert pacsv.read_csv(tmp_path / "p.csv").column("row_id").to_pylist().__len__() == 7
    assert not (tmp_path / "p.csv.quarantine").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.csv", "in.csv", "p.csv"]  # no staged sibling left


def test_parquet_and_jsonl_are_one_file_and_a_folder_only_when_asked(trained, tmp_path):
    config, _, _ = trained
    (tmp_path / "in.csv").write_text(_rows(4000, 12))
    assert _predict(config, tmp_path / "in.csv", tmp_path / "p.parquet").exit_code == 0
    assert (tmp_path / "p.parquet").is_file() and pq.read_table(tmp_path / "p.parquet").num_rows == 12
    assert _predict(config, tmp_path / "in.csv", tmp_path / "p.jsonl").exit_code == 0
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    assert len(lines) == 12 and sorted(json.loads(x)["row_id"] for x in lines) == [f"r{i}" for i in range(4000, 4012)]
    assert _predict(config, tmp_path / "in.csv", tmp_path / "folder").exit_code == 0
    assert (tmp_path / "folder").is_dir() and pq.read_table(tmp_path / "folder").num_rows == 12
    assert _predict(config, tmp_path / "in.csv", tmp_path / "parts.csv", "--folder").exit_code == 0
    parts = sorted((tmp_path / "parts.csv").glob("*.csv"))
    assert parts and sum(pacsv.read_csv(p).num_rows for p in parts) == 12


def _parquet_rows(path, start: int, n: int, missing_at: int, row_group_size: int) -> None:
    a = [None if i == missing_at else i % 17 for i in range(start, start + n)]
    table = pa.table({
        "row_id": [f"r{i}" for i in range(start, start + n)],
        "a": pa.array(a, pa.int64()),
        "b": [(i * 7) % 11 / 10 for i in range(start, start + n)],
        "city": [["Paris", "Lyon", "Nice"][i % 3] for i in range(start, start + n)],
    })
    pq.write_table(table, path, row_group_size=row_group_size)


def test_parquet_row_groups_are_read_in_parallel_tasks_with_the_lines_of_the_whole_file(trained, tmp_path):
    from raypipe.config import ParquetSource
    from raypipe.data.file_sources import ParquetRowsDatasource, read_parquet

    _parquet_rows(tmp_path / "in.parquet", 5000, 50, missing_at=5033, row_group_size=8)  # 7 row groups
    source = ParquetSource(type="parquet", paths=[str(tmp_path / "in.parquet")])
    tasks = ParquetRowsDatasource([str(tmp_path / "in.parquet")], split_row_groups=True).get_read_tasks(2)
    assert [t.metadata.num_rows for t in tasks] == [16, 16, 8, 10]  # runs of 2, 2, 1, 2 of the 7 row groups
    lines = [line for t in tasks for block in t() for line in block.column("__rp_line").to_pylist()]
    assert lines == list(range(1, 51))
    assert len(ParquetRowsDatasource([str(tmp_path / "in.parquet")], split_row_groups=True).get_read_tasks(8)) == 7  # one per row group at most
    assert len(ParquetRowsDatasource([str(tmp_path / "in.parquet")]).get_read_tasks(4)) == 1  # not asked: one task per file
    assert read_parquet(source, split_row_groups=True).count() == 50


def test_a_many_row_group_parquet_input_gives_the_predictions_of_one_bundle_call(trained, tmp_path):
    from raypipe.bundle import ModelBundle
    from raypipe.registry import ModelRegistry

    config, base, _ = trained
    _parquet_rows(tmp_path / "in.parquet", 5000, 50, missing_at=5033, row_group_size=8)
    result = api.predict(config, str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), model="toy@1")
    assert result["rows"] == {"input": 50, "predicted": 49, "quarantined": 1}
    out = pq.read_table(tmp_path / "out.parquet")
    # In input order, each row with its own line and id.
    assert out.column("source_line").to_pylist() == [i for i in range(1, 51) if i != 34]
    assert out.column("row_id").to_pylist() == [f"r{5000 + i - 1}" for i in range(1, 51) if i != 34]
    bundle = ModelBundle.load(ModelRegistry(str(base / "registry")).local_path("toy", 1))
    rows = pq.read_table(tmp_path / "in.parquet").filter(pa.compute.is_valid(pa.compute.field("a")))
    expected = bundle.predict(rows.cast(pa.schema([("row_id", pa.string()), ("a", pa.int64()), ("b", pa.float64()), ("city", pa.string())])))
    assert out.column("probability").to_pylist() == expected["probability"].tolist()
    assert out.column("prediction").to_pylist() == expected["prediction"].tolist()
    quarantine = pq.read_table(tmp_path / "out.parquet.quarantine")
    assert quarantine.column("__rp_line").to_pylist() == [34]
    assert quarantine.column("__rp_rule").to_pylist() == ["not_null"]


def test_an_input_without_one_valid_row_still_gives_one_file_and_counts_every_row(trained, tmp_path):
    config, _, _ = trained
    text = _rows(6000, 6).splitlines()
    # Every row loses its `a`: all quarantined, nothing predicted.
    (tmp_path / "in.csv").write_text("\n".join([text[0]] + [",".join(r.split(",")[:1] + [""] + r.split(",")[2:]) for r in text[1:]]) + "\n")
    result = api.predict(config, str(tmp_path / "in.csv"), str(tmp_path / "p.csv"), model="toy@1")
    assert result["rows"] == {"input": 6, "predicted": 0, "quarantined": 6}
    assert (tmp_path / "p.csv").read_text().splitlines() == ['"row_id","source_file","source_line","prediction","probability"']
    assert pq.read_table(tmp_path / "p.csv.quarantine").column("__rp_line").to_pylist() == [2, 3, 4, 5, 6, 7]
    result = api.predict(config, str(tmp_path / "in.csv"), str(tmp_path / "p.parquet"), model="toy@1")
    assert result["rows"]["predicted"] == 0 and pq.read_table(tmp_path / "p.parquet").column_names == [
        "row_id", "source_file", "source_line", "prediction", "probability"]
