"""Encoders of text columns: ``one_hot``, ``ordinal`` and ``categorical``.

Unknown categories at transform time never fail: ``one_hot`` gives all zeros (or
``<col>=__other__`` when that column exists), ``ordinal`` and ``categorical`` give
NaN, which XGBoost treats as missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from raypipe.errors import ConfigError, did_you_mean
from raypipe.features.stats import StatRequest
from raypipe.features.steps.base import (
    CODE_TYPE,
    OTHER,
    ColumnStepParams,
    Columns,
    FittedStep,
    Step,
    _index_in,
    _missing_mask,
    _splice,
    _text_array,
    _top_categories,
)

__all__ = [
    "OneHotStep",
    "OrdinalStep",
    "CategoricalStep",
    "OneHot",
    "Ordinal",
    "Categorical",
    "FittedOneHot",
    "FittedCodes",
]


class OneHotStep(ColumnStepParams):
    """Parameters of ``one_hot``."""

    type: Literal["one_hot"] = Field(description="One 0/1 column per category seen in training.")
    max_categories: int | None = Field(
        None, ge=1, description="Keep the most frequent categories; the rest go to <col>=__other__."
    )


class OrdinalStep(ColumnStepParams):
    """Parameters of ``ordinal``."""

    type: Literal["ordinal"] = Field(description="Integer codes by category order (sorted, or `order`).")
    order: dict[str, list[str]] = Field(default_factory=dict, description="Explicit category order per column.")


class CategoricalStep(ColumnStepParams):
    """Parameters of ``categorical``."""

    type: Literal["categorical"] = Field(
        description="Native XGBoost categoricals (codes, enable_categorical); unknown values become missing."
    )
    max_categories: int | None = Field(None, ge=1, description="Keep the most frequent categories; others are missing.")


class OneHot(Step):
    """One 0/1 column ``<col>=<value>`` per training category.

    Categories are ordered by training frequency (descending), ties by value.
    With ``max_categories`` only the most frequent are kept and the rest go to
    ``<col>=__other__``, which then also receives values unseen in training;
    without it, unseen values are all zeros. Missing values give NaN in every
    column of the group (missing stays missing; impute first to get a category).
    """

    params = OneHotStep

    def _validate(self) -> None:
        self._require_text()

    def needs(self) -> list[StatRequest]:
        return [StatRequest("value_counts", c) for c in self.columns]

    def fit(self, stats: Mapping[StatRequest, Any]) -> FittedStep:
        cats, others = [], []
        limit = self.config.max_categories
        for col in self.columns:
            counts = stats[StatRequest("value_counts", col)]
            kept = _top_categories(counts, limit)
            cats.append(kept)
            others.append(limit is not None and sum(1 for v in counts if v is not None) > limit)
        return FittedOneHot(self.columns, cats, others)


class FittedOneHot(FittedStep):
    """Fitted ``one_hot``: the categories of each column, and whether it has ``__other__``."""

    kind = "one_hot"

    def __init__(self, columns: list[str], categories: list[list[str]], others: list[bool]):
        self.columns, self.categories, self.others = list(columns), [list(c) for c in categories], list(others)
        # built once: a one-row online request should not rebuild them
        self._value_sets = [pa.array(c, type=pa.string()) for c in self.categories]

    def _names(self, col: str, cats: list[str], other: bool) -> list[str]:
        return [f"{col}={v}" for v in cats] + ([f"{col}={OTHER}"] if other else [])

    def transform(self, columns: Columns) -> Columns:
        replaced = {}
        for col, cats, other, value_set in zip(self.columns, self.categories, self.others, self._value_sets):
            values = _text_array(columns[col])
            idx = _index_in(values, value_set)
            missing = _missing_mask(values)
            out = {}
            for k, name in enumerate(self._names(col, cats, False)):
                out[name] = np.where(missing, np.nan, (idx == k).astype(np.float64))
            if other:
                out[f"{col}={OTHER}"] = np.where(missing, np.nan, (idx == -1).astype(np.float64))
            replaced[col] = out
        return _splice(columns, replaced)

    def output_types(self, types: Mapping[str, str], where: str | None = None) -> dict[str, str]:
        replaced = {
            col: {name: "float" for name in self._names(col, cats, other)}
            for col, cats, other in zip(self.columns, self.categories, self.others)
        }
        return _splice(types, replaced, where=where)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "columns": self.columns, "categories": self.categories, "others": self.others}

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> FittedOneHot:
        return cls(data["columns"], data["categories"], data["others"])


class Ordinal(Step):
    """Integer codes 0..K-1 by sorted training values, or by ``order[col]``.

    Unknown and missing values become NaN (XGBoost's missing) rather than -1:
    -1 would put them at one arbitrary end of the ordered axis. The codes are
    numeric features (type ``"q"``): trees split on the order.
    """

    params = OrdinalStep

    def _validate(self) -> None:
        self._require_text()
        for col, order in self.config.order.items():
            if col not in self.columns:
                raise ConfigError(
                    f"{self.where}.order: column '{col}' is not in this step's columns "
                    f"({', '.join(self.columns)}).{did_you_mean(col, self.columns)}"
                )
            dupes = sorted({v for v in order if order.count(v) > 1})
            if dupes:
                raise ConfigError(f"{self.where}.order.{col}: expected distinct values, got duplicates {dupes}.")

    def needs(self) -> list[StatRequest]:
        return [StatRequest("value_counts", c) for c in self.columns if c not in self.config.order]

    def fit(self, stats: Mapping[StatRequest, Any]) -> FittedStep:
        cats = []
        for col in self.columns:
            if col in self.config.order:
                cats.append(list(self.config.order[col]))
            else:
                cats.append(sorted(v for v in stats[StatRequest("value_counts", col)] if v is not None))
        return FittedCodes(self.columns, cats, "float")


class Categorical(Step):
    """Native XGBoost categoricals: codes 0..K-1 (float) with feature type ``"c"``.

    Codes follow the sorted order of the kept categories. With
    ``max_categories`` only the most frequent are kept (ties by value). Unknown,
    dropped and missing values become NaN, which XGBoost treats as missing
    (its declared bucket for "none of the training categories").
    """

    params = CategoricalStep

    def _validate(self) -> None:
        self._require_text()

    def needs(self) -> list[StatRequest]:
        return [StatRequest("value_counts", c) for c in self.columns]

    def fit(self, stats: Mapping[StatRequest, Any]) -> FittedStep:
        cats = [
            sorted(_top_categories(stats[StatRequest("value_counts", c)], self.config.max_categories))
            for c in self.columns
        ]
        return FittedCodes(self.columns, cats, CODE_TYPE)


class FittedCodes(FittedStep):
    """Fitted ``ordinal`` (type ``float``) or ``categorical`` (type ``code``): categories per column."""

    kind = "codes"

    def __init__(self, columns: list[str], categories: list[list[str]], out_type: str):
        self.columns, self.categories, self.out_type = list(columns), [list(c) for c in categories], out_type
        self._value_sets = [pa.array(c, type=pa.string()) for c in self.categories]

    def transform(self, columns: Columns) -> Columns:
        replaced = {}
        for col, value_set in zip(self.columns, self._value_sets):
            idx = _index_in(columns[col], value_set)
            replaced[col] = {col: np.where(idx < 0, np.nan, idx.astype(np.float64))}
        return _splice(columns, replaced)

    def output_types(self, types: Mapping[str, str], where: str | None = None) -> dict[str, str]:
        return _splice(types, {c: {c: self.out_type} for c in self.columns}, where=where)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "columns": self.columns, "categories": self.categories, "out_type": self.out_type}

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> FittedCodes:
        return cls(data["columns"], data["categories"], data["out_type"])
