"""Element-wise numeric transforms: ``clip``, ``log1p`` and ``bucketize``. NaN stays NaN."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from raypipe.errors import ConfigError
from raypipe.features.stats import StatRequest
from raypipe.features.steps.base import ColumnStepParams, Columns, FittedStep, Step, _splice

__all__ = [
    "ClipStep",
    "Log1pStep",
    "BucketizeStep",
    "Clip",
    "Log1p",
    "Bucketize",
    "FittedClip",
    "FittedLog1p",
    "FittedBucketize",
]


class ClipStep(ColumnStepParams):
    """Parameters of ``clip``."""

    type: Literal["clip"] = Field(description="Clip to fixed bounds or to training-split quantiles.")
    min: float | None = Field(None, description="Fixed lower bound.")
    max: float | None = Field(None, description="Fixed upper bound.")
    lower_quantile: float | None = Field(None, ge=0, le=1, description="Lower bound fitted as this quantile.")
    upper_quantile: float | None = Field(None, ge=0, le=1, description="Upper bound fitted as this quantile.")


class Log1pStep(ColumnStepParams):
    """Parameters of ``log1p``."""

    type: Literal["log1p"] = Field(description="log(1 + x); values below -1 become missing.")


class BucketizeStep(ColumnStepParams):
    """Parameters of ``bucketize``."""

    type: Literal["bucketize"] = Field(description="Bucket index by fixed boundaries or training-split quantiles.")
    boundaries: list[float] | None = Field(None, description="Sorted bucket edges.")
    num_buckets: int | None = Field(None, ge=2, description="Quantile buckets fitted on the training split.")

    @model_validator(mode="after")
    def _one_of(self) -> BucketizeStep:
        if (self.boundaries is None) == (self.num_buckets is None):
            raise ValueError("give exactly one of 'boundaries' or 'num_buckets'")
        if self.boundaries is not None and sorted(self.boundaries) != self.boundaries:
            raise ValueError(f"boundaries must be sorted ascending, got {self.boundaries}")
        return self


class Clip(Step):
    """Clip to fixed bounds (``min``/``max``) or training quantiles
    (``lower_quantile``/``upper_quantile``); one side may be open. NaN stays NaN."""

    params = ClipStep

    def _validate(self) -> None:
        self._require_numeric()
        c = self.config
        if c.min is not None and c.lower_quantile is not None:
            raise ConfigError(f"{self.where}: expected min or lower_quantile, got both. Hint: keep one of them.")
        if c.max is not None and c.upper_quantile is not None:
            raise ConfigError(f"{self.where}: expected max or upper_quantile, got both. Hint: keep one of them.")
        if all(v is None for v in (c.min, c.max, c.lower_quantile, c.upper_quantile)):
            raise ConfigError(
                f"{self.where}: clip needs a bound; got none. Hint: set min/max, or lower_quantile/upper_quantile."
            )
        if c.min is not None and c.max is not None and c.min > c.max:
            raise ConfigError(f"{self.where}: expected min <= max, got min={c.min} max={c.max}.")
        if c.lower_quantile is not None and c.upper_quantile is not None and c.lower_quantile > c.upper_quantile:
            raise ConfigError(
                f"{self.where}: expected lower_quantile <= upper_quantile, "
                f"got {c.lower_quantile} > {c.upper_quantile}."
            )

    def _levels(self) -> tuple[float, ...]:
        c = self.config
        return tuple(q for q in (c.lower_quantile, c.upper_quantile) if q is not None)

    def needs(self) -> list[StatRequest]:
        levels = self._levels()
        return [StatRequest("quantiles", col, levels) for col in self.columns] if levels else []

    def fit(self, stats: Mapping[StatRequest, Any]) -> FittedStep:
        c = self.config
        levels = self._levels()
        lows, highs = [], []
        for col in self.columns:
            q = dict(zip(levels, stats[StatRequest("quantiles", col, levels)])) if levels else {}
            lows.append(q[c.lower_quantile] if c.lower_quantile is not None else c.min)
            highs.append(q[c.upper_quantile] if c.upper_quantile is not None else c.max)
        return FittedClip(self.columns, lows, highs)


class FittedClip(FittedStep):
    """Fitted ``clip``: bounds per column (None: open side; NaN fitted bound: no clipping)."""

    kind = "clip"

    def __init__(self, columns: list[str], lows: list[float | None], highs: list[float | None]):
        self.columns = list(columns)
        self.lows = [None if v is None else float(v) for v in lows]
        self.highs = [None if v is None else float(v) for v in highs]

    @staticmethod
    def _bound(value: float | None, default: float) -> float:
        return default if value is None or math.isnan(value) else value

    def transform(self, columns: Columns) -> Columns:
        replaced = {}
        for col, lo, hi in zip(self.columns, self.lows, self.highs):
            replaced[col] = {col: np.clip(columns[col], self._bound(lo, -np.inf), self._bound(hi, np.inf))}
        return _splice(columns, replaced)

    def output_types(self, types: Mapping[str, str], where: str | None = None) -> dict[str, str]:
        return _splice(types, {c: {c: "float"} for c in self.columns}, where=where)

    def to_dict(self) -> dict[str, Any]:
        # Only bounds fitted on an all-missing column are NaN; null would read as "open".
        def enc(v):
            return None if v is None else ("nan" if math.isnan(v) else v)

        return {"kind": self.kind, "columns": self.columns,
                "lows": [enc(v) for v in self.lows], "highs": [enc(v) for v in self.highs]}

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> FittedClip:
        def dec(v):
            return math.nan if v == "nan" else v

        return cls(data["columns"], [dec(v) for v in data["lows"]], [dec(v) for v in data["highs"]])


class Log1p(Step):
    """``log(1 + x)``. Values ``<= -1`` become NaN: below -1 it is undefined, and
    at -1 it is -infinity, which XGBoost rejects."""

    params = Log1pStep

    def _validate(self) -> None:
        self._require_numeric()

    def fit(self, stats: Mapping[StatRequest, Any]) -> FittedStep:
        return FittedLog1p(self.columns)


class FittedLog1p(FittedStep):
    """Fitted ``log1p`` (nothing is learned)."""

    kind = "log1p"

    def __init__(self, columns: list[str]):
        self.columns = list(columns)

    def transform(self, columns: Columns) -> Columns:
        replaced = {}
        for col in self.columns:
            x = columns[col]
            with np.errstate(invalid="ignore", divide="ignore"):
                replaced[col] = {col: np.where(x > -1.0, np.log1p(np.where(x > -1.0, x, 0.0)), np.nan)}
        return _splice(columns, replaced)

    def output_types(self, types: Mapping[str, str], where: str | None = None) -> dict[str, str]:
        return _splice(types, {c: {c: "float"} for c in self.columns}, where=where)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "columns": self.columns}

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> FittedLog1p:
        return cls(data["columns"])


class Bucketize(Step):
    """Bucket index ``0..len(edges)``: bucket ``i`` holds ``edges[i-1] <= x < edges[i]``
    (``numpy.digitize``). Edges are ``boundaries`` or the training quantiles at
    ``1/n, ..., (n-1)/n`` for ``num_buckets: n``, duplicates removed (a heavy
    value makes fewer buckets). NaN stays NaN."""

    params = BucketizeStep

    def _validate(self) -> None:
        self._require_numeric()

    def _levels(self) -> tuple[float, ...]:
        n = self.config.num_buckets
        return tuple(i / n for i in range(1, n))

    def needs(self) -> list[StatRequest]:
        if self.config.boundaries is not None:
            return []
        return [StatRequest("quantiles", c, self._levels()) for c in self.columns]

    def fit(self, stats: Mapping[StatRequest, Any]) -> FittedStep:
        if self.config.boundaries is not None:
            edges = [list(self.config.boundaries) for _ in self.columns]
        else:
            edges = []
            for col in self.columns:
                qs = np.asarray(stats[StatRequest("quantiles", col, self._levels())], dtype=np.float64)
                edges.append(np.unique(qs[~np.isnan(qs)]).tolist())
        return FittedBucketize(self.columns, edges)


class FittedBucketize(FittedStep):
    """Fitted ``bucketize``: sorted edges per column."""

    kind = "bucketize"

    def __init__(self, columns: list[str], edges: list[list[float]]):
        self.columns = list(columns)
        self.edges = [[float(e) for e in col_edges] for col_edges in edges]

    def transform(self, columns: Columns) -> Columns:
        replaced = {}
        for col, edges in zip(self.columns, self.edges):
            x = columns[col]
            idx = np.searchsorted(np.asarray(edges, dtype=np.float64), x, side="right").astype(np.float64)
            replaced[col] = {col: np.where(np.isnan(x), np.nan, idx)}
        return _splice(columns, replaced)

    def output_types(self, types: Mapping[str, str], where: str | None = None) -> dict[str, str]:
        return _splice(types, {c: {c: "float"} for c in self.columns}, where=where)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "columns": self.columns, "edges": self.edges}

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> FittedBucketize:
        return cls(data["columns"], data["edges"])
