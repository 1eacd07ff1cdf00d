"""FeaturePipeline: the config's ``features:`` steps, fitted in order, as one object.

One pipeline object serves every path: it is fitted on the training split
(:meth:`FeaturePipeline.fit_local` in memory, or
:func:`raypipe.features.ray_fit.fit_on_dataset` with Ray Data aggregations),
saved as JSON in the model bundle (:meth:`~FeaturePipeline.to_json`), and its
:meth:`~FeaturePipeline.transform` runs unchanged in Ray Data ``map_batches``
and in a Serve replica for a single request row.

Rules:

* The features entering step 0 are the input columns minus ``exclude`` (label,
  weight and id columns, which never become features).
* Each step's columns must exist at its position (ConfigError with a
  did-you-mean otherwise). Steps are fitted in order: the statistics of step k
  are those of the output of steps 0..k-1.
* After the last step every feature must be numeric. Text or datetime columns
  left unencoded are a ConfigError (raised when the pipeline is built), not
  silently auto-encoded: the config then says exactly what the model sees.
* :meth:`~FeaturePipeline.transform` returns float32 columns in
  :attr:`~FeaturePipeline.feature_names` order; missing values are NaN (Arrow
  non-null NaN, which XGBoost reads as missing); infinite values become NaN.

Example:
    >>> import pyarrow as pa
    >>> from raypipe.features.steps import CategoricalStep, ImputeStep
    >>> steps = [ImputeStep(type="impute", columns=["age"], strategy="median"),
    ...          CategoricalStep(type="categorical", columns=["color"])]
    >>> fp = FeaturePipeline(steps, {"age": "int", "color": "category", "y": "int"}, exclude=["y"])
    >>> t = pa.table({"age": [20, None, 40], "color": ["red", "blue", None], "y": [0, 1, 0]})
    >>> fp.fit_local(t).transform(t).to_pydict()
    {'age': [20.0, 30.0, 40.0], 'color': [1.0, 0.0, nan]}
    >>> fp.feature_types
    ['q', 'c']
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import TypeAdapter, ValidationError

from raypipe.errors import ConfigError, SchemaError, did_you_mean
from raypipe.features.expression import referenced_names
from raypipe.features.label import LabelEncoder
from raypipe.features.stats import StatRequest, compute_stats, empty_stat
from raypipe.features.steps import (
    NUMERIC_TYPES,
    TEXT_TYPES,
    FeatureStep,
    FittedStep,
    OneHot,
    Step,
    feature_type,
    make_step,
)

__all__ = ["FeaturePipeline", "StatsFn", "SCHEMA_TYPES"]

#: Column types of ``data.schema.columns``.
SCHEMA_TYPES = ("int", "float", "string", "category", "bool", "datetime")

#: ``stats_fn(step_index, requests, partial_pipeline) -> {request: value}``: compute
#: ``requests`` on ``partial_pipeline.intermediate(rows)``, the output of the
#: fitted steps ``0..step_index-1`` (see :meth:`FeaturePipeline.fit_with`).
StatsFn = Callable[[int, list[StatRequest], "FeaturePipeline"], Mapping[StatRequest, Any]]

_FORMAT = "raypipe.feature_pipeline"
_VERSION = 1


def _step_models(steps: Iterable[Any]) -> list[Any]:
    """Step parameter models; plain dicts are validated into them (:data:`FeatureStep`)."""
    adapter = TypeAdapter(FeatureStep)
    out = []
    for i, step in enumerate(steps):
        if isinstance(step, Mapping):
            try:
                step = adapter.validate_python(dict(step))
            except ValidationError as exc:
                raise ConfigError(f"features[{i}]: {exc.errors()[0]['msg']} (got {dict(step)!r}).") from None
        out.append(step)
    return out


def _reads(config: Any, index: int) -> list[str]:
    if config.type == "expression":
        try:
            return referenced_names(config.expr)
        except ValueError as exc:
            raise ConfigError(f"features[{index}].expr: {exc}") from None
    return list(config.columns)


class FeaturePipeline:
    """Fit-once, transform-anywhere feature steps.

    Args:
        steps: the config's ``features`` list (step parameter models from
            :mod:`raypipe.features.steps`, or equivalent dicts).
        input_types: column → schema type (``int``, ``float``, ``string``,
            ``category``, ``bool``, ``datetime``) of the validated rows, in
            column order; label/weight/id columns may be included.
        exclude: columns that are never features (label, weight, id).
        label: the label column, if the pipeline should also encode labels
            (added to ``exclude``).
        task: ``binary_classification``, ``multiclass`` or ``regression``
            (required with ``label``).
        positive_class: binary only, see :class:`~raypipe.features.label.LabelEncoder`.

    Raises:
        ConfigError: a step names a column that is not a feature at its
            position, a step cannot use a column's type, options contradict,
            or text/datetime columns are left unencoded after the last step.
    """

    def __init__(
        self,
        steps: Sequence[Any],
        input_types: Mapping[str, str],
        exclude: Iterable[str] = (),
        *,
        label: str | None = None,
        task: str | None = None,
        positive_class: str | None = None,
    ):
        self.steps = _step_models(steps)
        self.input_types = dict(input_types)
        for col, col_type in self.input_types.items():
            if col_type not in SCHEMA_TYPES:
                raise ConfigError(
                    f"data.schema.columns.{col}.type: unknown type {col_type!r}.{did_you_mean(col_type, SCHEMA_TYPES)} "
                    f"Expected one of: {', '.join(SCHEMA_TYPES)}."
                )
        self.exclude = list(dict.fromkeys([*exclude, *([label] if label else [])]))
        self.label = label
        self.label_encoder: LabelEncoder | None = None
        if label is not None:
            if task is None:
                raise ConfigError("model.task: a label column is given, so the task is required.")
            label_type = self.input_types.get(label)
            if task == "regression" and label_type is not None and label_type not in NUMERIC_TYPES:
                raise ConfigError(
                    f"model.task: regression needs a numeric label; '{label}' is {label_type}. "
                    "Hint: use binary_classification or multiclass, or declare the label as float."
                )
            self.label_encoder = LabelEncoder(task, positive_class, column=label)
        #: Columns entering step 0, with their types.
        self.input_features: dict[str, str] = {c: t for c, t in self.input_types.items() if c not in self.exclude}
        self._fitted: list[FittedStep] = []
        self._final_types: dict[str, str] | None = None
        #: Number of ``stats_fn`` calls (data passes) of the last fit.
        self.stats_passes = 0
        self._check_static()

    # ------------------------------------------------------------------ validation

    def _make(self, index: int, types: Mapping[str, str], consumed: Mapping[str, int],
              deferred: Mapping[str, int] | None = None) -> Step:
        """The unfitted step ``index`` after checking its columns exist in ``types``.

        ``deferred`` maps one-hot input columns of unfitted steps to their
        index; reads of ``<col>=<value>`` for those are accepted as numeric
        until the categories are known.
        """
        config = self.steps[index]
        reads = _reads(config, index)
        field = "expr" if config.type == "expression" else "columns"
        dupes = sorted({c for c in reads if reads.count(c) > 1}) if field == "columns" else []
        if dupes:
            raise ConfigError(f"features[{index}].columns: expected distinct columns, got {dupes} more than once.")
        view = dict(types)
        for col in reads:
            if col in view:
                continue
            if deferred and any(col.startswith(f"{src}=") for src in deferred):
                view[col] = "float"
                continue
            raise ConfigError(self._missing_message(index, field, col, types, consumed))
        return make_step(config, index, view)

    def _missing_message(self, index: int, field: str, col: str, types: Mapping[str, str],
                         consumed: Mapping[str, int]) -> str:
        where = f"features[{index}].{field}"
        if col in self.exclude:
            role = "the label" if col == self.label else "excluded (label, weight or id)"
            return f"{where}: column '{col}' is {role} and cannot be a feature."
        if col in consumed:
            j = consumed[col]
            return (
                f"{where}: column '{col}' is not a feature at this step: features[{j}] "
                f"({self.steps[j].type}) replaced or removed it. Hint: move this step before features[{j}]."
            )
        return (
            f"{where}: column '{col}' is not a feature at this step.{did_you_mean(col, list(types))} "
            f"Features here: {', '.join(types) or 'none'}."
        )

    def _advance(self, index: int, fitted: FittedStep, types: Mapping[str, str], consumed: dict[str, int]) -> dict[str, str]:
        """Types after ``fitted``; checks outputs against excluded names; records removed columns."""
        where = f"features[{index}]"
        after = fitted.output_types(types, where=where)
        for name in after:
            if name in self.exclude and name not in types:
                raise ConfigError(
                    f"{where}: output column '{name}' has the name of an excluded column (label, weight or id). "
                    "Hint: choose another name."
                )
        for name in types:
            if name not in after or after[name] != types[name]:
                consumed.setdefault(name, index)
        return after

    def _check_static(self) -> None:
        """Walk every step with the types known before fitting (Hamilton-style: fail before running)."""
        types = dict(self.input_features)
        consumed: dict[str, int] = {}
        deferred: dict[str, int] = {}
        for i in range(len(self.steps)):
            step = self._make(i, types, consumed, deferred)
            fitted = step.fit({r: empty_stat(r) for r in step.needs()})
            if isinstance(step, OneHot):
                deferred.update(dict.fromkeys(step.columns, i))
            # Names read from a one-hot group exist only after fitting: let them pass here.
            types = self._advance(i, fitted, {**step.types, **types} if deferred else types, consumed)
        self._check_final(types)

    def _check_final(self, types: Mapping[str, str]) -> None:
        left = {c: t for c, t in types.items() if t in TEXT_TYPES or t == "datetime"}
        if left:
            shown = ", ".join(f"'{c}' ({t})" for c, t in left.items())
            hints = []
            if any(t in TEXT_TYPES for t in left.values()):
                hints.append("add a categorical or one_hot step for the text columns")
            if any(t == "datetime" for t in left.values()):
                hints.append("add a datetime_parts step for the datetime columns")
            raise ConfigError(
                f"features: expected only numeric features after the last step; {shown} "
                f"{'is' if len(left) == 1 else 'are'} not encoded. Hint: {', and '.join(hints)}, or drop them."
            )
        if not types and not any(s.type == "one_hot" for s in self.steps):
            raise ConfigError("features: expected at least one feature after the last step, got none.")

    # ------------------------------------------------------------------ fitting

    @property
    def fitted(self) -> bool:
        """Whether every step (and the label encoder, if any) is fitted."""
        return len(self._fitted) == len(self.steps) and self._final_types is not None and (
            self.label_encoder is None or self.label_encoder.fitted
        )

    def _partial(self, fitted: list[FittedStep]) -> FeaturePipeline:
        partial = copy.copy(self)
        partial._fitted = list(fitted)
        partial._final_types = None
        return partial

    def fit_with(self, stats_fn: StatsFn, *, batch: bool = True) -> FeaturePipeline:
        """Fit every step in order, asking ``stats_fn`` for the statistics.

        ``stats_fn(step_index, requests, partial)`` must compute ``requests`` on
        ``partial.intermediate(rows)`` of the training rows, where ``partial``
        has steps ``0..step_index-1`` fitted. With ``batch`` (default), the
        steps from ``step_index`` on share that call as long as none of them
        needs statistics of a column an earlier step of the call changes (steps
        with nothing to learn never end a call), so a distributed fit makes as
        few data passes as possible; the label's statistics join the first
        call. :attr:`stats_passes` counts the calls.

        Returns:
            ``self``, fitted.

        Raises:
            ConfigError: a column named after a one-hot output does not exist
                once the categories are known, or output names clash.
            DataError: the label does not fit the task.

        Example:
            >>> import pyarrow as pa
            >>> from raypipe.features.stats import compute_stats
            >>> fp = FeaturePipeline([{"type": "standard_scale", "columns": ["x"]}], {"x": "float"})
            >>> t = pa.table({"x": [1.0, 3.0]})
            >>> fp.fit_with(lambda i, reqs, partial: compute_stats(reqs, partial.intermediate(t))).transform(t).to_pydict()
            {'x': [-1.0, 1.0]}
        """
        fitted: list[FittedStep] = []
        types = dict(self.input_features)
        consumed: dict[str, int] = {}
        pending_label = self.label_encoder.needs() if self.label_encoder is not None else []
        label_done = False
        passes = 0
        n = len(self.steps)
        i = 0
        while i < n:
            step = self._make(i, types, consumed)
            if not step.needs():
                # Nothing to learn: fit now, so the next group starts after it.
                done = step.fit({})
                types = self._advance(i, done, types, consumed)
                fitted.append(done)
                i += 1
                continue
            end = i + 1
            # needs() depends only on the config and the input types; grouped steps
            # read columns untouched since step i, so their types are final here.
            requests = list(step.needs())
            if batch:
                writes = step.writes()
                onehot = set(step.columns) if isinstance(step, OneHot) else set()
                gtypes = self._advance(i, step.fit({r: empty_stat(r) for r in step.needs()}), types, dict(consumed))
                while end < n:
                    reads = _reads(self.steps[end], end)
                    depends = any(r in writes or any(r.startswith(f"{c}=") for c in onehot) for r in reads)
                    nxt = self._make(end, gtypes, consumed, deferred=dict.fromkeys(onehot, i))
                    if depends and nxt.needs():
                        break  # its statistics need the output of a step that is not fitted yet
                    # A step with nothing to learn joins even if it reads this pass's
                    # outputs; what it writes then counts as unfitted for later steps.
                    requests += nxt.needs()
                    writes |= nxt.writes()
                    if isinstance(nxt, OneHot):
                        onehot |= set(nxt.columns)
                    fit = nxt.fit({r: empty_stat(r) for r in nxt.needs()})
                    gtypes = self._advance(end, fit, {**nxt.types, **gtypes}, dict(consumed))
                    end += 1
            if not label_done:
                requests += pending_label
            requests = list(dict.fromkeys(requests))
            stats = dict(stats_fn(i, requests, self._partial(fitted)))
            passes += 1
            if not label_done:
                if self.label_encoder is not None:
                    self.label_encoder.fit(stats)
                label_done = True
            for k in range(i, end):
                step_k = self._make(k, types, consumed)
                done = step_k.fit(stats)
                types = self._advance(k, done, types, consumed)
                fitted.append(done)
            i = end
        if not label_done and pending_label:
            stats = dict(stats_fn(n, list(pending_label), self._partial(fitted)))
            passes += 1
            self.label_encoder.fit(stats)  # type: ignore[union-attr]
        self._check_final(types)
        if not types:
            raise ConfigError("features: expected at least one feature after the last step, got none.")
        self._fitted = fitted
        self._final_types = types
        self.stats_passes = passes
        return self

    def fit_local(self, table: pa.Table, *, batch: bool = True) -> FeaturePipeline:
        """Fit on an in-memory Arrow table with :func:`~raypipe.features.stats.compute_stats`.

        Returns:
            ``self``, fitted.

        Example:
            >>> import pyarrow as pa
            >>> fp = FeaturePipeline([{"type": "minmax_scale", "columns": ["x"]}], {"x": "int"})
            >>> fp.fit_local(pa.table({"x": [0, 5, 10]})).transform(pa.table({"x": [5]})).to_pydict()
            {'x': [0.5]}
        """

        def stats_fn(_: int, requests: list[StatRequest], partial: FeaturePipeline) -> dict:
            return compute_stats(requests, partial.intermediate(table))

        return self.fit_with(stats_fn, batch=batch)

    # ------------------------------------------------------------------ transforming

    def _entry(self, table: pa.Table) -> dict[str, Any]:
        """The input features as pipeline column values (float64 numpy / Arrow text / Arrow timestamps)."""
        columns: dict[str, Any] = {}
        names = table.column_names
        for name, col_type in self.input_features.items():
            if name not in names:
                raise SchemaError(
                    f"feature input: column '{name}' ({col_type}) is missing.{did_you_mean(name, names)} "
                    f"Columns given: {', '.join(names) or 'none'}."
                )
            col = table.column(name)
            try:
                if col_type in NUMERIC_TYPES:
                    if col.type != pa.float64():
                        col = pc.cast(col, pa.float64())
                    columns[name] = col.to_numpy()
                elif col_type in TEXT_TYPES:
                    arr = col.combine_chunks()
                    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
                        arr = pc.cast(arr, pa.string())
                    columns[name] = arr
                else:
                    arr = col.combine_chunks()
                    if not pa.types.is_timestamp(arr.type):
                        arr = pc.cast(arr, pa.timestamp("us"))
                    columns[name] = arr
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise SchemaError(f"feature input: column '{name}': expected {col_type}, got {col.type} ({exc}).") from None
        return columns

    def _apply(self, table: pa.Table) -> dict[str, Any]:
        columns = self._entry(table)
        for step in self._fitted:
            columns = step.transform(columns)
        return columns

    def intermediate(self, table: pa.Table) -> pa.Table:
        """The rows after the fitted steps, as Arrow, for computing statistics.

        Numeric values are float64 with Arrow nulls for missing (so Ray Data
        aggregations skip them); text and timestamps are as is; excluded columns
        present in ``table`` are passed through unchanged. On a partially fitted
        pipeline (inside :meth:`fit_with`) only the fitted steps are applied.
        """
        columns = self._apply(table)
        arrays, names = [], []
        for name, value in columns.items():
            arrays.append(pa.array(value, from_pandas=True) if isinstance(value, np.ndarray) else value)
            names.append(name)
        for name in self.exclude:
            if name in table.column_names and name not in columns:
                arrays.append(table.column(name))
                names.append(name)
        if not names:
            return pa.table({"__rows__": pa.nulls(table.num_rows)})
        return pa.Table.from_arrays(arrays, names=names)

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("FeaturePipeline is not fitted; call fit_local() or ray_fit.fit_on_dataset() first")

    def transform(self, table: pa.Table, *, passthrough: Sequence[str] = (), label: bool = False) -> pa.Table:
        """Feature columns (float32, :attr:`feature_names` order) for the rows of ``table``.

        The same pure function runs in Ray Data ``map_batches`` and for one
        online request row; it never calls pandas.

        Args:
            table: validated rows holding at least the input feature columns
                (label/weight/id may be absent; other columns are ignored).
            passthrough: columns of ``table`` appended unchanged after the
                features (e.g. the weight and id columns).
            label: append the encoded label (float64) under the label's name.

        Raises:
            SchemaError: a feature input column is missing or has an unusable type.
            DataError: ``label=True`` and a label value is missing or unseen.

        Example:
            >>> import pyarrow as pa
            >>> fp = FeaturePipeline([{"type": "log1p", "columns": ["x"]}], {"x": "float", "id": "int"}, ["id"])
            >>> fp.fit_local(pa.table({"x": [0.0], "id": [1]})).transform(pa.table({"x": [-2.0], "id": [7]}), passthrough=["id"]).to_pydict()
            {'x': [nan], 'id': [7]}
        """
        self._require_fitted()
        columns = self._apply(table)
        arrays = []
        for name in self._final_types:  # type: ignore[union-attr]
            out = np.array(columns[name], dtype=np.float32)
            # XGBoost rejects infinite values: they are missing here.
            out[np.isinf(out)] = np.nan
            arrays.append(pa.array(out))
        names = list(self._final_types)  # type: ignore[arg-type]
        for name in passthrough:
            if name not in table.column_names:
                raise SchemaError(f"transform: passthrough column '{name}' is not in the input.{did_you_mean(name, table.column_names)}")
            if name in names:
                raise ValueError(f"transform: passthrough column '{name}' is also a feature")
            arrays.append(table.column(name))
            names.append(name)
        if label:
            if self.label_encoder is None or self.label is None:
                raise ValueError("transform(label=True): this pipeline was built without a label column")
            if self.label not in table.column_names:
                raise SchemaError(f"transform: label column '{self.label}' is not in the input.")
            if self.label in names:
                raise ValueError(f"transform: the label column '{self.label}' is also in passthrough")
            arrays.append(pa.array(self.label_encoder.encode(table.column(self.label))))
            names.append(self.label)
        return pa.Table.from_arrays(arrays, names=names)

    def encode_label(self, values: Any) -> np.ndarray:
        """Encode label values with the fitted :class:`~raypipe.features.label.LabelEncoder`.

        Raises:
            DataError: a missing or unseen label value.
        """
        if self.label_encoder is None:
            raise ValueError("encode_label: this pipeline was built without a label column")
        return self.label_encoder.encode(values)

    def decode_label(self, codes: Any) -> list[Any]:
        """Original label values for predicted class codes (classification)."""
        if self.label_encoder is None:
            raise ValueError("decode_label: this pipeline was built without a label column")
        return self.label_encoder.decode(codes)

    # ------------------------------------------------------------------ outputs

    @property
    def feature_names(self) -> list[str]:
        """Output feature columns, in order (after fitting)."""
        self._require_fitted()
        return list(self._final_types)  # type: ignore[arg-type]

    @property
    def feature_types(self) -> list[str]:
        """XGBoost feature types parallel to :attr:`feature_names`: ``"q"`` numeric, ``"c"`` categorical codes."""
        self._require_fitted()
        return [feature_type(t) for t in self._final_types.values()]  # type: ignore[union-attr]

    @property
    def fitted_steps(self) -> list[FittedStep]:
        """The fitted steps, one per config step."""
        return list(self._fitted)

    @property
    def categorical_features(self) -> list[str]:
        """Features with type ``"c"`` (XGBoost ``enable_categorical``)."""
        return [n for n, t in zip(self.feature_names, self.feature_types) if t == "c"]

    # ------------------------------------------------------------------ JSON

    def _state(self) -> dict[str, Any]:
        state = {
            "format": _FORMAT,
            "version": _VERSION,
            "input_types": self.input_types,
            "exclude": self.exclude,
            "label": self.label_encoder.to_dict() if self.label_encoder is not None else None,
            "steps": [s.model_dump(mode="json") for s in self.steps],
            "fitted": [f.to_dict() for f in self._fitted],
        }
        if self._final_types is not None:
            state["feature_names"] = list(self._final_types)
            state["feature_types"] = [feature_type(t) for t in self._final_types.values()]
            state["column_types"] = list(self._final_types.values())
        return state

    def to_json(self) -> str:
        """The fitted pipeline as JSON (no pickle); inverse of :meth:`from_json`.

        >>> import pyarrow as pa
        >>> fp = FeaturePipeline([{"type": "drop", "columns": ["b"]}], {"a": "int", "b": "int"})
        >>> FeaturePipeline.from_json(fp.fit_local(pa.table({"a": [1], "b": [2]})).to_json()).feature_names
        ['a']
        """
        self._require_fitted()
        return json.dumps(self._state(), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> FeaturePipeline:
        """Rebuild a fitted pipeline from :meth:`to_json` output.

        Raises:
            ValueError: the text is not a raypipe feature pipeline of a known version.
        """
        state = json.loads(text)
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"expected a {_FORMAT} JSON document, got {str(text)[:80]!r}")
        if state.get("version") != _VERSION:
            raise ValueError(f"{_FORMAT}: expected version {_VERSION}, got {state.get('version')!r}")
        return cls._from_state(state)

    @classmethod
    def _from_state(cls, state: Mapping[str, Any]) -> FeaturePipeline:
        label = state.get("label")
        pipeline = cls(
            state["steps"],
            state["input_types"],
            state["exclude"],
            label=label["column"] if label else None,
            task=label["task"] if label else None,
            positive_class=label.get("positive_class") if label else None,
        )
        if label:
            pipeline.label_encoder = LabelEncoder.from_dict(label)
        pipeline._fitted = [FittedStep.from_dict(d) for d in state["fitted"]]
        if "column_types" in state:
            pipeline._final_types = dict(zip(state["feature_names"], state["column_types"]))
        return pipeline

    def __reduce__(self):
        # Pickled (e.g. by Ray) through the JSON state: workers run what a bundle holds.
        return (FeaturePipeline._from_state, (self._state(),))

    def __repr__(self) -> str:
        status = f"{len(self._final_types)} features" if self.fitted else f"{len(self._fitted)}/{len(self.steps)} steps fitted"
        return f"FeaturePipeline({[s.type for s in self.steps]}, {status})"

