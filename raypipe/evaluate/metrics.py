"""Model quality metrics in pure numpy, identical to scikit-learn's definitions.

The evaluate stage, the gates, the run report and the live monitor all score
models with these functions, so batch and online numbers agree.  Each result is
a ``dict`` of plain Python ``float``/``int``/``None``/``list`` values, ready for
``json.dumps``.

Conventions
-----------
* Binary classification: ``y_true`` holds 0/1 (or False/True); ``proba`` is
  the probability of class 1.  A row is predicted positive when
  ``proba >= threshold``.
* Multiclass: ``y_true`` holds class indices ``0 .. K-1``; ``proba`` has shape
  ``(n, K)`` with rows that sum to 1.
* Regression: ``y_pred`` holds the predictions.
* ``sample_weight`` (optional, non-negative) weights every rate and average,
  as in scikit-learn.  Confusion matrices always count rows (unweighted ints),
  because a report reader wants to know how many rows were misclassified.
* AUCs are undefined when ``y_true`` holds a single class (a small slice, a
  quiet monitoring window): ``roc_auc`` and ``pr_auc`` are then ``None``, never
  an exception, so one degenerate slice cannot fail a whole evaluation.
  Everything else that is malformed (lengths, labels, probabilities outside
  [0, 1], NaN) raises ``ValueError`` quoting the bad value.

Example
-------
>>> import numpy as np
>>> m = binary_metrics(np.array([0, 1, 1, 0]), np.array([0.2, 0.9, 0.4, 0.6]))
>>> m["roc_auc"], m["confusion_matrix"]
(0.75, [[1, 1], [1, 1]])
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from raypipe.errors import did_you_mean

__all__ = [
    "TASKS",
    "METRIC_NAMES",
    "GREATER_IS_BETTER",
    "MISSING_SLICE_KEY",
    "binary_metrics",
    "best_threshold",
    "multiclass_metrics",
    "regression_metrics",
    "roc_curve_points",
    "pr_curve_points",
    "compute_metrics",
    "slice_metrics",
    "resolve_metric",
]

TASKS: tuple[str, ...] = ("binary_classification", "multiclass", "regression")
"""The task names of ``model.task`` that :func:`compute_metrics` understands."""

METRIC_NAMES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "binary_classification": (
            "accuracy",
            "precision",
            "recall",
            "f1",
            "roc_auc",
            "pr_auc",
            "log_loss",
        ),
        "multiclass": ("accuracy", "f1_macro", "f1_weighted", "log_loss"),
        "regression": ("rmse", "mae", "r2", "mape"),
    }
)
"""Scalar quality metrics each task produces (what a gate may reference)."""

GREATER_IS_BETTER: Mapping[str, bool] = MappingProxyType(
    {
        "accuracy": True,
        "precision": True,
        "recall": True,
        "f1": True,
        "roc_auc": True,
        "pr_auc": True,
        "log_loss": False,
        "f1_macro": True,
        "f1_weighted": True,
        "rmse": False,
        "mae": False,
        "r2": True,
        "mape": False,
    }
)
"""Direction of every scalar metric: ``True`` when a larger value is a better model.

>>> GREATER_IS_BETTER["roc_auc"], GREATER_IS_BETTER["rmse"]
(True, False)
"""

# Names users write in configs (XGBoost's eval_metric names, sklearn's names).
_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "auc": "roc_auc",
        "roc_auc_score": "roc_auc",
        "aucpr": "pr_auc",
        "average_precision": "pr_auc",
        "logloss": "log_loss",
        "mlogloss": "log_loss",
        "f1_score": "f1",
        "acc": "accuracy",
        "rmse_score": "rmse",
        "mean_absolute_error": "mae",
        "mean_absolute_percentage_error": "mape",
        "r2_score": "r2",
    }
)

MISSING_SLICE_KEY = "<missing>"
"""Key under which :func:`slice_metrics` groups rows whose slice value is None or NaN."""

_MAX_CURVE_POINTS = 200
_BEST_THRESHOLD_METRICS = ("f1", "accuracy", "balanced_accuracy")


# ---------------------------------------------------------------- validation


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    hint = did_you_mean(word, choices)
    if hint:
        return hint
    # difflib misses truncations such as 'binary' for 'binary_classification'.
    prefixed = [c for c in choices if c.startswith(str(word).lower())] if word else []
    return f" Did you mean '{prefixed[0]}'?" if len(prefixed) == 1 else ""


def _fail(func: str, param: str, expected: str, got: Any) -> ValueError:
    return ValueError(f"The '{param}' parameter of {func} must be {expected}. Got {got} instead.")


def _preview(values: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in values[:limit])
    more = f", ... ({values.size} distinct)" if values.size > limit else ""
    return f"[{shown}{more}]"


def _as_1d(func: str, param: str, values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise _fail(func, param, "a 1-D array", f"an array of shape {arr.shape}")
    if arr.size == 0:
        raise _fail(func, param, "non-empty", "an empty array")
    return arr


def _as_float(func: str, param: str, values: Any) -> np.ndarray:
    arr = _as_1d(func, param, values)
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise _fail(func, param, "numeric", f"dtype {arr.dtype}") from exc
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise _fail(func, param, "finite", f"{arr[bad]} at row {bad}")
    return arr


def _check_length(func: str, param: str, arr: np.ndarray, n: int) -> None:
    if arr.shape[0] != n:
        raise _fail(func, param, f"of length {n} (the length of y_true)", f"length {arr.shape[0]}")


def _binary_labels(func: str, y_true: Any) -> np.ndarray:
    y = _as_float(func, "y_true", y_true)
    bad = (y != 0) & (y != 1)
    if bad.any():
        raise _fail(func, "y_true", "0/1 labels (or False/True)", f"values {_preview(np.unique(y[bad]))}")
    return y


def _probabilities(func: str, proba: Any, n: int) -> np.ndarray:
    arr = np.asarray(proba)
    if arr.ndim == 2 and arr.shape[1] == 2:
        # A (n, 2) predict_proba output: column 1 is the positive class.
        arr = arr[:, 1]
    p = _as_float(func, "proba", arr)
    _check_length(func, "proba", p, n)
    if p.min() < 0 or p.max() > 1:
        bad = p[(p < 0) | (p > 1)]
        raise _fail(func, "proba", "probabilities in [0, 1]", f"values {_preview(np.unique(bad))}")
    return p


def _weights(func: str, sample_weight: Any, n: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = _as_float(func, "sample_weight", sample_weight)
    _check_length(func, "sample_weight", w, n)
    if w.min() < 0:
        raise _fail(func, "sample_weight", "non-negative", f"{w.min()}")
    if w.sum() <= 0:
        raise _fail(func, "sample_weight", "of positive sum", "weights that sum to 0")
    return w


def _average(values: np.ndarray, w: np.ndarray | None) -> float:
    return float(np.average(values, weights=w))


def _safe_div(num: float, den: float) -> float:
    # scikit-learn's zero_division default: an undefined ratio counts as 0.
    return float(num / den) if den != 0 else 0.0


# ---------------------------------------------------------------- ranking core


def _ranking_curve(
    y: np.ndarray, score: np.ndarray, w: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (fps, tps, thresholds) at each distinct score, highest first.

    Same algorithm as scikit-learn's ``confusion_matrix_at_thresholds``: tied
    scores form one threshold, so ties are handled identically in every curve
    and area computed from it.
    """
    if w is not None:
        # Zero-weight rows must not create thresholds of their own (sklearn drops them).
        keep = w != 0
        y, score, w = y[keep], score[keep], w[keep]
    order = np.argsort(score, kind="stable")[::-1]
    score, y = score[order], y[order]
    distinct = np.flatnonzero(np.diff(score))
    idx = np.r_[distinct, y.size - 1]
    if w is None:
        tps = np.cumsum(y)[idx]
        fps = 1 + idx - tps
    else:
        w = w[order]
        tps = np.cumsum(y * w)[idx]
        fps = np.cumsum((1 - y) * w)[idx]
    return fps.astype(np.float64), tps.astype(np.float64), score[idx]


def _roc(fps: np.ndarray, tps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fpr = np.r_[0.0, fps] / fps[-1]
    tpr = np.r_[0.0, tps] / tps[-1]
    return fpr, tpr


def _average_precision(fps: np.ndarray, tps: np.ndarray) -> float:
    # Step-function integral: sum over thresholds of (R_k - R_{k-1}) * P_k.
    precision = np.divide(tps, tps + fps, out=np.zeros_like(tps), where=(tps + fps) != 0)
    recall = tps / tps[-1]
    return float(max(0.0, np.sum(np.diff(np.r_[0.0, recall]) * precision)))


def _both_classes(y: np.ndarray, w: np.ndarray | None) -> bool:
    if w is not None:
        y = y[w != 0]
    return bool(y.size) and bool((y == 1).any()) and bool((y == 0).any())


def _downsample(n: int, max_points: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    # Evenly spaced indices that always keep the first and last point.
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))


def _threshold_list(values: np.ndarray) -> list[float | None]:
    # +inf marks a synthetic curve end; JSON has no Infinity, so it becomes None.
    return [None if not np.isfinite(v) else float(v) for v in values]


# ---------------------------------------------------------------- binary


def binary_metrics(
    y_true: Any,
    proba: Any,
    threshold: float = 0.5,
    sample_weight: Any = None,
) -> dict[str, Any]:
    """Quality metrics of a binary classifier.

    Args:
        y_true: 0/1 (or False/True) labels, shape ``(n,)``.
        proba: probability of class 1, shape ``(n,)`` (or ``(n, 2)``, column 1 used).
        threshold: a row is predicted positive when ``proba >= threshold``.
        sample_weight: optional non-negative row weights.

    Returns:
        ``accuracy``, ``precision``, ``recall``, ``f1`` (0.0 when undefined, as
        scikit-learn's ``zero_division`` default), ``roc_auc``, ``pr_auc``
        (average precision; both ``None`` when ``y_true`` holds one class),
        ``log_loss`` (probabilities clipped to ``[eps, 1 - eps]``),
        ``confusion_matrix`` (``[[tn, fp], [fn, tp]]``, row counts),
        ``threshold`` and ``positive_rate`` (the share of rows predicted positive).

    Raises:
        ValueError: empty or mismatched inputs, labels other than 0/1,
            probabilities outside [0, 1], NaN, negative weights.

    >>> binary_metrics([0, 1, 1], [0.1, 0.8, 0.3])["recall"]
    0.5
    """
    func = "binary_metrics"
    y = _binary_labels(func, y_true)
    p = _probabilities(func, proba, y.size)
    w = _weights(func, sample_weight, y.size)
    threshold = float(threshold)
    if not np.isfinite(threshold):
        raise _fail(func, "threshold", "a finite number", threshold)

    pred = (p >= threshold).astype(np.float64)
    ww = np.ones_like(y) if w is None else w
    tp = float(np.sum(ww * (pred == 1) * (y == 1)))
    fp = float(np.sum(ww * (pred == 1) * (y == 0)))
    fn = float(np.sum(ww * (pred == 0) * (y == 1)))
    counts = [
        [int(np.sum((pred == 0) & (y == 0))), int(np.sum((pred == 1) & (y == 0)))],
        [int(np.sum((pred == 0) & (y == 1))), int(np.sum((pred == 1) & (y == 1)))],
    ]

    roc_auc = pr_auc = None
    if _both_classes(y, w):
        fps, tps, _ = _ranking_curve(y, p, w)
        fpr, tpr = _roc(fps, tps)
        roc_auc = float(np.trapezoid(tpr, fpr))
        pr_auc = _average_precision(fps, tps)

    return {
        "accuracy": _average((pred == y).astype(np.float64), w),
        "precision": _safe_div(tp, tp + fp),
        "recall": _safe_div(tp, tp + fn),
        "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "log_loss": _binary_log_loss(y, p, w),
        "confusion_matrix": counts,
        "threshold": threshold,
        "positive_rate": _average(pred, w),
    }


def _binary_log_loss(y: np.ndarray, p: np.ndarray, w: np.ndarray | None) -> float:
    eps = np.finfo(np.float64).eps
    p1 = np.clip(p, eps, 1 - eps)
    p0 = np.clip(1 - p, eps, 1 - eps)
    return _average(-(y * np.log(p1) + (1 - y) * np.log(p0)), w)


def best_threshold(
    y_true: Any,
    proba: Any,
    metric: str = "f1",
    sample_weight: Any = None,
) -> float:
    """The decision threshold that maximises ``metric`` on (validation) data.

    Every distinct score is a candidate (a row is positive when
    ``proba >= threshold``); all candidates are scored at once from cumulative
    counts over the sorted scores, in O(n log n).  Ties between candidates go
    to the highest threshold.  When predicting no positive at all wins (possible
    for ``accuracy``), the result is the smallest float above every score.

    Args:
        y_true: 0/1 labels.
        proba: probability of class 1.
        metric: ``"f1"``, ``"accuracy"`` or ``"balanced_accuracy"``.
        sample_weight: optional non-negative row weights.

    Raises:
        ValueError: unknown metric, ``y_true`` with a single class, or the
            input errors of :func:`binary_metrics`.

    >>> best_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.35
    """
    func = "best_threshold"
    if metric not in _BEST_THRESHOLD_METRICS:
        raise ValueError(
            f"The 'metric' parameter of {func} must be one of {list(_BEST_THRESHOLD_METRICS)}. "
            f"Got {metric!r} instead.{_suggest(metric, _BEST_THRESHOLD_METRICS)}"
        )
    y = _binary_labels(func, y_true)
    p = _probabilities(func, proba, y.size)
    w = _weights(func, sample_weight, y.size)
    if not _both_classes(y, w):
        raise ValueError(
            f"{func}: y_true must hold both classes 0 and 1 to tune a threshold. "
            f"Got only {_preview(np.unique(y))}; use a larger validation split."
        )
    fps, tps, thresholds = _ranking_curve(y, p, w)
    # Candidate 0 predicts nothing positive; candidate k >= 1 uses thresholds[k-1].
    fps = np.r_[0.0, fps]
    tps = np.r_[0.0, tps]
    pos, neg = tps[-1], fps[-1]
    fns, tns = pos - tps, neg - fps
    if metric == "f1":
        den = 2 * tps + fps + fns
        score = np.divide(2 * tps, den, out=np.zeros_like(den), where=den != 0)
    elif metric == "accuracy":
        score = (tps + tns) / (pos + neg)
    else:
        score = 0.5 * (tps / pos + tns / neg)
    best = int(np.argmax(score))
    if best == 0:
        return float(np.nextafter(thresholds[0], np.inf))
    return float(thresholds[best - 1])


def roc_curve_points(
    y_true: Any,
    proba: Any,
    sample_weight: Any = None,
    max_points: int = _MAX_CURVE_POINTS,
) -> dict[str, Any]:
    """ROC curve for a plot: ``{"fpr", "tpr", "thresholds", "auc"}``, at most ``max_points`` points.

    The points are scikit-learn's ``roc_curve`` (collinear points dropped),
    evenly thinned when there are more than ``max_points``; the first and last
    point are always kept.  The synthetic first point (0, 0) has threshold ``None``.

    Raises:
        ValueError: ``y_true`` holds a single class (the curve is undefined),
            or the input errors of :func:`binary_metrics`.

    >>> roc_curve_points([0, 1], [0.2, 0.7])["tpr"]
    [0.0, 1.0, 1.0]
    """
    func = "roc_curve_points"
    y, p, w = _curve_inputs(func, y_true, proba, sample_weight)
    fps, tps, thresholds = _ranking_curve(y, p, w)
    full_fpr, full_tpr = _roc(fps, tps)
    auc = float(np.trapezoid(full_tpr, full_fpr))
    if fps.size > 2:
        # Keep corners only: a point is dropped when it is collinear with both neighbours.
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fpr, tpr = _roc(fps, tps)
    thresholds = np.r_[np.inf, thresholds]
    idx = _downsample(fpr.size, max_points)
    return {
        "fpr": fpr[idx].tolist(),
        "tpr": tpr[idx].tolist(),
        "thresholds": _threshold_list(thresholds[idx]),
        "auc": auc,
    }


def pr_curve_points(
    y_true: Any,
    proba: Any,
    sample_weight: Any = None,
    max_points: int = _MAX_CURVE_POINTS,
) -> dict[str, Any]:
    """Precision-recall curve for a plot: ``{"recall", "precision", "thresholds", "average_precision"}``.

    Points run from the highest threshold to the lowest (recall increasing),
    starting at scikit-learn's synthetic point (recall 0, precision 1,
    threshold ``None``); thinned to at most ``max_points`` like
    :func:`roc_curve_points`.

    Raises:
        ValueError: ``y_true`` holds a single class, or the input errors of
            :func:`binary_metrics`.

    >>> pr_curve_points([0, 1], [0.2, 0.7])["precision"]
    [1.0, 1.0, 0.5]
    """
    func = "pr_curve_points"
    y, p, w = _curve_inputs(func, y_true, proba, sample_weight)
    fps, tps, thresholds = _ranking_curve(y, p, w)
    ap = _average_precision(fps, tps)
    precision = np.r_[1.0, np.divide(tps, tps + fps, out=np.zeros_like(tps), where=(tps + fps) != 0)]
    recall = np.r_[0.0, tps / tps[-1]]
    thresholds = np.r_[np.inf, thresholds]
    idx = _downsample(recall.size, max_points)
    return {
        "recall": recall[idx].tolist(),
        "precision": precision[idx].tolist(),
        "thresholds": _threshold_list(thresholds[idx]),
        "average_precision": ap,
    }


def _curve_inputs(
    func: str, y_true: Any, proba: Any, sample_weight: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    y = _binary_labels(func, y_true)
    p = _probabilities(func, proba, y.size)
    w = _weights(func, sample_weight, y.size)
    if not _both_classes(y, w):
        raise ValueError(
            f"{func}: y_true must hold both classes 0 and 1 to draw a curve. "
            f"Got only {_preview(np.unique(y))}."
        )
    return y, p, w


# ---------------------------------------------------------------- multiclass


def multiclass_metrics(y_true: Any, proba: Any, sample_weight: Any = None) -> dict[str, Any]:
    """Quality metrics of a multiclass classifier.

    Args:
        y_true: class indices ``0 .. K-1``, shape ``(n,)``.
        proba: class probabilities, shape ``(n, K)``; rows must sum to 1
            (within 1e-3, then renormalised, which absorbs float32 rounding).
        sample_weight: optional non-negative row weights.

    Returns:
        ``accuracy`` (argmax prediction), ``f1_macro`` and ``f1_weighted``
        (over the classes present in ``y_true`` or the predictions, as
        scikit-learn's default ``labels``), ``log_loss`` and
        ``confusion_matrix`` (K x K row counts, rows = true class).

    Raises:
        ValueError: shapes, labels outside ``0 .. K-1``, invalid probabilities.

    >>> multiclass_metrics([0, 2], [[0.8, 0.1, 0.1], [0.2, 0.2, 0.6]])["accuracy"]
    1.0
    """
    func = "multiclass_metrics"
    y = _as_float(func, "y_true", y_true)
    P = np.asarray(proba)
    if P.ndim != 2 or P.shape[1] < 2:
        raise _fail(func, "proba", "a 2-D array of shape (n, K) with K >= 2", f"shape {P.shape}")
    try:
        P = P.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise _fail(func, "proba", "numeric", f"dtype {P.dtype}") from exc
    _check_length(func, "proba", P, y.size)
    k = P.shape[1]
    bad = (y != np.round(y)) | (y < 0) | (y >= k)
    if bad.any():
        raise _fail(func, "y_true", f"class indices 0..{k - 1}", f"values {_preview(np.unique(y[bad]))}")
    if not np.all(np.isfinite(P)) or P.min() < 0 or P.max() > 1:
        raise _fail(func, "proba", "finite probabilities in [0, 1]", f"values from {P.min()} to {P.max()}")
    sums = P.sum(axis=1)
    if np.any(np.abs(sums - 1) > 1e-3):
        row = int(np.argmax(np.abs(sums - 1)))
        raise _fail(func, "proba", "rows that sum to 1", f"row {row} summing to {sums[row]}")
    P = P / sums[:, None]
    w = _weights(func, sample_weight, y.size)

    yi = y.astype(np.int64)
    pred = np.argmax(P, axis=1)
    ww = np.ones(y.size) if w is None else w
    tp = np.bincount(yi, weights=ww * (pred == yi), minlength=k)
    support = np.bincount(yi, weights=ww, minlength=k)
    predicted = np.bincount(pred, weights=ww, minlength=k)
    present = np.zeros(k, dtype=bool)
    present[np.unique(yi)] = True
    present[np.unique(pred)] = True
    den = support + predicted
    f1 = np.divide(2 * tp, den, out=np.zeros(k), where=den != 0)[present]
    eps = np.finfo(np.float64).eps
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (yi, pred), 1)
    sup = support[present]
    return {
        "accuracy": _average((pred == yi).astype(np.float64), w),
        "f1_macro": float(np.mean(f1)),
        "f1_weighted": float(np.sum(f1 * sup) / sup.sum()) if sup.sum() > 0 else 0.0,
        "log_loss": _average(-np.log(np.clip(P[np.arange(y.size), yi], eps, 1 - eps)), w),
        "confusion_matrix": cm.tolist(),
    }


# ---------------------------------------------------------------- regression


def regression_metrics(y_true: Any, y_pred: Any, sample_weight: Any = None) -> dict[str, Any]:
    """Quality metrics of a regressor.

    Args:
        y_true: targets, shape ``(n,)``.
        y_pred: predictions, shape ``(n,)``.
        sample_weight: optional non-negative row weights.

    Returns:
        ``rmse``, ``mae``, ``r2`` and ``mape``.  ``mape`` is scikit-learn's
        ``mean_absolute_percentage_error``: a fraction (0.1 is 10 %), each
        row's error divided by ``max(|y_true|, eps)``, so rows where
        ``y_true == 0`` produce huge values rather than being skipped.
        ``r2`` is 1.0 for a perfect fit of a constant target, 0.0 for an
        imperfect one, and ``None`` for fewer than two rows (undefined).

    Raises:
        ValueError: empty or mismatched inputs, NaN or infinite values.

    >>> regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])["mae"]
    0.6666666666666666
    """
    func = "regression_metrics"
    y = _as_float(func, "y_true", y_true)
    yhat = _as_float(func, "y_pred", y_pred)
    _check_length(func, "y_pred", yhat, y.size)
    w = _weights(func, sample_weight, y.size)
    err = y - yhat
    r2: float | None = None
    if y.size >= 2:
        num = float(np.sum((err**2) * (1 if w is None else w)))
        den = float(np.sum(((y - np.average(y, weights=w)) ** 2) * (1 if w is None else w)))
        if den != 0:
            r2 = 1 - num / den
        else:
            r2 = 1.0 if num == 0 else 0.0
    eps = np.finfo(np.float64).eps
    return {
        "rmse": float(np.sqrt(_average(err**2, w))),
        "mae": _average(np.abs(err), w),
        "r2": r2,
        "mape": _average(np.abs(err) / np.maximum(np.abs(y), eps), w),
    }


# ---------------------------------------------------------------- dispatch


def _check_task(func: str, task: str) -> None:
    if task not in TASKS:
        raise ValueError(
            f"The 'task' parameter of {func} must be one of {list(TASKS)}. "
            f"Got {task!r} instead.{_suggest(task, TASKS)}"
        )


def compute_metrics(
    task: str,
    y_true: Any,
    output: Any,
    threshold: float | None = None,
    sample_weight: Any = None,
) -> dict[str, Any]:
    """Metrics of ``task`` for the model ``output`` (what the booster's predict returns).

    Args:
        task: ``"binary_classification"``, ``"multiclass"`` or ``"regression"``.
        y_true: labels or targets.
        output: class-1 probability (binary), ``(n, K)`` probabilities
            (multiclass) or predictions (regression).
        threshold: binary decision threshold; ``None`` means 0.5.  Ignored
            for the other tasks.
        sample_weight: optional non-negative row weights.

    Raises:
        ValueError: unknown task, or the input errors of the task's function.

    >>> compute_metrics("regression", [1.0, 3.0], [2.0, 3.0])["rmse"]
    0.7071067811865476
    """
    _check_task("compute_metrics", task)
    if task == "binary_classification":
        return binary_metrics(y_true, output, 0.5 if threshold is None else threshold, sample_weight)
    if task == "multiclass":
        return multiclass_metrics(y_true, output, sample_weight)
    return regression_metrics(y_true, output, sample_weight)


def slice_metrics(
    task: str,
    y_true: Any,
    output: Any,
    slice_values: Mapping[str, Any],
    threshold: float | None = None,
    sample_weight: Any = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Metrics per value of each slice column (fairness and robustness checks).

    Args:
        task, y_true, output, threshold, sample_weight: as :func:`compute_metrics`.
        slice_values: column name -> that column's value for every row
            (``(n,)`` array-like, any dtype).

    Returns:
        ``{column: {value: metrics}}``.  Values are keyed by ``str(value)``
        (JSON object keys are strings), sorted; None/NaN rows are grouped under
        :data:`MISSING_SLICE_KEY`.  Each metrics dict has the task's metrics
        plus ``"count"`` (rows in the slice).  A slice with a single class gets
        ``None`` AUCs instead of an error.

    Raises:
        ValueError: unknown task, a slice column whose length differs from
            ``y_true``, or the input errors of the task's function.

    >>> s = slice_metrics("binary_classification", [0, 1, 1], [0.2, 0.9, 0.3],
    ...                   {"sex": ["f", "m", "m"]})
    >>> s["sex"]["f"]["count"], s["sex"]["f"]["roc_auc"]
    (1, None)
    """
    func = "slice_metrics"
    _check_task(func, task)
    y = _as_1d(func, "y_true", y_true)
    out = np.asarray(output)
    if out.shape[:1] != y.shape:
        raise _fail(func, "output", f"of length {y.size} (the length of y_true)", f"shape {out.shape}")
    w = None if sample_weight is None else _as_1d(func, "sample_weight", sample_weight)
    # Validate the whole input once, so a bad row is reported for the full data set.
    compute_metrics(task, y, out, threshold, w)
    w = None if w is None else w.astype(np.float64)

    result: dict[str, dict[str, dict[str, Any]]] = {}
    for column, values in slice_values.items():
        keys = _slice_keys(func, column, values, y.size)
        groups: dict[str, dict[str, Any]] = {}
        for key in sorted(set(keys.tolist())):
            rows = keys == key
            sw = None if w is None else w[rows]
            if sw is not None and sw.sum() <= 0:
                metrics: dict[str, Any] = {name: None for name in METRIC_NAMES[task]}
            else:
                metrics = compute_metrics(task, y[rows], out[rows], threshold, sw)
            metrics["count"] = int(rows.sum())
            groups[key] = metrics
        result[str(column)] = groups
    return result


def _slice_keys(func: str, column: str, values: Any, n: int) -> np.ndarray:
    if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
        try:  # pyarrow arrays with nulls need zero_copy_only=False
            values = values.to_numpy(zero_copy_only=False)
        except TypeError:
            values = values.to_numpy()
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(
            f"{func}: slice column {column!r} must have one value per row ({n}). "
            f"Got shape {arr.shape} instead."
        )
    if arr.dtype.kind == "f":
        keys = arr.astype(str).astype(object)
        keys[np.isnan(arr)] = MISSING_SLICE_KEY
        return keys
    if arr.dtype.kind != "O":
        return arr.astype(str).astype(object)
    return np.array(
        [
            MISSING_SLICE_KEY if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
            for v in arr
        ],
        dtype=object,
    )


def resolve_metric(task: str, name: str) -> str:
    """The canonical name of metric ``name`` for ``task`` (accepts XGBoost/sklearn spellings).

    Use it to check ``evaluate.primary_metric`` and gate keys before a run.

    Raises:
        ValueError: ``name`` is not a metric of ``task``; the message lists
            the valid names and suggests the closest one.

    >>> resolve_metric("binary_classification", "auc")
    'roc_auc'
    """
    _check_task("resolve_metric", task)
    canonical = _ALIASES.get(name, name)
    valid = METRIC_NAMES[task]
    if canonical not in valid:
        raise ValueError(
            f"metric {name!r} is not a {task} metric; expected one of {list(valid)}."
            f"{_suggest(name, [*valid, *(a for a, c in _ALIASES.items() if c in valid)])}"
        )
    return canonical
