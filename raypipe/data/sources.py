"""Sources: read a configured ``data.source`` into a ``ray.data.Dataset``, chosen by ``type``.

This module is the registry of source types: :func:`read_source` looks a source's
``type`` up and calls the reader registered for it. Every reader runs in parallel
inside Ray Data (files are parsed in read tasks, never on the driver) and every
dataset it returns carries the reader columns of :mod:`raypipe.data.provenance`:
``__rp_file``, ``__rp_line``, ``__rp_error`` and ``__rp_raw``. Rows a reader cannot
parse (a ragged CSV line, a log line the pattern does not match, a broken JSON line)
are kept as error rows for validation to quarantine, never skipped.

=========================  ================================  ===========================================
type                       reader                            how
=========================  ================================  ===========================================
csv, parquet, json/jsonl,  :mod:`raypipe.data.file_sources`  one Ray file datasource per format, files
text                                                         parsed by :mod:`raypipe.data._formats`
sql                        :mod:`raypipe.data.sql_source`    range-partitioned read tasks; ``incremental``
                                                             reads above the committed watermark
api                        :mod:`raypipe.data.api_source`    JSON pages with retries, backoff, rate limit
union                      :mod:`raypipe.data.union_source`  the sources' datasets stacked
stream                     :mod:`raypipe.streams.source`     a plugin (below): the landed micro-batches
=========================  ================================  ===========================================

New source types register a reader with :func:`register_source`. A package can also
provide one as a plugin, without this module importing it: an entry point in the group
:data:`ENTRY_POINT_GROUP` named by the type, pointing at the reader, e.g. in its
``pyproject.toml``::

    [project.entry-points."raypipe.sources"]
    stream = "raypipe.streams.source:read_landing_zone"

It is loaded the first time a source of that type is read (the ``stream`` type of
:mod:`raypipe.streams` is found this way: streams stand above the data plane, which
never imports them). Example::

    ds = read_source(cfg.data.source)
    ds.schema()  # age: string, ..., __rp_file: string, __rp_line: int64, ...

A ``SchemaError`` raised while a dataset executes arrives as
``RayTaskError(SchemaError)``; run the work inside :func:`unwrap_task_errors` to get
the plain error back.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import ray

from raypipe.data.api_source import ApiDatasource, read_api
from raypipe.data.file_sources import (
    CsvDatasource,
    JsonDatasource,
    ParquetRowsDatasource,
    TextDatasource,
    read_csv,
    read_json,
    read_parquet,
    read_text,
    resolve_paths,
)
from raypipe.data.provenance import source_name
from raypipe.data.sql_source import SqlDatasource, mask_url, read_sql
from raypipe.data.task_errors import original_task_errors, unwrap_task_errors
from raypipe.data.union_source import read_union
from raypipe.errors import ConfigError, did_you_mean

__all__ = [
    "read_source",
    "register_source",
    "source_reader",
    "source_types",
    "ENTRY_POINT_GROUP",
    "SourceReader",
    "resolve_paths",
    "source_name",
    "CsvDatasource",
    "ParquetRowsDatasource",
    "JsonDatasource",
    "TextDatasource",
    "SqlDatasource",
    "ApiDatasource",
    "mask_url",
    "original_task_errors",
    "unwrap_task_errors",
]

#: A reader: ``(source config model) -> ray.data.Dataset`` with the reader columns.
SourceReader = Callable[[Any], "ray.data.Dataset"]

#: The entry point group in which packages declare source types (name: the type).
ENTRY_POINT_GROUP = "raypipe.sources"

_READERS: dict[str, SourceReader] = {}


def register_source(*types: str) -> Callable[[SourceReader], SourceReader]:
    """Register a function ``(source_config) -> ray.data.Dataset`` for these ``type`` names.

    Used as a decorator; a later registration of a type replaces the earlier one. The
    dataset must carry the reader columns (see :mod:`raypipe.data.provenance`)::

        @register_source("stream")
        def read_landing_zone(source): ...
    """

    def decorate(fn: SourceReader) -> SourceReader:
        for name in types:
            _READERS[name] = fn
        return fn

    return decorate


def _plugins() -> dict[str, EntryPoint]:
    """The source types declared as entry points by the installed packages."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def source_types() -> list[str]:
    """The known source ``type`` names: registered ones and those plugins declare."""
    return sorted(set(_READERS) | set(_plugins()))


def source_reader(type_name: str) -> SourceReader:
    """The reader of a source ``type``; a plugin's is loaded the first time it is asked for.

    Raises:
        ConfigError: no reader is registered and no plugin declares the type (the
            message names the known types), or the plugin fails to load.
    """
    reader = _READERS.get(type_name)
    if reader is not None:
        return reader
    plugin = _plugins().get(type_name)
    if plugin is None:
        known = source_types()
        raise ConfigError(
            f"data.source.type: unknown source type '{type_name}'.{did_you_mean(type_name, known)}"
            f" Expected one of: {', '.join(known)}."
        )
    try:
        loaded = plugin.load()
    except Exception as exc:  # a plugin's import can fail any way (a missing dependency, a bug)
        raise ConfigError(
            f"data.source.type: the plugin of source type '{type_name}' ({plugin.value}) failed to load "
            f"({type(exc).__name__}: {exc}). Hint: check that its package and its dependencies are installed."
        ) from exc
    if not callable(loaded):
        raise ConfigError(
            f"data.source.type: the plugin of source type '{type_name}' ({plugin.value}) is not a reader function."
        )
    # Importing the plugin may already have registered it (and maybe other types).
    return _READERS.setdefault(type_name, loaded)


def read_source(source: Any) -> ray.data.Dataset:
    """Read a ``data.source`` config model into a lazy ``ray.data.Dataset``.

    Args:
        source: a :class:`raypipe.config.CsvSource`, ``ParquetSource``, ``JsonSource``,
            ``TextSource``, ``SqlSource``, ``ApiSource``, ``UnionSource`` or
            ``StreamSource`` (or any model whose ``type`` was registered). An
            incremental SQL source read inside a
            :func:`raypipe.data.watermark.watermark_session` records its pending
            watermark there.

    Returns:
        The rows, with ``rename`` then ``columns`` applied, plus the reader columns.
        Nothing is read until the dataset executes.

    Raises:
        ConfigError: the source type is unknown.
        DataError: a path matches no file, a database or API cannot be reached, a
            table, column or query fails, an API answers with an error (checked on
            the driver before any task runs where possible).
        SchemaError: a selected column is missing (raised when the data is read).
    """
    reader = source_reader(source.type)
    with original_task_errors():
        return reader(source)


register_source("csv")(read_csv)
register_source("text")(read_text)
register_source("json", "jsonl")(read_json)
register_source("parquet")(read_parquet)
register_source("sql")(read_sql)
register_source("api")(read_api)


@register_source("union")
def _read_union(source: Any) -> ray.data.Dataset:
    # The parts go through the registry too: a union may hold any registered type.
    return read_union(source, read_source)
