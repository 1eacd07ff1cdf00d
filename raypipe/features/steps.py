"""Feature steps: one class per ``features[i].type``, unfitted and fitted.

An unfitted :class:`Step` is a config step validated at its position in the
pipeline (the column types it sees there). It says which statistics it needs
(:meth:`Step.needs`) and turns them into a :class:`FittedStep`
(:meth:`Step.fit`). A fitted step only holds numbers and category lists, so it
serializes to JSON (:meth:`FittedStep.to_dict`) and transforms batches of any
size with vectorized numpy/pyarrow code (:meth:`FittedStep.transform`).

Column values inside the pipeline:

* numeric columns (schema ``int``/``float``/``bool`` and every numeric step
  output): float64 numpy arrays, NaN for missing;
* text columns (``category``/``string``): pyarrow string arrays, null for missing;
* ``datetime`` columns: pyarrow timestamp arrays;
* categorical codes (type ``code``, output of ``categorical``): float64 numpy
  arrays of 0..K-1, NaN for missing or unknown; XGBoost feature type ``"c"``.

Semantics worth knowing (each class docstring has the details):

* missing values stay missing (NaN) through every numeric step, except
  ``impute`` and the expression functions ``isnull``/``fillna``;
* unknown categories at transform time never fail: ``one_hot`` gives all zeros
  (or ``<col>=__other__`` when that column exists), ``ordinal`` and
  ``categorical`` give NaN, which XGBoost treats as missing;
* scalers divide by 1 when the training spread is zero (a constant column).

Example:
    >>> import numpy as np
    >>> from raypipe.config import StandardScaleStep
    >>> step = make_step(StandardScaleStep(type="standard_scale", columns=["x"]), 0, {"x": "float"})
    >>> [r.kind for r in step.needs()]
    ['mean', 'std', 'count', 'null_count']
    >>> fitted = step.fit(dict(zip(step.needs(), [2.0, 0.5, 10, 0])))
    >>> fitted.transform({"x": np.array([1.0, np.nan])})["x"].tolist()
    [-2.0, nan]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raypipe.errors import ConfigError, did_you_mean
from raypipe.features.expression import compile_expression, referenced_names
from raypipe.features.stats import StatRequest

__all__ = [
    "NUMERIC_TYPES",
    "TEXT_TYPES",
    "CODE_TYPE",
    "OTHER",
    "Step",
    "FittedStep",
    "make_step",
    "feature_type",
]

#: Schema types whose values are numbers inside the pipeline.
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

    Args:
        config: the pydantic step model from :mod:`raypipe.config`.
        index: its position ``i`` (used in error messages as ``features[i]``).
        types: column → type of the features entering the step; must hold
            every column the step reads (the pipeline checks existence).

    Raises:
        ConfigError: a column has a type the step cannot use, or the options
            contradict each other.
    """

    type: ClassVar[str]
    _registry: ClassVar[dict[str, type[Step]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type" in cls.__dict__:
            Step._registry[cls.type] = cls

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


def make_step(config: Any, index: int, types: Mapping[str, str]) -> Step:
    """The unfitted :class:`Step` for a config step model at position ``index``.

    Raises:
        ConfigError: as :class:`Step`.
    """
    try:
        cls = Step._registry[config.type]
    except KeyError:
        raise ConfigError(
            f"features[{index}].type: unknown transform {config.type!r}. "
            f"Expected one of: {', '.join(Step._registry)}."
        ) from None
    return cls(config, index, types)


# --------------------------------------------------------------------------- impute


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

    type = "impute"

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


# --------------------------------------------------------------------------- encoders


class OneHot(Step):
    """One 0/1 column ``<col>=<value>`` per training category.

    Categories are ordered by training frequency (descending), ties by value.
    With ``max_categories`` only the most frequent are kept and the rest go to
    ``<col>=__other__``, which then also receives values unseen in training;
    without it, unseen values are all zeros. Missing values give NaN in every
    column of the group (missing stays missing; impute first to get a category).
    """

    type = "one_hot"

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

    type = "ordinal"

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

    type = "categorical"

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


# --------------------------------------------------------------------------- scalers


class StandardScale(Step):
    """``(x - mean) / std`` with the population std (ddof=0, as scikit-learn).

    A column indistinguishable from a constant divides by 1 instead, so it
    becomes ``x - mean`` rather than NaN, infinity or amplified rounding noise.
    "Indistinguishable" is scikit-learn's test (Chan, Golub and LeVeque's error
    bound of the variance): ``var <= n*eps*var + (n*mean*eps)**2`` with ``n``
    non-missing values; it also keeps a Ray fit (merged per block) and a local
    fit of a constant column identical.
    """

    type = "standard_scale"

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

    type = "minmax_scale"

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

    type = "robust_scale"
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


# --------------------------------------------------------------------------- clip, log1p, bucketize


class Clip(Step):
    """Clip to fixed bounds (``min``/``max``) or training quantiles
    (``lower_quantile``/``upper_quantile``); one side may be open. NaN stays NaN."""

    type = "clip"

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

    type = "log1p"

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

    type = "bucketize"

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


# --------------------------------------------------------------------------- datetime, expression, drop

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

    type = "datetime_parts"

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


class Expression(Step):
    """A derived numeric column ``name`` from a safe expression over numeric
    columns (see :mod:`raypipe.features.expression`). A ``name`` that already
    exists is replaced in place (``x = clip(x, 0, 1)``); a new one goes last."""

    type = "expression"

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

    type = "drop"

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

