"""Every step type against a numpy / pandas / scikit-learn reference on the same rows.

Each test fits a one-or-two-step FeaturePipeline with ``fit_local`` on the
shared rows (nulls, a constant column), then checks the transform of the
training rows and of rows with unknown categories and out-of-range values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.preprocessing import MinMaxScaler, OrdinalEncoder, RobustScaler, StandardScaler

from raypipe.errors import ConfigError
from raypipe.features import FeaturePipeline
from raypipe.features.steps import FittedStep


TYPES = {"age": "int", "hours": "float", "const": "float", "color": "category", "city": "category",
         "member": "bool", "seen": "datetime", "email": "string"}


def fit(steps: list[dict], columns: list[str], table: pa.Table) -> FeaturePipeline:
    return FeaturePipeline(steps, {c: TYPES[c] for c in columns}).fit_local(table)


def numeric(table: pa.Table, name: str) -> np.ndarray:
    """A column as float64 with NaN for nulls (the reference's view of the data)."""
    return table.column(name).to_pandas().to_numpy(dtype=np.float64, na_value=np.nan)


def text(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist()


def col(out: pa.Table, name: str) -> np.ndarray:
    assert out.column(name).type == pa.float32()
    return out.column(name).to_numpy()


def check(got: np.ndarray, want, rtol: float = 1e-6) -> None:
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=rtol, atol=1e-6, equal_nan=True)


def objects(table: pa.Table, name: str) -> np.ndarray:
    """Text column as a 2-D object array with np.nan for missing (scikit-learn's missing marker)."""
    return np.array([[np.nan if v is None else v] for v in text(table, name)], dtype=object)


def fitted_step(fp: FeaturePipeline, i: int = 0) -> dict:
    return fp.fitted_steps[i].to_dict()


# --------------------------------------------------------------------------- impute


@pytest.mark.parametrize("strategy", ["mean", "median", "most_frequent"])
def test_impute_numeric_matches_sklearn(table, unseen, strategy):
    fp = fit([{"type": "impute", "columns": ["age", "hours"], "strategy": strategy}], ["age", "hours"], table)
    ref = SimpleImputer(strategy=strategy).fit(np.column_stack([numeric(table, "age"), numeric(table, "hours")]))
    for rows in (table, unseen):
        want = ref.transform(np.column_stack([numeric(rows, "age"), numeric(rows, "hours")]))
        out = fp.transform(rows)
        check(col(out, "age"), want[:, 0])
        check(col(out, "hours"), want[:, 1])
    np.testing.assert_allclose(fitted_step(fp)["fills"], ref.statistics_, rtol=1e-12)


def test_impute_constant_with_indicator_matches_sklearn(table):
    fp = fit(
        [{"type": "impute", "columns": ["hours"], "strategy": "constant", "fill_value": -1, "add_indicator": True}],
        ["age", "hours"],
        table,
    )
    assert fp.feature_names == ["age", "hours", "hours__missing"]
    x = numeric(table, "hours").reshape(-1, 1)
    out = fp.transform(table)
    check(col(out, "hours"), SimpleImputer(strategy="constant", fill_value=-1).fit_transform(x)[:, 0])
    check(col(out, "hours__missing"), MissingIndicator(features="all").fit_transform(x)[:, 0])
    check(col(out, "age"), numeric(table, "age"))  # untouched, still missing where it was


def test_impute_text_most_frequent_and_constant_match_pandas(table, unseen):
    fp = fit(
        [
            {"type": "impute", "columns": ["color"], "strategy": "most_frequent"},
            {"type": "impute", "columns": ["city"], "strategy": "constant", "fill_value": "Unknown"},
            {"type": "categorical", "columns": ["color", "city"]},
        ],
        ["color", "city"],
        table,
    )
    mode = pd.Series(text(table, "color")).mode()[0]
    assert fitted_step(fp, 0)["fills"] == [mode]
    assert fitted_step(fp, 1)["fills"] == ["Unknown"]
    categories = fitted_step(fp, 2)["categories"]
    assert "Unknown" not in categories[1]  # city had no missing value in training
    out = fp.transform(unseen)
    # unseen: color [purple, None, red] → purple unknown (NaN), None → mode
    check(col(out, "color"), [np.nan, categories[0].index(mode), categories[0].index("red")])
    check(col(out, "city"), [np.nan, categories[1].index("c03"), np.nan])  # None → 'Unknown' → unknown code


def test_impute_all_missing_column_stays_missing():
    rows = pa.table({"x": pa.array([None, None], type=pa.float64()), "s": pa.array([None, None], type=pa.string())})
    fp = FeaturePipeline(
        [
            {"type": "impute", "columns": ["x"], "strategy": "median"},
            {"type": "impute", "columns": ["s"], "strategy": "most_frequent"},
            {"type": "one_hot", "columns": ["s"]},
        ],
        {"x": "float", "s": "category"},
    ).fit_local(rows)
    assert fp.feature_names == ["x"]
    check(col(fp.transform(rows), "x"), [np.nan, np.nan])


# --------------------------------------------------------------------------- encoders


def one_hot_reference(train: list, rows: list, max_categories: int | None) -> dict[str, list[float]]:
    counts = pd.Series([v for v in train if v is not None]).value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = [v for v, _ in ranked][:max_categories]
    other = max_categories is not None and len(ranked) > max_categories
    out = {f"c={v}": [np.nan if r is None else float(r == v) for r in rows] for v in kept}
    if other:
        out["c=__other__"] = [np.nan if r is None else float(r not in kept) for r in rows]
    return out


@pytest.mark.parametrize("max_categories", [None, 2])
def test_one_hot_matches_reference(table, unseen, max_categories):
    fp = fit([{"type": "one_hot", "columns": ["color"], "max_categories": max_categories}], ["color"], table)
    for rows in (table, unseen):
        want = one_hot_reference(text(table, "color"), text(rows, "color"), max_categories)
        want = {k.replace("c=", "color="): v for k, v in want.items()}
        out = fp.transform(rows)
        assert out.column_names == list(want)  # frequency order, ties by value
        for name, values in want.items():
            check(col(out, name), values)
    assert fp.feature_types == ["q"] * len(fp.feature_names)


def test_one_hot_unknown_is_all_zeros_without_other_and_missing_is_nan():
    fp = FeaturePipeline([{"type": "one_hot", "columns": ["c"]}], {"c": "category"}).fit_local(
        pa.table({"c": ["b", "a", "b", "a", "c"]})
    )
    assert fp.feature_names == ["c=a", "c=b", "c=c"]  # a and b tie at 2: by value
    out = fp.transform(pa.table({"c": ["zzz", None, "c"]}))
    assert out.to_pydict() == {"c=a": [0.0, pytest.approx(np.nan, nan_ok=True), 0.0],
                               "c=b": [0.0, pytest.approx(np.nan, nan_ok=True), 0.0],
                               "c=c": [0.0, pytest.approx(np.nan, nan_ok=True), 1.0]}


def test_ordinal_matches_sklearn_with_nan_for_unknown(table, unseen):
    fp = fit([{"type": "ordinal", "columns": ["color", "city"]}], ["color", "city"], table)
    ref = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan)
    ref.fit(np.hstack([objects(table, "color"), objects(table, "city")]))
    for rows in (table, unseen):
        want = ref.transform(np.hstack([objects(rows, "color"), objects(rows, "city")]))
        out = fp.transform(rows)
        check(col(out, "color"), want[:, 0])
        check(col(out, "city"), want[:, 1])
    assert fp.feature_types == ["q", "q"]


def test_ordinal_explicit_order():
    fp = FeaturePipeline(
        [{"type": "ordinal", "columns": ["size"], "order": {"size": ["S", "M", "L"]}}], {"size": "category"}
    ).fit_local(pa.table({"size": ["L", "S", "XL"]}))
    check(col(fp.transform(pa.table({"size": ["S", "M", "L", "XL", None]})), "size"), [0, 1, 2, np.nan, np.nan])


@pytest.mark.parametrize("max_categories", [None, 5])
def test_categorical_codes_match_pandas(table, unseen, max_categories):
    fp = fit([{"type": "categorical", "columns": ["city", "color"], "max_categories": max_categories}],
             ["city", "color"], table)
    assert fp.feature_types == ["c", "c"]
    assert fp.categorical_features == ["city", "color"]
    counts = pd.Series(text(table, "city")).value_counts()
    kept = sorted(sorted(counts.index, key=lambda v: (-counts[v], v))[:max_categories])
    assert fitted_step(fp)["categories"][0] == kept
    for rows in (table, unseen):
        out = fp.transform(rows)
        codes = pd.Categorical(text(rows, "city"), categories=kept).codes.astype(float)
        check(col(out, "city"), np.where(codes < 0, np.nan, codes))
        color_codes = pd.Categorical(text(rows, "color"), categories=sorted(set(text(table, "color")) - {None})).codes
        check(col(out, "color"), np.where(color_codes < 0, np.nan, color_codes.astype(float)))


# --------------------------------------------------------------------------- scalers


@pytest.mark.parametrize(
    "step, reference",
    [("standard_scale", StandardScaler), ("minmax_scale", MinMaxScaler), ("robust_scale", RobustScaler)],
)
def test_scalers_match_sklearn_including_constant_columns(table, unseen, step, reference):
    columns = ["age", "hours", "const", "member"]
    fp = fit([{"type": step, "columns": columns}], columns, table)
    matrix = lambda rows: np.column_stack([numeric(rows, c) for c in columns])  # noqa: E731
    ref = reference().fit(matrix(table))
    for rows in (table, unseen):
        want = ref.transform(matrix(rows))
        out = fp.transform(rows)
        for i, name in enumerate(columns):
            check(col(out, name), want[:, i], rtol=1e-5)
    # the constant column is divided by 1, never by 0
    assert fitted_step(fp)["scales"][2] == 1.0


# --------------------------------------------------------------------------- clip, log1p, bucketize


def test_clip_fixed_and_quantile_bounds(table, unseen):
    fp = fit(
        [
            {"type": "clip", "columns": ["age"], "min": 20, "max": 60},
            {"type": "clip", "columns": ["hours"], "lower_quantile": 0.05, "upper_quantile": 0.95},
            {"type": "clip", "columns": ["const"], "upper_quantile": 0.5},
        ],
        ["age", "hours", "const"],
        table,
    )
    hours = numeric(table, "hours")
    lo, hi = np.nanquantile(hours, [0.05, 0.95])
    for rows in (table, unseen):
        out = fp.transform(rows)
        check(col(out, "age"), np.clip(numeric(rows, "age"), 20, 60))
        check(col(out, "hours"), np.clip(numeric(rows, "hours"), lo, hi))
        check(col(out, "const"), np.minimum(numeric(rows, "const"), 3.5))
    np.testing.assert_allclose([fitted_step(fp, 1)["lows"][0], fitted_step(fp, 1)["highs"][0]], [lo, hi], rtol=1e-12)


def test_log1p_below_minus_one_is_missing():
    fp = FeaturePipeline([{"type": "log1p", "columns": ["x"]}], {"x": "float"}).fit_local(pa.table({"x": [0.0]}))
    x = np.array([-3.0, -1.0, -0.5, 0.0, 10.0, np.nan])
    with np.errstate(all="ignore"):
        want = np.where(x > -1, np.log1p(x), np.nan)
    check(col(fp.transform(pa.table({"x": pa.array(x, from_pandas=True)})), "x"), want)


def test_bucketize_fixed_boundaries_match_digitize(table, unseen):
    bins = [10.0, 20.0, 40.0]
    fp = fit([{"type": "bucketize", "columns": ["hours"], "boundaries": bins}], ["hours"], table)
    for rows in (table, unseen):
        x = numeric(rows, "hours")
        check(col(fp.transform(rows), "hours"), np.where(np.isnan(x), np.nan, np.digitize(x, bins)))


def test_bucketize_quantile_edges_match_numpy(table, unseen):
    fp = fit([{"type": "bucketize", "columns": ["hours", "const"], "num_buckets": 4}], ["hours", "const"], table)
    edges = np.unique(np.nanquantile(numeric(table, "hours"), [0.25, 0.5, 0.75]))
    np.testing.assert_allclose(fitted_step(fp)["edges"][0], edges, rtol=1e-12)
    assert fitted_step(fp)["edges"][1] == [3.5]  # a constant column has one distinct edge
    for rows in (table, unseen):
        x = numeric(rows, "hours")
        check(col(fp.transform(rows), "hours"), np.where(np.isnan(x), np.nan, np.digitize(x, edges)))
    train = col(fp.transform(table), "hours")
    assert set(np.unique(train[~np.isnan(train)])) == {0.0, 1.0, 2.0, 3.0}


# --------------------------------------------------------------------------- datetime, expression, drop


def test_datetime_parts_match_pandas(table, unseen):
    parts = ["year", "month", "day", "hour", "minute", "weekday", "dayofyear", "is_weekend"]
    fp = fit([{"type": "datetime_parts", "columns": ["seen"], "parts": parts}], ["seen"], table)
    assert fp.feature_names == [f"seen_{p}" for p in parts]
    for rows in (table, unseen):
        ts = pd.Series(pd.to_datetime(rows.column("seen").to_pylist()))
        out = fp.transform(rows)
        for part in parts:
            attr = {"weekday": "weekday", "dayofyear": "dayofyear"}.get(part, part)
            want = (ts.dt.weekday >= 5).astype(float) if part == "is_weekend" else getattr(ts.dt, attr).astype(float)
            want = want.where(ts.notna())
            check(col(out, f"seen_{part}"), want.to_numpy(dtype=np.float64, na_value=np.nan))


def test_datetime_parts_keeping_the_original_needs_a_drop(table):
    step = {"type": "datetime_parts", "columns": ["seen"], "parts": ["hour"], "drop_original": False}
    with pytest.raises(ConfigError, match=r"'seen' \(datetime\) is not encoded.*datetime_parts"):
        FeaturePipeline([step], {"seen": "datetime"})
    fp = fit([step, {"type": "drop", "columns": ["seen"]}], ["seen"], table)
    assert fp.feature_names == ["seen_hour"]


def test_expression_adds_or_replaces_a_column(table, unseen):
    fp = fit(
        [
            {"type": "expression", "name": "per_year", "expr": "where(age > 0, hours / age, 0) + member"},
            {"type": "expression", "name": "hours", "expr": "fillna(hours, -1)"},
        ],
        ["age", "hours", "member"],
        table,
    )
    assert fp.feature_names == ["age", "hours", "member", "per_year"]  # replaced in place, new last
    for rows in (table, unseen):
        age, hours, member = numeric(rows, "age"), numeric(rows, "hours"), numeric(rows, "member")
        with np.errstate(all="ignore"):
            want = np.where(age > 0, hours / age, 0.0) + member
        want[np.isnan(age) | np.isnan(member)] = np.nan
        out = fp.transform(rows)
        check(col(out, "per_year"), want)
        check(col(out, "hours"), np.where(np.isnan(hours), -1.0, hours))


def test_drop_removes_any_type(table):
    fp = fit([{"type": "drop", "columns": ["email", "seen", "color"]}], ["age", "email", "seen", "color"], table)
    assert fp.feature_names == ["age"]


# --------------------------------------------------------------------------- fitted step JSON


def test_every_fitted_step_round_trips_through_its_dict(table):
    steps = [
        {"type": "impute", "columns": ["color"], "strategy": "constant", "fill_value": "none"},
        {"type": "impute", "columns": ["hours"], "strategy": "mean", "add_indicator": True},
        {"type": "one_hot", "columns": ["color"], "max_categories": 2},
        {"type": "ordinal", "columns": ["city"]},
        {"type": "standard_scale", "columns": ["age"]},
        {"type": "clip", "columns": ["hours"], "lower_quantile": 0.1},
        {"type": "log1p", "columns": ["hours"]},
        {"type": "bucketize", "columns": ["const"], "num_buckets": 3},
        {"type": "datetime_parts", "columns": ["seen"]},
        {"type": "expression", "name": "z", "expr": "age * 2"},
        {"type": "drop", "columns": ["email"]},
    ]
    columns = ["age", "hours", "const", "color", "city", "seen", "email"]
    fp = fit(steps, columns, table)
    for fitted in fp.fitted_steps:
        again = FittedStep.from_dict(fitted.to_dict())
        assert again == fitted
        assert type(again) is type(fitted)
    with pytest.raises(ValueError, match="unknown kind 'nope'"):
        FittedStep.from_dict({"kind": "nope"})


def test_one_list_of_transforms_feeds_the_config_union_and_the_dispatch():
    import typing

    import raypipe.config
    from raypipe.features.steps import FEATURE_TYPES, STEPS, FeatureStep, make_step

    union, _ = typing.get_args(FeatureStep)
    assert typing.get_args(union) == tuple(cls.params for cls in STEPS)
    assert FEATURE_TYPES == tuple(cls.type for cls in STEPS) == tuple(
        typing.get_args(cls.params.model_fields["type"].annotation)[0] for cls in STEPS
    )
    assert raypipe.config.FEATURE_TYPES is FEATURE_TYPES and raypipe.config.FeatureStep is FeatureStep
    for cls in STEPS:
        if cls.type in ("standard_scale", "log1p", "drop"):  # parameters: columns only
            params = cls.params(type=cls.type, columns=["x"])
            assert type(make_step(params, 0, {"x": "float"})) is cls
    with pytest.raises(ConfigError, match="features\\[3\\].type: unknown transform 'nope'. Expected one of: impute, one_hot"):
        make_step(STEPS[0].params.model_construct(type="nope", columns=["x"]), 3, {"x": "float"})
