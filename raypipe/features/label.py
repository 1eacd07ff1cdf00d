"""Label encoding for the three model tasks, fitted with the feature pipeline.

* ``binary_classification``: exactly two training values; the positive class
  (``model.positive_class``, else the larger of the two sorted values) → 1,
  the other → 0.
* ``multiclass``: the sorted training values → 0..K-1.
* ``regression``: the values as float64.

The classes are part of the fitted pipeline's JSON, so predictions are decoded
to the original label values in batch and online alike. A label value not seen
in training is a :class:`~raypipe.errors.DataError` naming it.

Example:
    >>> import pyarrow as pa
    >>> enc = LabelEncoder("binary_classification", positive_class=">50K", column="income")
    >>> enc.fit_values(["<=50K", ">50K", "<=50K"])
    >>> enc.encode(pa.array([">50K", "<=50K"])).tolist()
    [1.0, 0.0]
    >>> enc.decode([1, 0])
    ['>50K', '<=50K']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raypipe.errors import ConfigError, DataError, did_you_mean
from raypipe.features.stats import StatRequest

__all__ = ["TASKS", "LabelEncoder"]

TASKS = ("binary_classification", "multiclass", "regression")


def _sort_key(value: Any) -> tuple:
    # Mixed int/float labels sort numerically; anything else by its text.
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


def _show(values: Sequence[Any]) -> str:
    return ", ".join(repr(v) for v in values)


class LabelEncoder:
    """Map label values to the numbers XGBoost trains on, and back.

    Args:
        task: one of :data:`TASKS`.
        positive_class: binary only: the label value (as text, as written in the
            config) that is the positive class; ``None`` picks the larger one.
        column: the label column name, for messages.

    Raises:
        ConfigError: unknown task.
    """

    def __init__(self, task: str, positive_class: str | None = None, column: str = "label"):
        if task not in TASKS:
            raise ConfigError(f"model.task: unknown task {task!r}.{did_you_mean(task, TASKS)} Expected one of: {', '.join(TASKS)}.")
        if positive_class is not None and task != "binary_classification":
            raise ConfigError(
                f"model.positive_class: only applies to binary_classification; the task is {task}. Hint: remove it."
            )
        self.task = task
        self.positive_class = positive_class
        self.column = column
        #: Label values in code order (classification), or None before fitting / for regression.
        self.classes: list[Any] | None = None

    @property
    def fitted(self) -> bool:
        """Whether :meth:`encode` can run."""
        return self.task == "regression" or self.classes is not None

    def needs(self) -> list[StatRequest]:
        """Statistics the encoder fits on (value counts of the label, for classification)."""
        return [] if self.task == "regression" else [StatRequest("value_counts", self.column)]

    def fit(self, stats: Mapping[StatRequest, Any]) -> None:
        """Learn the classes from ``stats`` (see :meth:`needs`).

        Raises:
            DataError: binary labels without exactly two values, multiclass with fewer than two.
            ConfigError: ``positive_class`` is not one of the values.
        """
        if self.task == "regression":
            return
        values = sorted((v for v in stats[StatRequest("value_counts", self.column)] if v is not None), key=_sort_key)
        where = f"label '{self.column}'"
        if self.task == "binary_classification":
            if len(values) != 2:
                raise DataError(
                    f"{where}: binary_classification needs exactly 2 values in the training split, got {len(values)}"
                    f" ({_show(values[:10])}{', ...' if len(values) > 10 else ''}). "
                    + ("Hint: use model.task: multiclass." if len(values) > 2 else "Hint: check the split and the label column.")
                )
            if self.positive_class is not None:
                matches = [v for v in values if self._same(v, self.positive_class)]
                if not matches:
                    raise ConfigError(
                        f"model.positive_class: '{self.positive_class}' is not a value of {where}; values: {_show(values)}."
                        f"{did_you_mean(self.positive_class, [str(v) for v in values])}"
                    )
                positive = matches[0]
                values = [v for v in values if v is not positive and v != positive] + [positive]
        elif len(values) < 2:
            raise DataError(f"{where}: multiclass needs at least 2 values in the training split, got {_show(values)}.")
        self.classes = values

    def fit_values(self, values: Any) -> None:
        """Fit directly on label values (a list, numpy array or Arrow array)."""
        arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
        counts = pc.value_counts(pc.drop_null(arr))
        vc = dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))
        self.fit({StatRequest("value_counts", self.column): vc})

    @staticmethod
    def _same(value: Any, text: str) -> bool:
        if isinstance(value, bool):
            return str(value).lower() == text.strip().lower()
        return str(value) == text or (isinstance(value, (int, float)) and _number(text) == value)

    def encode(self, values: Any) -> np.ndarray:
        """Numbers for ``values`` (list, numpy or Arrow array): float64 codes or targets.

        Raises:
            DataError: a missing label, a value not seen in training, or (regression)
                a value that is not a number.
        """
        arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if arr.null_count:
            raise DataError(f"label '{self.column}': {arr.null_count} missing value(s); every row needs a label.")
        if self.task == "regression":
            try:
                return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataError(f"label '{self.column}': regression needs numbers, got {arr.type} ({exc}).") from None
        if self.classes is None:
            raise RuntimeError(f"label '{self.column}': the label encoder is not fitted; fit the pipeline first")
        known = pa.array(self.classes)
        if arr.type != known.type:
            try:
                arr = pc.cast(arr, known.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise DataError(
                    f"label '{self.column}': expected values like {_show(self.classes)}, got type {arr.type}."
                ) from None
        idx = pc.index_in(arr, value_set=known)
        if idx.null_count:
            unseen = pc.unique(arr.filter(idx.is_null())).to_pylist()
            raise DataError(
                f"label '{self.column}': value(s) {_show(unseen[:10])} not seen in training; "
                f"expected one of {_show(self.classes)}. Hint: fix the data, or check data.schema.columns.{self.column}.allowed."
            )
        return idx.to_numpy(zero_copy_only=False).astype(np.float64)

    def decode(self, codes: Any) -> list[Any]:
        """Label values for integer codes (classification); floats as given (regression)."""
        codes = np.asarray(codes)
        if self.task == "regression":
            return codes.astype(np.float64).tolist()
        return [self.classes[int(c)] for c in codes]  # type: ignore[index]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (inverse: :meth:`from_dict`)."""
        return {"task": self.task, "positive_class": self.positive_class, "column": self.column, "classes": self.classes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelEncoder:
        """Rebuild from :meth:`to_dict`."""
        enc = cls(data["task"], data.get("positive_class"), data.get("column", "label"))
        enc.classes = list(data["classes"]) if data.get("classes") is not None else None
        return enc


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
