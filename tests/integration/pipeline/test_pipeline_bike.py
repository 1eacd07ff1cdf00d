"""Regression end to end on UCI Bike Sharing, with run-level k-fold cross-validation."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from raypipe import Pipeline
from raypipe.bundle import ModelBundle
from raypipe.registry import ModelRegistry

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def run(tmp_path_factory, ray_cluster):
    base = tmp_path_factory.mktemp("bike")
    overrides = [
        f"registry.uri={base}/registry",
        f"output.uri={base}/runs",
        "model.num_boost_round=60",
        "model.training.num_workers=1",
        "evaluate.cv_folds=2",
    ]
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return base, Pipeline.from_yaml("configs/bike-regression.yaml", overrides=overrides).run()
    finally:
        os.chdir(cwd)


def test_rows_and_time_split(run):
    _, result = run
    print("\n[timing] bike pipeline seconds per stage:", result.durations_s)
    rows = result.rows
    assert rows["ingested"] == rows["valid"] == 17_379 and rows["quarantined"] == 0
    assert rows["valid"] == rows["train"] + rows["valid_split"] + rows["test"]
    # Oct–Dec 2012 is the test split: 92 days, 2,208 hours less the 40 hours missing from hour.csv.
    assert rows["test"] == 2_168


def test_regression_metrics_equal_sklearn(run):
    base, result = run
    import pyarrow.compute as pc

    bundle = ModelBundle.load(ModelRegistry(f"{base}/registry").local_path("bike-demand", 1))
    from raypipe.config import load_config
    from raypipe.data.validate import validate_batch
    import pyarrow.csv as pacsv
    import pyarrow as pa

    cfg = load_config(ROOT / "configs/bike-regression.yaml")
    names = pacsv.read_csv(ROOT / "data/bike-sharing/hour.csv").column_names
    raw = pacsv.read_csv(
        ROOT / "data/bike-sharing/hour.csv",
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in names}),
    )
    valid, quarantined = validate_batch(raw, cfg.data.schema_, "hour.csv")
    assert quarantined.num_rows == 0
    first_test_day = pa.scalar(datetime.date(2012, 10, 1)).cast(valid.schema.field("dteday").type)
    test = valid.filter(pc.greater_equal(valid.column("dteday"), first_test_day))
    assert test.num_rows == result.rows["test"]
    y = np.asarray(test.column("cnt").to_numpy(), dtype=np.float64)
    pred = np.asarray(bundle.predict(test)["prediction"], dtype=np.float64)
    m = result.metrics["test"]
    assert m["rmse"] == pytest.approx(mean_squared_error(y, pred) ** 0.5, abs=1e-9)
    assert m["mae"] == pytest.approx(mean_absolute_error(y, pred), abs=1e-9)
    assert m["r2"] == pytest.approx(r2_score(y, pred), abs=1e-9)
    assert result.model == {"name": "bike-demand", "version": 1} and result.promoted


def test_cross_validation_summary(run):
    _, result = run
    report = json.loads(Path(result.report).read_text())
    cv = report["evaluation"]["cross_validation"]
    assert cv["k"] == 2 and len(cv["folds"]) == 2
    assert cv["concurrency"] == 2 and cv["num_workers_per_fold"] == 1  # both folds at once on 2 CPUs
    # Every training row is held out exactly once and trains in the other fold.
    assert sum(f["rows"]["valid"] for f in cv["folds"]) == result.rows["train"]
    assert all(f["rows"]["train"] + f["rows"]["valid"] == result.rows["train"] for f in cv["folds"])
    values = [f["metrics"]["valid-rmse"] for f in cv["folds"]]
    assert result.metrics["cv"]["valid-rmse"]["mean"] == pytest.approx(np.mean(values), abs=1e-12)
    assert result.metrics["cv"]["valid-rmse"]["std"] == pytest.approx(np.std(values), abs=1e-12)
    html = (Path(result.report).parent / "report.html").read_text()
    assert "Cross-validation (2 folds" in html
