"""The reference profile of the training data, stored in every model bundle.

Drift checks compare live windows against it, so it is precomputed once at
training time: per numeric input column the decile edges, mean, std, range,
null rate and a quantile sketch; per categorical column the category
frequencies. Pure: the statistics are requested as
:class:`~raypipe.features.StatRequest` values and computed by whoever holds the
data (Ray Data in the pipeline, numpy in tests).

Layout (JSON)::

    {"bin_levels": [0.1, ..., 0.9], "sketch_levels": [0.0, 0.002, ..., 1.0],
     "columns": {name: {"type", "count", "null_rate",
                        # numeric: "mean", "std", "min", "max",
                        #          "quantiles" (at bin_levels), "sketch" (at sketch_levels)
                        # categorical: "frequencies" {category: share}}},
     "predictions": {...}}   # optional: a numeric or categorical entry, plus "task"

``sketch`` (the quantiles at :data:`SKETCH_LEVELS`) lets
:mod:`raypipe.monitor.drift` compute the Kolmogorov-Smirnov statistic of a
window in O(window) instead of O(training rows). Profiles written before it
existed have no ``sketch``; readers fall back to the deciles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from raypipe.features.stats import StatRequest

__all__ = ["profile_requests", "build_profile", "prediction_profile", "BIN_LEVELS", "SKETCH_LEVELS"]

#: Quantile levels of the numeric bins (deciles): PSI is computed on these bins.
BIN_LEVELS = tuple(round(i / 10, 1) for i in range(1, 10))
#: Quantile levels of the numeric sketch: 0, 1/500, ..., 1 (min and max included).
#: The piecewise-linear CDF through these points is within 1/500 + 2/n of the
#: training sample's empirical CDF (n non-missing training values), which bounds
#: the error of the KS statistic computed from it. 500 rather than 1000: the
#: exact quantile kernel costs about one sort per ~100 levels at training time,
#: and 0.002 is already ~15x below the KS critical value of a 2,000-row window.
#: ``k / 500`` is the double nearest to each decile, so the deciles are sketch points.
SKETCH_LEVELS = tuple(k / 500 for k in range(501))
NUMERIC = ("int", "float", "bool")
CATEGORICAL = ("category", "string")
#: Categories kept per column; the rest are summed under "__other__".
MAX_CATEGORIES = 200


def profile_requests(columns: Mapping[str, str]) -> list[StatRequest]:
    """The statistics a profile of ``columns`` (name → schema type) needs."""
    out: list[StatRequest] = []
    for name, kind in columns.items():
        out += [StatRequest("count", name), StatRequest("null_count", name)]
        if kind in NUMERIC:
            out += [
                StatRequest("mean", name),
                StatRequest("std", name),
                StatRequest("min", name),
                StatRequest("max", name),
                StatRequest("quantiles", name, BIN_LEVELS),
                StatRequest("quantiles", name, SKETCH_LEVELS),
            ]
        elif kind in CATEGORICAL:
            out.append(StatRequest("value_counts", name))
    return out


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def build_profile(columns: Mapping[str, str], stats: Mapping[StatRequest, Any]) -> dict[str, Any]:
    """Assemble the JSON-able profile from the statistics of :func:`profile_requests`.

    A numeric column whose statistics lack the sketch quantiles (computed from
    an older request list) gets no ``sketch``; drift checks then use its deciles.
    """
    profile: dict[str, Any] = {"bin_levels": list(BIN_LEVELS), "sketch_levels": list(SKETCH_LEVELS), "columns": {}}
    for name, kind in columns.items():
        count = int(stats[StatRequest("count", name)])
        nulls = int(stats[StatRequest("null_count", name)])
        entry: dict[str, Any] = {"type": kind, "count": count, "null_rate": nulls / count if count else 0.0}
        if kind in NUMERIC:
            edges = [_num(q) for q in stats[StatRequest("quantiles", name, BIN_LEVELS)]]
            entry.update(
                mean=_num(stats[StatRequest("mean", name)]),
                std=_num(stats[StatRequest("std", name)]),
                min=_num(stats[StatRequest("min", name)]),
                max=_num(stats[StatRequest("max", name)]),
                quantiles=edges,
            )
            sketch = stats.get(StatRequest("quantiles", name, SKETCH_LEVELS))
            if sketch is not None:
                entry["sketch"] = [_num(q) for q in sketch]
        elif kind in CATEGORICAL:
            counts = stats[StatRequest("value_counts", name)]
            total = sum(counts.values()) or 1
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
            freqs = {str(k): v / total for k, v in ranked[:MAX_CATEGORIES]}
            rest = sum(v for _, v in ranked[MAX_CATEGORIES:])
            if rest:
                freqs["__other__"] = rest / total
            entry["frequencies"] = freqs
        profile["columns"][name] = entry
    return profile


def prediction_profile(output: Any, task: str) -> dict[str, Any]:
    """The reference entry of a model's predictions, for prediction drift.

    Store it as ``profile["predictions"]`` (e.g. from the scored test split);
    :func:`raypipe.monitor.drift.check_window` compares the window's
    predictions against it. Binary classification and regression profile the
    score as a numeric column; multiclass profiles the predicted class (argmax)
    as a categorical column with keys ``"0" .. "K-1"``.

    Args:
        output: what the booster's predict returns: class-1 probabilities
            ``(n,)``, class probabilities ``(n, K)`` or regression predictions.
        task: ``"binary_classification"``, ``"multiclass"`` or ``"regression"``.

    Returns:
        A column entry as in ``profile["columns"]`` plus ``"task"``.

    Raises:
        ValueError: an unknown task, or an output of the wrong shape.

    Example:
        >>> prediction_profile([0.1, 0.4, 0.8], "binary_classification")["quantiles"][4]
        0.4
    """
    import numpy as np
    import pyarrow as pa

    from raypipe.features.stats import compute_stats

    tasks = ("binary_classification", "multiclass", "regression")
    if task not in tasks:
        raise ValueError(f"prediction_profile: task must be one of {list(tasks)}. Got {task!r} instead.")
    values = np.asarray(output, dtype=np.float64)
    if task == "multiclass":
        if values.ndim != 2:
            raise ValueError(
                f"prediction_profile: multiclass output must be (n, K) probabilities. Got shape {values.shape} instead."
            )
        kind, column = "category", pa.array(np.argmax(values, axis=1).astype(str))
    else:
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1:
            raise ValueError(
                f"prediction_profile: {task} output must be one value per row. Got shape {values.shape} instead."
            )
        kind, column = "float", pa.array(values)
    columns = {"prediction": kind}
    stats = compute_stats(profile_requests(columns), pa.table({"prediction": column}))
    entry = build_profile(columns, stats)["columns"]["prediction"]
    entry["task"] = task
    return entry
