"""Drift, data-quality and live-performance statistics (raypipe.monitor.drift) and windows.

References: PSI by hand on small inputs, scipy (ks_2samp, kstest, kstwo,
kstwobign, jensenshannon) and scikit-learn metrics on the same window.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon
from sklearn import metrics as skm

from raypipe.errors import SchemaError
from raypipe.features.stats import compute_stats
from raypipe.monitor.drift import (
    DEFAULT_EPS,
    DriftReport,
    ReferenceProfile,
    check_window,
    js_distance,
    ks_pvalue,
    ks_statistic,
    psi,
)
from raypipe.monitor.profile import BIN_LEVELS, SKETCH_LEVELS, build_profile, prediction_profile, profile_requests
from raypipe.monitor.window import Window, WindowBuffer

M = len(SKETCH_LEVELS) - 1  # sketch intervals


def make_profile(table: pa.Table, kinds: dict[str, str]) -> dict:
    return build_profile(kinds, compute_stats(profile_requests(kinds), table))


def hand_psi(ref: list[float], cur: list[float], eps: float = DEFAULT_EPS) -> float:
    return sum((max(c, eps) - max(r, eps)) * math.log(max(c, eps) / max(r, eps)) for r, c in zip(ref, cur))


@pytest.fixture(scope="module")
def ref_0_99() -> dict:
    """x = 0 .. 99: the deciles 9.9, 19.8, ... hold exactly ten training values per bin."""
    return make_profile(pa.table({"x": [float(i) for i in range(100)]}), {"x": "float"})


# ---------------------------------------------------------------- PSI


def test_psi_by_hand_on_buckets():
    assert psi([0.25, 0.25, 0.5], [10, 30, 60]) == pytest.approx(
        (0.1 - 0.25) * math.log(0.1 / 0.25) + (0.3 - 0.25) * math.log(0.3 / 0.25) + (0.6 - 0.5) * math.log(0.6 / 0.5),
        rel=1e-12,
    )
    # An empty bucket counts as eps, not as log(0).
    assert psi([0.5, 0.5], [0, 10]) == pytest.approx(
        (1e-4 - 0.5) * math.log(1e-4 / 0.5) + (1.0 - 0.5) * math.log(1.0 / 0.5), rel=1e-12
    )
    assert psi([0.5, 0.5], [0, 10], eps=1e-3) == pytest.approx(hand_psi([0.5, 0.5], [0, 1], eps=1e-3), rel=1e-12)
    assert psi([0.2, 0.8], [20, 80]) == 0.0


def test_psi_categorical_counts_unseen_categories_in_their_own_bucket():
    got = psi({"a": 0.6, "b": 0.4}, {"a": 5, "b": 3, "z": 2, "y": 1})
    assert got == pytest.approx(hand_psi([0.6, 0.4, 0.0], [5 / 11, 3 / 11, 3 / 11]), rel=1e-12)
    # Reference categories absent from the window count as empty buckets.
    assert psi({"a": 0.5, "b": 0.5}, {"a": 4}) == pytest.approx(hand_psi([0.5, 0.5, 0.0], [1.0, 0.0, 0.0]), rel=1e-12)


@pytest.mark.parametrize(
    "args, match",
    [
        (([0.5, 0.5], [1, 2, 3]), "must have 2 buckets"),
        (([0.5, 0.5], [0, 0]), "positive sum"),
        (([0.5, -0.5], [1, 1]), "finite values >= 0"),
        (([0.5, 0.5], {"a": 1}), "both be arrays or both be mappings"),
        (([], []), "non-empty 1-D"),
    ],
)
def test_psi_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        psi(*args)
    with pytest.raises(ValueError, match="'eps' parameter of psi must be > 0"):
        psi([1.0], [1], eps=0)


def test_numeric_psi_of_a_window_by_hand(ref_0_99):
    assert ref_0_99["columns"]["x"]["quantiles"] == pytest.approx([9.9 * i for i in range(1, 10)])
    window = pa.table({"x": [0.0, 5.0, 15.0, 95.0, 95.0, 95.0, 200.0, -3.0, float("nan"), None]})
    f = check_window(ref_0_99, window, method="psi", threshold=0.2).features["x"]
    # Right-closed decile bins: (-inf, 9.9] holds 0, 5, -3; (9.9, 19.8] holds 15; (89.1, inf) holds 95 x3, 200.
    cur = [3 / 8, 1 / 8] + [0.0] * 7 + [4 / 8]
    assert f.score == pytest.approx(hand_psi([0.1] * 10, cur), rel=1e-9)
    assert f.method == "psi" and f.drifting and f.threshold == 0.2
    assert f.n == 8
    assert f.null_rate == 2 / 10  # one Arrow null, one NaN
    assert f.out_of_range_rate == 2 / 8  # 200 and -3 lie outside the training [0, 99]
    assert f.unseen_categories == () and f.unseen_rate is None
    assert f.reference_null_rate == 0.0 and f.p_value is None


def test_tied_training_values_give_bins_their_real_share():
    # 70 % zeros: the deciles repeat 0, so the first bin holds ~70 % of the training rows, not 10 %.
    train = pa.table({"b": [0] * 700 + [1] * 300})
    profile = make_profile(train, {"b": "int"})
    same = check_window(profile, pa.table({"b": [0] * 70 + [1] * 30}), method="psi", threshold=0.2).features["b"]
    flipped = check_window(profile, pa.table({"b": [0] * 30 + [1] * 70}), method="psi", threshold=0.2).features["b"]
    assert same.score < 0.02 and not same.drifting
    assert flipped.score > 0.5 and flipped.drifting


# ---------------------------------------------------------------- JS


@given(
    st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=12).flatmap(
        lambda p: st.tuples(st.just(p), st.lists(st.floats(0, 100, allow_nan=False), min_size=len(p), max_size=len(p)))
    )
)
@settings(max_examples=200, deadline=None)
def test_js_distance_equals_scipy_base_2(pq):
    p, q = pq
    if sum(p) <= 0 or sum(q) <= 0:
        return
    expected = jensenshannon(p, q, base=2)
    got = js_distance(p, q)
    assert got == pytest.approx(expected, abs=1e-7)  # sqrt near 0 amplifies rounding
    assert 0.0 <= got <= 1.0 + 1e-12
    assert got == pytest.approx(js_distance(q, p), abs=1e-12)


def test_js_distance_by_hand():
    assert js_distance([1, 0], [0, 1]) == 1.0
    assert js_distance([1, 1], [2, 2]) == 0.0
    assert js_distance({"a": 1.0}, {"a": 1, "b": 1}) == pytest.approx(jensenshannon([1, 0], [1, 1], base=2), rel=1e-12)


def test_js_drift_of_a_window_equals_scipy(ref_0_99):
    window = pa.table({"x": [0.0, 5.0, 15.0, 95.0, 95.0, 95.0, 200.0, -3.0]})
    f = check_window(ref_0_99, window, method="js", threshold=0.1).features["x"]
    counts = [3, 1, 0, 0, 0, 0, 0, 0, 0, 4]
    assert f.method == "js" and f.score == pytest.approx(jensenshannon([0.1] * 10, counts, base=2), rel=1e-9)


# ---------------------------------------------------------------- KS


@pytest.fixture(scope="module")
def normal_ref():
    rng = np.random.default_rng(7)
    sample = rng.normal(size=20_000)
    return sample, make_profile(pa.table({"x": sample}), {"x": "float"})


@pytest.mark.parametrize("shift, scale", [(0.0, 1.0), (0.05, 1.0), (0.3, 1.0), (0.0, 1.4), (-1.0, 0.5)])
def test_ks_from_the_sketch_is_within_tolerance_of_scipy_ks_2samp(normal_ref, shift, scale):
    sample, profile = normal_ref
    window = np.random.default_rng(11).normal(shift, scale, size=2_000)
    f = check_window(profile, pa.table({"x": window}), method="ks", threshold=0.1).features["x"]
    full = sps.ks_2samp(window, sample)
    # Stated bound: 1/m for the linear sketch, 2/N for the interpolated quantiles.
    assert abs(f.score - full.statistic) <= 1 / M + 2 / sample.size
    assert f.method == "ks" and f.drifting == (f.score > 0.1)
    assert f.p_value == pytest.approx(ks_pvalue(f.score, 2_000, 20_000), abs=1e-15)


def test_ks_on_integer_data_within_tolerance_of_scipy():
    rng = np.random.default_rng(3)
    train = rng.poisson(3.0, size=10_000)
    profile = make_profile(pa.table({"k": train}), {"k": "int"})
    for lam in (3.0, 3.3, 5.0):
        window = rng.poisson(lam, size=3_000)
        f = check_window(profile, pa.table({"k": window}), method="ks", threshold=0.1).features["k"]
        assert abs(f.score - sps.ks_2samp(window, train).statistic) <= 1 / M + 2 / train.size


def test_ks_statistic_is_exact_against_scipy_kstest_on_the_same_cdf(normal_ref):
    sample, profile = normal_ref
    xs = np.asarray(profile["columns"]["x"]["sketch"])
    ps = np.asarray(profile["sketch_levels"])
    assert np.all(np.diff(xs) > 0)  # continuous: np.interp is the same piecewise-linear CDF
    window = np.random.default_rng(5).normal(0.2, 1.1, size=1_000)
    expected = sps.kstest(window, lambda x: np.interp(x, xs, ps, left=0.0, right=1.0)).statistic
    assert ks_statistic(window, xs, ps) == pytest.approx(expected, abs=1e-12)


def test_ks_is_exactly_one_for_disjoint_samples(normal_ref):
    sample, profile = normal_ref
    for window in (sample.max() + 1 + np.arange(50.0), sample.min() - 1 - np.arange(50.0)):
        f = check_window(profile, pa.table({"x": window}), method="ks", threshold=0.5).features["x"]
        assert f.score == 1.0 == sps.ks_2samp(window, sample).statistic


def test_ks_statistic_with_atoms_by_hand():
    # Reference: half its mass at 0, half uniform on (0, 1]: F(0) = 0.5 and F(0-) = 0.
    xs, ps = [0.0, 0.0, 1.0], [0.0, 0.5, 1.0]
    assert ks_statistic([0.0, 0.0, 0.0, 0.0], xs, ps) == 0.5  # G(0) = 1 against F(0) = 0.5
    assert ks_statistic([0.5, 0.5], xs, ps) == 0.75  # F(0.5) = 0.75 against G(0.5-) = 0
    assert ks_statistic([0.0, 0.5], xs, ps) == 0.25


def test_ks_statistic_rejects_a_bad_sketch():
    with pytest.raises(ValueError, match="quantile sketch"):
        ks_statistic([1.0], [1.0, 0.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="at least one non-NaN"):
        ks_statistic([float("nan")], [0.0, 1.0], [0.0, 1.0])


def test_ks_pvalue_matches_the_kolmogorov_distribution():
    for lam in np.linspace(0.05, 3.0, 60):
        # Without the size correction's share (n huge) it is scipy's kstwobign.
        d = lam / (math.sqrt(1e12) + 0.12 + 0.11 / math.sqrt(1e12))
        assert ks_pvalue(d, 10**12) == pytest.approx(sps.kstwobign.sf(lam), abs=1e-10)
    for n in (20, 100, 2_000):
        for d in np.linspace(0.001, 0.4, 80):
            tol = 0.02 if n < 2_000 else 0.003
            assert abs(ks_pvalue(d, n) - sps.kstwo.sf(d, n)) <= tol


def test_ks_pvalue_is_close_to_ks_2samp_asymptotic(normal_ref):
    sample, _ = normal_ref
    window = np.random.default_rng(2).normal(0.04, 1.0, size=2_000)
    res = sps.ks_2samp(window, sample, method="asymp")
    assert ks_pvalue(res.statistic, window.size, sample.size) == pytest.approx(res.pvalue, abs=0.005)


def test_profiles_without_a_sketch_fall_back_to_the_deciles(normal_ref):
    sample, profile = normal_ref
    old = json.loads(json.dumps(profile))
    del old["sketch_levels"]
    del old["columns"]["x"]["sketch"]
    window = np.random.default_rng(9).normal(0.3, 1.0, size=1_000)
    table = pa.table({"x": window})
    entry = old["columns"]["x"]
    xs = [entry["min"], *entry["quantiles"], entry["max"]]
    ps = [0.0, *BIN_LEVELS, 1.0]
    got = check_window(old, table, method="ks", threshold=0.1).features["x"].score
    assert got == pytest.approx(sps.kstest(window, lambda x: np.interp(x, xs, ps)).statistic, abs=1e-12)
    # PSI only needs the deciles: the same with and without the sketch on continuous data.
    assert check_window(old, table).features["x"].score == pytest.approx(check_window(profile, table).features["x"].score, rel=1e-9)


# ---------------------------------------------------------------- categorical, quality


@pytest.fixture(scope="module")
def cat_profile() -> dict:
    return make_profile(pa.table({"c": ["a"] * 60 + ["b"] * 40}), {"c": "category"})


def test_unseen_categories_are_counted_and_listed(cat_profile):
    window = pa.table({"c": ["a"] * 5 + ["b"] * 3 + ["z"] * 2 + ["y"] + [None]})
    f = check_window(cat_profile, window, method="psi", threshold=0.2).features["c"]
    assert f.unseen_categories == ("z", "y")  # most frequent first
    assert f.unseen_rate == 3 / 11
    assert f.null_rate == 1 / 12
    assert f.n == 11 and f.out_of_range_rate is None
    assert f.score == pytest.approx(hand_psi([0.6, 0.4, 0.0], [5 / 11, 3 / 11, 3 / 11]), rel=1e-12)
    assert f.score == pytest.approx(psi({"a": 0.6, "b": 0.4}, {"a": 5, "b": 3, "z": 2, "y": 1}), rel=1e-12)


def test_dictionary_and_chunked_categorical_columns(cat_profile):
    chunked = pa.chunked_array([pa.array(["a", "a", "b"]).dictionary_encode(), pa.array(["z", "a"]).dictionary_encode()])
    f = check_window(cat_profile, pa.table({"c": chunked}), method="js", threshold=0.2).features["c"]
    assert f.unseen_categories == ("z",) and f.unseen_rate == 1 / 5
    assert f.score == pytest.approx(jensenshannon([0.6, 0.4, 0.0], [3, 1, 1], base=2), rel=1e-12)


def test_ks_on_a_categorical_feature_is_the_total_variation_distance(cat_profile):
    f = check_window(cat_profile, pa.table({"c": ["a", "b", "b", "q"]}), method="ks", threshold=0.3).features["c"]
    assert f.method == "tvd"
    assert f.score == pytest.approx(0.5 * (abs(0.6 - 0.25) + abs(0.4 - 0.5) + abs(0.0 - 0.25)), rel=1e-12)
    assert f.drifting


def test_a_truncated_profile_scores_unlisted_values_in_other():
    profile = {"columns": {"c": {"type": "string", "count": 10, "null_rate": 0.0,
                                 "frequencies": {"a": 0.5, "b": 0.3, "__other__": 0.2}}}}
    f = check_window(profile, pa.table({"c": ["a"] * 5 + ["b"] * 3 + ["rare", "rare"]}), method="psi", threshold=0.2).features["c"]
    assert f.score == pytest.approx(0.0, abs=1e-15)  # "rare" lands in __other__, as at training time
    assert f.unseen_categories == ("rare",) and f.unseen_rate == 0.2


def test_null_and_out_of_range_rates_exact_on_int_and_bool_columns():
    train = pa.table({"i": list(range(10, 21)), "flag": [True, False] * 5 + [None]})
    profile = make_profile(train, {"i": "int", "flag": "bool"})
    assert profile["columns"]["flag"]["null_rate"] == 1 / 11
    window = pa.table({"i": pa.array([9, 10, 20, 21, None, 15, 100, None], pa.int64()),
                       "flag": pa.array([True, None, None, None, False, True, True, True])})
    r = check_window(profile, window)
    assert r.features["i"].null_rate == 2 / 8 and r.features["i"].out_of_range_rate == 3 / 6
    assert r.features["flag"].null_rate == 3 / 8 and r.features["flag"].out_of_range_rate == 0.0
    assert r.features["flag"].reference_null_rate == 1 / 11
    # Rows from Python with every value None arrive as Arrow's null type.
    r = check_window(profile, pa.Table.from_pylist([{"i": None, "flag": None}] * 4))
    assert r.features["i"].null_rate == 1.0 and r.features["i"].score is None and r.features["flag"].n == 0


def test_empty_window_and_unscorable_columns():
    train = pa.table({"x": [1.0, 2.0], "t": pa.array([1, 2], pa.timestamp("s")), "gone": [None, None]})
    profile = make_profile(train, {"x": "float", "t": "datetime", "gone": "float"})
    r = check_window(profile, pa.table({"x": pa.array([], pa.float64()), "t": pa.array([], pa.timestamp("s")),
                                        "gone": pa.array([], pa.float64())}))
    assert r.rows == 0 and all(f.score is None and not f.drifting and f.null_rate == 0.0 for f in r.features.values())
    r = check_window(profile, pa.table({"x": [1.5], "t": pa.array([None], pa.timestamp("s")), "gone": [3.0]}))
    assert r.features["t"].score is None and r.features["t"].null_rate == 1.0
    assert r.features["gone"].score is None  # no training value to compare with
    assert r.features["x"].score is not None


def test_features_selects_columns_and_reports_missing_ones(ref_0_99):
    two = make_profile(pa.table({"x": [1.0, 2.0, 3.0], "label": [0, 1, 0]}), {"x": "float", "label": "int"})
    r = check_window(two, pa.table({"x": [1.0]}))
    assert list(r.features) == ["x"] and r.missing_features == ()
    r = check_window(two, pa.table({"x": [1.0]}), features=["x", "label"])
    assert r.missing_features == ("label",)
    with pytest.raises(KeyError, match="'lable' is not in the profile.*Did you mean 'label'"):
        check_window(two, pa.table({"x": [1.0]}), features=["lable"])


def test_errors_name_where_expected_got(ref_0_99):
    with pytest.raises(ValueError, match="must be one of \\['psi', 'ks', 'js'\\]. Got 'pis' instead. Did you mean 'psi'"):
        check_window(ref_0_99, pa.table({"x": [1.0]}), method="pis")
    with pytest.raises(ValueError, match="'threshold' parameter of check_window must be a finite number > 0"):
        check_window(ref_0_99, pa.table({"x": [1.0]}), threshold=0)
    with pytest.raises(SchemaError, match="column 'x': expected a numeric column .*Got Arrow type string.*Hint"):
        check_window(ref_0_99, pa.table({"x": ["1.0"]}))
    with pytest.raises(ValueError, match="expected a reference profile with a 'columns' mapping"):
        check_window({"x": {}}, pa.table({"x": [1.0]}))
    with pytest.raises(ValueError, match="expected one value per window row \\(1\\)"):
        check_window(ref_0_99, pa.table({"x": [1.0]}), predictions=[0.1, 0.2])


def test_report_to_dict_is_json(ref_0_99, cat_profile):
    profile = {"columns": {**ref_0_99["columns"], **cat_profile["columns"]}, "sketch_levels": ref_0_99["sketch_levels"]}
    r = check_window(ReferenceProfile(profile), pa.table({"x": [150.0, None], "c": ["zz", "a"]}), method="ks", threshold=0.2)
    assert isinstance(r, DriftReport)
    data = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert data["drifting"] == ["x", "c"] and data["drift_detected"] is True
    assert data["features"]["c"]["unseen_categories"] == ["zz"]
    assert data["features"]["x"]["p_value"] is not None and data["prediction"] is None
    with pytest.raises(AttributeError):
        r.rows = 3  # frozen


# ---------------------------------------------------------------- predictions, live metrics


def test_prediction_drift_and_binary_live_metrics_equal_scikit_learn():
    rng = np.random.default_rng(0)
    ref_scores = rng.beta(2, 5, size=5_000)
    profile = {"columns": {}, "predictions": prediction_profile(ref_scores, "binary_classification"),
               "sketch_levels": list(SKETCH_LEVELS)}
    scores = rng.beta(2, 5, size=800)
    y = (rng.random(800) < scores).astype(float)
    y[rng.random(800) < 0.25] = np.nan  # labels not arrived yet
    r = check_window(profile, pa.table({"id": np.arange(800)}), predictions=scores, labels=y, method="psi", threshold=0.2)
    known = ~np.isnan(y)
    assert r.labelled == int(known.sum())
    assert r.live_metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(y[known], scores[known]), rel=1e-12)
    assert r.live_metrics["accuracy"] == pytest.approx(skm.accuracy_score(y[known], scores[known] >= 0.5), rel=1e-12)
    assert r.live_metrics["log_loss"] == pytest.approx(skm.log_loss(y[known], scores[known]), rel=1e-9)
    assert r.prediction is not None and not r.prediction.drifting and r.prediction.score < 0.05
    shifted = check_window(profile, pa.table({"id": np.arange(800)}), predictions=rng.beta(5, 2, size=800), threshold=0.2)
    assert shifted.prediction.drifting and shifted.drift_detected and shifted.live_metrics is None
    # A decision threshold other than 0.5 (the bundle's tuned one) changes accuracy as scikit-learn says.
    r = check_window(profile, pa.table({"id": np.arange(800)}), predictions=scores, labels=y, decision_threshold=0.3)
    assert r.live_metrics["accuracy"] == pytest.approx(skm.accuracy_score(y[known], scores[known] >= 0.3), rel=1e-12)


def test_regression_and_multiclass_live_metrics_equal_scikit_learn():
    rng = np.random.default_rng(1)
    y = rng.normal(10, 3, size=300)
    pred = y + rng.normal(0, 1, size=300)
    labels = pa.array([None if i % 7 == 0 else v for i, v in enumerate(y)])
    r = check_window({"columns": {}}, pa.table({"i": np.arange(300)}), predictions=pred, labels=labels, task="regression")
    known = np.arange(300) % 7 != 0
    assert r.labelled == known.sum()
    assert r.live_metrics["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y[known], pred[known])), rel=1e-12)
    assert r.live_metrics["mae"] == pytest.approx(skm.mean_absolute_error(y[known], pred[known]), rel=1e-12)

    proba = rng.dirichlet([1, 1, 1], size=300)
    cls = rng.integers(0, 3, size=300)
    profile = {"columns": {}, "predictions": prediction_profile(rng.dirichlet([1, 1, 1], size=2_000), "multiclass")}
    r = check_window(profile, pa.table({"i": np.arange(300)}), predictions=proba, labels=cls, method="js", threshold=0.2)
    assert r.live_metrics["accuracy"] == pytest.approx(skm.accuracy_score(cls, proba.argmax(axis=1)), rel=1e-12)
    assert r.live_metrics["f1_macro"] == pytest.approx(skm.f1_score(cls, proba.argmax(axis=1), average="macro"), rel=1e-12)
    assert r.prediction.method == "js" and r.prediction.score < 0.1  # same class mix


def test_labels_need_predictions_and_a_task():
    with pytest.raises(ValueError, match="need the model's predictions too"):
        check_window({"columns": {}}, pa.table({"i": [1]}), labels=[1])
    with pytest.raises(ValueError, match="need the model's task"):
        check_window({"columns": {}}, pa.table({"i": [1]}), labels=[1], predictions=[0.5])
    with pytest.raises(ValueError, match="Did you mean 'regression'"):
        check_window({"columns": {}}, pa.table({"i": [1]}), labels=[1], predictions=[0.5], task="regresion")


# ---------------------------------------------------------------- profile


def test_profile_stores_a_sketch_whose_deciles_are_the_bins(normal_ref):
    sample, profile = normal_ref
    entry = profile["columns"]["x"]
    assert len(entry["sketch"]) == len(profile["sketch_levels"]) == M + 1
    assert entry["sketch"][0] == entry["min"] and entry["sketch"][-1] == entry["max"]
    assert [entry["sketch"][SKETCH_LEVELS.index(q)] for q in BIN_LEVELS] == entry["quantiles"]
    assert entry["sketch"] == pytest.approx(np.quantile(sample, SKETCH_LEVELS).tolist(), rel=1e-12)
    # Statistics computed from an older request list (no sketch) still build a profile.
    kinds = {"x": "float"}
    old_requests = [r for r in profile_requests(kinds) if r.params != SKETCH_LEVELS]
    assert "sketch" not in build_profile(kinds, compute_stats(old_requests, pa.table({"x": [1.0, 2.0]})))["columns"]["x"]


# ---------------------------------------------------------------- properties


@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=2, max_size=20).flatmap(
        lambda r: st.tuples(st.just(r), st.lists(st.integers(0, 10**6), min_size=len(r), max_size=len(r)))
    )
)
@settings(max_examples=200, deadline=None)
def test_psi_is_non_negative_and_zero_for_identical_shares(rc):
    ref, counts = rc
    if sum(ref) <= 0 or sum(counts) <= 0:
        return
    assert psi(ref, counts) >= 0.0
    assert psi(ref, np.asarray(ref) * 7.0) == pytest.approx(0.0, abs=1e-12)


@given(seed=st.integers(0, 2**32 - 1), loc=st.floats(-100, 100), scale=st.floats(0.01, 100), n=st.integers(2, 3_000))
@settings(max_examples=40, deadline=None)
def test_identical_samples_do_not_drift(seed, loc, scale, n):
    sample = np.random.default_rng(seed).normal(loc, scale, size=3_000)
    profile = make_profile(pa.table({"x": sample}), {"x": "float"})
    table = pa.table({"x": sample})
    assert check_window(profile, table, method="psi").features["x"].score < 1e-3
    assert check_window(profile, table, method="js").features["x"].score < 0.01
    assert check_window(profile, table, method="ks").features["x"].score <= 1 / M + 2 / sample.size
    # And any window: every score in its range.
    window = pa.table({"x": sample[:n] * 1.5 + scale})
    for method in ("psi", "js", "ks"):
        score = check_window(profile, window, method=method).features["x"].score
        assert score >= 0 and (method == "psi" or score <= 1)


@given(
    ref=st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=300),
    win=st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=300),
    integers=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_ks_from_the_sketch_stays_within_the_stated_bound(ref, win, integers):
    ref_a, win_a = np.asarray(ref), np.asarray(win)
    if integers:  # heavy ties: atoms in both samples
        ref_a, win_a = np.round(ref_a / 100), np.round(win_a / 100)
    profile = make_profile(pa.table({"x": ref_a}), {"x": "float"})
    got = check_window(profile, pa.table({"x": win_a}), method="ks").features["x"].score
    # The statistic does not depend on the p-value method; asymp skips scipy's exact-p warning.
    assert abs(got - sps.ks_2samp(win_a, ref_a, method="asymp").statistic) <= 1 / M + 2 / ref_a.size + 1e-12


# ---------------------------------------------------------------- windows


def t(*values: int) -> pa.Table:
    return pa.table({"x": list(values)})


def test_window_by_rows_slices_batches_exactly():
    buf = WindowBuffer(rows=4)
    closed = buf.append(t(1, 2, 3)) + buf.append(t(4, 5, 6, 7, 8, 9, 10, 11, 12, 13)) + buf.append(t(14))
    assert [w.table.column("x").to_pylist() for w in closed] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    assert all(w.reason == "rows" and w.rows == 4 for w in closed)
    assert buf.pending_rows == 2
    last = buf.flush()
    assert last.table.column("x").to_pylist() == [13, 14] and last.reason == "flush"
    assert buf.flush() is None and buf.pending_rows == 0


def test_window_by_time_with_an_injected_clock():
    now = [100.0]
    buf = WindowBuffer(seconds=10, clock=lambda: now[0])
    assert buf.append(t(1, 2)) == [] and buf.poll() == []
    now[0] = 105.0
    assert buf.append(t(3)) == []
    now[0] = 110.0  # 10 s after the window's first row: the next append closes it first
    closed = buf.append(t(4))
    assert len(closed) == 1
    w = closed[0]
    assert isinstance(w, Window) and w.table.column("x").to_pylist() == [1, 2, 3]
    assert (w.opened_at, w.closed_at, w.reason) == (100.0, 110.0, "seconds")
    now[0] = 119.9
    assert buf.poll() == []
    now[0] = 125.0  # a quiet stream still closes its window on poll
    (w,) = buf.poll()
    assert w.table.column("x").to_pylist() == [4] and w.opened_at == 110.0
    now[0] = 500.0
    assert buf.poll() == []  # an empty window never closes


def test_window_by_rows_or_time_whichever_first_and_bounded_memory():
    now = [0.0]
    buf = WindowBuffer(rows=3, seconds=5, clock=lambda: now[0])
    assert [w.reason for w in buf.append(t(1, 2, 3, 4))] == ["rows"]
    now[0] = 6.0
    assert [(w.reason, w.rows) for w in buf.poll()] == [("seconds", 1)]
    capped = WindowBuffer(seconds=60, max_rows=5, clock=lambda: now[0])
    closed = capped.append(t(*range(12)))
    assert [(w.reason, w.rows) for w in closed] == [("max_rows", 5), ("max_rows", 5)] and capped.pending_rows == 2
    # Explicit times override the clock.
    timed = WindowBuffer(seconds=1, clock=lambda: 0.0)
    timed.append(t(1), now=10.0)
    assert [w.reason for w in timed.append(t(2), now=11.0)] == ["seconds"]


def test_window_buffer_checks_its_input():
    with pytest.raises(ValueError, match="expected rows and/or seconds"):
        WindowBuffer()
    with pytest.raises(ValueError, match="'rows' parameter of WindowBuffer must be an integer > 0"):
        WindowBuffer(rows=0)
    with pytest.raises(ValueError, match="'seconds' parameter of WindowBuffer must be a finite number > 0"):
        WindowBuffer(seconds=-1)
    buf = WindowBuffer(rows=10)
    buf.append(pa.table({"x": pa.array([None, None])}))  # an all-null column may gain a type later
    buf.append(pa.RecordBatch.from_pydict({"x": ["a"]}))
    assert buf.flush().table.column("x").to_pylist() == [None, None, "a"]
    buf.append(pa.table({"x": ["b"]}))  # the schema holds across windows: one stream
    with pytest.raises(ValueError, match="expected the schema of the earlier batches.*Hint"):
        buf.append(t(1))
    with pytest.raises(ValueError, match="expected a pyarrow.Table or RecordBatch"):
        buf.append({"x": [1]})


def test_windows_feed_check_window(ref_0_99):
    buf = WindowBuffer(rows=50)
    windows = [w for i in range(4) for w in buf.append(pa.table({"x": np.arange(40.0) + 30 * i}))]
    reports = [check_window(ref_0_99, w.table) for w in windows]
    assert [r.rows for r in reports] == [50, 50, 50]
    assert reports[-1].features["x"].out_of_range_rate > 0


def test_int_and_large_string_categories_match_the_profile_keys():
    profile = make_profile(pa.table({"k": [1, 2, 2, 3] * 25, "s": pa.array(["x", "y"] * 50, pa.large_string())}),
                           {"k": "category", "s": "string"})
    # Keys of numbers may read "1" or "1.0" (the local statistics count numbers as float64): matched by value.
    keys = list(profile["columns"]["k"]["frequencies"])
    window = pa.table({"k": [1, 2, 2, 3, 9], "s": pa.array(["x", "y", "x", "y", "w"], pa.large_string())})
    r = check_window(profile, window, method="psi", threshold=0.2)
    assert r.features["k"].unseen_categories == ("9",) and r.features["k"].unseen_rate == 1 / 5
    counts = {keys[0]: 2, keys[1]: 1, keys[2]: 1, "9": 1}  # keys by frequency: 2 first
    assert r.features["k"].score == pytest.approx(psi(profile["columns"]["k"]["frequencies"], counts), rel=1e-12)
    ints = {"columns": {"k": {"type": "category", "count": 4, "null_rate": 0.0, "frequencies": {"1": 0.5, "2": 0.5}}}}
    assert check_window(ints, pa.table({"k": [1.0, 2.0, 2.0]})).features["k"].unseen_rate == 0.0
    assert r.features["s"].unseen_categories == ("w",)


def test_a_prepared_profile_gives_the_same_report_as_the_dict(normal_ref, cat_profile):
    _, numeric = normal_ref
    profile = {**numeric, "columns": {**numeric["columns"], **cat_profile["columns"]}}
    window = pa.table({"x": np.random.default_rng(4).normal(0.1, 1, size=500), "c": ["a", "b", "q", None] * 125})
    prepared = ReferenceProfile(profile)
    assert prepared.columns == ("x", "c")
    for method in ("psi", "ks", "js"):
        assert check_window(prepared, window, method=method).to_dict() == check_window(profile, window, method=method).to_dict()
    # A sketch holding a None (an all-NaN slice of an old writer) falls back to the deciles.
    broken = json.loads(json.dumps(profile))
    broken["columns"]["x"]["sketch"][3] = None
    assert check_window(broken, window).features["x"].score == pytest.approx(check_window(profile, window).features["x"].score, rel=1e-9)


def test_the_statistics_modules_do_not_import_ray():
    import subprocess
    import sys

    code = "import sys, raypipe.monitor.drift, raypipe.monitor.window; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_drift_statistics_need_numpy_only():
    import subprocess
    import sys

    from raypipe.monitor import drift, statistics

    # The report module re-exports the statistics: one implementation, two import paths.
    assert (drift.psi, drift.js_distance, drift.ks_statistic, drift.ks_pvalue, drift.DEFAULT_EPS) == (
        statistics.psi, statistics.js_distance, statistics.ks_statistic, statistics.ks_pvalue, statistics.DEFAULT_EPS,
    )
    code = (
        "import sys, raypipe.monitor.statistics, raypipe.evaluate.metrics; "
        "print(sorted(m for m in ('ray', 'pyarrow', 'xgboost') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
