"""Batch inference with a :class:`~raypipe.bundle.ModelBundle` on Ray Data.

:func:`predict_dataset` ships the bundle to an actor pool as bytes (no shared
filesystem needed), rebuilt once per actor. :func:`batch_predict` (``raypipe
predict``) is ONE streaming pass: each read task validates its rows and predicts them
in the same task (read, validate and predict fused; the bundle is put in the object
store once and rebuilt once per worker process), emitting predictions and quarantine
records in one stream that the driver writes as it arrives. Every batch goes through
:meth:`ModelBundle.predict`, the same code the HTTP endpoint runs.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import ray
from ray.data import ActorPoolStrategy

from raypipe.bundle import ModelBundle, input_columns
from raypipe.config import CsvSource, JsonSource, ParquetSource, SchemaConfig
from raypipe.data import provenance as prov
from raypipe.data.file_sources import read_parquet
from raypipe.data.ingest import QUARANTINE_RECORD, pack_records, unpack_records
from raypipe.data.provenance import source_name
from raypipe.data.sources import read_source
from raypipe.data.task_errors import unwrap_task_errors
from raypipe.data.validate import BatchValidator
from raypipe.data.watermark import watermark_session
from raypipe.errors import ConfigError, DataError, StageError
from raypipe.registry import open_registry, resolve_version
from raypipe.runtime.cluster import connect
from raypipe.runtime.storage import absolute_uri, resolve

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

#: Bundles and validators rebuilt in this worker process, by (bundle digest, source, keep).
#: A worker runs one job's tasks; the few entries a job makes are dropped past _CACHED.
_SCORERS: dict[tuple[str, str, tuple[str, ...]], tuple[ModelBundle, BatchValidator]] = {}
_CACHED = 4


#: Output block size of the prediction stream (a 131,072-row read batch of the benchmark's
#: Adult-like rows with its predictions is about 10 MB).
_BLOCK_BYTES = 16 << 20

_OUTPUT_NAMES = {prov.FILE: "source_file", prov.LINE: "source_line"}


def _no_predictions(bundle: ModelBundle, valid: pa.Table, keep: Sequence[str]) -> pa.Table:
    """The empty table :func:`prediction_table` would give for a block without valid rows,
    typed as its non-empty ones (so every block of the stream has one schema)."""
    task = bundle.schema.get("task")
    fields = [valid.schema.field(c) for c in keep]
    fields.append(pa.field("prediction", pa.float64() if task == "regression" else pa.string()))
    if task == "binary_classification":
        fields.append(pa.field("probability", pa.float64()))
    elif task == "multiclass":
        fields.append(pa.field("probability", pa.list_(pa.float64(), len(bundle.features.label_encoder.classes))))
    return pa.schema(fields).empty_table()


def _scorer(digest: str, files: list[Any], source: str, keep: tuple[str, ...], threads: int) -> tuple[ModelBundle, BatchValidator]:
    key = (digest, source, keep)
    found = _SCORERS.get(key)
    if found is None:
        bundle = ModelBundle.from_files(ray.get(files[0]))
        # One XGBoost thread per CPU the task holds: the other cores run other tasks.
        bundle.booster.set_param({"nthread": threads})
        schema = SchemaConfig(columns=input_columns(bundle.schema), id=bundle.schema.get("id"), extra_columns="drop")
        if len(_SCORERS) >= _CACHED:
            _SCORERS.clear()
        found = _SCORERS[key] = (bundle, BatchValidator(schema, source, "error"))
    return found


def _score_block(table: pa.Table, *, digest: str, files: list[Any], source: str, keep: list[str], threads: int) -> pa.Table:
    """map_batches UDF (fused with the read): validate a block and predict its valid rows.

    Returns the predictions (``keep`` columns with the reader columns renamed
    ``source_file``/``source_line``, ``prediction``, ``probability``), then the block's
    quarantine records packed into ``__rp_q`` (see :func:`raypipe.data.ingest.pack_records`).
    """
    bundle, validator = _scorer(digest, files, source, tuple(keep), threads)
    valid, bad = validator(table)
    if valid.num_rows + bad.num_rows != table.num_rows:
        raise StageError(f"predict: a block of {table.num_rows} rows gave {valid.num_rows} valid + {bad.num_rows} quarantined. This is a raypipe bug.")
    predicted = prediction_table(bundle, valid, keep) if valid.num_rows else _no_predictions(bundle, valid, keep)
    if predicted.num_rows != valid.num_rows:
        raise StageError(f"predict: {valid.num_rows} valid rows gave {predicted.num_rows} predictions. This is a raypipe bug.")
    predicted = predicted.rename_columns([_OUTPUT_NAMES.get(c, c) for c in predicted.column_names])
    return pack_records(predicted, bad)


def _read_input(source: Any, state_uri: str) -> Any:
    """The input rows; a Parquet input is cut by row groups, so that one large file
    still gives a read (and fused predict) task per core."""
    with watermark_session(state_uri):
        if source.type == "parquet":
            return read_parquet(source, split_row_groups=True)
        return read_source(source)


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


class _OneFile:
    """Batches written, as they arrive, into ONE file at ``path`` (one CSV header, one
    Parquet footer): memory stays at a few blocks whatever the row count."""

    def __init__(self, fs: pafs.FileSystem, path: str, fmt: str, empty_schema: pa.Schema):
        self.fmt, self.empty_schema = fmt, empty_schema
        self.sink = fs.open_output_stream(path)
        self.writer: Any = None
        self.schema: pa.Schema | None = None

    def write(self, batch: pa.Table) -> None:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        if self.fmt == "csv":
            batch = _csv_ready(batch)
        if self.fmt == "jsonl":
            if batch.num_rows:
                self.sink.write(batch.to_pandas().to_json(orient="records", lines=True).encode())
            return
        if self.writer is None:
            self.schema = batch.schema
            self.writer = pacsv.CSVWriter(self.sink, self.schema) if self.fmt == "csv" else pq.ParquetWriter(self.sink, self.schema)
        self.writer.write_table(batch if batch.schema == self.schema else batch.cast(self.schema))

    def close(self) -> None:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        try:
            if self.writer is None and self.fmt != "jsonl":
                # No row was valid: still one file, with the header (CSV) or the schema (Parquet).
                schema = self.empty_schema
                self.writer = pacsv.CSVWriter(self.sink, schema) if self.fmt == "csv" else pq.ParquetWriter(self.sink, schema)
            if self.writer is not None:
                self.writer.close()
        finally:
            self.sink.close()


class _PartFiles:
    """Batches written as part files (``part-00000.<ext>``, ...) of a folder; none when
    no row was valid (the folder is still made)."""

    def __init__(self, fs: pafs.FileSystem, path: str, fmt: str):
        self.fs, self.path, self.fmt = fs, path, fmt
        self.parts = 0
        fs.create_dir(path, recursive=True)

    def write(self, batch: pa.Table) -> None:
        if not batch.num_rows:
            return
        ext = {"csv": "csv", "parquet": "parquet", "jsonl": "json"}[self.fmt]
        part = _OneFile(self.fs, f"{self.path}/part-{self.parts:05d}.{ext}", self.fmt, batch.schema)
        self.parts += 1
        try:
            part.write(batch)
        finally:
            part.close()

    def close(self) -> None:
        pass


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
    with the bundle, write CSV, Parquet or JSON Lines, in one streaming pass.

    Each read task validates and predicts its own rows (one task per file, per run of
    row groups for Parquet, 1 CPU and one XGBoost thread each; no actor, so it fits
    beside Serve replicas holding fractions of a CPU); the driver writes predictions and
    gathers quarantine records as blocks arrive. ``input == predicted + quarantined``
    is checked on every run.

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
    source = _input_source(cfg, input_uri)
    keep = ([id_column] if id_column else []) + [prov.FILE, prov.LINE]
    names = ([id_column] if id_column else []) + ["source_file", "source_line"]
    connect(address, **cfg.cluster.connect_options())
    fs.create_dir(out_path.rpartition("/")[0] or "/", recursive=True)
    staged_out, staged_q = _sibling(out_path, "tmp"), _sibling(q_path, "tmp")
    try:
        files = bundle.to_files()
        digest = hashlib.sha256(b"".join(name.encode() + b"\0" + files[name] for name in sorted(files))).hexdigest()
        # The bundle goes to the object store once; each worker process fetches it once.
        files_ref = [ray.put(files)]
        sink: Any = _PartFiles(fs, staged_out, out_fmt) if as_folder else _OneFile(fs, staged_out, out_fmt, _empty_output_schema(bundle, names, out_fmt))
        records: list[pa.Array] = []
        ingested = predicted = 0
        try:
            with unwrap_task_errors("predict"):
                stream = _read_input(source, out_uri + ".quarantine-state").map_batches(
                    _score_block,
                    fn_kwargs={"digest": digest, "files": files_ref, "source": source_name(source), "keep": keep, "threads": 1},
                    batch_format="pyarrow", batch_size=None, zero_copy_batch=True, num_cpus=1,
                )
                # Blocks of about one read batch (not Ray's 128 MiB, a whole task's output
                # here), so the driver writes while the tasks still predict.
                stream.context.target_max_block_size = _BLOCK_BYTES
                for block in stream.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=2):
                    packed = block.column(QUARANTINE_RECORD)
                    # pack_records puts a block's predictions first, its records after them.
                    n_valid = packed.null_count
                    ingested += block.num_rows
                    predicted += n_valid
                    if n_valid < block.num_rows:
                        records.append(block.slice(n_valid).select([QUARANTINE_RECORD]))
                    sink.write(block.slice(0, n_valid).drop_columns([QUARANTINE_RECORD]))
        finally:
            sink.close()
        quarantined = sum(t.num_rows for t in records)
        if ingested == 0:
            raise DataError(f"--input: {source_name(source)}: no rows were read. Hint: check the path.")
        if predicted + quarantined != ingested:
            raise StageError(f"predict: {ingested} rows in, but {predicted} predicted + {quarantined} quarantined. This is a raypipe bug.")
        if quarantined:
            import pyarrow.parquet as pq

            fs.create_dir(staged_q, recursive=True)
            table = unpack_records(pa.concat_tables(records))
            with fs.open_output_stream(f"{staged_q}/part-00000.parquet") as out:
                pq.write_table(table, out)
        _replace(fs, staged_q if quarantined else None, q_path)
        _replace(fs, staged_out, out_path)
    finally:
        for staged in (staged_out, staged_q):
            if _exists(fs, staged):
                _remove(fs, staged)
    counts = {"ingested": ingested, "valid": predicted, "quarantined": quarantined}
    return {
        "model": {"name": version.model, "version": version.version},
        "rows": {"input": counts["ingested"], "predicted": counts["valid"], "quarantined": counts["quarantined"]},
        "output": out_uri,
        "quarantine": out_uri + ".quarantine" if quarantined else None,
    }
