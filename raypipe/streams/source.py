"""``type: stream`` as a source of ``raypipe run``: the landing zone read back as rows.

The landed Parquet files of the source's subscriptions are read in parallel by Ray
Data (:class:`~raypipe.data.file_sources.ParquetRowsDatasource`: file and row number in
``__rp_file``/``__rp_line``). A payload that did not parse (``_error``) becomes a
reader error row, quarantined by validation under the rule ``parse`` with its text
in ``__rp_raw``. Every block gets every payload column of the zone (absent ones as
nulls), since a micro-batch only has the fields its messages carried. The landing
columns ``_message_id``, ``_topic``, ``_time`` and ``_landed_at`` stay: declare
them in ``data.schema`` to keep them (``id: _message_id``), or they are dropped
with the other undeclared columns.

The data plane finds this reader without importing streams: the package declares it
as the ``stream`` entry point of the ``raypipe.sources`` group (``pyproject.toml``),
loaded the first time a ``type: stream`` source is read, and importing this module
registers it too. Example::

    ds = read_landing_zone(cfg.data.source)   # what has landed so far
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from raypipe.data import provenance as prov
from raypipe.data.columns import ColumnMap
from raypipe.data.file_sources import ParquetRowsDatasource
from raypipe.data.sources import register_source
from raypipe.errors import DataError
from raypipe.runtime.storage import is_local, resolve
from raypipe.streams.landing import ERROR, LANDING_COLUMNS, PAYLOAD, landed_files

__all__ = ["read_landing_zone"]


class _LandedRows:
    """map_batches UDF: landing errors as reader errors, all payload columns, then rename/columns."""

    def __init__(self, data_columns: list[str], keep_payload: bool, colmap: ColumnMap):
        self.data_columns = data_columns
        self.keep_payload = keep_payload
        self.colmap = colmap

    def __call__(self, table: pa.Table) -> pa.Table:
        n = table.num_rows
        for name in self.data_columns:
            if name not in table.column_names:
                table = table.append_column(name, pa.nulls(n, pa.string()))
        if ERROR in table.column_names:
            err = table.column(ERROR)
            if err.null_count < n:
                raw = pc.if_else(pc.is_valid(err), table.column(PAYLOAD), pa.scalar(None, pa.string()))
                table = table.set_column(table.schema.get_field_index(prov.ERROR), prov.ERROR, err)
                table = table.set_column(table.schema.get_field_index(prov.RAW), prov.RAW, raw)
            table = table.drop_columns([ERROR] + ([] if self.keep_payload else [PAYLOAD]))
        order = [c for c in table.column_names if c not in prov.READER_COLUMNS] + list(prov.READER_COLUMNS)
        return self.colmap.apply(table.select(order))


@register_source("stream")
def read_landing_zone(source: Any) -> ray.data.Dataset:
    """Read what the subscriptions of a :class:`~raypipe.config.StreamSource` have landed.

    Raises:
        DataError: nothing has landed yet.
    """
    subs = [s.key for s in source.subscriptions]
    files = landed_files(source.landing_uri, subs)
    if not files:
        raise DataError(
            f"data.source.landing_uri: nothing has landed in {source.landing_uri} for {', '.join(subs)} yet. "
            "Hint: run `raypipe ingest-stream CONFIG` first (it lands messages as they arrive)."
        )
    filesystem, _ = resolve(source.landing_uri, what="data.source.landing_uri")  # opened by landed_files already
    local = is_local(source.landing_uri)
    columns: dict[str, None] = {}
    for path in files:
        schema = pq.read_schema(path if local else path.split("://", 1)[1], filesystem=filesystem)
        columns.update((n, None) for n in schema.names if n not in LANDING_COLUMNS)
    colmap = ColumnMap.of(source)
    datasource = ParquetRowsDatasource(files)
    return ray.data.read_datasource(datasource).map_batches(
        _LandedRows(list(columns), source.format == "raw", colmap),
        batch_format="pyarrow",
        batch_size=None,
        zero_copy_batch=True,
    )
