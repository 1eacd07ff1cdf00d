"""Scalers of numeric columns: ``standard_scale``, ``minmax_scale`` and ``robust_scale``.

Each divides by 1 when the training spread is zero (a constant column), as
scikit-learn does; all three fit to one :class:`FittedAffine`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field

from raypipe.features.stats import StatRequest
from raypipe.features.steps.base import ColumnStepParams, Columns, FittedStep, Step, _fnum, _jnum, _splice

__all__ = [
    "StandardScaleStep",
    "MinMaxScaleStep",
    "RobustScaleStep",
    "StandardScale",
    "MinMaxScale",
    "RobustScale",
    "FittedAffine",
]


class StandardScaleStep(ColumnStepParams):
    """Parameters of ``standard_scale``."""

    type: Literal["standard_scale"] = Field(description="(x - mean) / std of the training split.")


class MinMaxScaleStep(ColumnStepParams):
    """Parameters of ``minmax_scale``."""

    type: Literal["minmax_scale"] = Field(description="(x - min) / (max - min) of the training split.")


class RobustScaleStep(ColumnStepParams):
    """Parameters of ``robust_scale``."""

    type: Literal["robust_scale"] = Field(description="(x - median) / IQR of the training split.")


class StandardScale(Step):
    """``(x - mean) / std`` with the population std (ddof=0, as scikit-learn).

    A column indistinguishable from a constant divides by 1 instead, so it
    becomes ``x - mean`` rather than NaN, infinity or amplified rounding noise.
    "Indistinguishable" is scikit-learn's test (Chan, Golub and LeVeque's error
    bound of the variance): ``var <= n*eps*var + (n*mean*eps)**2`` with ``n``
    non-missing values; it also keeps a Ray fit (merged per block) and a local
    fit of a constant column identical.
    """

    params = StandardScaleStep

    def _validate(self) -> None:
        self._require_numeric()

    def needs(self) -> list[StatRequest]:
        return [
            r
            for c in self.columns
            for r in (StatRequest("mean", c), StatRequest("std", c), StatRequest("count", c), StatRequest("null_count", c))
        ]

    def fit(self, stats: Mapping[StatRequest, Any]) -> FittedStep:
        shifts, scales = [], []
        for c in self.columns:
            mean, std = stats[StatRequest("mean", c)], stats[StatRequest("std", c)]
            n = stats[StatRequest("count", c)] - stats[StatRequest("null_count", c)]
            eps = np.finfo(np.float64).eps
            var = std * std
            constant = var <= n * eps * var + (n * mean * eps) ** 2
            shifts.append(mean)
            scales.append(0.0 if constant else std)
        return FittedAffine(self.columns, shifts, scales)


class MinMaxScale(Step):
    """``(x - min) / (max - min)``; a range below ``10 * eps`` divides by 1. Values
    outside the training range map outside [0, 1] (no clipping, as scikit-learn)."""

    params = MinMaxScaleStep

    def _validate(self) -> None:
        self._require_numeric()

    def needs(self) -> list[StatRequest]:
        return [r for c in self.columns for r in (StatRequest("min", c), StatRequest("max", c))]

    def fit(self, stats: Mapping[StatRequest, Any]) -> FittedStep:
        shifts = [stats[StatRequest("min", c)] for c in self.columns]
        scales = [stats[StatRequest("max", c)] - stats[StatRequest("min", c)] for c in self.columns]
        return FittedAffine(self.columns, shifts, [_zero_if_tiny(k) for k in scales])


class RobustScale(Step):
    """``(x - median) / (q75 - q25)`` (exact quantiles); an IQR below ``10 * eps``
    (a mostly constant column) divides by 1, as scikit-learn."""

    params = RobustScaleStep
    LEVELS = (0.25, 0.5, 0.75)

    def _validate(self) -> None:
        self._require_numeric()

    def needs(self) -> list[StatRequest]:
        return [StatRequest("quantiles", c, self.LEVELS) for c in self.columns]

    def fit(self, stats: Mapping[StatRequest, Any]) -> FittedStep:
        qs = [stats[StatRequest("quantiles", c, self.LEVELS)] for c in self.columns]
        return FittedAffine(self.columns, [q[1] for q in qs], [_zero_if_tiny(q[2] - q[0]) for q in qs])


def _zero_if_tiny(scale: float) -> float:
    # scikit-learn's _handle_zeros_in_scale for min-max and robust scaling: a spread
    # below 10 * eps is no spread. StandardScaler uses its own variance bound instead.
    return 0.0 if math.isfinite(scale) and abs(scale) < 10 * np.finfo(np.float64).eps else scale


class FittedAffine(FittedStep):
    """Fitted scaler: ``(x - shift) / scale`` per column.

    A scale that is zero, NaN or infinite is stored as 1 (each scaler decides
    what counts as zero spread).
    """

    kind = "affine"

    def __init__(self, columns: list[str], shifts: list[float], scales: list[float]):
        self.columns = list(columns)
        self.shifts = [float(s) for s in shifts]
        # A constant training column has no spread: dividing by 1 keeps values finite.
        self.scales = [1.0 if (not math.isfinite(s) or s == 0) else float(s) for s in scales]

    def transform(self, columns: Columns) -> Columns:
        replaced = {c: {c: (columns[c] - s) / k} for c, s, k in zip(self.columns, self.shifts, self.scales)}
        return _splice(columns, replaced)

    def output_types(self, types: Mapping[str, str], where: str | None = None) -> dict[str, str]:
        return _splice(types, {c: {c: "float"} for c in self.columns}, where=where)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "columns": self.columns, "shifts": [_jnum(s) for s in self.shifts], "scales": self.scales}

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> FittedAffine:
        return cls(data["columns"], [_fnum(s) for s in data["shifts"]], data["scales"])
