"""A source's ``rename`` and ``columns``, applied to every block it reads.

Every reader of :mod:`raypipe.data.sources` (and the ``stream`` source of
:mod:`raypipe.streams`) renames, checks and selects its data columns the same way:
:class:`ColumnMap` on one Arrow table, :func:`apply_columns` on a whole dataset.
The reader columns of :mod:`raypipe.data.provenance` always pass through. Example::

    colmap = ColumnMap({"Age": "age"}, ("age", "income"))
    table = colmap.apply(table)           # age, income, __rp_file, __rp_line, ...
    ds = apply_columns(ds, cfg.data.source)

This module imports no Ray (validation uses it): :func:`apply_columns` only calls the
dataset's methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from raypipe.data import provenance as prov
from raypipe.errors import SchemaError, did_you_mean

__all__ = ["ColumnMap", "apply_columns", "files_of"]


def files_of(table: pa.Table, default: str = "<unknown file>") -> str:
    """The file(s) a table's rows came from, for error messages ("a.csv (and 2 more)")."""
    if prov.FILE not in table.column_names or table.num_rows == 0:
        return default
    files = [f for f in pc.unique(table.column(prov.FILE)).to_pylist() if f is not None]
    if not files:
        return default
    return files[0] + (f" (and {len(files) - 1} more)" if len(files) > 1 else "")


@dataclass(frozen=True)
class ColumnMap:
    """A source's ``rename`` then ``columns`` selection, applied to every block it reads.

    Args:
        rename: ``{old_name: new_name}``; names absent from a file are ignored.
        columns: keep only these (renamed) columns, in this order; None keeps all.
    """

    rename: Mapping[str, str] = field(default_factory=dict)
    columns: tuple[str, ...] | None = None

    @classmethod
    def of(cls, source: Any) -> ColumnMap:
        """The map of a config source model (anything with ``rename`` and ``columns``)."""
        cols = getattr(source, "columns", None)
        return cls(dict(getattr(source, "rename", {}) or {}), tuple(cols) if cols is not None else None)

    def source_columns(self) -> list[str] | None:
        """The original names of the selected columns (for projection pushdown), or None."""
        if self.columns is None:
            return None
        back = {new: old for old, new in self.rename.items()}
        return [back.get(c, c) for c in self.columns]

    def apply(self, table: pa.Table, path: str | None = None) -> pa.Table:
        """Rename, check and select the data columns; reader columns pass through.

        Raises:
            SchemaError: a selected column is missing, or a data column uses the
                reserved ``__rp_`` prefix.
        """
        names = table.column_names
        data = [n for n in names if n not in prov.READER_COLUMNS]
        reserved = [n for n in data if prov.is_internal(n)]
        where = path or files_of(table)
        if reserved:
            raise SchemaError(
                f"data.source: {where}: column name(s) {', '.join(reserved)} use the reserved prefix "
                f"'{prov.PREFIX}'. Hint: rename them with data.source.rename."
            )
        if self.rename:
            table = table.rename_columns([n if n in prov.READER_COLUMNS else self.rename.get(n, n) for n in names])
            data = [self.rename.get(n, n) for n in data]
        if self.columns is None:
            return table
        for col in self.columns:
            if col not in data:
                raise SchemaError(
                    f"data.source: {where}: column '{col}' is missing (file columns: {', '.join(data)})."
                    f"{did_you_mean(col, data)}"
                )
        keep = list(self.columns) + [c for c in prov.READER_COLUMNS if c in table.column_names]
        return table.select(keep)


class _ApplyColumns:
    """map_batches UDF: a source's rename/columns (fused into the read task by Ray)."""

    def __init__(self, colmap: ColumnMap):
        self.colmap = colmap

    def __call__(self, table: pa.Table) -> pa.Table:
        return self.colmap.apply(table)


def apply_columns(ds: Any, source: Any) -> Any:
    """``ds`` with the ``rename`` and ``columns`` of ``source`` applied to every block.

    Args:
        ds: a ``ray.data.Dataset`` of a reader's rows, with the reader columns (typed
            ``Any`` so that validation, which shares :class:`ColumnMap`, stays free
            of Ray even for type checkers).
        source: the source config model (anything with ``rename`` and ``columns``).

    Returns:
        ``ds`` itself when the source renames and selects nothing; otherwise a lazy
        dataset whose blocks raise :class:`SchemaError` for a missing column.
    """
    colmap = ColumnMap.of(source)
    if not colmap.rename and colmap.columns is None:
        return ds
    return ds.map_batches(_ApplyColumns(colmap), batch_format="pyarrow", batch_size=None, zero_copy_batch=True)
