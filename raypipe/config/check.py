"""``check_config``: what can be checked before Ray starts or any data is read.

Local input paths exist, referenced columns are declared, roles make sense, and the
feature steps fit the declared columns (the :class:`~raypipe.features.FeaturePipeline`
itself walks them, so the messages are those of fit time).
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any

from raypipe.config.root import PipelineConfig
from raypipe.config.sources import CsvSource, SqlSource, TextSource, UnionSource
from raypipe.errors import ConfigError, did_you_mean
from raypipe.features import FeaturePipeline
from raypipe.runtime.storage import is_local

__all__ = ["check_config", "local_paths"]


def local_paths(source: Any) -> list[str]:
    """The local files a source reads, as written (globs and ``file://`` kept).

    Remote URIs are left out; a SQLite URL gives its database file; a union gives
    the paths of all its sources.
    """
    if isinstance(source, UnionSource):
        return [p for s in source.sources for p in local_paths(s)]
    if isinstance(source, SqlSource):
        if source.url.startswith("sqlite:///"):
            return [source.url.removeprefix("sqlite:///")]
        return []
    return [p for p in getattr(source, "paths", []) if is_local(p)]


def _source_columns(source: Any) -> list[str] | None:
    """Columns a source declares without reading it (CSV column_names), renamed and selected."""
    if source.columns is not None:
        return list(source.columns)
    if isinstance(source, CsvSource) and source.column_names:
        return [source.rename.get(c, c) for c in source.column_names]
    if isinstance(source, TextSource):
        return [source.rename.get(c, c) for c in re.compile(source.pattern).groupindex]
    return None


def check_config(cfg: PipelineConfig, where: str = "<config>") -> list[str]:
    """Check what can be checked without Ray or reading data.

    Local input paths exist, referenced columns are declared, roles make sense.
    Returns warnings (strings); raises :class:`ConfigError` listing every problem.
    """
    problems: list[str] = []
    warnings: list[str] = []
    for p in local_paths(cfg.data.source):
        local = p.removeprefix("file://")
        if not (os.path.exists(local) or glob.glob(local)):
            problems.append(f"data.source: path '{p}' does not exist (relative paths are from {os.getcwd()}).")

    schema = cfg.data.schema_
    declared = list(schema.columns)
    src_cols = _source_columns(cfg.data.source)
    if declared and src_cols is not None:
        for col in declared:
            if col not in src_cols:
                problems.append(
                    f"data.schema.columns.{col}: not produced by the source (its columns: {', '.join(src_cols)}).{did_you_mean(col, src_cols)}"
                )
    known = declared or src_cols
    if schema.label is None:
        problems.append("data.schema.label: no label column declared (expected the name of the target column).")
    for role in ("label", "weight", "id"):
        col = getattr(schema, role)
        if col and known and col not in known:
            problems.append(f"data.schema.{role}: column '{col}' is not declared.{did_you_mean(col, known)}")

    split = cfg.data.split
    if split.method == "time" and known and split.time_column not in known:
        problems.append(f"data.split.time_column: column '{split.time_column}' is not declared.{did_you_mean(split.time_column, known)}")
    if split.method == "files":
        all_paths = [os.path.basename(p) for p in local_paths(cfg.data.source)] + [
            p for p in getattr(cfg.data.source, "paths", [])
        ]
        for p in split.test_paths + split.valid_paths:
            if all_paths and os.path.basename(p) not in all_paths and p not in all_paths:
                problems.append(f"data.split: '{p}' is not one of the source's paths.")

    if declared:
        # The feature pipeline itself walks the steps (pure, no data read): the same
        # checks, the same messages as at fit time, step outputs included.
        try:
            FeaturePipeline(
                cfg.features,
                {name: spec.type for name, spec in schema.columns.items()},
                exclude=[c for c in (schema.weight, schema.id) if c],
                label=schema.label if schema.label in schema.columns else None,
                task=cfg.model.task,
                positive_class=cfg.model.positive_class,
            )
        except ConfigError as exc:
            problems.append(str(exc))
    if known:
        for col in cfg.evaluate.slices:
            if col not in known:
                problems.append(f"evaluate.slices: column '{col}' is not declared.{did_you_mean(col, known)}")
    else:
        warnings.append("data.schema.columns is empty: columns will be inferred at run time (see `raypipe infer-schema`).")

    if cfg.model.training.use_gpu and cfg.model.params.get("device", "cuda") not in ("cuda", "gpu"):
        problems.append("model.params.device: use_gpu is true but params.device is not 'cuda'.")
    if problems:
        raise ConfigError("\n".join(f"{where}: {p}" for p in problems))
    return warnings
