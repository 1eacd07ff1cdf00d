"""compute_stats: the exact reference statistics, against numpy and pandas."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from raypipe.features.stats import STAT_KINDS, StatRequest, compute_stats, empty_stat


def floats(table: pa.Table, name: str) -> np.ndarray:
    x = table.column(name).to_pandas().to_numpy(dtype=np.float64, na_value=np.nan)
    return x[~np.isnan(x)]


@pytest.mark.parametrize("name", ["age", "hours", "const", "member"])
def test_numeric_statistics_match_numpy(table, name):
    x = floats(table, name)
    levels = (0.0, 0.1, 0.25, 0.5, 0.9, 1.0)
    requests = [
        StatRequest("count", name),
        StatRequest("null_count", name),
        StatRequest("mean", name),
        StatRequest("std", name),
        StatRequest("min", name),
        StatRequest("max", name),
        StatRequest("quantiles", name, levels),
    ]
    stats = compute_stats(requests, table)
    assert stats[requests[0]] == table.num_rows
    assert stats[requests[1]] == table.num_rows - len(x)
    assert stats[requests[2]] == pytest.approx(np.mean(x), rel=1e-12)
    assert stats[requests[3]] == pytest.approx(np.std(x), rel=1e-12, abs=1e-15)  # ddof=0
    assert stats[requests[4]] == np.min(x)
    assert stats[requests[5]] == np.max(x)
    np.testing.assert_allclose(stats[requests[6]], np.quantile(x, levels), rtol=1e-12)


def test_value_counts_match_pandas_and_skip_missing(table):
    stats = compute_stats([StatRequest("value_counts", "color"), StatRequest("null_count", "color")], table)
    want = pd.Series(table.column("color").to_pylist()).value_counts(dropna=True).to_dict()
    assert stats[StatRequest("value_counts", "color")] == want
    assert stats[StatRequest("null_count", "color")] == table.column("color").null_count


def test_nan_in_a_float_column_counts_as_missing():
    t = pa.table({"x": pa.array([1.0, np.nan, None, 3.0])})  # a NaN value and a null
    stats = compute_stats(
        [StatRequest("null_count", "x"), StatRequest("mean", "x"), StatRequest("value_counts", "x")], t
    )
    assert list(stats.values()) == [2, 2.0, {1.0: 1, 3.0: 1}]


def test_all_missing_and_empty_columns():
    t = pa.table({"x": pa.array([None, None], type=pa.float64()), "s": pa.array([None, None], type=pa.string())})
    reqs = [StatRequest(k, "x", (0.5,) if k == "quantiles" else ()) for k in STAT_KINDS]
    stats = compute_stats(reqs + [StatRequest("value_counts", "s")], t)
    assert stats[StatRequest("count", "x")] == 2
    assert stats[StatRequest("null_count", "x")] == 2
    for kind in ("mean", "std", "min", "max"):
        assert math.isnan(stats[StatRequest(kind, "x")])
    assert math.isnan(stats[StatRequest("quantiles", "x", (0.5,))][0])
    assert stats[StatRequest("value_counts", "x")] == {}
    assert stats[StatRequest("value_counts", "s")] == {}
    # zero rows: the values empty_stat documents (what the Ray path returns for an empty dataset)
    empty = compute_stats(reqs, t.slice(0, 0))
    assert repr(empty) == repr({r: empty_stat(r) for r in reqs})
    assert empty[StatRequest("count", "x")] == 0 and empty[StatRequest("null_count", "x")] == 0


def test_duplicates_are_computed_once_and_tuples_are_accepted():
    t = pa.table({"x": [1.0, 2.0]})
    stats = compute_stats([("mean", "x"), StatRequest("mean", "x")], t)
    assert stats == {StatRequest("mean", "x"): 1.5}


def test_errors_name_the_column_or_kind():
    t = pa.table({"x": [1.0], "s": ["a"]})
    with pytest.raises(KeyError, match="'nope' is not in the table"):
        compute_stats([StatRequest("mean", "nope")], t)
    with pytest.raises(ValueError, match="unknown statistic 'median'"):
        compute_stats([StatRequest("median", "x")], t)
    with pytest.raises(TypeError, match="needs a numeric column"):
        compute_stats([StatRequest("mean", "s")], t)
