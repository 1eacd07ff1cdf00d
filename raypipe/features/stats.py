"""Statistics that feature steps fit on, and their exact reference implementation.

A step says what it needs as plain :class:`StatRequest` values; whoever holds
the data computes them: :func:`compute_stats` on an in-memory Arrow table (unit
tests, small fits, the online path) or :mod:`raypipe.features.ray_fit` with
Ray Data aggregations over a distributed dataset. Both return the same dict
``{request: value}``.

Kinds and values (missing values, Arrow nulls or NaN, are skipped everywhere
except by ``null_count``/``count``):

================  ==========================================  ==============================
kind              value                                       with no non-missing value
================  ==========================================  ==============================
``count``         number of rows                              0
``null_count``    number of missing values                    the row count
``mean``          arithmetic mean                             NaN
``std``           population standard deviation (ddof=0, as   NaN
                  scikit-learn's StandardScaler)
``min``/``max``   smallest / largest value                    NaN
``quantiles``     tuple of quantiles at ``params`` with       tuple of NaN
                  linear interpolation (numpy's default)
``value_counts``  ``{value: count}``                          ``{}``
================  ==========================================  ==============================

Statistics are not merged by hand: the Ray path uses Ray Data's own
distributed aggregations (see :mod:`raypipe.features.ray_fit`).

Example:
    >>> import pyarrow as pa
    >>> t = pa.table({"x": [1.0, None, 3.0]})
    >>> compute_stats([StatRequest("mean", "x"), StatRequest("null_count", "x")], t)
    {StatRequest(kind='mean', column='x', params=()): 2.0, StatRequest(kind='null_count', column='x', params=()): 1}
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["STAT_KINDS", "StatRequest", "compute_stats", "empty_stat"]

STAT_KINDS = ("count", "null_count", "mean", "std", "min", "max", "quantiles", "value_counts")


class StatRequest(NamedTuple):
    """One statistic of one column, e.g. ``StatRequest("quantiles", "age", (0.25, 0.5, 0.75))``.

    Hashable, so it keys the statistics dict; ``params`` holds the quantile
    levels for ``quantiles`` and is empty otherwise.
    """

    kind: str
    column: str
    params: tuple = ()


def empty_stat(request: StatRequest) -> Any:
    """The value of ``request`` over an empty table (zero rows).

    >>> empty_stat(StatRequest("quantiles", "x", (0.25, 0.75)))
    (nan, nan)
    """
    if request.kind in ("count", "null_count"):
        return 0
    if request.kind == "value_counts":
        return {}
    if request.kind == "quantiles":
        return tuple(math.nan for _ in request.params)
    return math.nan


def _is_numeric(type_: pa.DataType) -> bool:
    return pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_boolean(type_)


def _valid(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Non-missing values; numeric ones as float64 (NaN counts as missing)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if _is_numeric(column.type):
        column = pc.cast(column, pa.float64())
        column = pc.drop_null(column)
        return column.filter(pc.invert(pc.is_nan(column)))
    return pc.drop_null(column)


def _value_counts(values: pa.Array) -> dict:
    if len(values) == 0:
        return {}
    counts = pc.value_counts(values)
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))


def _compute(request: StatRequest, column: pa.ChunkedArray, valid: pa.Array) -> Any:
    kind = request.kind
    if kind == "count":
        return len(column)
    if kind == "null_count":
        return len(column) - len(valid)
    if kind == "value_counts":
        return _value_counts(valid)
    if len(valid) == 0:
        return empty_stat(request)
    if not pa.types.is_floating(valid.type):
        raise TypeError(f"statistic {kind!r} needs a numeric column; {request.column!r} is {column.type}")
    if kind == "mean":
        # sum / count, as Ray Data's Mean aggregation computes it
        return float(pc.sum(valid).as_py()) / len(valid)
    if kind == "std":
        return float(np.std(valid.to_numpy()))
    if kind == "min":
        return float(pc.min(valid).as_py())
    if kind == "max":
        return float(pc.max(valid).as_py())
    if kind == "quantiles":
        # pyarrow's kernel is the one Ray's exact Quantile aggregation runs, so the
        # reference and the distributed fit agree to the last bit.
        return tuple(float(v) for v in pc.quantile(valid, q=list(request.params)).to_pylist())
    raise ValueError(f"unknown statistic {kind!r} (expected one of: {', '.join(STAT_KINDS)})")


def compute_stats(requests: Iterable[StatRequest], table: pa.Table) -> dict[StatRequest, Any]:
    """Compute each requested statistic exactly on an in-memory table.

    Args:
        requests: what to compute; duplicates are computed once.
        table: the rows; each requested column must exist.

    Returns:
        ``{request: value}`` as described in the module docstring.

    Raises:
        KeyError: a requested column is not in the table.
        ValueError: an unknown statistic kind.

    Example:
        >>> import pyarrow as pa
        >>> compute_stats([StatRequest("quantiles", "x", (0.5,))], pa.table({"x": [1, 2, 3, 4]}))
        {StatRequest(kind='quantiles', column='x', params=(0.5,)): (2.5,)}
    """
    out: dict[StatRequest, Any] = {}
    valid_cache: dict[str, pa.Array] = {}
    for request in requests:
        request = StatRequest(*request)
        if request in out:
            continue
        if request.column not in table.column_names:
            raise KeyError(f"statistic {request.kind!r}: column {request.column!r} is not in the table")
        column = table.column(request.column)
        if request.column not in valid_cache:
            valid_cache[request.column] = _valid(column)
        out[request] = _compute(request, column, valid_cache[request.column])
    return out
