"""Batch inference with a :class:`~raypipe.bundle.ModelBundle` on Ray Data.

The bundle is shipped to an actor pool as bytes (no shared filesystem needed) and
rebuilt once per actor; each batch goes through :meth:`ModelBundle.predict`, the
same code the HTTP endpoint runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy

from raypipe.bundle import ModelBundle, input_columns
from raypipe.config import CsvSource, JsonSource, ParquetSource, SchemaConfig, ValidationConfig
from raypipe.data import provenance as prov
from raypipe.data.ingest import ingest
from raypipe.errors import ConfigError
from raypipe.registry import open_registry, resolve_version
from raypipe.runtime.cluster import connect

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


def batch_predict(cfg: Any, input_uri: str, output_uri: str, model: str | None = None, address: str | None = None) -> dict[str, Any]:
    """``raypipe predict``: validate the input rows against the model's schema, predict
    with the bundle on a Ray Data actor pool, write CSV or Parquet (by ``output_uri``'s
    extension; a folder of files, as Ray Data writes).

    Output columns: the schema's id column (when declared and present), ``source_file``,
    ``source_line``, ``prediction`` and, for classification, ``probability``. Rows that
    break the schema are written to ``<output>.quarantine`` and counted, never dropped
    silently.

    Returns:
        ``{"model", "rows": {"input", "predicted", "quarantined"}, "output", "quarantine"}``.
    """
    out_fmt = _format_of(output_uri, "--output")
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
    connect(address, configured_address=cfg.cluster.address, num_cpus=cfg.cluster.num_cpus, runtime_env=cfg.cluster.runtime_env,
            dashboard=cfg.cluster.dashboard, metrics_export_port=cfg.cluster.metrics_export_port)
    quarantine_uri = output_uri.rstrip("/") + ".quarantine"
    result = ingest(run_cfg, quarantine_uri=quarantine_uri, state_uri=quarantine_uri + "-state")
    keep = ([id_column] if id_column else []) + [prov.FILE, prov.LINE]
    predicted = predict_dataset(bundle, result.dataset, keep=keep)
    predicted = predicted.rename_columns({prov.FILE: "source_file", prov.LINE: "source_line"})
    if out_fmt == "csv":
        predicted = predicted.map_batches(_csv_ready, batch_format="pyarrow", batch_size=None)
        predicted.write_csv(output_uri)
    elif out_fmt == "parquet":
        predicted.write_parquet(output_uri)
    else:
        predicted.write_json(output_uri)
    counts = result.counts
    return {
        "model": {"name": version.model, "version": version.version},
        "rows": {"input": counts["ingested"], "predicted": counts["valid"], "quarantined": counts["quarantined"]},
        "output": output_uri,
        "quarantine": result.quarantine_path,
    }
