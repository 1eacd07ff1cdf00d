"""Names of the bookkeeping columns every raypipe source adds to its rows.

Readers add them, validation reads them, the ``files`` split and quarantine records
use them; the training splits drop them. They all start with ``__rp_`` so they
cannot clash with user columns (a source column with that prefix is refused).

==============  =========  ==============================================================
column          type       meaning
==============  =========  ==============================================================
``__rp_file``   string     the file (or masked database URL) the row came from
``__rp_line``   int64      1-based line (CSV, text, JSON Lines) or row number (Parquet,
                           JSON arrays) within that file; null where unknowable (SQL)
``__rp_error``  string     set by the reader on a row it could not parse, e.g.
                           ``"ragged_line: expected 15 fields, got 14"``; null otherwise
``__rp_raw``    string     the raw text of such a row; null otherwise
==============  =========  ==============================================================

Quarantine records and metrics also name the source a row came from:
:func:`source_name`.

This module is pure (pyarrow and numpy only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = [
    "PREFIX",
    "FILE",
    "LINE",
    "ERROR",
    "RAW",
    "PROVENANCE_COLUMNS",
    "READER_COLUMNS",
    "with_provenance",
    "error_rows",
    "is_internal",
    "source_name",
]

PREFIX = "__rp_"
FILE = "__rp_file"
LINE = "__rp_line"
ERROR = "__rp_error"
RAW = "__rp_raw"

#: Kept on valid rows until the split (``__rp_file`` drives the ``files`` split).
PROVENANCE_COLUMNS = (FILE, LINE)
#: Every column a reader adds, in the order it adds them.
READER_COLUMNS = (FILE, LINE, ERROR, RAW)


def is_internal(name: str) -> bool:
    """Whether a column name is one of raypipe's bookkeeping columns."""
    return name.startswith(PREFIX)


def source_name(source: Any) -> str:
    """The name of a source in metrics, quarantine records and watermark files: ``name``, else its type."""
    return source.name or source.type


def with_provenance(table: pa.Table, path: str, lines: np.ndarray | pa.Array | None) -> pa.Table:
    """Append the four reader columns to rows that parsed cleanly.

    Args:
        table: the parsed rows.
        path: the file they came from.
        lines: their 1-based line/row numbers, or None when unknowable.
    """
    n = table.num_rows
    if lines is None:
        line_arr = pa.nulls(n, pa.int64())
    else:
        line_arr = pa.array(lines, pa.int64())
    return (
        table.append_column(FILE, pa.repeat(pa.scalar(path, pa.string()), n))
        .append_column(LINE, line_arr)
        .append_column(ERROR, pa.nulls(n, pa.string()))
        .append_column(RAW, pa.nulls(n, pa.string()))
    )


def error_rows(
    columns: Sequence[str] | pa.Schema,
    path: str,
    lines: Sequence[int | None],
    errors: Sequence[str],
    raws: Sequence[str | None],
) -> pa.Table:
    """Rows a reader could not parse: every data column null, the reason in ``__rp_error``.

    Args:
        columns: the data column names (all typed string), or the data schema to match.
        path: the file.
        lines: 1-based line numbers (None where unknown).
        errors: one reason per row, ``"rule: detail"``.
        raws: the raw text of each row.
    """
    n = len(errors)
    if isinstance(columns, pa.Schema):
        arrays = [pa.nulls(n, f.type) for f in columns]
        names = list(columns.names)
    else:
        names = list(columns)
        arrays = [pa.nulls(n, pa.string()) for _ in names]
    arrays += [
        pa.repeat(pa.scalar(path, pa.string()), n),
        pa.array(list(lines), pa.int64()),
        pa.array(list(errors), pa.string()),
        pa.array(list(raws), pa.string()),
    ]
    return pa.Table.from_arrays(arrays, names=names + list(READER_COLUMNS))
