"""Train/valid/test splits: pure per-batch assignment (the Ray Data wrapper is
:func:`raypipe.data.ray_split.split_dataset`).

Every assignment depends only on a row's own values (and the seed), never on its
position, its block or the cluster's size, so the same rows always land in the same
split however Ray partitions them.

==========  ========================================================================
method      a row goes to
==========  ========================================================================
random      a seeded 64-bit hash of its key columns (default: all data columns),
            mapped to [0, 1): below ``test_fraction`` → test, below
            ``test_fraction + valid_fraction`` → valid, else train. Identical rows
            share a split (no duplicate leaks from train into test).
time        ``time_column >= test_from`` → test, ``>= valid_from`` → valid, else
            train (null times → train). Thresholds not given are the quantiles that
            leave the latest ``test_fraction`` / ``valid_fraction`` of rows.
files       ``__rp_file`` matches ``test_paths`` → test, ``valid_paths`` → valid;
            other rows are train, except that without ``valid_paths`` a seeded hash
            carves ``valid_fraction`` of them into valid.
==========  ========================================================================

The pure functions return ``int8`` codes (:data:`TRAIN`, :data:`VALID`, :data:`TEST`)
and import neither Ray nor anything that does.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raypipe.config import SplitConfig
from raypipe.data import provenance as prov
from raypipe.errors import DataError, SchemaError, did_you_mean
from raypipe.runtime.storage import is_local, working_dir

__all__ = [
    "TRAIN",
    "VALID",
    "TEST",
    "SPLIT_COLUMN",
    "row_hash",
    "hash_unit",
    "assign_random",
    "time_thresholds",
    "assign_time",
    "normalize_paths",
    "match_files",
    "assign_files",
    "SplitPlan",
    "SPLIT_NAMES",
    "time_values",
]

TRAIN, VALID, TEST = 0, 1, 2
SPLIT_COLUMN = "__rp_split"
#: The split of each code, by name.
SPLIT_NAMES = {TRAIN: "train", VALID: "valid", TEST: "test"}

# --------------------------------------------------------------------------- hashing

_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_NULL = np.uint64(0x6E756C6C6E756C6C)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: every input bit flips about half the output bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * _C1
    x = x ^ (x >> np.uint64(27))
    x = x * _C2
    return x ^ (x >> np.uint64(31))


def _seed_state(seed: int) -> tuple[np.uint64, str]:
    digest = hashlib.sha256(f"raypipe-split:{seed}".encode()).hexdigest()
    return np.uint64(int(digest[:16], 16)), digest[16:32]


def _column_hash(arr: pa.ChunkedArray | pa.Array, seed: np.uint64, key16: str) -> np.ndarray:
    import pandas as pd

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    t = arr.type
    if pa.types.is_dictionary(t):
        arr, t = arr.dictionary_decode(), t.value_type
    nulls = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_floating(t):
        values = np.asarray(pc.cast(arr, pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64)
        values = np.where(values == 0.0, 0.0, values)  # -0.0 == 0.0
        values = np.where(np.isnan(values), np.nan, values)  # one NaN bit pattern
        out = _mix(values.view(np.uint64) ^ seed)
    elif pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_temporal(t):
        ints = pc.cast(arr, pa.int64()) if not pa.types.is_temporal(t) else arr.view(_int_of(t))
        values = np.asarray(pc.cast(ints, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        out = _mix(values.view(np.uint64) ^ seed)
    else:
        text = pc.cast(arr, pa.string()) if not pa.types.is_string(t) else arr
        # Hash each distinct value once: pandas needs a Python object per value, and
        # categorical columns repeat a few values over millions of rows.
        encoded = pc.dictionary_encode(text.fill_null(""))
        objects = np.asarray(encoded.dictionary.to_numpy(zero_copy_only=False), dtype=object)
        distinct = pd.util.hash_array(objects, hash_key=key16, categorize=False).astype(np.uint64)
        out = distinct[encoded.indices.to_numpy(zero_copy_only=False)]
    out[nulls] = _NULL
    return out


def _int_of(t: pa.DataType) -> pa.DataType:
    return pa.int32() if t.bit_width == 32 else pa.int64()


def row_hash(table: pa.Table, key_columns: Sequence[str], seed: int) -> np.ndarray:
    """A seeded uint64 hash of each row's key values, independent of row order and batching.

    Raises:
        SchemaError: a key column is not in the table.
    """
    names = table.column_names
    for col in key_columns:
        if col not in names:
            data = [n for n in names if not prov.is_internal(n)]
            raise SchemaError(
                f"data.split.key_columns: column '{col}' is not in the data (columns: {', '.join(data)}).{did_you_mean(col, data)}"
            )
    state, key16 = _seed_state(seed)
    h = np.full(table.num_rows, state, dtype=np.uint64)
    for col in key_columns:
        h = _mix((h * _GOLDEN) ^ _column_hash(table.column(col), state, key16))
    return h


def hash_unit(table: pa.Table, key_columns: Sequence[str], seed: int) -> np.ndarray:
    """Each row's hash mapped to [0, 1) (53 bits), uniform across distinct keys."""
    return (row_hash(table, key_columns, seed) >> np.uint64(11)).astype(np.float64) * (2.0**-53)


def _default_keys(table: pa.Table, key_columns: Sequence[str] | None) -> list[str]:
    if key_columns:
        return list(key_columns)
    return [n for n in table.column_names if not prov.is_internal(n)]


def assign_random(
    table: pa.Table, *, test_fraction: float, valid_fraction: float, seed: int, key_columns: Sequence[str] | None = None
) -> np.ndarray:
    """int8 split codes by seeded hash (see the module table).

    Example::

        >>> codes = assign_random(pa.table({"x": range(1000)}), test_fraction=0.2, valid_fraction=0.1, seed=1)
        >>> sorted(set(codes.tolist()))
        [0, 1, 2]
    """
    u = hash_unit(table, _default_keys(table, key_columns), seed)
    codes = np.full(len(u), TRAIN, dtype=np.int8)
    codes[u < test_fraction + valid_fraction] = VALID
    codes[u < test_fraction] = TEST
    return codes


# --------------------------------------------------------------------------- time


def time_values(arr: pa.ChunkedArray | pa.Array, where: str) -> tuple[np.ndarray, np.ndarray, str]:
    """A time column as numbers: ``(values, null mask, kind)``.

    Datetimes and dates become int64 microseconds (kind ``"time"``), numbers float64
    (kind ``"number"``); nulls (and NaN) are 0 in ``values`` and True in the mask.

    Raises:
        SchemaError: the column is neither (``where`` names the setting).
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    t = arr.type
    nulls = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        us = pc.cast(arr, pa.timestamp("us")) if not pa.types.is_timestamp(t) else arr
        if pa.types.is_timestamp(t) and t.unit != "us":
            us = pc.cast(arr, pa.timestamp("us", tz=t.tz), safe=False)
        values = np.asarray(us.view(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        return values, nulls, "time"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        values = np.asarray(pc.cast(arr, pa.float64()).fill_null(0).to_numpy(zero_copy_only=False), dtype=np.float64)
        return values, nulls | np.isnan(values), "number"
    raise SchemaError(f"{where}: the time column must be a datetime or a number, got {t}. Hint: declare it as type: datetime.")


def _threshold(value: Any, kind: str, where: str) -> float | int | None:
    if value is None:
        return None
    if kind == "number":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise DataError(f"{where}: {value!r} is not a number (the time column is numeric).") from None
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        stamp = pc.cast(pa.array([str(value).replace(" ", "T", 1)]), pa.timestamp("us"))
    except pa.ArrowInvalid:
        try:
            stamp = pc.cast(pc.cast(pa.array([str(value)]), pa.timestamp("us", tz="UTC")), pa.timestamp("us"))
        except pa.ArrowInvalid:
            raise DataError(f"{where}: {value!r} is not an ISO 8601 timestamp, e.g. 2024-01-31 or 2024-01-31T12:00:00.") from None
    return int(stamp.view(pa.int64())[0].as_py())


def time_thresholds(values: np.ndarray, test_fraction: float, valid_fraction: float) -> tuple[Any, Any]:
    """``(valid_from, test_from)`` leaving the latest fractions of ``values`` (nulls removed).

    ``test_from`` is the smallest value among the latest ``round(n * test_fraction)``
    values (ties may add a few rows); a fraction of 0 gives None (no rows).
    """
    v = np.sort(np.asarray(values))
    n = len(v)
    if n == 0:
        return None, None

    def cut(fraction: float) -> Any:
        k = int(round(n * fraction))
        return None if k <= 0 else v[n - k].item()

    return cut(test_fraction + valid_fraction), cut(test_fraction)


def assign_time(table: pa.Table, time_column: str, valid_from: Any, test_from: Any) -> np.ndarray:
    """int8 codes: ``>= test_from`` test, ``>= valid_from`` valid, else train; null times train.

    Thresholds are ISO strings or numbers (matching the column), or None for "no such split".
    """
    where = "data.split"
    if time_column not in table.column_names:
        data = [n for n in table.column_names if not prov.is_internal(n)]
        raise SchemaError(f"{where}.time_column: column '{time_column}' is not in the data.{did_you_mean(time_column, data)}")
    values, nulls, kind = time_values(table.column(time_column), f"{where}.time_column")
    codes = np.full(len(values), TRAIN, dtype=np.int8)
    vf = _threshold(valid_from, kind, f"{where}.valid_from")
    tf = _threshold(test_from, kind, f"{where}.test_from")
    if vf is not None:
        codes[(values >= vf) & ~nulls] = VALID
    if tf is not None:
        codes[(values >= tf) & ~nulls] = TEST
    return codes


# --------------------------------------------------------------------------- files


def normalize_paths(paths: Sequence[str], base: str | None = None) -> list[str]:
    """Config paths as they appear in ``__rp_file``: local ones absolute, URIs also without scheme.

    Run on the driver: read tasks may have another working directory.
    """
    base = base or working_dir()
    out: list[str] = []
    for p in paths:
        if is_local(p):
            local = p.removeprefix("file://")
            out.append(os.path.normpath(os.path.join(base, os.path.expanduser(local))))
        else:
            out.append(p.rstrip("/"))
            out.append(p.split("://", 1)[1].rstrip("/"))
    return out


def match_files(files: Sequence[str], patterns: Sequence[str]) -> np.ndarray:
    """Whether each file equals, lies under (a folder) or glob-matches one of ``patterns``."""
    result = np.zeros(len(files), dtype=bool)
    for i, f in enumerate(files):
        if f is None:
            continue
        for p in patterns:
            if f == p or f.startswith(p.rstrip("/") + "/") or fnmatch.fnmatchcase(f, p):
                result[i] = True
                break
    return result


def assign_files(
    table: pa.Table,
    *,
    test_paths: Sequence[str],
    valid_paths: Sequence[str] = (),
    valid_fraction: float = 0.0,
    seed: int = 42,
    key_columns: Sequence[str] | None = None,
) -> np.ndarray:
    """int8 codes from ``__rp_file`` (paths as given by :func:`normalize_paths`).

    Raises:
        SchemaError: the table has no ``__rp_file`` column.
    """
    if prov.FILE not in table.column_names:
        raise SchemaError(f"data.split: method 'files' needs the {prov.FILE} column the sources add; it was dropped.")
    files = table.column(prov.FILE)
    uniq = pc.unique(files).drop_null()
    names = uniq.to_pylist()
    test_set = pa.array([f for f, hit in zip(names, match_files(names, test_paths)) if hit], pa.string())
    valid_set = pa.array([f for f, hit in zip(names, match_files(names, valid_paths)) if hit], pa.string())
    is_test = np.asarray(pc.fill_null(pc.is_in(files, value_set=test_set), False).to_numpy(zero_copy_only=False), dtype=bool)
    is_valid = np.asarray(pc.fill_null(pc.is_in(files, value_set=valid_set), False).to_numpy(zero_copy_only=False), dtype=bool)
    codes = np.full(table.num_rows, TRAIN, dtype=np.int8)
    if valid_paths:
        codes[is_valid] = VALID
    elif valid_fraction > 0:
        u = hash_unit(table, _default_keys(table, key_columns), seed)
        codes[u < valid_fraction] = VALID
    codes[is_test] = TEST
    return codes


# --------------------------------------------------------------------------- one batch


@dataclass(frozen=True)
class SplitPlan:
    """Everything a batch needs to be split, resolved on the driver (paths, thresholds, keys)."""

    method: str
    test_fraction: float = 0.2
    valid_fraction: float = 0.1
    seed: int = 42
    key_columns: tuple[str, ...] | None = None
    time_column: str | None = None
    valid_from: Any = None
    test_from: Any = None
    test_paths: tuple[str, ...] = ()
    valid_paths: tuple[str, ...] = ()

    @classmethod
    def of(cls, cfg: SplitConfig, base: str | None = None, **overrides: Any) -> SplitPlan:
        """The plan of a :class:`SplitConfig` (paths made absolute against ``base``)."""
        plan = cls(
            method=cfg.method,
            test_fraction=cfg.test_fraction,
            valid_fraction=cfg.valid_fraction,
            seed=cfg.seed,
            key_columns=tuple(cfg.key_columns) if cfg.key_columns else None,
            time_column=cfg.time_column,
            valid_from=cfg.valid_from,
            test_from=cfg.test_from,
            test_paths=tuple(normalize_paths(cfg.test_paths, base)),
            valid_paths=tuple(normalize_paths(cfg.valid_paths, base)),
        )
        return plan if not overrides else cls(**{**plan.__dict__, **overrides})

    def assign(self, table: pa.Table) -> np.ndarray:
        """int8 split codes for a batch."""
        if self.method == "random":
            return assign_random(
                table,
                test_fraction=self.test_fraction,
                valid_fraction=self.valid_fraction,
                seed=self.seed,
                key_columns=self.key_columns,
            )
        if self.method == "time":
            return assign_time(table, self.time_column, self.valid_from, self.test_from)
        if self.method == "files":
            return assign_files(
                table,
                test_paths=self.test_paths,
                valid_paths=self.valid_paths,
                valid_fraction=self.valid_fraction,
                seed=self.seed,
                key_columns=self.key_columns,
            )
        raise DataError(f"data.split.method: unknown method '{self.method}'.{did_you_mean(self.method, ['random', 'time', 'files'])}")

    def __call__(self, table: pa.Table) -> pa.Table:
        return table.append_column(SPLIT_COLUMN, pa.array(self.assign(table), pa.int8()))
