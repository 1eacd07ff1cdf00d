"""What every feature step is made of: its parameters, its unfitted and its fitted form.

A step type is three classes side by side in its family's module:

* a :class:`StepParams` model: the ``features[i]`` entry of the config, validated by
  pydantic (``type`` is its tag; the config's ``features:`` section is the union of
  these models, see :data:`raypipe.features.steps.FeatureStep`);
* a :class:`Step`: those parameters checked at their position in the pipeline (the
  column types they see there); it says which statistics it needs and fits;
* a :class:`FittedStep`: plain numbers and category lists, a vectorized transform and
  a JSON form.

The shared column helpers (``_splice``, ``_text_array``, ...) are private to the
``steps`` package: each family module uses them, nothing outside does.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from raypipe.errors import ConfigError
from raypipe.features.stats import StatRequest

__all__ = [
    "NUMERIC_TYPES",
    "TEXT_TYPES",
    "CODE_TYPE",
    "OTHER",
    "StepParams",
    "ColumnStepParams",
    "Step",
    "FittedStep",
    "feature_type",
]


class StepParams(BaseModel):
    """Parameters of one ``features[i]`` entry: immutable, unknown keys are errors.

    Subclasses declare ``type: Literal["<name>"]`` (the tag of the ``features:``
    union) and the step's options, each with a description.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


class ColumnStepParams(StepParams):
    """Parameters of a step that transforms a list of input columns."""

    columns: list[str] = Field(..., min_length=1, description="Input columns of the step.")


NUMERIC_TYPES = frozenset({"int", "float", "bool"})
#: Schema types whose values are text (need an encoding step).
TEXT_TYPES = frozenset({"category", "string"})
#: Type of categorical codes made by the ``categorical`` step.
CODE_TYPE = "code"
#: Category name of the one-hot column collecting rare and unknown values.
OTHER = "__other__"

Columns = dict[str, Any]


def feature_type(column_type: str) -> str:
    """XGBoost feature type of a final column: ``"c"`` for codes, else ``"q"``."""
    return "c" if column_type == CODE_TYPE else "q"


def _describe(column_type: str) -> str:
    return "categorical codes (made by a categorical step)" if column_type == CODE_TYPE else column_type


def _splice(columns: Mapping[str, Any], replaced: Mapping[str, Mapping[str, Any]], added: Mapping[str, Any] | None = None,
            where: str | None = None) -> dict[str, Any]:
    """New column dict: each replaced column's outputs take its place; ``added`` go last.

    With ``where`` set (fit time), an output name that already exists is a
    ConfigError instead of a silent overwrite.
    """
    out: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        if where is not None and name in out:
            raise ConfigError(
                f"{where}: output column '{name}' already exists at this step. "
                "Hint: rename it (expression name) or drop the existing column first."
            )
        out[name] = value

    for name, value in columns.items():
        if name in replaced:
            for out_name, out_value in replaced[name].items():
                put(out_name, out_value)
        else:
            put(name, value)
    for name, value in (added or {}).items():
        put(name, value)
    return out


def _jnum(x: float | None) -> float | None:
    """A float for JSON: NaN and infinities become null (strict JSON has neither)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _fnum(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _text_array(values: Any) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(values)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = pc.cast(values, pa.string())
    return values


def _index_in(values: Any, categories: pa.Array) -> np.ndarray:
    """Position of each value in ``categories`` (a string array); -1 for unknown and missing."""
    arr = _text_array(values)
    value_set = categories if categories.type == arr.type else categories.cast(arr.type)
    idx = pc.index_in(arr, value_set=value_set)
    return pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _missing_mask(values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return np.isnan(values)
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return arr.is_null().to_numpy(zero_copy_only=False)


def _top_categories(counts: Mapping[Any, int], limit: int | None) -> list[str]:
    """Categories by count (descending), ties by value; the first ``limit``."""
    ranked = sorted(((c, v) for v, c in counts.items() if v is not None), key=lambda cv: (-cv[0], cv[1]))
    values = [v for _, v in ranked]
    return values if limit is None else values[:limit]


# --------------------------------------------------------------------------- bases


class FittedStep:
    """A fitted step: plain parameters, a vectorized transform and a JSON form.

    Subclasses set :attr:`kind` (the ``"kind"`` key of :meth:`to_dict`) and
    implement :meth:`transform`, :meth:`output_types`, :meth:`to_dict`, and a
    ``_from_dict`` classmethod.
    """

    kind: ClassVar[str]
    _registry: ClassVar[dict[str, type[FittedStep]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            FittedStep._registry[cls.kind] = cls

    def transform(self, columns: Columns) -> Columns:
        """Return the new column dict (inputs are never modified in place)."""
        raise NotImplementedError

    def output_types(self, types: Mapping[str, str], where: str | None = None) -> dict[str, str]:
        """The column → type dict after this step, given the one before it.

        With ``where`` (``"features[i]"``), a clash of an output name with an
        existing column raises :class:`~raypipe.errors.ConfigError`.
        """
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """JSON-able parameters, with ``"kind"``; inverse of :meth:`from_dict`."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FittedStep:
        """Rebuild any fitted step from :meth:`to_dict` output (dispatch on ``"kind"``).

        >>> FittedStep.from_dict({"kind": "drop", "columns": ["email"]}).columns
        ['email']
        """
        kind = data.get("kind")
        if kind not in cls._registry:
            raise ValueError(f"fitted feature step: unknown kind {kind!r} (expected one of: {', '.join(sorted(cls._registry))})")
        return cls._registry[kind]._from_dict(data)

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> FittedStep:
        raise NotImplementedError

    def __reduce__(self):
        # Ray ships fitted steps to workers in their JSON form: what runs there is
        # exactly what a saved model bundle would run.
        return (FittedStep.from_dict, (self.to_dict(),))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and _nan_equal(self.to_dict(), other.to_dict())  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()})"


def _nan_equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


class Step:
    """An unfitted step: one ``features[i]`` config, validated at its position.

    Subclasses set :attr:`params` (their :class:`StepParams` model); their
    :attr:`type` is the ``type`` tag of that model, so each name is written once.

    Args:
        config: the step's parameters (an instance of :attr:`params`).
        index: its position ``i`` (used in error messages as ``features[i]``).
        types: column → type of the features entering the step; must hold
            every column the step reads (the pipeline checks existence).

    Raises:
        ConfigError: a column has a type the step cannot use, or the options
            contradict each other.
    """

    params: ClassVar[type[StepParams]]
    type: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "params" in cls.__dict__:
            (cls.type,) = typing.get_args(cls.params.model_fields["type"].annotation)

    def __init__(self, config: Any, index: int, types: Mapping[str, str]):
        self.config = config
        self.index = index
        self.where = f"features[{index}]"
        self.columns: list[str] = list(getattr(config, "columns", []))
        self.types = {c: types[c] for c in self.reads()}
        self._validate()

    def reads(self) -> list[str]:
        """Columns the step reads."""
        return list(self.columns)

    def writes(self) -> set[str]:
        """Columns the step changes, removes or creates (known before fitting)."""
        return set(self.columns)

    def _validate(self) -> None:
        pass

    def needs(self) -> list[StatRequest]:
        """Statistics to compute on the step's input before :meth:`fit`."""
        return []

    def fit(self, stats: Mapping[StatRequest, Any]) -> FittedStep:
        """Build the fitted step from ``stats`` (a superset of :meth:`needs`)."""
        raise NotImplementedError

    # -- shared validation

    def _require(self, allowed: frozenset[str] | set[str], what: str, hint: str) -> None:
        for col in self.columns:
            col_type = self.types[col]
            if col_type not in allowed:
                raise ConfigError(
                    f"{self.where}: {self.type} needs {what}; '{col}' is {_describe(col_type)}. Hint: {hint}"
                )

    def _require_numeric(self) -> None:
        for col in self.columns:
            col_type = self.types[col]
            if col_type in NUMERIC_TYPES:
                continue
            if col_type in TEXT_TYPES:
                hint = "encode it first (ordinal gives numbers), or drop it."
            elif col_type == "datetime":
                hint = "extract numbers with a datetime_parts step first."
            else:
                hint = "codes are labels, not magnitudes; use ordinal instead of categorical for this column."
            raise ConfigError(
                f"{self.where}: {self.type} needs a numeric column; '{col}' is {_describe(col_type)}. Hint: {hint}"
            )

    def _require_text(self) -> None:
        self._require(
            TEXT_TYPES,
            "a category or string column",
            "numeric columns need no encoding; to treat numbers as categories declare the column as type category in data.schema.columns.",
        )
