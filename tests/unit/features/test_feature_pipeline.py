"""FeaturePipeline: validation, fitting order and passes, JSON, one-row transforms."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sklearn.preprocessing import RobustScaler, StandardScaler

import raypipe.features
from raypipe.errors import ConfigError, SchemaError
from raypipe.features import FeaturePipeline, StatRequest, compute_stats
from raypipe.features.steps import ImputeStep, OneHotStep

EXCLUDE = ["income", "weight", "row_id"]

#: Every step type, in an order where later steps read earlier outputs.
ALL_STEPS = [
    {"type": "impute", "columns": ["color", "city"], "strategy": "constant", "fill_value": "Unknown"},
    {"type": "impute", "columns": ["age"], "strategy": "median", "add_indicator": True},
    {"type": "impute", "columns": ["hours"], "strategy": "mean"},
    {"type": "expression", "name": "load", "expr": "hours / fillna(age, 40) + member"},
    {"type": "clip", "columns": ["hours"], "lower_quantile": 0.05, "upper_quantile": 0.95},
    {"type": "log1p", "columns": ["hours"]},
    {"type": "robust_scale", "columns": ["hours"]},
    {"type": "standard_scale", "columns": ["age", "load"]},
    {"type": "minmax_scale", "columns": ["const"]},
    {"type": "bucketize", "columns": ["const"], "boundaries": [0.5]},
    {"type": "datetime_parts", "columns": ["seen"], "parts": ["month", "weekday", "is_weekend"]},
    {"type": "bucketize", "columns": ["seen_month"], "num_buckets": 4},
    {"type": "one_hot", "columns": ["color"], "max_categories": 3},
    {"type": "drop", "columns": ["color=blue", "email"]},
    {"type": "ordinal", "columns": ["city"]},
    {"type": "impute", "columns": ["member"], "strategy": "most_frequent"},
]


@pytest.fixture(scope="module")
def full(table, types) -> FeaturePipeline:
    return FeaturePipeline(ALL_STEPS, types, EXCLUDE).fit_local(table)


def assert_same_table(a: pa.Table, b: pa.Table) -> None:
    assert a.column_names == b.column_names
    for name in a.column_names:
        np.testing.assert_array_equal(a.column(name).to_numpy(), b.column(name).to_numpy(), err_msg=name)


def stats_recorder(table: pa.Table, calls: list):
    def stats_fn(step_index, requests, partial):
        calls.append((step_index, list(requests), len(partial.fitted_steps)))
        return compute_stats(requests, partial.intermediate(table))

    return stats_fn


# --------------------------------------------------------------------------- outputs


def test_full_pipeline_outputs(full, table, types):
    assert full.feature_names == [
        "age", "age__missing", "hours", "const", "color=red", "color=green", "color=__other__", "city", "member", "seen_month", "seen_weekday", "seen_is_weekend", "load",
    ]  # fmt: skip
    assert full.feature_types == ["q"] * len(full.feature_names)
    out = full.transform(table)
    assert out.num_rows == table.num_rows
    assert all(out.column(n).type == pa.float32() for n in out.column_names)
    assert not np.isnan(out.column("age").to_numpy()).any()  # imputed
    assert np.isnan(out.column("seen_month").to_numpy()).sum() == table.column("seen").null_count


def test_unknown_categories_and_missing_values_never_crash(full, unseen):
    out = full.transform(unseen)
    assert out.num_rows == 3
    assert out.column("color=__other__").to_pylist()[0] == 1.0  # 'purple'
    assert np.isnan(out.column("city").to_pylist()[0])  # 'zz' → missing code
    assert np.isinf(out.to_pandas().to_numpy()).sum() == 0


def test_json_round_trip_gives_identical_transform(full, table, unseen):
    text = full.to_json()
    # strict JSON: no NaN/Infinity tokens
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    again = FeaturePipeline.from_json(text)
    assert again.feature_names == full.feature_names
    assert again.feature_types == full.feature_types
    assert again.to_json() == text
    for rows in (table, unseen):
        assert_same_table(again.transform(rows), full.transform(rows))


def test_pickle_goes_through_the_json_state(full, table):
    again = pickle.loads(pickle.dumps(full))
    assert again.to_json() == full.to_json()
    assert_same_table(again.transform(table), full.transform(table))


def test_one_row_transform_equals_the_batch_row(full, table, unseen):
    batch = full.transform(table)
    for i in (0, 5, 17, table.num_rows - 1):
        assert_same_table(full.transform(table.slice(i, 1)), batch.slice(i, 1))
    for i in range(unseen.num_rows):
        assert_same_table(full.transform(unseen.slice(i, 1)), full.transform(unseen).slice(i, 1))


def test_one_row_of_plain_python_values(full, table):
    # what the online endpoint builds from {"instances": [...]}: no label, types from JSON
    row = {k: v[0] for k, v in table.slice(3, 1).to_pydict().items() if k not in EXCLUDE}
    row["seen"] = row["seen"].isoformat()  # a JSON string
    out = full.transform(pa.Table.from_pylist([row]))
    assert_same_table(out, full.transform(table.slice(3, 1)))


def test_zero_rows(full, table):
    out = full.transform(table.slice(0, 0))
    assert out.num_rows == 0 and out.column_names == full.feature_names


def test_transform_errors(full, table):
    with pytest.raises(SchemaError, match=r"column 'hours' \(float\) is missing"):
        full.transform(table.drop_columns(["hours"]))
    with pytest.raises(SchemaError, match="column 'age': expected int"):
        full.transform(table.set_column(0, "age", pa.array(["x"] * table.num_rows)))
    with pytest.raises(SchemaError, match="passthrough column 'nope'"):
        full.transform(table, passthrough=["nope"])
    with pytest.raises(ValueError, match="without a label"):
        full.transform(table, label=True)
    with pytest.raises(RuntimeError, match="not fitted"):
        FeaturePipeline(ALL_STEPS, full.input_types, EXCLUDE).transform(table)


# --------------------------------------------------------------------------- fitting order and passes


def test_steps_fit_on_the_output_of_the_steps_before(table):
    fp = FeaturePipeline(
        [
            {"type": "impute", "columns": ["hours"], "strategy": "median"},
            {"type": "standard_scale", "columns": ["hours"]},
        ],
        {"hours": "float"},
    ).fit_local(table)
    x = table.column("hours").to_pandas().to_numpy(dtype=float, na_value=np.nan)
    imputed = np.where(np.isnan(x), np.nanmedian(x), x)
    affine = fp.fitted_steps[1].to_dict()
    assert affine["shifts"][0] == pytest.approx(imputed.mean(), rel=1e-12)
    assert affine["scales"][0] == pytest.approx(imputed.std(), rel=1e-12)


def test_independent_steps_share_one_pass(table, types):
    # Adult-like: constant impute (nothing to learn) → categorical → expression → log1p → scale
    steps = [
        {"type": "impute", "columns": ["color", "city"], "strategy": "constant", "fill_value": "Unknown"},
        {"type": "categorical", "columns": ["color", "city"]},
        {"type": "expression", "name": "ratio", "expr": "hours / age"},
        {"type": "log1p", "columns": ["hours"]},
        {"type": "standard_scale", "columns": ["age"]},
        {"type": "robust_scale", "columns": ["const"]},
        {"type": "drop", "columns": ["seen", "email"]},
    ]
    calls: list = []
    fp = FeaturePipeline(steps, types, EXCLUDE, label="income", task="binary_classification")
    fp.fit_with(stats_recorder(table, calls))
    assert fp.stats_passes == 1
    assert [c[0] for c in calls] == [1]  # statistics of steps 1..6 on the output of step 0
    assert calls[0][2] == 1
    assert set(calls[0][1]) == {
        StatRequest("value_counts", "color"), StatRequest("value_counts", "city"),
        StatRequest("mean", "age"), StatRequest("std", "age"), StatRequest("count", "age"), StatRequest("null_count", "age"),
        StatRequest("quantiles", "const", (0.25, 0.5, 0.75)), StatRequest("value_counts", "income"),
    }  # fmt: skip
    assert fp.to_json() == FeaturePipeline(steps, types, EXCLUDE, label="income", task="binary_classification") \
        .fit_local(table, batch=False).to_json()


def test_a_step_reading_an_unfitted_output_starts_a_new_pass(full, table, types):
    calls: list = []
    fp = FeaturePipeline(ALL_STEPS, types, EXCLUDE).fit_with(stats_recorder(table, calls))
    # a new pass wherever a step needs statistics of a column changed earlier in the pass:
    # 1: impute age, hours (+ expression load, which learns nothing)   4: clip hours (+ log1p)
    # 6: robust hours, standard age/load, minmax const (+ bucketize const, datetime_parts)
    # 11: bucketize seen_month, one_hot color (+ drop color=blue), ordinal city, impute member
    assert [c[0] for c in calls] == [1, 4, 6, 11]
    assert all(step_index == fitted for step_index, _, fitted in calls)
    unbatched: list = []
    slow = FeaturePipeline(ALL_STEPS, types, EXCLUDE).fit_with(stats_recorder(table, unbatched), batch=False)
    assert len(unbatched) == 10  # one pass per step that needs statistics
    assert fp.to_json() == slow.to_json() == full.to_json()


def test_fit_without_any_statistics_makes_no_pass(table):
    calls: list = []
    fp = FeaturePipeline([{"type": "log1p", "columns": ["hours"]}], {"hours": "float"})
    fp.fit_with(stats_recorder(table, calls))
    assert calls == [] and fp.stats_passes == 0 and fp.fitted


def test_label_statistics_get_a_pass_when_no_step_needs_one(table, types):
    calls: list = []
    fp = FeaturePipeline([{"type": "drop", "columns": ["color", "city", "seen", "email"]}], types,
                         ["weight", "row_id"], label="income", task="multiclass")
    fp.fit_with(stats_recorder(table, calls))
    assert [c[0] for c in calls] == [1] and calls[0][1] == [StatRequest("value_counts", "income")]


def test_intermediate_uses_nulls_and_passes_excluded_columns(table, types):
    fp = FeaturePipeline(ALL_STEPS, types, EXCLUDE)
    partial = fp._partial([])
    inter = partial.intermediate(table)
    assert inter.column("hours").null_count == np.isnan(
        table.column("hours").to_pandas().to_numpy(dtype=float, na_value=np.nan)
    ).sum()
    assert inter.column("hours").type == pa.float64() and inter.column("age").type == pa.float64()
    assert inter.column("income").equals(table.column("income"))


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    "steps, message",
    [
        (
            [{"type": "impute", "columns": ["color"], "strategy": "median"}],
            "features[0]: impute strategy 'median' needs a numeric column; 'color' is category. "
            "Hint: use strategy most_frequent or constant.",
        ),
        ([{"type": "impute", "columns": ["agee"]}], "features[0].columns: column 'agee' is not a feature at this step. Did you mean 'age'?"),
        ([{"type": "standard_scale", "columns": ["income"]}], "column 'income' is the label and cannot be a feature"),
        ([{"type": "standard_scale", "columns": ["weight"]}], "column 'weight' is excluded (label, weight or id)"),
        (
            [{"type": "one_hot", "columns": ["color"]}, {"type": "ordinal", "columns": ["color"]}],
            "features[1].columns: column 'color' is not a feature at this step: features[0] (one_hot) replaced or "
            "removed it. Hint: move this step before features[0].",
        ),
        (
            [{"type": "categorical", "columns": ["color"]}, {"type": "ordinal", "columns": ["color"]}],
            "features[1]: ordinal needs a category or string column; 'color' is categorical codes",
        ),
        (
            [{"type": "categorical", "columns": ["color"]}, {"type": "standard_scale", "columns": ["color"]}],
            "features[1]: standard_scale needs a numeric column; 'color' is categorical codes",
        ),
        ([{"type": "one_hot", "columns": ["age"]}], "features[0]: one_hot needs a category or string column; 'age' is int"),
        ([{"type": "log1p", "columns": ["seen"]}], "'seen' is datetime. Hint: extract numbers with a datetime_parts step"),
        ([{"type": "datetime_parts", "columns": ["age"]}], "datetime_parts needs a datetime column; 'age' is int"),
        ([{"type": "expression", "name": "z", "expr": "age + color"}], "features[0].expr: expressions need numeric columns; 'color' is category"),
        ([{"type": "expression", "name": "z", "expr": "ag + 1"}], "features[0].expr: column 'ag' is not a feature at this step. Did you mean 'age'?"),
        ([{"type": "expression", "name": "z", "expr": "__import__('os')"}], "features[0].expr: function '__import__'"),
        ([{"type": "expression", "name": "income", "expr": "age"}], "features[0]: output column 'income' has the name of an excluded column"),
        ([{"type": "clip", "columns": ["age"]}], "features[0]: clip needs a bound; got none"),
        ([{"type": "clip", "columns": ["age"], "min": 1, "lower_quantile": 0.1}], "expected min or lower_quantile, got both"),
        ([{"type": "clip", "columns": ["age"], "min": 5, "max": 1}], "expected min <= max"),
        ([{"type": "clip", "columns": ["age"], "lower_quantile": 0.9, "upper_quantile": 0.1}], "expected lower_quantile <= upper_quantile"),
        ([{"type": "ordinal", "columns": ["color"], "order": {"colour": ["a"]}}], "order: column 'colour' is not in this step's columns (color). Did you mean 'color'?"),
        ([{"type": "ordinal", "columns": ["color"], "order": {"color": ["a", "a"]}}], "expected distinct values, got duplicates ['a']"),
        ([{"type": "impute", "columns": ["age", "age"]}], "expected distinct columns, got ['age'] more than once"),
        ([{"type": "impute", "columns": ["color"], "strategy": "constant", "fill_value": 0}], "fill_value: expected text for category column 'color'"),
        ([{"type": "impute", "columns": ["age"], "strategy": "constant", "fill_value": "x"}], "fill_value: expected a number for int column 'age'"),
        ([{"type": "impute", "columns": ["age"], "add_indicator": True}, {"type": "expression", "name": "age__missing", "expr": "1"},
          {"type": "impute", "columns": ["age"], "add_indicator": True}], "features[2]: output column 'age__missing' already exists"),
        ([{"type": "drop", "columns": ["age", "hours", "const", "member"]}], "expected at least one feature"),
    ],
)
def test_config_errors_say_where_what_and_how_to_fix(types, steps, message):
    # numeric inputs, the roles, and only the text/datetime columns the case names (so
    # the error under test is the first one the pipeline finds)
    named = {c for s in steps for c in s.get("columns", []) + s.get("expr", "").replace("+", " ").split()}
    keep = {c: t for c, t in types.items() if t in ("int", "float", "bool") or c in named or c in EXCLUDE}
    with pytest.raises(ConfigError) as info:
        FeaturePipeline(steps, keep, EXCLUDE, label="income", task="binary_classification").fit_local(make_rows(keep))
    assert message in str(info.value)


def make_rows(types) -> pa.Table:
    from datetime import datetime

    values = {"int": [30, 40], "float": [1.0, 2.0], "category": ["a", "b"], "string": ["x", "y"],
              "bool": [True, False], "datetime": [datetime(2024, 1, 1), datetime(2024, 1, 6)]}
    return pa.table({c: values[t] for c, t in types.items()})


def test_unencoded_text_columns_are_listed_with_a_hint(types):
    with pytest.raises(ConfigError) as info:
        FeaturePipeline([{"type": "categorical", "columns": ["color"]}], types, EXCLUDE)
    msg = str(info.value)
    assert msg.startswith("features: expected only numeric features after the last step; ")
    assert "'city' (category), 'seen' (datetime), 'email' (string) are not encoded" in msg
    assert "Hint: add a categorical or one_hot step for the text columns, and add a datetime_parts step" in msg


def test_one_hot_outputs_can_be_named_later_and_are_checked_at_fit(table):
    types = {"color": "category"}
    fp = FeaturePipeline(
        [{"type": "one_hot", "columns": ["color"]}, {"type": "expression", "name": "warm", "expr": "`color=red` * 2"},
         {"type": "drop", "columns": ["color=black"]}],
        types,
    ).fit_local(table)
    assert fp.feature_names == ["color=red", "color=green", "color=blue", "warm"]
    bad = FeaturePipeline([OneHotStep(type="one_hot", columns=["color"]), {"type": "drop", "columns": ["color=purpel"]}], types)
    with pytest.raises(ConfigError, match="features\\[1\\].columns: column 'color=purpel' is not a feature at this step. Did you mean 'color=purple'?|Did you mean"):
        bad.fit_local(pa.table({"color": ["purple", "red"]}))


def test_step_models_and_dicts_are_equivalent(table):
    a = FeaturePipeline([ImputeStep(type="impute", columns=["age"], strategy="mean")], {"age": "int"}).fit_local(table)
    b = FeaturePipeline([{"type": "impute", "columns": ["age"], "strategy": "mean"}], {"age": "int"}).fit_local(table)
    assert a.to_json() == b.to_json()
    with pytest.raises(ConfigError, match="features\\[0\\]"):
        FeaturePipeline([{"type": "impute", "columns": ["age"], "strategy": "avg"}], {"age": "int"})
    with pytest.raises(ConfigError, match="columns.age.type: unknown type 'strng'. Did you mean 'string'?"):
        FeaturePipeline([], {"age": "strng"})


def test_from_json_rejects_other_documents():
    with pytest.raises(ValueError, match="expected a raypipe.feature_pipeline JSON document"):
        FeaturePipeline.from_json('{"format": "other"}')
    with pytest.raises(ValueError, match="expected version 1, got 99"):
        FeaturePipeline.from_json('{"format": "raypipe.feature_pipeline", "version": 99}')


# --------------------------------------------------------------------------- properties


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)), min_size=1, max_size=40),
    st.integers(0, 39),
)
@example([0.0, 2.8629999523606104e-51], 0)  # a tiny but real spread: StandardScaler scales it
def test_scalers_match_sklearn_on_any_floats(values, row):
    t = pa.table({"x": pa.array(values, type=pa.float64()), "y": pa.array(values, type=pa.float64())})
    fp = FeaturePipeline(
        [{"type": "standard_scale", "columns": ["x"]}, {"type": "robust_scale", "columns": ["y"]}],
        {"x": "float", "y": "float"},
    ).fit_local(t)
    x = np.array([np.nan if v is None else v for v in values]).reshape(-1, 1)
    out = fp.transform(t)
    if not np.isnan(x).all():
        for name, ref in (("x", StandardScaler()), ("y", RobustScaler())):
            want = ref.fit_transform(x)[:, 0].astype(np.float32)
            np.testing.assert_allclose(out.column(name).to_numpy(), want, rtol=1e-4, atol=1e-4, equal_nan=True)
    i = row % len(values)
    assert_same_table(fp.transform(t.slice(i, 1)), out.slice(i, 1))
    assert_same_table(FeaturePipeline.from_json(fp.to_json()).transform(t), out)


# --------------------------------------------------------------------------- package surface


def test_public_names():
    assert sorted(raypipe.features.__all__) == sorted(
        ["FeaturePipeline", "LabelEncoder", "StatRequest", "compute_stats", "compile_expression", "referenced_names"]
    )
    for name in raypipe.features.__all__:
        assert getattr(raypipe.features, name).__doc__


def test_importing_features_does_not_import_ray():
    code = "import sys, raypipe.features, raypipe.features.pipeline; assert 'ray' not in sys.modules, 'ray imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("module", ["expression", "stats", "steps", "label", "pipeline", "__init__"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    mod = importlib.import_module("raypipe.features" if module == "__init__" else f"raypipe.features.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_the_quickstart_config_builds_a_pipeline():
    from pathlib import Path

    from raypipe.config import load_config

    path = Path(__file__).parents[3] / "configs" / "quickstart.yaml"
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    cfg = load_config(path)
    schema = cfg.data.schema_
    types = {c: spec.type for c, spec in schema.columns.items()}
    fp = FeaturePipeline(cfg.features, types, label=schema.label, task=cfg.model.task,
                         positive_class=cfg.model.positive_class)
    rows = make_rows(types).set_column(list(types).index("income"), "income", pa.array(["<=50K", ">50K"]))
    calls: list = []
    fp.fit_with(stats_recorder(rows, calls))
    assert len(calls) == 1  # impute constant needs nothing; the rest share one pass
    assert fp.feature_names[-1] == "capital_net"
    assert fp.categorical_features == ["workclass", "education", "marital_status", "occupation", "relationship",
                                       "race", "sex", "native_country"]
    assert fp.encode_label(pa.array([">50K", "<=50K"])).tolist() == [1.0, 0.0]
