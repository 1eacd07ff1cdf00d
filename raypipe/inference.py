"""Batch inference with a :class:`~raypipe.bundle.ModelBundle` on Ray Data.

The bundle is shipped to an actor pool as bytes (no shared filesystem needed) and
rebuilt once per actor; each batch goes through :meth:`ModelBundle.predict`, the
same code the HTTP endpoint runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any


import pyarrow as pa
import pyarrow.fs as pafs
import ray
from ray.data import ActorPoolStrategy

from raypipe.bundle import ModelBundle, input_columns
from raypipe.config import CsvSource, JsonSource, ParquetSource, SchemaConfig, ValidationConfig
from raypipe.data import provenance as prov
from raypipe.data.ingest import ingest
from raypipe.errors import ConfigError
from raypipe.registry import open_registry, resolve_version
from raypipe.runtime.cluster import connect
from raypipe.runtime.storage import absolute_uri, is_local, resolve

__all__ = ["predict_dataset", "prediction_table", "collect", "batch_predict"]


def prediction_table(bundle: ModelBundle, batch: pa.Table, keep: Sequence[str] = ()) -> pa.Table:
    """``keep`` columns of ``batch`` followed by ``prediction`` and ``probability`` columns.

    Binary: ``probability`` is P(positive class). Multiclass: ``probability`` is a
    list per row (class order of the bundle) and ``probability_<class>`` columns
    are not added, to keep the output schema stable for any class count.
    """
    out = bundle.predict(batch)
    arrays = [batch.column(c) for c in keep]
    names = list(keep)
    pred = out["prediction"]
    arrays.append(pa.array(pred.tolist() if pred.dtype == object else pred))
    names.append("prediction")
    if "probability" in out:
        proba = out["probability"]
        if proba.ndim == 1:
            arrays.append(pa.array(proba))
        else:
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(proba.ravel()), proba.shape[1]))
        names.append("probability")
    return pa.Table.from_arrays(arrays, names=names)


class _Predictor:
    """Ray Data actor: one bundle per process, reused for every batch."""

    def __init__(self, files: dict[str, bytes], keep: list[str]):
        self.bundle = ModelBundle.from_files(files)
        self.keep = keep

    def __call__(self, batch: pa.Table) -> pa.Table:
        return prediction_table(self.bundle, batch, self.keep)


def predict_dataset(
    bundle: ModelBundle,
    ds: Any,
    keep: Sequence[str] = (),
    concurrency: int | tuple[int, int] | None = None,
    batch_size: int | None = None,
    num_cpus: float = 1,
) -> Any:
    """Lazily add predictions to ``ds`` (a ``ray.data.Dataset`` of validated rows).

    Args:
        bundle: the model.
        ds: rows typed as the bundle's schema.
        keep: columns carried through (an id, the label, slice columns).
        concurrency: size of the actor pool (an int, or (min, max) to autoscale);
            ``None`` autoscales from 1 to one actor per cluster CPU.
        batch_size: rows per prediction call; ``None``: a whole block (one
            XGBoost call per block, the cheapest).
        num_cpus: CPUs reserved per actor.
    """
    if concurrency is None:
        concurrency = (1, max(1, int(ray.cluster_resources().get("CPU", 1) // num_cpus)))
    return ds.map_batches(
        _Predictor,
        fn_constructor_kwargs={"files": bundle.to_files(), "keep": list(keep)},
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=_actor_pool(concurrency),
        num_cpus=num_cpus,
        zero_copy_batch=True,
    )


def _actor_pool(concurrency: int | tuple[int, int]) -> Any:
    if isinstance(concurrency, tuple):
        return ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    return ActorPoolStrategy(size=concurrency)


def collect(ds: Any) -> pa.Table:
    """Gather a (small) dataset's rows on the driver as one Arrow table."""
    return pa.concat_tables(ray.get(ds.to_arrow_refs()), promote_options="default")


# --------------------------------------------------------------------------- raypipe predict

_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "jsonl", ".jsonl": "jsonl"}


def _format_of(uri: str, where: str) -> str:
    base = uri.rstrip("/").rsplit("/", 1)[-1].lower()
    for ext, fmt in _FORMATS.items():
        if base.endswith(ext):
            return fmt
    raise ConfigError(f"{where}: cannot tell the format of {uri!r}; expected a name ending in .csv, .parquet or .jsonl.")


def _input_source(cfg: Any, uri: str) -> Any:
    """The config's own source options where the input has the same format (a headerless CSV
    stays headerless), else the format's defaults. A path without an extension (a folder)
    is read with the config's source type."""
    src = cfg.data.source
    file_based = src.type in ("csv", "parquet", "json", "jsonl")
    try:
        fmt = _format_of(uri, "--input")
    except ConfigError:
        if file_based:
            return src.model_copy(update={"paths": [uri]})
        raise
    if file_based and (src.type == fmt or {src.type, fmt} == {"json", "jsonl"}):
        return src.model_copy(update={"paths": [uri]})
    return {"csv": CsvSource, "parquet": ParquetSource, "jsonl": JsonSource}[fmt](type=fmt, paths=[uri])


def _csv_ready(table: pa.Table) -> pa.Table:
    """Multiclass probabilities (a list per row) as ``probability_<i>`` columns for CSV."""
    if "probability" not in table.column_names or not pa.types.is_fixed_size_list(table.schema.field("probability").type):
        return table
    i = table.column_names.index("probability")
    probs = table.column("probability").combine_chunks()
    k = probs.type.list_size
    flat = probs.flatten()
    table = table.remove_column(i)
    for j in range(k):
        table = table.append_column(f"probability_{j}", flat[j::k] if len(flat) else pa.array([], pa.float64()))
    return table


def _output_target(uri: str, folder: bool, output_format: str | None) -> tuple[str, bool]:
    """(format, as_folder) of ``--output``: a name ending in .csv/.parquet/.jsonl is one
    file unless ``folder``; a name without one of those extensions is a folder of part
    files in ``output_format`` (Parquet by default)."""
    if output_format is not None and output_format not in ("csv", "parquet", "jsonl"):
        raise ConfigError(f"--format: expected csv, parquet or jsonl, got {output_format!r}.")
    try:
        fmt = _format_of(uri, "--output")
    except ConfigError:
        return output_format or "parquet", True
    if output_format is not None and output_format != fmt:
        raise ConfigError(f"--output: {uri!r} names a .{fmt} file but --format is {output_format!r}. Hint: drop --format or change the extension.")
    return fmt, folder


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _remove(fs: pafs.FileSystem, path: str) -> None:
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif info.type != pafs.FileType.NotFound:
        fs.delete_file(path)


def _sibling(path: str, tag: str) -> str:
    """A hidden name next to ``path`` (same folder, so a rename never crosses filesystems)."""
    head, _, name = path.rstrip("/").rpartition("/")
    return f"{head}/.{name}.{tag}-{uuid.uuid4().hex[:8]}"


def _replace(fs: pafs.FileSystem, staged: str | None, target: str) -> None:
    """Put ``staged`` at ``target`` (or remove ``target`` when nothing was staged): the old
    one is renamed aside first, so a reader sees the old or the new, never a mix."""
    aside = _sibling(target, "old") if _exists(fs, target) else None
    if aside:
        fs.move(target, aside)
    if staged is not None:
        fs.move(staged, target)
    if aside:
        _remove(fs, aside)


def _write_one_file(ds: Any, fs: pafs.FileSystem, path: str, fmt: str, empty_schema: pa.Schema) -> None:
    """Stream ``ds``'s batches into ONE file at ``path`` (one CSV header, one Parquet footer).

    Batches arrive on the driver one at a time, so memory stays at a few blocks whatever
    the row count.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    writer: Any = None
    schema: pa.Schema | None = None
    with fs.open_output_stream(path) as sink:
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            if fmt == "csv":
                batch = _csv_ready(batch)
            if fmt == "jsonl":
                if batch.num_rows:
                    sink.write(batch.to_pandas().to_json(orient="records", lines=True).encode())
                continue
            if writer is None:
                schema = batch.schema
                writer = pacsv.CSVWriter(sink, schema) if fmt == "csv" else pq.ParquetWriter(sink, schema)
            writer.write_table(batch if batch.schema == schema else batch.cast(schema))
        if writer is None and fmt != "jsonl":
            # No row was valid: still one file, with the header (CSV) or the schema (Parquet).
            writer = pacsv.CSVWriter(sink, empty_schema) if fmt == "csv" else pq.ParquetWriter(sink, empty_schema)
        if writer is not None:
            writer.close()


def _empty_output_schema(bundle: ModelBundle, keep: Sequence[str], fmt: str) -> pa.Schema:
    fields = [pa.field(c, pa.string()) for c in keep]
    fields.append(pa.field("prediction", pa.float64() if bundle.schema.get("task") == "regression" else pa.string()))
    if bundle.schema.get("task") == "binary_classification":
        fields.append(pa.field("probability", pa.float64()))
    elif bundle.schema.get("task") == "multiclass":
        fields.append(pa.field("probability", pa.list_(pa.float64())))
    schema = pa.schema(fields)
    return pa.schema([f for f in schema if not pa.types.is_list(f.type)]) if fmt == "csv" else schema


def batch_predict(
    cfg: Any,
    input_uri: str,
    output_uri: str,
    model: str | None = None,
    address: str | None = None,
    *,
    overwrite: bool = False,
    folder: bool = False,
    output_format: str | None = None,
) -> dict[str, Any]:
    """``raypipe predict``: validate the input rows against the model's schema, predict
    with the bundle on a Ray Data actor pool, write CSV, Parquet or JSON Lines.

    Output: a path ending in ``.csv``, ``.parquet`` or ``.jsonl`` is ONE file (one
    header); a path without such an extension, or ``folder=True``, is a folder of part
    files (format from the extension, else ``output_format``, else Parquet). Columns: the
    schema's id column (when the bundle declares one), ``source_file``, ``source_line``,
    ``prediction`` and, for classification, ``probability``. Rows that break the schema
    are written to ``<output>.quarantine`` (Parquet) and counted, never dropped silently.

    An existing output or quarantine is refused unless ``overwrite``: then both are
    replaced together, each written to a hidden sibling first and renamed into place,
    so a run never appends to an earlier one and a failed run leaves the old files.

    Returns:
        ``{"model", "rows": {"input", "predicted", "quarantined"}, "output", "quarantine"}``.

    Raises:
        ConfigError: the output exists (without ``overwrite``) or its format is unknown.
    """
    out_fmt, as_folder = _output_target(output_uri, folder, output_format)
    out_uri = absolute_uri(output_uri.rstrip("/"))
    fs, out_path = resolve(out_uri, what="--output")
    q_path = out_path + ".quarantine"
    existing = [p for p in (out_path, q_path) if _exists(fs, p)]
    if existing and not overwrite:
        raise ConfigError(
            f"--output: {existing[0]} already exists; predictions are never appended to an earlier run. "
            "Hint: pass --overwrite to replace the output and its quarantine together, or choose a new path."
        )
    version = resolve_version(cfg, model, "predict")
    registry = open_registry(cfg)
    bundle = ModelBundle.load(registry.local_path(version.model, version.version))
    id_column = bundle.schema.get("id")
    schema = SchemaConfig(columns=input_columns(bundle.schema), id=id_column, extra_columns="drop")
    data = cfg.data.model_copy(update={
        "source": _input_source(cfg, input_uri),
        "schema_": schema,
        "validation": ValidationConfig(max_invalid_fraction=1.0),
    })
    run_cfg = cfg.model_copy(update={"data": data})
    connect(address, **cfg.cluster.connect_options())
    fs.create_dir(out_path.rpartition("/")[0] or "/", recursive=True)
    staged_out, staged_q = _sibling(out_path, "tmp"), _sibling(q_path, "tmp")
    base = out_uri[: len(out_uri) - len(out_path)] if not is_local(out_uri) else ""
    try:
        result = ingest(run_cfg, quarantine_uri=base + staged_q, state_uri=out_uri + ".quarantine-state")
        keep = ([id_column] if id_column else []) + [prov.FILE, prov.LINE]
        predicted = predict_dataset(bundle, result.dataset, keep=keep)
        predicted = predicted.rename_columns({prov.FILE: "source_file", prov.LINE: "source_line"})
        if not as_folder:
            names = ([id_column] if id_column else []) + ["source_file", "source_line"]
            _write_one_file(predicted, fs, staged_out, out_fmt, _empty_output_schema(bundle, names, out_fmt))
        elif out_fmt == "csv":
            predicted.map_batches(_csv_ready, batch_format="pyarrow", batch_size=None).write_csv(base + staged_out)
        elif out_fmt == "parquet":
            predicted.write_parquet(base + staged_out)
        else:
            predicted.write_json(base + staged_out)
        if as_folder and not _exists(fs, staged_out):
            fs.create_dir(staged_out)  # no valid row: Ray wrote no part file
        _replace(fs, staged_q if result.quarantine_path else None, q_path)
        _replace(fs, staged_out, out_path)
    finally:
        for staged in (staged_out, staged_q):
            if _exists(fs, staged):
                _remove(fs, staged)
    counts = result.counts
    return {
        "model": {"name": version.model, "version": version.version},
        "rows": {"input": counts["ingested"], "predicted": counts["valid"], "quarantined": counts["quarantined"]},
        "output": out_uri,
        "quarantine": out_uri + ".quarantine" if result.quarantine_path else None,
    }
