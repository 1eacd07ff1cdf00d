"""Drift, data-quality and live-performance report of one monitoring window.

Pure (numpy and pyarrow, no Ray): the monitor actors call :func:`check_window`
on each closed window (see :mod:`raypipe.monitor.window`), and the same code
runs in unit tests and notebooks. The reference is the training profile of
:mod:`raypipe.monitor.profile`, stored in every model bundle; it is small
(deciles, a 501-point quantile sketch, category frequencies), so a check costs
O(window), never O(training rows).

Statistics (``method`` of :func:`check_window`, ``monitor.drift.method`` in the config):

=======  ==============================================  =============================================
method   numeric feature                                 categorical feature
=======  ==============================================  =============================================
``psi``  population stability index on the reference's   PSI on the category frequencies; categories
         decile bins (right-closed), zero shares         the reference never saw form their own bucket
         replaced by ``eps``
``ks``   two-sample Kolmogorov-Smirnov statistic: the    total variation distance (reported as
         window's empirical CDF against the reference's  method ``"tvd"``): KS has no order to use on
         piecewise-linear CDF through the sketch;        categories; ``sup_A |P(A) - Q(A)|`` is its
         ``p_value`` from the Kolmogorov distribution    set-wise generalisation, on the same 0-1 scale
``js``   Jensen-Shannon distance, base 2 (0-1), on the   JS distance on the category buckets
         decile bins
=======  ==============================================  =============================================

A feature is drifting when its score is strictly above ``threshold``. Data
quality per feature: the null rate (Arrow nulls and NaN), the out-of-range
rate (numeric values outside the training ``[min, max]``) and the unseen
categories. Live performance, once labels arrive, is
:func:`raypipe.evaluate.compute_metrics` on the labelled rows of the window,
so online and offline numbers agree.

The statistics themselves (:func:`psi`, :func:`js_distance`, :func:`ks_statistic`,
:func:`ks_pvalue`) live in :mod:`raypipe.monitor.statistics` (numpy only) and are
re-exported here; this module reads the reference profile and builds the report.

Example:
    >>> import pyarrow as pa
    >>> from raypipe.features.stats import compute_stats
    >>> from raypipe.monitor.profile import build_profile, profile_requests
    >>> train = pa.table({"x": [float(i) for i in range(100)], "c": ["a", "b"] * 50})
    >>> kinds = {"x": "float", "c": "category"}
    >>> profile = build_profile(kinds, compute_stats(profile_requests(kinds), train))
    >>> window = pa.table({"x": [150.0, 160.0, None, 5.0], "c": ["a", "a", "z", None]})
    >>> report = check_window(profile, window, method="psi", threshold=0.2)
    >>> report.features["x"].drifting, report.features["x"].out_of_range_rate
    (True, 0.6666666666666666)
    >>> report.features["c"].unseen_categories
    ('z',)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raypipe.errors import SchemaError, did_you_mean
from raypipe.evaluate.metrics import TASKS, compute_metrics
from raypipe.monitor.statistics import (
    DEFAULT_EPS,
    SketchCDF,
    js_distance,
    js_of_shares,
    ks_of_sorted,
    ks_pvalue,
    ks_statistic,
    psi,
    psi_of_shares,
    tvd_of_shares,
    ulp_slack,
)

__all__ = [
    "DRIFT_METHODS",
    "DEFAULT_EPS",
    "psi",
    "ks_statistic",
    "ks_pvalue",
    "js_distance",
    "ReferenceProfile",
    "FeatureDrift",
    "DriftReport",
    "check_window",
]

DRIFT_METHODS: tuple[str, ...] = ("psi", "ks", "js")
"""The drift statistics :func:`check_window` computes (``monitor.drift.method``)."""

#: Unseen categories listed per feature in a report (the rate counts them all).
MAX_UNSEEN_LISTED = 20
#: The profile's bucket for categories beyond its ``MAX_CATEGORIES`` most frequent.
OTHER = "__other__"

_NUMERIC_KINDS = ("int", "float", "bool")
_CATEGORICAL_KINDS = ("category", "string")


# ---------------------------------------------------------------- reference


@dataclass(frozen=True)
class _Numeric:
    edges: np.ndarray  # upper bounds of the right-closed PSI/JS bins (unique deciles, plus the ulp slack)
    bin_fracs: np.ndarray  # reference share of each of the len(edges) + 1 bins
    cdf: SketchCDF  # through the sketch (or min, deciles, max for older profiles)
    lo: float
    hi: float
    n_ref: int  # non-missing training values (the KS p-value's reference size)


@dataclass(frozen=True)
class _Categorical:
    categories: pa.Array  # the profile's listed categories, in profile order
    fracs: np.ndarray  # their shares
    other: int | None  # index of the "__other__" bucket, when the profile was truncated
    numbers: pa.Array  # the categories that parse as numbers, as float64
    number_index: np.ndarray  # the bucket of each of them


@dataclass(frozen=True)
class _Reference:
    kind: str  # the schema type of the column
    null_rate: float | None
    stats: _Numeric | _Categorical | None  # None: nothing to compare with (datetime, all-null)


def _reference(where: str, entry: Mapping[str, Any], bin_levels: Sequence[float], sketch_levels: np.ndarray | None) -> _Reference:
    if not isinstance(entry, Mapping) or "type" not in entry:
        raise ValueError(f"{where}: expected a profile column entry with a 'type'. Got {type(entry).__name__} {entry!r:.80}.")
    kind = entry["type"]
    null_rate = entry.get("null_rate")
    if kind in _NUMERIC_KINDS:
        quantiles, lo, hi = entry.get("quantiles"), entry.get("min"), entry.get("max")
        if not quantiles or lo is None or hi is None or any(q is None for q in quantiles):
            return _Reference(kind, null_rate, None)  # no non-missing training value
        sketch = entry.get("sketch")
        xs = np.asarray(sketch, dtype=np.float64) if sketch else None  # a None in it becomes NaN
        if xs is not None and sketch_levels is not None and xs.shape == sketch_levels.shape and not np.isnan(xs).any():
            ps = sketch_levels
        else:
            # Profiles written before the sketch: the deciles with the range are a 10-interval sketch.
            xs = np.asarray([lo, *quantiles, hi], dtype=np.float64)
            ps = np.asarray([0.0, *bin_levels, 1.0], dtype=np.float64)
        cdf = SketchCDF(xs, ps)
        edges = np.unique(np.asarray(quantiles, dtype=np.float64))
        # Deciles one ulp apart are one tied value (see ULPS): one edge.
        edges = edges[np.concatenate(([True], np.diff(edges) > ulp_slack(edges[1:])))]
        # Tied training values repeat deciles, so the bins' shares are read off the
        # sketch CDF rather than assumed to be 1/10 each.
        bin_fracs = np.diff(np.concatenate(([0.0], cdf.right(edges), [1.0])))
        n_ref = round(int(entry.get("count") or 0) * (1.0 - float(null_rate or 0.0)))
        numeric = _Numeric(edges + ulp_slack(edges), np.maximum(bin_fracs, 0.0), cdf, float(lo), float(hi), max(n_ref, 1))
        return _Reference(kind, null_rate, numeric)
    if kind in _CATEGORICAL_KINDS:
        freqs = entry.get("frequencies") or {}
        if not freqs:
            return _Reference(kind, null_rate, None)
        names = [str(k) for k in freqs]
        other = names.index(OTHER) if OTHER in names else None
        # Numeric categories are keyed "1" by one statistics path and "1.0" by
        # another (the local one counts numbers as float64): match them by value.
        numbers, number_index = [], []
        for i, name in enumerate(names):
            try:
                numbers.append(float(name))
                number_index.append(i)
            except ValueError:
                continue
        categorical = _Categorical(
            categories=pa.array(names, pa.string()),
            fracs=np.asarray(list(freqs.values()), dtype=np.float64),
            other=other,
            numbers=pa.array(numbers, pa.float64()),
            number_index=np.asarray(number_index + [-1], dtype=np.int64),  # the last one: not found
        )
        return _Reference(kind, null_rate, categorical)
    return _Reference(kind, null_rate, None)


class ReferenceProfile:
    """A profile prepared for checks: its arrays built once, reused by every window.

    :func:`check_window` accepts the profile dict too and prepares it on each
    call (O(columns x sketch), well under a millisecond per column); a
    monitor that checks many windows keeps one ``ReferenceProfile``.

    Args:
        profile: the dict of :func:`raypipe.monitor.profile.build_profile`
            (``ModelBundle.profile``), optionally with ``"predictions"`` from
            :func:`raypipe.monitor.profile.prediction_profile`.

    Raises:
        ValueError: ``profile`` has no ``columns`` mapping, or an entry is malformed.

    Example:
        >>> ReferenceProfile({"columns": {"x": {"type": "datetime", "count": 3, "null_rate": 0.0}}}).columns
        ('x',)
    """

    def __init__(self, profile: Mapping[str, Any]) -> None:
        if not isinstance(profile, Mapping) or not isinstance(profile.get("columns"), Mapping):
            got = sorted(profile) if isinstance(profile, Mapping) else type(profile).__name__
            raise ValueError(
                f"profile: expected a reference profile with a 'columns' mapping "
                f"(raypipe.monitor.profile.build_profile, ModelBundle.profile). Got {got}."
            )
        bin_levels = profile.get("bin_levels") or [round(i / 10, 1) for i in range(1, 10)]
        sketch_levels = profile.get("sketch_levels")
        sketch_levels = np.asarray(sketch_levels, dtype=np.float64) if sketch_levels else None
        self._refs = {
            str(name): _reference(f"profile.columns.{name}", entry, bin_levels, sketch_levels)
            for name, entry in profile["columns"].items()
        }
        pred = profile.get("predictions")
        self.task: str | None = pred.get("task") if isinstance(pred, Mapping) else None
        self._prediction = _reference("profile.predictions", pred, bin_levels, sketch_levels) if pred else None

    @property
    def columns(self) -> tuple[str, ...]:
        """The profiled columns, in profile order."""
        return tuple(self._refs)

    def __repr__(self) -> str:
        return f"ReferenceProfile(columns={list(self._refs)}, predictions={self._prediction is not None})"


# ---------------------------------------------------------------- report


def _clean(value: Any) -> Any:
    """JSON-able: NaN and infinities become None (json.dumps would write invalid JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class FeatureDrift:
    """Drift and data quality of one feature (or of the predictions) in one window.

    Attributes:
        score: the drift statistic, or None when there is nothing to compare
            (no non-missing value in the window, or a column the profile has
            no distribution of, such as ``datetime``).
        method: ``"psi"``, ``"ks"``, ``"js"``, or ``"tvd"`` (``ks`` on a
            categorical feature); None with ``score``.
        threshold: the score above which the feature is drifting.
        drifting: ``score > threshold``.
        null_rate: share of the window's rows that are null or NaN.
        out_of_range_rate: share of the non-missing values outside the training
            ``[min, max]``; None for non-numeric features.
        unseen_categories: up to :data:`MAX_UNSEEN_LISTED` categories the
            profile does not list, most frequent first; () for numeric features.
        n: non-missing values the score was computed on.
        unseen_rate: share of the non-missing values in an unseen category;
            None for non-categorical features.
        reference_null_rate: the null rate of the training data.
        p_value: the KS p-value (:func:`ks_pvalue`) when ``method == "ks"``.
    """

    score: float | None
    method: str | None
    threshold: float
    drifting: bool
    null_rate: float
    out_of_range_rate: float | None
    unseen_categories: tuple[str, ...]
    n: int
    unseen_rate: float | None = None
    reference_null_rate: float | None = None
    p_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every attribute."""
        return {
            "score": _clean(self.score),
            "method": self.method,
            "threshold": self.threshold,
            "drifting": self.drifting,
            "null_rate": _clean(self.null_rate),
            "out_of_range_rate": _clean(self.out_of_range_rate),
            "unseen_categories": list(self.unseen_categories),
            "unseen_rate": _clean(self.unseen_rate),
            "n": self.n,
            "reference_null_rate": _clean(self.reference_null_rate),
            "p_value": _clean(self.p_value),
        }


@dataclass(frozen=True)
class DriftReport:
    """What :func:`check_window` found in one window.

    Attributes:
        rows: rows in the window.
        method, threshold: the drift statistic and threshold asked for.
        features: ``{feature: FeatureDrift}``, in profile order.
        prediction: drift of the model's output, or None (no predictions
            given, or no ``predictions`` entry in the profile).
        live_metrics: :func:`raypipe.evaluate.compute_metrics` on the labelled
            rows, or None when no row has a label.
        labelled: rows with a label.
        missing_features: checked features absent from the window.
    """

    rows: int
    method: str
    threshold: float
    features: Mapping[str, FeatureDrift] = field(default_factory=dict)
    prediction: FeatureDrift | None = None
    live_metrics: Mapping[str, Any] | None = None
    labelled: int = 0
    missing_features: tuple[str, ...] = ()

    @property
    def drifting(self) -> tuple[str, ...]:
        """The drifting features, in profile order."""
        return tuple(name for name, f in self.features.items() if f.drifting)

    @property
    def drift_detected(self) -> bool:
        """Whether any feature, or the prediction, is drifting."""
        return bool(self.drifting) or bool(self.prediction and self.prediction.drifting)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``json.dumps(..., allow_nan=False)`` accepts it)."""
        return {
            "rows": self.rows,
            "method": self.method,
            "threshold": self.threshold,
            "drift_detected": self.drift_detected,
            "drifting": list(self.drifting),
            "features": {name: f.to_dict() for name, f in self.features.items()},
            "prediction": self.prediction.to_dict() if self.prediction else None,
            "live_metrics": None if self.live_metrics is None else {k: _clean(v) for k, v in self.live_metrics.items()},
            "labelled": self.labelled,
            "missing_features": list(self.missing_features),
        }


# ---------------------------------------------------------------- the check


def _numeric_values(where: str, column: pa.ChunkedArray | pa.Array, kind: str) -> np.ndarray:
    """The column as float64 with NaN for nulls (no Python loop)."""
    t = column.type
    if pa.types.is_null(t):  # all-None batches built from Python rows carry no type
        return np.full(len(column), np.nan)
    if pa.types.is_boolean(t) or pa.types.is_decimal(t):
        column, t = pc.cast(column, pa.float64()), pa.float64()
    if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
        raise SchemaError(
            f"{where}: expected a numeric column (the profile says {kind!r}). Got Arrow type {t}. "
            "Hint: cast the window to the model's input schema before checking it."
        )
    # pyarrow turns the nulls of int and float columns into NaN (as float64) itself.
    values = column.to_numpy(zero_copy_only=False) if isinstance(column, pa.Array) else column.to_numpy()
    return values if values.dtype == np.float64 else values.astype(np.float64)


def _as_categories(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """The column ready for ``value_counts``: dictionary columns decoded (chunks may
    carry different dictionaries); other types are cast after counting, on the
    distinct values only."""
    if pa.types.is_dictionary(column.type):
        return pc.cast(column, column.type.value_type)
    return column


def _drifting(score: float | None, threshold: float) -> bool:
    return score is not None and score > threshold


def _numeric_drift(ref: _Reference, values: np.ndarray, rows: int, method: str, threshold: float) -> FeatureDrift:
    stats = ref.stats
    missing = int(np.count_nonzero(np.isnan(values)))
    null_rate = missing / rows if rows else 0.0
    # One sort serves every statistic: bin counts, the range and the KS statistic are
    # binary searches of a few reference points into it (numpy's search of unsorted
    # keys is slower than the sort itself). NaN sorts last, so the head is the data.
    x = np.sort(values)[: values.size - missing]
    n = x.size
    score = p_value = oor = None
    used = None
    if n and stats is not None:
        outside = np.searchsorted(x, stats.lo, side="left") + n - np.searchsorted(x, stats.hi, side="right")
        oor = float(outside) / n
        used = method
        if method == "ks":
            score = ks_of_sorted(x, stats.cdf)
            p_value = ks_pvalue(min(score, 1.0), n, stats.n_ref)
        else:
            # Values <= an edge (+ ulp slack) fall in that edge's bin: the sketch CDF's rule for ties.
            cur = np.diff(np.concatenate(([0], np.searchsorted(x, stats.edges, side="right"), [n]))) / n
            score = psi_of_shares(stats.bin_fracs, cur, DEFAULT_EPS) if method == "psi" else js_of_shares(stats.bin_fracs, cur)
    return FeatureDrift(
        score=score,
        method=used,
        threshold=threshold,
        drifting=_drifting(score, threshold),
        null_rate=null_rate,
        out_of_range_rate=oor,
        unseen_categories=(),
        n=n,
        unseen_rate=None,
        reference_null_rate=ref.null_rate,
        p_value=p_value,
    )


def _categorical_drift(ref: _Reference, column: pa.ChunkedArray | pa.Array, rows: int, method: str, threshold: float) -> FeatureDrift:
    stats = ref.stats
    nulls = column.null_count
    n = len(column) - nulls
    null_rate = nulls / rows if rows else 0.0
    score = unseen_rate = None
    unseen: tuple[str, ...] = ()
    used = None
    if n and stats is not None:
        # One hash pass over the rows; everything after works on the distinct values.
        vc = pc.value_counts(column)
        values = vc.field("values")
        counts = vc.field("counts").to_numpy().astype(np.float64)
        valid = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        t = values.type
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            found = pc.index_in(pc.cast(values, pa.float64()), value_set=stats.numbers)
            idx = stats.number_index[np.asarray(pc.fill_null(found, -1).to_numpy(), dtype=np.int64)]
        else:
            idx = np.asarray(pc.fill_null(pc.index_in(values, value_set=stats.categories), -1).to_numpy(), dtype=np.int64)
        if not pa.types.is_string(t):
            values = pc.cast(values, pa.string())  # names of unseen categories
        known = valid & (idx >= 0)
        new = valid & (idx < 0)
        k = stats.fracs.size
        cur = np.bincount(idx[known], weights=counts[known], minlength=k + 1)
        unseen_count = counts[new].sum()
        if stats.other is not None:
            # A truncated profile keeps its rare categories in "__other__": a value it
            # does not list may be one of them, so it is scored there (and still listed).
            cur[stats.other] += unseen_count
        else:
            cur[k] = unseen_count
        ref_fracs = np.append(stats.fracs, 0.0)
        cur = cur / n
        ref_fracs = ref_fracs / ref_fracs.sum()
        if method == "psi":
            score = psi_of_shares(ref_fracs, cur, DEFAULT_EPS)
        elif method == "js":
            score = js_of_shares(ref_fracs, cur)
        else:
            score, method = tvd_of_shares(ref_fracs, cur), "tvd"
        used = method
        unseen_rate = float(unseen_count) / n
        if unseen_count:
            order = np.flatnonzero(new)[np.argsort(-counts[new], kind="stable")][:MAX_UNSEEN_LISTED]
            unseen = tuple(str(v) for v in values.take(pa.array(order)).to_pylist())
    return FeatureDrift(
        score=score,
        method=used,
        threshold=threshold,
        drifting=_drifting(score, threshold),
        null_rate=null_rate,
        out_of_range_rate=None,
        unseen_categories=unseen,
        n=n,
        unseen_rate=unseen_rate,
        reference_null_rate=ref.null_rate,
    )


def _column_drift(where: str, ref: _Reference, column: Any, rows: int, method: str, threshold: float) -> FeatureDrift:
    if ref.kind in _NUMERIC_KINDS:
        return _numeric_drift(ref, _numeric_values(where, column, ref.kind), rows, method, threshold)
    if ref.kind in _CATEGORICAL_KINDS:
        return _categorical_drift(ref, _as_categories(column), rows, method, threshold)
    nulls = column.null_count
    return FeatureDrift(None, None, threshold, False, nulls / rows if rows else 0.0, None, (), len(column) - nulls,
                        reference_null_rate=ref.null_rate)


def _output_array(where: str, values: Any, rows: int) -> np.ndarray:
    if isinstance(values, (pa.ChunkedArray, pa.Array)):
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if pa.types.is_fixed_size_list(values.type):
            # Multiclass probabilities: one fixed-size list per row, as the bundle's predict returns them.
            values = values.flatten().to_numpy(zero_copy_only=False).reshape(len(values), values.type.list_size)
        else:
            values = pc.fill_null(pc.cast(values, pa.float64()), np.nan).to_numpy() if values.null_count else values.to_numpy(zero_copy_only=False)
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"check_window: {where}: expected numbers, one per row. Got {type(values).__name__}.") from exc
    if arr.shape[:1] != (rows,):
        raise ValueError(f"check_window: {where}: expected one value per window row ({rows}). Got shape {arr.shape}.")
    return arr


def _check_method(method: str, threshold: float) -> None:
    if method not in DRIFT_METHODS:
        raise ValueError(
            f"The 'method' parameter of check_window must be one of {list(DRIFT_METHODS)}. "
            f"Got {method!r} instead.{did_you_mean(method, DRIFT_METHODS)}"
        )
    if not (isinstance(threshold, (int, float)) and threshold > 0 and math.isfinite(threshold)):
        raise ValueError(f"The 'threshold' parameter of check_window must be a finite number > 0. Got {threshold!r} instead.")


def check_window(
    profile: Mapping[str, Any] | ReferenceProfile,
    table: pa.Table,
    *,
    method: str = "psi",
    threshold: float = 0.2,
    features: Sequence[str] | None = None,
    predictions: Any = None,
    labels: Any = None,
    task: str | None = None,
    decision_threshold: float | None = None,
) -> DriftReport:
    """Drift, data quality and live performance of one window against the training profile.

    Cost is O(window): per numeric feature one cast, a binary search into the
    deciles and a bincount (``psi``/``js``) or one sort (``ks``); per
    categorical feature one hash pass (``value_counts``). No per-row Python.

    Args:
        profile: the model's reference profile (``ModelBundle.profile``) or a
            :class:`ReferenceProfile` made from it once.
        table: the window's input rows (before the feature transforms).
        method: ``"psi"``, ``"ks"`` or ``"js"`` (see the module docstring).
        threshold: a feature drifts when its score is above it (> 0).
        features: the profiled columns to check; default every profiled column
            present in ``table`` (pass the model's input features to leave
            label, weight and id columns out).
        predictions: the model's output for the window's rows (class-1
            probability, ``(n, K)`` probabilities or regression predictions):
            prediction drift when the profile has ``predictions``, and live metrics.
        labels: the true labels as the model encodes them (0/1, class indices
            or targets), null or NaN where not yet known; needs ``predictions``.
        task: ``"binary_classification"``, ``"multiclass"`` or ``"regression"``;
            default the profile's ``predictions.task``. Needed with labels.
        decision_threshold: the bundle's binary decision threshold (default 0.5).

    Returns:
        A :class:`DriftReport`.

    Raises:
        ValueError: a bad method, threshold, task or profile; predictions or
            labels not one per row; labels without predictions.
        SchemaError: a numeric feature whose window column is not numeric.
        KeyError: a name in ``features`` that the profile does not have.

    Example:
        >>> import pyarrow as pa
        >>> profile = {"columns": {"c": {"type": "category", "count": 4, "null_rate": 0.0,
        ...                              "frequencies": {"a": 0.5, "b": 0.5}}}}
        >>> r = check_window(profile, pa.table({"c": ["a", "b", "b", "b"]}), method="js", threshold=0.1)
        >>> r.drifting, round(r.features["c"].score, 4)
        (('c',), 0.2209)
    """
    _check_method(method, threshold)
    threshold = float(threshold)
    ref = profile if isinstance(profile, ReferenceProfile) else ReferenceProfile(profile)
    if not isinstance(table, pa.Table):
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        else:
            raise ValueError(f"check_window: table: expected a pyarrow.Table. Got {type(table).__name__}.")
    rows = table.num_rows
    if features is None:
        names = [c for c in ref.columns if c in table.column_names]
        missing: tuple[str, ...] = ()
    else:
        unknown = [f for f in features if f not in ref._refs]
        if unknown:
            raise KeyError(
                f"check_window: features: {unknown[0]!r} is not in the profile "
                f"(profiled: {list(ref.columns)}).{did_you_mean(unknown[0], ref.columns)}"
            )
        names = [f for f in features if f in table.column_names]
        missing = tuple(f for f in features if f not in table.column_names)

    report_features = {
        name: _column_drift(f"check_window: column {name!r}", ref._refs[name], table.column(name), rows, method, threshold)
        for name in names
    }

    if task is None:
        task = ref.task
    if task is not None and task not in TASKS:
        raise ValueError(
            f"The 'task' parameter of check_window must be one of {list(TASKS)}. Got {task!r} instead.{did_you_mean(task, TASKS)}"
        )
    output = None if predictions is None else _output_array("predictions", predictions, rows)

    prediction = None
    if output is not None and ref._prediction is not None and ref._prediction.stats is not None:
        pred_ref = ref._prediction
        if pred_ref.kind in _CATEGORICAL_KINDS:
            classes = output.argmax(axis=1) if output.ndim == 2 else output
            prediction = _categorical_drift(pred_ref, pa.array(np.asarray(classes, dtype=np.int64).astype(str)), rows, method, threshold)
        else:
            scores = output[:, -1] if output.ndim == 2 and output.shape[1] <= 2 else output
            prediction = _numeric_drift(pred_ref, np.asarray(scores, dtype=np.float64).ravel(), rows, method, threshold)

    live = None
    labelled = 0
    if labels is not None:
        if output is None:
            raise ValueError("check_window: labels: live metrics need the model's predictions too. Got labels only; pass predictions=.")
        if task is None:
            raise ValueError(
                "check_window: task: live metrics need the model's task. Got none (the profile has no "
                "'predictions' entry); pass task='binary_classification', 'multiclass' or 'regression'."
            )
        y = _output_array("labels", labels, rows)
        known = ~np.isnan(y)
        labelled = int(known.sum())
        if labelled:
            live = compute_metrics(task, y[known], output[known], threshold=decision_threshold)

    return DriftReport(
        rows=rows,
        method=method,
        threshold=threshold,
        features=report_features,
        prediction=prediction,
        live_metrics=live,
        labelled=labelled,
        missing_features=missing,
    )
