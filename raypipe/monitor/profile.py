"""The reference profile of the training data, stored in every model bundle.

Drift checks compare live windows against it, so it is precomputed once at
training time: per numeric input column the decile edges, mean, std, range and
null rate; per categorical column the category frequencies. Pure: the statistics
are requested as :class:`~raypipe.features.StatRequest` values and computed by
whoever holds the data (Ray Data in the pipeline, numpy in tests).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from raypipe.features.stats import StatRequest

__all__ = ["profile_requests", "build_profile"]

#: Quantile levels of the numeric bins (deciles): PSI is computed on these bins.
BIN_LEVELS = tuple(round(i / 10, 1) for i in range(1, 10))
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
            ]
        elif kind in CATEGORICAL:
            out.append(StatRequest("value_counts", name))
    return out


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def build_profile(columns: Mapping[str, str], stats: Mapping[StatRequest, Any]) -> dict[str, Any]:
    """Assemble the JSON-able profile from the statistics of :func:`profile_requests`."""
    profile: dict[str, Any] = {"bin_levels": list(BIN_LEVELS), "columns": {}}
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
