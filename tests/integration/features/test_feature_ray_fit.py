"""fit_on_dataset / transform_dataset on a multi-block Ray Dataset equal the in-memory path.

Uses the shared session cluster (``ray_cluster`` in tests/conftest.py, 2 CPUs).
Each Ray Data statistics pass costs ~0.5 s once warm, so the whole module runs
a handful of passes: one per kind of check.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pytest

from raypipe.errors import DataError
from raypipe.features import FeaturePipeline, StatRequest, compute_stats

pytestmark = pytest.mark.ray

TYPES = {
    "age": "int", "hours": "float", "const": "float", "color": "category", "city": "category",
    "grade": "category", "member": "bool", "seen": "datetime", "email": "string", "empty": "float",
    "income": "category", "row_id": "int",
}  # fmt: skip
EXCLUDE = ["row_id"]

#: Every step type; later steps read earlier outputs, so the fit takes several passes.
STEPS = [
    {"type": "impute", "columns": ["color", "city"], "strategy": "constant", "fill_value": "Unknown"},
    {"type": "impute", "columns": ["age"], "strategy": "median", "add_indicator": True},
    {"type": "impute", "columns": ["hours"], "strategy": "mean"},
    {"type": "impute", "columns": ["member"], "strategy": "most_frequent"},
    {"type": "expression", "name": "load", "expr": "hours / fillna(age, 40) + member"},
    {"type": "clip", "columns": ["hours"], "lower_quantile": 0.05, "upper_quantile": 0.95},
    {"type": "log1p", "columns": ["hours"]},
    {"type": "robust_scale", "columns": ["hours"]},
    {"type": "standard_scale", "columns": ["age", "load", "const", "empty"]},
    {"type": "minmax_scale", "columns": ["const"]},
    {"type": "bucketize", "columns": ["const"], "boundaries": [0.5]},
    {"type": "datetime_parts", "columns": ["seen"], "parts": ["month", "weekday", "is_weekend"]},
    {"type": "bucketize", "columns": ["seen_month"], "num_buckets": 4},
    {"type": "one_hot", "columns": ["color"], "max_categories": 3},
    {"type": "drop", "columns": ["email"]},
    {"type": "ordinal", "columns": ["grade"]},
    {"type": "categorical", "columns": ["city"], "max_categories": 5},
]


def make_table(n: int = 2000, seed: int = 11) -> pa.Table:
    rng = np.random.default_rng(seed)
    hours = np.round(rng.gamma(2.0, 15.0, n), 1)
    hours[rng.random(n) < 0.15] = np.nan
    colors = rng.choice(["red", "green", "blue", "black"], n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    colors[rng.random(n) < 0.12] = None
    start = dt.datetime(2024, 1, 1)
    seen = [None if i % 17 == 0 else start + dt.timedelta(hours=int(h)) for i, h in enumerate(rng.integers(0, 9600, n))]
    return pa.table(
        {
            "age": pa.array(rng.integers(17, 90, n), mask=rng.random(n) < 0.1, type=pa.int64()),
            "hours": pa.array(hours, from_pandas=True),
            "const": pa.array(np.full(n, 0.1)),  # constant, and 0.1 is not exact in binary
            "color": pa.array(list(colors), type=pa.string()),
            "city": pa.array(rng.choice([f"c{i:02d}" for i in range(12)], n).tolist()),
            "grade": pa.array(rng.choice(["A", "B", "C", "D", None], n).tolist(), type=pa.string()),
            "member": pa.array(rng.random(n) < 0.3, mask=rng.random(n) < 0.05),
            "seen": pa.array(seen, type=pa.timestamp("us")),
            "email": pa.array([f"u{i}@x.org" for i in range(n)]),
            "empty": pa.nulls(n, pa.float64()),
            "income": pa.array(rng.choice(["<=50K", ">50K"], n, p=[0.75, 0.25]).tolist()),
            "row_id": pa.array(np.arange(n, dtype=np.int64)),
        }
    )


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return make_table()


@pytest.fixture(scope="module")
def dataset(ray_cluster, table):
    """The same rows as 4 blocks of uneven size."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    cuts = [0, 333, 1000, 1500, table.num_rows]
    return ray.data.from_arrow([table.slice(a, b - a) for a, b in zip(cuts, cuts[1:])])


def pipeline() -> FeaturePipeline:
    return FeaturePipeline(STEPS, TYPES, EXCLUDE, label="income", task="binary_classification", positive_class=">50K")


def assert_close(a, b, path="") -> None:
    """Equal structures; floats equal up to summation order (rel 1e-12), NaN equal NaN."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-15), path
    else:
        assert a == b, path


def test_one_pass_of_every_statistic_equals_the_reference(ray_cluster, dataset, table):
    from raypipe.features.ray_fit import aggregate_stats

    # statistics are computed on the pipeline's intermediate form (float64 with nulls)
    view = dataset.map_batches(pipeline()._partial([]).intermediate, batch_format="pyarrow")
    local = pipeline()._partial([]).intermediate(table)
    requests = []
    for col in ("age", "hours", "const", "member", "empty"):
        requests += [StatRequest(k, col) for k in ("count", "null_count", "mean", "std", "min", "max", "value_counts")]
        requests += [StatRequest("quantiles", col, (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)), StatRequest("quantiles", col, (0.5,))]
    for col in ("color", "city", "grade", "income"):
        requests += [StatRequest("value_counts", col), StatRequest("null_count", col)]
    got = aggregate_stats(requests, view)
    want = compute_stats(requests, local)
    assert got.keys() == want.keys()
    for req in requests:
        if req.kind in ("mean", "std"):
            assert_close(got[req], want[req], str(req))  # summation order differs per block
        elif req.kind == "quantiles":
            assert repr(got[req]) == repr(want[req]), req  # exact: the same kernel on the same values
        else:
            assert got[req] == want[req] or repr(got[req]) == repr(want[req]), req


def test_fit_on_dataset_equals_fit_local(ray_cluster, dataset, table):
    from raypipe.features.ray_fit import fit_on_dataset

    strategy_before = dataset.context.shuffle_strategy
    remote = fit_on_dataset(pipeline(), dataset)
    local = pipeline().fit_local(table)
    assert remote.stats_passes == local.stats_passes == 5
    assert dataset.context.shuffle_strategy == strategy_before  # the caller's dataset is untouched
    assert remote.feature_names == local.feature_names
    assert remote.feature_types == local.feature_types
    assert remote.categorical_features == ["city"]
    assert remote.label_encoder.classes == ["<=50K", ">50K"]
    for a, b in zip(remote.fitted_steps, local.fitted_steps):
        assert_close(a.to_dict(), b.to_dict(), a.to_dict()["kind"])
    # the constant column is constant in both fits (no amplified rounding noise)
    affine = remote.fitted_steps[8].to_dict()
    assert affine["scales"][2] == 1.0 and affine["scales"][3] == 1.0
    ours, theirs = remote.transform(table), local.transform(table)
    for name in ours.column_names:
        np.testing.assert_allclose(ours.column(name).to_numpy(), theirs.column(name).to_numpy(),
                                   rtol=1e-6, atol=1e-6, equal_nan=True, err_msg=name)


def test_transform_dataset_runs_the_same_transform(ray_cluster, dataset, table):
    from raypipe.features.ray_fit import transform_dataset

    fitted = pipeline().fit_local(table)
    out = transform_dataset(fitted, dataset, passthrough=["row_id"], label=True).to_arrow_refs()
    import ray

    got = pa.concat_tables(ray.get(out)).sort_by("row_id")
    want = fitted.transform(table, passthrough=["row_id"], label=True)
    assert got.schema == want.schema
    for name in want.column_names:  # bit for bit (NaN where NaN): the same pure function on the same rows
        np.testing.assert_array_equal(got.column(name).to_numpy(), want.column(name).to_numpy(), err_msg=name)


def test_empty_dataset_and_unseen_label(ray_cluster, dataset, table):
    from raypipe.features.ray_fit import aggregate_stats, transform_dataset

    requests = [StatRequest("count", "age"), StatRequest("mean", "age"), StatRequest("value_counts", "city"),
                StatRequest("quantiles", "age", (0.5,))]
    got = aggregate_stats(requests, dataset.limit(0))
    assert got[requests[0]] == 0 and math.isnan(got[requests[1]]) and got[requests[2]] == {}
    assert math.isnan(got[requests[3]][0])

    fitted = pipeline().fit_local(table)
    bad = table.slice(0, 5).set_column(table.schema.get_field_index("income"), "income", pa.array(["<=50K."] * 5))
    import ray.data

    fitted.transform(bad)  # features alone are fine
    with pytest.raises(DataError, match=r"'<=50K\.' not seen in training"):
        fitted.transform(bad, label=True)
    # inside Ray Data the DataError arrives wrapped in Ray's task error, message intact
    with pytest.raises(Exception, match=r"DataError: label 'income': value\(s\) '<=50K\.' not seen in training"):
        transform_dataset(fitted, ray.data.from_arrow(bad), label=True).materialize()
