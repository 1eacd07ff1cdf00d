"""Steps that add or remove whole columns: ``expression`` and ``drop``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from raypipe.errors import ConfigError
from raypipe.features.expression import compile_expression, referenced_names
from raypipe.features.stats import StatRequest
from raypipe.features.steps.base import (
    NUMERIC_TYPES,
    ColumnStepParams,
    Columns,
    FittedStep,
    Step,
    StepParams,
    _describe,
    _splice,
)

__all__ = ["ExpressionStep", "DropStep", "Expression", "Drop", "FittedExpression", "FittedDrop"]


class ExpressionStep(StepParams):
    """Parameters of ``expression`` (it reads the columns its expression names)."""

    type: Literal["expression"] = Field(description="A derived column from a safe arithmetic expression.")
    name: str = Field(..., description="Name of the new column.")
    expr: str = Field(
        ..., description="Expression over columns: + - * / ** %, comparisons, and/or/not, where(), log, sqrt, abs, ..."
    )


class DropStep(ColumnStepParams):
    """Parameters of ``drop``."""

    type: Literal["drop"] = Field(description="Remove columns from the features.")


class Expression(Step):
    """A derived numeric column ``name`` from a safe expression over numeric
    columns (see :mod:`raypipe.features.expression`). A ``name`` that already
    exists is replaced in place (``x = clip(x, 0, 1)``); a new one goes last."""

    params = ExpressionStep

    def __init__(self, config: Any, index: int, types: Mapping[str, str]):
        try:
            self._names = referenced_names(config.expr)
        except ValueError as exc:
            raise ConfigError(f"features[{index}].expr: {exc}") from None
        super().__init__(config, index, types)

    def reads(self) -> list[str]:
        return list(self._names)

    def writes(self) -> set[str]:
        return {self.config.name}

    def _validate(self) -> None:
        for col in self._names:
            col_type = self.types[col]
            if col_type not in NUMERIC_TYPES:
                raise ConfigError(
                    f"{self.where}.expr: expressions need numeric columns; '{col}' is {_describe(col_type)}. "
                    "Hint: encode it first (ordinal), or use a column that holds numbers."
                )

    def fit(self, stats: Mapping[StatRequest, Any]) -> FittedStep:
        return FittedExpression(self.config.name, self.config.expr)


class FittedExpression(FittedStep):
    """Fitted ``expression`` (nothing is learned): the expression text, compiled once."""

    kind = "expression"

    def __init__(self, name: str, expr: str):
        self.name, self.expr = name, expr
        self._fn = compile_expression(expr)

    def transform(self, columns: Columns) -> Columns:
        n_rows = len(next(iter(columns.values()))) if columns else 0
        value = self._fn({n: columns[n] for n in self._fn.names}, n_rows=n_rows)
        if self.name in columns:
            return _splice(columns, {self.name: {self.name: value}})
        return _splice(columns, {}, {self.name: value})

    def output_types(self, types: Mapping[str, str], where: str | None = None) -> dict[str, str]:
        if self.name in types:
            return _splice(types, {self.name: {self.name: "float"}}, where=where)
        return _splice(types, {}, {self.name: "float"}, where=where)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "expr": self.expr}

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> FittedExpression:
        return cls(data["name"], data["expr"])


class Drop(Step):
    """Remove columns from the features (any type)."""

    params = DropStep

    def fit(self, stats: Mapping[StatRequest, Any]) -> FittedStep:
        return FittedDrop(self.columns)


class FittedDrop(FittedStep):
    """Fitted ``drop``."""

    kind = "drop"

    def __init__(self, columns: list[str]):
        self.columns = list(columns)

    def transform(self, columns: Columns) -> Columns:
        return _splice(columns, {c: {} for c in self.columns})

    def output_types(self, types: Mapping[str, str], where: str | None = None) -> dict[str, str]:
        return _splice(types, {c: {} for c in self.columns}, where=where)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "columns": self.columns}

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> FittedDrop:
        return cls(data["columns"])
