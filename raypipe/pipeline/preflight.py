"""Checks a run makes before the expensive work: seconds, not minutes into a run.

:func:`preflight` is called by :meth:`Pipeline.run <raypipe.pipeline.Pipeline.run>`
before Ray starts and before anything is ingested: the registry and output locations
are readable and writable, the champion (if any) loads and matches its checksums, the
watermark state is readable, and the label and every named column exist in the source
(the header of the first local file; a Parquet file's schema).  Each problem is one
:class:`~raypipe.errors.StageError` or :class:`~raypipe.errors.ConfigError` naming
where it was found.
"""

from __future__ import annotations

import csv
import glob
import json
import uuid
from typing import Any

import pyarrow.fs as pafs

from raypipe.bundle import ModelBundle
from raypipe.config import PipelineConfig, local_paths
from raypipe.config.sources import CsvSource, ParquetSource, UnionSource
from raypipe.errors import ConfigError, DataError, RaypipeError, StageError, did_you_mean
from raypipe.registry import AliasNotFoundError, ModelNotFoundError, ModelRegistry
from raypipe.runtime.storage import absolute_uri, resolve

__all__ = ["preflight"]


def preflight(cfg: PipelineConfig) -> None:
    """Check what a run needs before it ingests anything (see the module docstring).

    Raises:
        StageError: a location is not writable, the champion does not load, the
            watermark state is unreadable.
        ConfigError: the label or a named column is not in the source.
    """
    _writable(cfg.registry.uri, "registry.uri")
    _writable(cfg.output.uri, "output.uri")
    _champion_loads(cfg)
    _watermarks_readable(f"{cfg.output.uri.rstrip('/')}/state/{cfg.name}")
    _columns_in_source(cfg)


def _writable(uri: str, what: str) -> None:
    """Create ``uri`` if needed and write, read back and delete a probe file there."""
    try:
        fs, root = resolve(absolute_uri(uri), what)
    except ValueError as exc:
        raise StageError(f"preflight: {what} {uri}: cannot be opened ({exc}).") from None
    probe = f"{root.rstrip('/')}/.raypipe-preflight-{uuid.uuid4().hex}"
    try:
        fs.create_dir(root, recursive=True)
        with fs.open_output_stream(probe) as out:
            out.write(b"ok")
        with fs.open_input_stream(probe) as fin:
            fin.read()
        fs.delete_file(probe)
    except OSError as exc:
        raise StageError(
            f"preflight: {what} {uri}: not writable ({type(exc).__name__}: {exc}). "
            "Hint: check the permissions and free space there, or point it elsewhere."
        ) from None


def _champion_loads(cfg: PipelineConfig) -> None:
    """The champion the gate will compare with loads now, checksums included."""
    registry = ModelRegistry(absolute_uri(cfg.registry.uri))
    try:
        champion = registry.get(cfg.model_name, "champion")
    except (ModelNotFoundError, AliasNotFoundError):
        return  # a first run: nothing to compare with
    except RaypipeError as exc:
        raise StageError(f"preflight: registry {cfg.registry.uri}: cannot read model '{cfg.model_name}': {exc}") from None
    try:
        ModelBundle.load(registry.local_path(cfg.model_name, champion.version))
    except Exception as exc:  # noqa: BLE001 - any reason the gate would fail later
        raise StageError(
            f"preflight: the champion {cfg.model_name}@{champion.version} does not load: {exc} "
            f"Hint: `raypipe models verify CONFIG` lists what is damaged; promote or roll back to a good version."
        ) from None


def _watermarks_readable(state_dir: str) -> None:
    try:
        fs, root = resolve(absolute_uri(state_dir), "watermark state")
        infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    except (ValueError, OSError) as exc:
        raise StageError(f"preflight: watermark state {state_dir}: unreadable ({exc}).") from None
    for info in infos:
        if info.type != pafs.FileType.File or not info.base_name.endswith(".json"):
            continue
        try:
            with fs.open_input_stream(info.path) as fin:
                json.loads(fin.read())
        except (OSError, ValueError) as exc:
            raise StageError(
                f"preflight: watermark file {info.path}: unreadable ({type(exc).__name__}: {exc}). "
                "Hint: fix it, or delete it to read every row again."
            ) from None


def _header(source: Any) -> list[str] | None:
    """The columns of the first local file of ``source`` (after renames), or None when unknown."""
    if isinstance(source, UnionSource) or source.columns is not None:
        return None
    files = sorted(f for p in local_paths(source) for f in glob.glob(p.removeprefix("file://")))
    if not files:
        return None
    try:
        if isinstance(source, CsvSource):
            if not source.header:
                return None  # column_names: check_config already compared them
            with open(files[0], newline="", encoding="utf-8", errors="replace") as fh:
                names = next(csv.reader(fh, delimiter=source.delimiter), [])
        elif isinstance(source, ParquetSource):
            import pyarrow.parquet as pq

            names = pq.read_schema(files[0]).names
        else:
            return None
    except (OSError, StopIteration, ValueError) as exc:
        raise DataError(f"preflight: data.source: cannot read {files[0]} ({type(exc).__name__}: {exc}).") from None
    return [source.rename.get(c.strip(), c.strip()) for c in names]


def _columns_in_source(cfg: PipelineConfig) -> None:
    header = _header(cfg.data.source)
    if header is None:
        return
    schema = cfg.data.schema_
    named = [(f"data.schema.{role}", getattr(schema, role)) for role in ("label", "weight", "id")]
    named += [(f"data.schema.columns.{c}", c) for c in schema.columns]
    if cfg.data.split.method == "time":
        named.append(("data.split.time_column", cfg.data.split.time_column))
    for where, column in named:
        if column and column not in header:
            raise ConfigError(
                f"{where}: column '{column}' is not in the source (the header of its first file has: "
                f"{', '.join(header)}).{did_you_mean(column, header)}"
            )
