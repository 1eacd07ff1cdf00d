"""raypipe.evaluate.metrics agrees with scikit-learn to 1e-9, ties and weights included."""

from __future__ import annotations

import json
import subprocess
import types
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

import raypipe.evaluate as ev
from raypipe.evaluate import metrics as m

TOL = 1e-9


def _binary_data(seed: int, n: int = 500, ties: bool = True, weights: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.35 * y + rng.random(n) * 0.65, 0, 1)
    if ties:
        p = np.round(p, 1)  # ~11 distinct scores: many tied thresholds
    w = rng.random(n) * 3 if weights else None
    if weights:
        w[rng.random(n) < 0.1] = 0.0  # zero weights must not create thresholds
    return y, p, w


# ------------------------------------------------------------------ binary


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [True, False])
@pytest.mark.parametrize("weights", [False, True])
def test_binary_metrics_match_sklearn(seed, ties, weights):
    y, p, w = _binary_data(seed, ties=ties, weights=weights)
    thr = 0.5 if seed % 2 else 0.4
    got = m.binary_metrics(y, p, threshold=thr, sample_weight=w)
    pred = (p >= thr).astype(int)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred, sample_weight=w), abs=TOL)
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, sample_weight=w), abs=TOL)
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred, sample_weight=w), abs=TOL)
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, sample_weight=w), abs=TOL)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p, sample_weight=w), abs=TOL)
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y, p, sample_weight=w), abs=TOL)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p, sample_weight=w), abs=TOL)
    assert got["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    assert got["threshold"] == thr
    assert got["positive_rate"] == pytest.approx(np.average(pred, weights=w), abs=TOL)


def test_binary_metrics_are_plain_json_values():
    y, p, _ = _binary_data(0)
    got = m.binary_metrics(y, p)
    assert json.loads(json.dumps(got)) == got
    for key, value in got.items():
        if key == "confusion_matrix":
            assert all(type(c) is int for row in value for c in row)
        else:
            assert type(value) is float, key


def test_binary_metrics_accepts_bool_labels_and_two_column_proba():
    y, p, _ = _binary_data(1)
    a = m.binary_metrics(y, p)
    b = m.binary_metrics(y.astype(bool), np.c_[1 - p, p])
    assert a == b


def test_all_tied_scores_give_auc_one_half():
    got = m.binary_metrics([0, 1, 0, 1, 1], [0.3] * 5)
    assert got["roc_auc"] == 0.5
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score([0, 1, 0, 1, 1], [0.3] * 5))


def test_extreme_probabilities_are_clipped_like_sklearn():
    y, p = np.array([0, 1, 1, 0]), np.array([0.0, 1.0, 0.0, 1.0])
    assert m.binary_metrics(y, p)["log_loss"] == pytest.approx(skm.log_loss(y, p), abs=TOL)


def test_zero_division_is_zero_like_sklearn():
    # Nothing predicted positive: precision and f1 are undefined → 0.0.
    got = m.binary_metrics([0, 1, 0], [0.1, 0.2, 0.3])
    assert got["precision"] == 0.0 and got["f1"] == 0.0 and got["recall"] == 0.0
    assert got["positive_rate"] == 0.0


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_gives_none_auc(label):
    got = m.binary_metrics([label] * 4, [0.1, 0.6, 0.7, 0.2])
    assert got["roc_auc"] is None and got["pr_auc"] is None
    assert got["accuracy"] == 0.5
    assert got["log_loss"] == pytest.approx(skm.log_loss([label] * 4, [0.1, 0.6, 0.7, 0.2], labels=[0, 1]))


def test_weights_that_zero_out_a_class_give_none_auc():
    got = m.binary_metrics([0, 1, 1], [0.2, 0.5, 0.9], sample_weight=[0, 1, 1])
    assert got["roc_auc"] is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"y_true": [0, 2, 1], "proba": [0.1, 0.2, 0.3]}, r"'y_true' .* 0/1 labels .* Got values \[2.0\]"),
        ({"y_true": [0, 1], "proba": [0.1, 1.5]}, r"'proba' .* probabilities in \[0, 1\]. Got values \[1.5\]"),
        ({"y_true": [0, 1], "proba": [0.1, np.nan]}, r"'proba' .* finite. Got nan at row 1"),
        ({"y_true": [0, 1], "proba": [0.1, 0.2, 0.3]}, r"'proba' .* length 2 .* Got length 3"),
        ({"y_true": [], "proba": []}, r"'y_true' .* non-empty"),
        ({"y_true": [0, 1], "proba": [0.1, 0.2], "sample_weight": [1, -1]}, r"'sample_weight' .* non-negative"),
        ({"y_true": [0, 1], "proba": [0.1, 0.2], "sample_weight": [0, 0]}, r"positive sum"),
        ({"y_true": [[0, 1], [1, 0]], "proba": [0.1, 0.2]}, r"1-D array"),
    ],
)
def test_binary_metrics_input_errors_quote_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        m.binary_metrics(**kwargs)


# ------------------------------------------------------------------ hypothesis


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.integers(0, 1),
            st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.75, 0.9, 1.0]),
            st.floats(0.0, 5.0),
        ),
        min_size=2,
        max_size=60,
    )
)
def test_ranking_metrics_match_sklearn_property(data):
    y, p, w = (np.array(col) for col in zip(*data))
    got = m.binary_metrics(y, p, sample_weight=w if w.sum() > 0 else None)
    w = w if w.sum() > 0 else None
    if not m._both_classes(y.astype(float), w):
        assert got["roc_auc"] is None
        return
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p, sample_weight=w), abs=TOL)
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y, p, sample_weight=w), abs=TOL)
    assert got["f1"] == pytest.approx(skm.f1_score(y, (p >= 0.5).astype(int), sample_weight=w), abs=TOL)


# ------------------------------------------------------------------ thresholds


def _brute_force_best(y, p, metric, w=None):
    # A plain loop over every candidate threshold, the definition best_threshold vectorizes.
    w = np.ones_like(p) if w is None else w
    best = -1.0
    for t in np.unique(p):
        pred = p >= t
        tp, fp = w[pred & (y == 1)].sum(), w[pred & (y == 0)].sum()
        fn, tn = w[~pred & (y == 1)].sum(), w[~pred & (y == 0)].sum()
        score = {
            "f1": 2 * tp / (2 * tp + fp + fn),
            "accuracy": (tp + tn) / w.sum(),
            "balanced_accuracy": 0.5 * (tp / (tp + fn) + tn / (tn + fp)),
        }[metric]
        best = max(best, score)
    return best


@pytest.mark.parametrize("metric", ["f1", "accuracy", "balanced_accuracy"])
@pytest.mark.parametrize("weights", [False, True])
def test_best_threshold_maximises_metric(metric, weights):
    y, p, w = _binary_data(7, n=300, ties=False, weights=weights)
    thr = m.best_threshold(y, p, metric=metric, sample_weight=w)
    assert thr in set(p.tolist())
    pred = (p >= thr).astype(int)
    scorer = {"f1": skm.f1_score, "accuracy": skm.accuracy_score, "balanced_accuracy": skm.balanced_accuracy_score}
    assert scorer[metric](y, pred, sample_weight=w) == pytest.approx(_brute_force_best(y, p, metric, w), abs=TOL)


def test_best_threshold_may_predict_no_positive_for_accuracy():
    # One rare positive scored below every negative: the best accuracy predicts nothing positive.
    y, p = np.array([0, 0, 0, 1]), np.array([0.9, 0.8, 0.7, 0.1])
    thr = m.best_threshold(y, p, metric="accuracy")
    assert thr > 0.9
    assert m.binary_metrics(y, p, threshold=thr)["accuracy"] == 0.75


def test_best_threshold_errors():
    with pytest.raises(ValueError, match=r"'metric' .* Got 'balanced' instead. Did you mean 'balanced_accuracy'\?"):
        m.best_threshold([0, 1], [0.1, 0.9], metric="balanced")
    with pytest.raises(ValueError, match=r"Got 'F1' instead. Did you mean 'f1'\?"):
        m.best_threshold([0, 1], [0.1, 0.9], metric="F1")
    with pytest.raises(ValueError, match="both classes"):
        m.best_threshold([1, 1], [0.1, 0.9])


# ------------------------------------------------------------------ curves


@pytest.mark.parametrize("weights", [False, True])
def test_roc_curve_points_match_sklearn(weights):
    y, p, w = _binary_data(3, n=120, weights=weights)
    got = m.roc_curve_points(y, p, sample_weight=w)
    fpr, tpr, thr = skm.roc_curve(y, p, sample_weight=w)
    np.testing.assert_allclose(got["fpr"], fpr, atol=TOL)
    np.testing.assert_allclose(got["tpr"], tpr, atol=TOL)
    assert got["thresholds"][0] is None
    np.testing.assert_allclose(got["thresholds"][1:], thr[1:])
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, p, sample_weight=w), abs=TOL)


def test_pr_curve_points_match_sklearn():
    y, p, _ = _binary_data(4, n=120)
    got = m.pr_curve_points(y, p)
    precision, recall, thr = skm.precision_recall_curve(y, p)
    np.testing.assert_allclose(got["precision"], precision[::-1], atol=TOL)
    np.testing.assert_allclose(got["recall"], recall[::-1], atol=TOL)
    np.testing.assert_allclose(got["thresholds"][1:], thr[::-1])
    assert got["average_precision"] == pytest.approx(skm.average_precision_score(y, p), abs=TOL)


def test_curves_are_downsampled_keeping_endpoints():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    p = rng.random(5000)
    for curve, x in ((m.roc_curve_points, "fpr"), (m.pr_curve_points, "recall")):
        got = curve(y, p)
        assert 100 < len(got[x]) <= 200
        assert len(got[x]) == len(got["thresholds"])
        assert got[x][0] == 0.0 and got[x][-1] == 1.0
        assert np.all(np.diff(got[x]) >= 0)
        json.dumps(got, allow_nan=False)


def test_curves_need_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        m.roc_curve_points([0, 0], [0.1, 0.2])


# ------------------------------------------------------------------ multiclass


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("weights", [False, True])
def test_multiclass_metrics_match_sklearn(seed, weights):
    rng = np.random.default_rng(seed)
    n, k = 400, 4
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    w = rng.random(n) if weights else None
    got = m.multiclass_metrics(y, proba, sample_weight=w)
    pred = proba.argmax(axis=1)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred, sample_weight=w), abs=TOL)
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro", sample_weight=w), abs=TOL)
    assert got["f1_weighted"] == pytest.approx(
        skm.f1_score(y, pred, average="weighted", sample_weight=w), abs=TOL
    )
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba, sample_weight=w), abs=TOL)
    assert got["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=range(k)).tolist()


def test_multiclass_absent_class_follows_sklearn_label_set():
    # Class 2 is neither true nor predicted: sklearn leaves it out of the macro average.
    y = np.array([0, 1, 1, 0, 3])
    proba = np.array(
        [[0.7, 0.1, 0.1, 0.1], [0.1, 0.6, 0.1, 0.2], [0.6, 0.2, 0.1, 0.1], [0.4, 0.3, 0.1, 0.2], [0.1, 0.1, 0.1, 0.7]]
    )
    got = m.multiclass_metrics(y, proba)
    pred = proba.argmax(axis=1)
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=TOL)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=range(4)), abs=TOL)
    assert len(got["confusion_matrix"]) == 4


def test_multiclass_float32_rows_are_renormalised():
    proba = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], dtype=np.float32)
    got = m.multiclass_metrics([2, 0], proba)
    assert got["accuracy"] == 1.0


@pytest.mark.parametrize(
    ("y", "proba", "message"),
    [
        ([0, 3], [[0.5, 0.5], [0.5, 0.5]], r"class indices 0..1. Got values \[3.0\]"),
        ([0, 1], [0.5, 0.5], r"shape \(n, K\)"),
        ([0, 1], [[0.5, 0.9], [0.5, 0.5]], r"rows that sum to 1. Got row 0 summing to 1.4"),
        ([0, 0.5], [[0.5, 0.5], [0.5, 0.5]], r"class indices"),
    ],
)
def test_multiclass_errors(y, proba, message):
    with pytest.raises(ValueError, match=message):
        m.multiclass_metrics(y, proba)


# ------------------------------------------------------------------ regression


@pytest.mark.parametrize("weights", [False, True])
def test_regression_metrics_match_sklearn(weights):
    rng = np.random.default_rng(11)
    y = rng.normal(10, 3, 300)
    y[:5] = 0.0  # zeros: MAPE follows sklearn's eps-denominator definition
    yhat = y + rng.normal(0, 1, 300)
    w = rng.random(300) if weights else None
    got = m.regression_metrics(y, yhat, sample_weight=w)
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y, yhat, sample_weight=w), rel=TOL)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, yhat, sample_weight=w), rel=TOL)
    assert got["r2"] == pytest.approx(skm.r2_score(y, yhat, sample_weight=w), abs=TOL)
    assert got["mape"] == pytest.approx(
        skm.mean_absolute_percentage_error(y, yhat, sample_weight=w), rel=TOL
    )


def test_regression_r2_edge_cases():
    assert m.regression_metrics([2.0, 2.0], [2.0, 2.0])["r2"] == skm.r2_score([2.0, 2.0], [2.0, 2.0])
    assert m.regression_metrics([2.0, 2.0], [2.0, 3.0])["r2"] == skm.r2_score([2.0, 2.0], [2.0, 3.0])
    assert m.regression_metrics([2.0], [3.0])["r2"] is None


def test_regression_rejects_nan():
    with pytest.raises(ValueError, match=r"'y_pred' .* finite. Got nan at row 1"):
        m.regression_metrics([1.0, 2.0], [1.0, float("nan")])


# ------------------------------------------------------------------ dispatch, slices, names


def test_compute_metrics_dispatches():
    y, p, _ = _binary_data(2)
    assert m.compute_metrics("binary_classification", y, p) == m.binary_metrics(y, p, 0.5)
    assert m.compute_metrics("binary_classification", y, p, threshold=0.3) == m.binary_metrics(y, p, 0.3)
    assert m.compute_metrics("regression", [1.0, 2.0], [1.5, 2.0]) == m.regression_metrics([1.0, 2.0], [1.5, 2.0])
    for task in m.TASKS:
        assert set(m.METRIC_NAMES[task]) <= set(m.GREATER_IS_BETTER)


def test_compute_metrics_unknown_task_suggests():
    with pytest.raises(ValueError, match=r"Got 'binary' instead. Did you mean 'binary_classification'\?"):
        m.compute_metrics("binary", [0, 1], [0.1, 0.9])


def test_slice_metrics_per_value():
    y, p, _ = _binary_data(5, n=300)
    rng = np.random.default_rng(5)
    sex = rng.choice(np.array(["Female", "Male"], dtype=object), 300)
    sex[:3] = None
    age = rng.integers(0, 3, 300).astype(float)
    age[3] = np.nan
    got = m.slice_metrics("binary_classification", y, p, {"sex": sex, "age_bucket": age})
    assert list(got["sex"]) == ["<missing>", "Female", "Male"]
    assert list(got["age_bucket"]) == ["0.0", "1.0", "2.0", "<missing>"]
    for value in ("Female", "Male"):
        rows = sex == value
        expected = m.binary_metrics(y[rows], p[rows])
        assert got["sex"][value] == {**expected, "count": int(rows.sum())}
    assert sum(g["count"] for g in got["sex"].values()) == 300
    assert got["age_bucket"]["<missing>"]["count"] == 1
    assert got["age_bucket"]["<missing>"]["roc_auc"] is None  # one row: one class
    json.dumps(got)


def test_slice_metrics_degenerate_slice_and_weights():
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.4, 0.8, 0.6, 0.3, 0.9])
    w = np.array([1.0, 2.0, 1.0, 1.0, 0.5, 2.0])
    race = np.array(["a", "a", "b", "b", "b", "b"])
    got = m.slice_metrics("binary_classification", y, p, {"race": race}, sample_weight=w)
    assert got["race"]["a"]["roc_auc"] is None and got["race"]["a"]["count"] == 2
    assert got["race"]["b"]["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y[2:], p[2:], sample_weight=w[2:]), abs=TOL
    )


def test_slice_metrics_multiclass_and_regression():
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    got = m.slice_metrics("multiclass", [0, 1, 1], proba, {"g": [1, 1, 2]})
    assert got["g"]["1"]["accuracy"] == 1.0 and got["g"]["2"]["accuracy"] == 0.0
    got = m.slice_metrics("regression", [1.0, 2.0, 3.0], [1.0, 2.5, 3.0], {"g": np.array([True, True, False])})
    assert got["g"]["True"]["mae"] == 0.25 and got["g"]["False"]["r2"] is None


def test_slice_metrics_rejects_misaligned_column():
    with pytest.raises(ValueError, match=r"slice column 'sex' must have one value per row \(3\)"):
        m.slice_metrics("regression", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], {"sex": ["f", "m"]})


def test_slice_metrics_accepts_pyarrow_column():
    pa = pytest.importorskip("pyarrow")
    got = m.slice_metrics("regression", [1.0, 2.0, 3.0], [1.0, 2.0, 4.0], {"c": pa.array(["x", None, "x"])})
    assert got["c"]["x"]["count"] == 2 and got["c"]["<missing>"]["count"] == 1


def test_resolve_metric():
    assert m.resolve_metric("binary_classification", "auc") == "roc_auc"
    assert m.resolve_metric("binary_classification", "pr_auc") == "pr_auc"
    assert m.resolve_metric("regression", "rmse") == "rmse"
    with pytest.raises(ValueError, match=r"metric 'rsme' is not a regression metric.*Did you mean 'rmse'\?"):
        m.resolve_metric("regression", "rsme")
    with pytest.raises(ValueError, match="not a regression metric"):
        m.resolve_metric("regression", "auc")


def test_public_names():
    # Submodules (metrics, gates, report) are not re-exported names.
    assert set(ev.__all__) == {n for n in dir(ev) if not n.startswith("_") and not isinstance(getattr(ev, n), types.ModuleType)}
    assert set(ev.__all__) == set(m.__all__)


def test_import_does_not_pull_in_ray():
    code = "import sys, raypipe.evaluate; sys.exit('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
