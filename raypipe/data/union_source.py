"""Union sources (``type: union``): the datasets of several sources stacked into one.

Each part is read by the reader its own ``type`` names (passed in as ``read_part``,
the registry's :func:`~raypipe.data.sources.read_source`); validation later aligns
their columns by name. Example::

    ds = read_union(cfg.data.source, read_source)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raypipe.data.columns import apply_columns

if TYPE_CHECKING:
    import ray.data

__all__ = ["read_union"]


def read_union(source: Any, read_part: Callable[[Any], ray.data.Dataset]) -> ray.data.Dataset:
    """Read a :class:`raypipe.config.UnionSource`: every part, then the union's own rename/columns.

    Args:
        source: the union source (its ``sources`` are read in order).
        read_part: reads one part source into a dataset.
    """
    parts = [read_part(s) for s in source.sources]
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    return apply_columns(ds, source)
