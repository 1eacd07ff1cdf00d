"""Splits on Ray Data: the pure assignment of :mod:`raypipe.data.split` run over a dataset.

One ``map_batches`` assigns every row its split code (:class:`~raypipe.data.split.SplitPlan`),
three filters separate the splits (lazy ones when the validation pass already assigned
the codes: each fuses into the next stage's map). A ``time`` split without thresholds takes them from
the exact quantiles of the time column, and a ``window`` keeps only the newest rows;
both bring just that one column to the driver. Example::

    parts = split_dataset(ds, cfg.data.split)
    parts.counts   # {'train': ..., 'valid': ..., 'test': ...}

Ray is imported when a split runs, not with this module, so ``raypipe.data`` can name
:func:`split_dataset` without loading Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from raypipe.config import SplitConfig, parse_span
from raypipe.data import provenance as prov
from raypipe.data.split import SPLIT_COLUMN, SPLIT_NAMES, SplitPlan, time_thresholds, time_values
from raypipe.errors import SchemaError

if TYPE_CHECKING:
    import ray.data

__all__ = ["SplitResult", "split_dataset"]


@dataclass
class SplitResult:
    """The three splits (``ray.data`` datasets: materialized, or lazy filters of materialized
    rows) and their row counts."""

    train: ray.data.Dataset
    valid: ray.data.Dataset
    test: ray.data.Dataset
    counts: dict[str, int] = field(default_factory=dict)


def split_dataset(
    ds: ray.data.Dataset,
    cfg: SplitConfig,
    key_columns: Sequence[str] | None = None,
    keep_provenance: bool = False,
    assigned: dict[str, int] | None = None,
) -> SplitResult:
    """Split a dataset with Ray Data: one ``map_batches`` assigns, three filters separate.

    Args:
        ds: validated rows (with ``__rp_file`` for the ``files`` method).
        cfg: the ``data.split`` config.
        key_columns: hash keys when ``cfg.key_columns`` is not set (default: every
            data column).
        keep_provenance: keep ``__rp_file``/``__rp_line`` in the splits.
        assigned: the rows per split when ``ds`` already carries the split codes
            (``__rp_split``, from the validation pass): the splits are then lazy
            filters of ``ds``, nothing is assigned or materialized here.

    Returns:
        A :class:`SplitResult`; ``counts`` has ``train``, ``valid``, ``test``.

    Raises:
        SchemaError: the time column or a key column is missing.
    """
    from ray.data.expressions import col

    if assigned is not None:
        names = ds.columns()
        drop = [SPLIT_COLUMN] + ([] if keep_provenance else [c for c in prov.READER_COLUMNS if c in names])
        parts = {name: ds.filter(expr=col(SPLIT_COLUMN) == code).drop_columns(drop) for code, name in SPLIT_NAMES.items()}
        return SplitResult(parts["train"], parts["valid"], parts["test"], dict(assigned))
    plan = SplitPlan.of(cfg)
    outside = 0
    if plan.method == "time" and cfg.window:
        ds, outside = _keep_window(ds, plan.time_column, cfg.window)
    if plan.key_columns is None and key_columns:
        plan = SplitPlan(**{**plan.__dict__, "key_columns": tuple(key_columns)})
    if plan.method == "time" and (plan.test_from is None or plan.valid_from is None):
        plan = _with_quantiles(ds, plan)
    assigned = ds.map_batches(plan, batch_format="pyarrow", batch_size=None, zero_copy_batch=True).materialize()
    names = assigned.schema().names
    drop = [SPLIT_COLUMN] + ([] if keep_provenance else [c for c in prov.READER_COLUMNS if c in names])
    parts = {}
    for code, name in SPLIT_NAMES.items():
        parts[name] = assigned.filter(expr=col(SPLIT_COLUMN) == code).drop_columns(drop).materialize()
    counts = {name: part.count() for name, part in parts.items()}
    if outside:
        counts["outside_window"] = outside
    return SplitResult(parts["train"], parts["valid"], parts["test"], counts)


class _SinceFilter:
    """map_batches UDF: the rows whose time value is at least ``since`` (int64 µs or a number)."""

    def __init__(self, column: str, since: Any):
        self.column, self.since = column, since

    def __call__(self, table: pa.Table) -> pa.Table:
        values, nulls, _ = time_values(table.column(self.column), "data.split.time_column")
        return table.filter(pa.array(~nulls & (values >= self.since)))


def _keep_window(ds: ray.data.Dataset, column: str, window: str) -> tuple[ray.data.Dataset, int]:
    """The rows within ``window`` of the newest time value, and how many were older."""
    import ray

    tables = [t for t in ray.get(ds.select_columns([column]).to_arrow_refs()) if t.num_rows]
    if not tables:
        return ds, 0
    values, nulls, kind = time_values(pa.concat_tables(tables).column(0), "data.split.time_column")
    if kind != "time":
        raise SchemaError(f"data.split.window: the time column '{column}' holds numbers; a window like {window!r} needs datetimes.")
    since = int(values[~nulls].max()) - int(parse_span(window) * 1_000_000)
    kept = ds.map_batches(_SinceFilter(column, since), batch_format="pyarrow", batch_size=None).materialize()
    return kept, ds.count() - kept.count()


def _with_quantiles(ds: ray.data.Dataset, plan: SplitPlan) -> SplitPlan:
    """Fill the missing time thresholds from the exact quantiles of the time column.

    Only the one column travels to the driver (8 bytes a row).
    """
    import ray

    refs = ds.select_columns([plan.time_column]).to_arrow_refs()
    tables = [t for t in ray.get(refs) if t.num_rows]
    if not tables:
        return plan
    values, nulls, kind = time_values(pa.concat_tables(tables).column(0), "data.split.time_column")
    valid_from, test_from = time_thresholds(values[~nulls], plan.test_fraction, plan.valid_fraction)
    if kind == "time":
        to_iso = lambda v: None if v is None else pa.scalar(v, pa.int64()).cast(pa.timestamp("us")).as_py().isoformat()  # noqa: E731
        valid_from, test_from = to_iso(valid_from), to_iso(test_from)
    return SplitPlan(
        **{
            **plan.__dict__,
            "valid_from": plan.valid_from if plan.valid_from is not None else valid_from,
            "test_from": plan.test_from if plan.test_from is not None else test_from,
        }
    )
