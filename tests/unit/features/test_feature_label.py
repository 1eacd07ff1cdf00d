"""LabelEncoder: binary, multiclass and regression labels, and their errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from raypipe.errors import ConfigError, DataError
from raypipe.features import FeaturePipeline, LabelEncoder


def fitted(task: str, values, positive_class=None) -> LabelEncoder:
    enc = LabelEncoder(task, positive_class, column="y")
    enc.fit_values(values)
    return enc


def test_binary_default_positive_is_the_larger_sorted_value():
    enc = fitted("binary_classification", ["no", "yes", "no"])
    assert enc.classes == ["no", "yes"]
    assert enc.encode(["yes", "no", "yes"]).tolist() == [1.0, 0.0, 1.0]
    assert enc.decode([0, 1]) == ["no", "yes"]


def test_binary_positive_class_from_config():
    enc = fitted("binary_classification", ["<=50K", ">50K"], positive_class="<=50K")
    assert enc.classes == [">50K", "<=50K"]
    assert enc.encode(pa.array(["<=50K", ">50K"])).tolist() == [1.0, 0.0]


def test_binary_integer_and_bool_labels_match_config_text():
    assert fitted("binary_classification", [0, 1, 1], positive_class="0").encode([0, 1]).tolist() == [1.0, 0.0]
    assert fitted("binary_classification", [True, False], positive_class="true").encode([True, False]).tolist() == [1.0, 0.0]
    assert fitted("binary_classification", [2, 10]).encode([10, 2]).tolist() == [1.0, 0.0]  # numeric, not text, order


def test_binary_needs_exactly_two_values():
    with pytest.raises(DataError, match=r"label 'y': binary_classification needs exactly 2 values.*got 1 \('a'\)"):
        fitted("binary_classification", ["a", "a"])
    with pytest.raises(DataError, match="got 3.*Hint: use model.task: multiclass"):
        fitted("binary_classification", ["a", "b", "c"])


def test_positive_class_must_be_a_label_value():
    with pytest.raises(ConfigError, match=r"model.positive_class: '>50k' is not a value.*Did you mean '>50K'"):
        fitted("binary_classification", ["<=50K", ">50K"], positive_class=">50k")
    with pytest.raises(ConfigError, match="only applies to binary_classification"):
        LabelEncoder("multiclass", positive_class="a")


def test_multiclass_sorted_codes():
    enc = fitted("multiclass", ["c", "a", "b", "a"])
    assert enc.classes == ["a", "b", "c"]
    assert enc.encode(["b", "c", "a"]).tolist() == [1.0, 2.0, 0.0]
    with pytest.raises(DataError, match="multiclass needs at least 2 values"):
        fitted("multiclass", ["a"])


def test_unseen_and_missing_labels_are_data_errors():
    enc = fitted("multiclass", ["a", "b", "c"])
    with pytest.raises(DataError, match=r"value\(s\) 'zz' not seen in training; expected one of 'a', 'b', 'c'"):
        enc.encode(["a", "zz"])
    with pytest.raises(DataError, match="1 missing value"):
        enc.encode(["a", None])
    with pytest.raises(DataError, match="expected values like"):
        fitted("multiclass", [1, 2]).encode(["x"])


def test_regression_is_float():
    enc = LabelEncoder("regression", column="y")
    assert enc.fitted and enc.needs() == []
    np.testing.assert_array_equal(enc.encode(pa.array([1, 2, 3])), [1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="regression needs numbers"):
        enc.encode(["a"])


def test_unknown_task():
    with pytest.raises(ConfigError, match="unknown task 'multiclas'. Did you mean 'multiclass'"):
        LabelEncoder("multiclas")


def test_label_through_the_pipeline_and_json(table, types):
    steps = [{"type": "drop", "columns": ["color", "city", "seen", "email"]}]
    fp = FeaturePipeline(steps, types, exclude=["weight", "row_id"], label="income",
                         task="binary_classification", positive_class=">50K")
    fp.fit_local(table)
    assert "income" not in fp.feature_names
    want = (np.array(table.column("income").to_pylist()) == ">50K").astype(float)
    np.testing.assert_array_equal(fp.encode_label(table.column("income")), want)
    again = FeaturePipeline.from_json(fp.to_json())
    assert again.label_encoder.classes == ["<=50K", ">50K"]
    out = again.transform(table, passthrough=["weight", "row_id"], label=True)
    assert out.column_names == fp.feature_names + ["weight", "row_id", "income"]
    np.testing.assert_array_equal(out.column("income").to_numpy(), want)
    assert again.decode_label([1, 0]) == [">50K", "<=50K"]


def test_regression_label_must_be_numeric(types):
    with pytest.raises(ConfigError, match="regression needs a numeric label; 'income' is category"):
        FeaturePipeline([], types, label="income", task="regression")
    with pytest.raises(ConfigError, match="the task is required"):
        FeaturePipeline([], types, label="income")
