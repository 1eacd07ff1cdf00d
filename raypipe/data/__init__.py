"""raypipe's data plane: sources, validation and quarantine, splits.

``import raypipe.data`` does not import Ray: the pure parts (validation, split
assignment) load at once, the Ray-backed names on first use, so online serving code
can validate a request without Ray Data.

Source types register their readers in :mod:`raypipe.data.sources` (plugins such as
the ``stream`` type of :mod:`raypipe.streams` through the ``raypipe.sources`` entry
point group): the data plane never imports the floors above it.

Public names here:

- :func:`read_source`, :func:`register_source` — ``data.source`` → ``ray.data.Dataset``
- :class:`IngestResult`, :func:`split_dataset`, :class:`SplitResult`
- :func:`validate_batch`, :class:`BatchValidator`, :func:`infer_schema` — pure
- :func:`infer_source_schema` — infer ``data.schema.columns`` from a source's first rows

The stage functions share their modules' names, so they are imported from the
modules (a package attribute cannot be both)::

    from raypipe.data.ingest import ingest, split
    result = ingest(cfg, quarantine_uri)
    parts = split(cfg, result.dataset)
"""

from __future__ import annotations

import importlib

from raypipe.data.validate import BatchValidator, infer_schema, validate_batch

__all__ = [
    "read_source",
    "register_source",
    "IngestResult",
    "split_dataset",
    "SplitResult",
    "validate_batch",
    "BatchValidator",
    "infer_schema",
    "infer_source_schema",
]

_LAZY = {
    "read_source": "raypipe.data.sources",
    "register_source": "raypipe.data.sources",
    "IngestResult": "raypipe.data.ingest",
    "split_dataset": "raypipe.data.ray_split",
    "SplitResult": "raypipe.data.ray_split",
    "infer_source_schema": "raypipe.data.ingest",
}


def __getattr__(name: str) -> object:
    # PEP 562: the Ray-backed names import Ray only when first used.
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'raypipe.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(globals()))
