"""The ``datetime_parts`` step: numeric parts of datetime columns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from raypipe.features.stats import StatRequest
from raypipe.features.steps.base import ColumnStepParams, Columns, FittedStep, Step, _splice

__all__ = ["DATETIME_PARTS", "DatetimePartsStep", "DatetimeParts", "FittedDatetimeParts"]

#: Parts a ``datetime_parts`` step can emit.
DATETIME_PARTS = ("year", "month", "day", "hour", "minute", "weekday", "dayofyear", "is_weekend")


class DatetimePartsStep(ColumnStepParams):
    """Parameters of ``datetime_parts``."""

    type: Literal["datetime_parts"] = Field(description="Numeric parts of datetime columns as <col>_<part>.")
    parts: list[Literal["year", "month", "day", "hour", "minute", "weekday", "dayofyear", "is_weekend"]] = Field(
        default_factory=lambda: ["hour", "weekday", "month"], description="Which parts to emit."
    )
    drop_original: bool = Field(True, description="Remove the datetime column after extracting its parts.")


_PARTS = {
    "year": pc.year,
    "month": pc.month,
    "day": pc.day,
    "hour": pc.hour,
    "minute": pc.minute,
    "weekday": pc.day_of_week,  # Monday = 0, as pandas
    "dayofyear": pc.day_of_year,  # 1..366
}


class DatetimeParts(Step):
    """Numeric parts ``<col>_<part>`` of datetime columns (``weekday``: Monday = 0;
    ``is_weekend``: 1.0 on Saturday and Sunday). Missing timestamps give NaN."""

    params = DatetimePartsStep

    def _validate(self) -> None:
        self._require({"datetime"}, "a datetime column", "declare it as type datetime in data.schema.columns.")

    def writes(self) -> set[str]:
        return set(self.columns) | {f"{c}_{p}" for c in self.columns for p in self.config.parts}

    def fit(self, stats: Mapping[StatRequest, Any]) -> FittedStep:
        return FittedDatetimeParts(self.columns, list(self.config.parts), self.config.drop_original)


class FittedDatetimeParts(FittedStep):
    """Fitted ``datetime_parts`` (nothing is learned)."""

    kind = "datetime_parts"

    def __init__(self, columns: list[str], parts: list[str], drop_original: bool):
        self.columns, self.parts, self.drop_original = list(columns), list(parts), bool(drop_original)

    def _layout(self, col: str, original: Any, parts: dict[str, Any]) -> dict[str, Any]:
        out = {} if self.drop_original else {col: original}
        out.update({f"{col}_{p}": parts[p] for p in self.parts})
        return out

    def transform(self, columns: Columns) -> Columns:
        replaced = {}
        for col in self.columns:
            values = columns[col]
            if isinstance(values, pa.ChunkedArray):
                values = values.combine_chunks()
            parts = {}
            for part in self.parts:
                fn = _PARTS["weekday"] if part == "is_weekend" else _PARTS[part]
                x = pc.cast(fn(values), pa.float64()).to_numpy(zero_copy_only=False)
                parts[part] = np.where(np.isnan(x), np.nan, (x >= 5).astype(np.float64)) if part == "is_weekend" else x
            replaced[col] = self._layout(col, columns[col], parts)
        return _splice(columns, replaced)

    def output_types(self, types: Mapping[str, str], where: str | None = None) -> dict[str, str]:
        replaced = {c: self._layout(c, types[c], dict.fromkeys(self.parts, "float")) for c in self.columns}
        return _splice(types, replaced, where=where)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "columns": self.columns, "parts": self.parts, "drop_original": self.drop_original}

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> FittedDatetimeParts:
        return cls(data["columns"], data["parts"], data["drop_original"])
