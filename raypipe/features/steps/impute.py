"""The ``impute`` step: fill missing values with a training statistic or a constant."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pyarrow.compute as pc
from pydantic import Field, model_validator

from raypipe.errors import ConfigError
from raypipe.features.stats import StatRequest
from raypipe.features.steps.base import (
    NUMERIC_TYPES,
    TEXT_TYPES,
    ColumnStepParams,
    Columns,
    FittedStep,
    Step,
    _describe,
    _fnum,
    _jnum,
    _missing_mask,
    _splice,
    _text_array,
    _top_categories,
)

__all__ = ["ImputeStep", "Impute", "FittedImpute"]


class ImputeStep(ColumnStepParams):
    """Parameters of ``impute``."""

    type: Literal["impute"] = Field(description="Fill missing values with a statistic of the training split.")
    strategy: Literal["mean", "median", "most_frequent", "constant"] = Field("median", description="What to fill with.")
    fill_value: float | str | None = Field(None, description="The value for strategy 'constant'.")
    add_indicator: bool = Field(False, description="Also emit <col>__missing (1.0 where the value was missing).")

    @model_validator(mode="after")
    def _constant_needs_value(self) -> ImputeStep:
        if self.strategy == "constant" and self.fill_value is None:
            raise ValueError("strategy 'constant' needs fill_value")
        return self


class Impute(Step):
    """Fill missing values with a training statistic or a constant.

    * numeric columns: ``mean``, ``median``, ``most_frequent`` (ties: smallest
      value, as scikit-learn) or ``constant`` (a number);
    * text columns: ``most_frequent`` or ``constant`` (a string, e.g. ``Unknown``);
    * a column with no value at all in training has nothing to learn from and
      stays missing (``mean``/``median``/``most_frequent``);
    * ``add_indicator`` adds ``<col>__missing`` (1.0 where the value was
      missing) right after each column.
    """

    params = ImputeStep

    def writes(self) -> set[str]:
        return set(self.columns) | ({f"{c}__missing" for c in self.columns} if self.config.add_indicator else set())

    def _validate(self) -> None:
        strategy, fill = self.config.strategy, self.config.fill_value
        for col in self.columns:
            col_type = self.types[col]
            if col_type in TEXT_TYPES:
                if strategy in ("mean", "median"):
                    raise ConfigError(
                        f"{self.where}: impute strategy '{strategy}' needs a numeric column; '{col}' is {col_type}. "
                        "Hint: use strategy most_frequent or constant."
                    )
                if strategy == "constant" and not isinstance(fill, str):
                    raise ConfigError(
                        f"{self.where}.fill_value: expected text for {col_type} column '{col}', got the number {fill!r}. "
                        f"Hint: quote it, fill_value: '{fill}'."
                    )
            elif col_type in NUMERIC_TYPES:
                if strategy == "constant" and isinstance(fill, str):
                    raise ConfigError(
                        f"{self.where}.fill_value: expected a number for {col_type} column '{col}', got {fill!r}. "
                        "Hint: impute text columns in a step of their own."
                    )
            elif col_type == "datetime":
                raise ConfigError(
                    f"{self.where}: impute needs a numeric or text column; '{col}' is datetime. "
                    "Hint: extract numbers with a datetime_parts step first, then impute those."
                )
            else:
                raise ConfigError(
                    f"{self.where}: impute needs a numeric or text column; '{col}' is {_describe(col_type)}. "
                    "Hint: impute before the categorical step (missing codes are already XGBoost's missing)."
                )

    def needs(self) -> list[StatRequest]:
        strategy = self.config.strategy
        if strategy == "constant":
            return []
        if strategy == "median":
            return [StatRequest("quantiles", c, (0.5,)) for c in self.columns]
        if strategy == "mean":
            return [StatRequest("mean", c) for c in self.columns]
        return [StatRequest("value_counts", c) for c in self.columns]

    def fit(self, stats: Mapping[StatRequest, Any]) -> FittedStep:
        fills: list[Any] = []
        for col in self.columns:
            text = self.types[col] in TEXT_TYPES
            strategy = self.config.strategy
            if strategy == "constant":
                fill = self.config.fill_value if text else float(self.config.fill_value)
            elif strategy == "median":
                fill = stats[StatRequest("quantiles", col, (0.5,))][0]
            elif strategy == "mean":
                fill = stats[StatRequest("mean", col)]
            else:
                top = _top_categories(stats[StatRequest("value_counts", col)], 1)
                fill = top[0] if top else (None if text else math.nan)
            fills.append(fill)
        texts = [self.types[c] in TEXT_TYPES for c in self.columns]
        return FittedImpute(self.columns, fills, texts, self.config.add_indicator)


class FittedImpute(FittedStep):
    """Fitted ``impute``: one fill value per column (None/NaN: leave missing)."""

    kind = "impute"

    def __init__(self, columns: list[str], fills: list[Any], texts: list[bool], indicator: bool):
        self.columns, self.fills, self.texts, self.indicator = list(columns), list(fills), list(texts), bool(indicator)

    def transform(self, columns: Columns) -> Columns:
        replaced: dict[str, dict[str, Any]] = {}
        for col, fill, text in zip(self.columns, self.fills, self.texts):
            values = columns[col]
            missing = _missing_mask(values)
            if text:
                filled = pc.fill_null(_text_array(values), fill) if fill is not None else values
            else:
                filled = values if math.isnan(fill) else np.where(missing, fill, values)
            out = {col: filled}
            if self.indicator:
                out[f"{col}__missing"] = missing.astype(np.float64)
            replaced[col] = out
        return _splice(columns, replaced)

    def output_types(self, types: Mapping[str, str], where: str | None = None) -> dict[str, str]:
        replaced = {}
        for col in self.columns:
            replaced[col] = {col: types[col], **({f"{col}__missing": "float"} if self.indicator else {})}
        return _splice(types, replaced, where=where)

    def to_dict(self) -> dict[str, Any]:
        fills = [f if t else _jnum(f) for f, t in zip(self.fills, self.texts)]
        return {"kind": self.kind, "columns": self.columns, "fills": fills, "texts": self.texts, "indicator": self.indicator}

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> FittedImpute:
        fills = [f if t else _fnum(f) for f, t in zip(data["fills"], data["texts"])]
        return cls(data["columns"], fills, data["texts"], data["indicator"])
