"""The closed loop's retraining: the same pipeline on the configured sources plus labeled
production data.

:func:`retrain` snapshots the prediction log joined with its feedback (the labeled
production rows) as Parquet, adds it to the configured source as a ``union``, and
runs :class:`~raypipe.pipeline.Pipeline` with a time split over the newest
``retrain.data_window`` of the data: the newest ``retrain.gate_fraction`` of rows —
recent labeled production data — is the test split, on which the register stage
re-scores the champion and gates the candidate (replay gating). Without a time column
the split is random with the same fractions.

The monitor actor runs it as a Ray task on the cluster (whoever starts the monitor hands
it :func:`retrain`: the monitor sits floors below the pipeline); ``raypipe retrain CONFIG``
and :func:`raypipe.retrain` run it by hand.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import pyarrow.parquet as pq
import ray

from raypipe.config import ParquetSource, PipelineConfig, SplitConfig, UnionSource
from raypipe.monitor.log import labeled_rows
from raypipe.pipeline import Pipeline
from raypipe.runtime.storage import absolute_uri, resolve
from raypipe.train import cpu_fraction, data_reserve

__all__ = ["retrain", "retrain_config", "production_snapshot"]

log = logging.getLogger("raypipe.loop")


def _log_root(cfg: PipelineConfig) -> str:
    return absolute_uri(cfg.monitor.log_uri).rstrip("/") + f"/{cfg.model_name}"


def production_snapshot(cfg: PipelineConfig) -> tuple[str | None, int]:
    """Write the labeled production rows (schema columns, label under the schema's name)
    as one Parquet file; returns its path (None without labeled rows) and the row count."""
    root = _log_root(cfg)
    rows = labeled_rows(root)
    if rows is None or rows.num_rows == 0:
        return None, 0
    label = cfg.data.schema_.label
    columns = [c for c in cfg.data.schema_.columns if c in rows.column_names and c != label]
    table = rows.select(columns).append_column(label, rows.column("label"))
    path = f"{root}/snapshots/labeled-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.parquet"
    fs, where = resolve(path, "monitor.log_uri")
    fs.create_dir(where.rsplit("/", 1)[0], recursive=True)
    pq.write_table(table, where, filesystem=fs)
    return path, table.num_rows


def retrain_config(cfg: PipelineConfig, snapshot: str | None) -> PipelineConfig:
    """The pipeline config of a retraining run (see the module docstring)."""
    source = cfg.data.source
    if snapshot is not None:
        production = ParquetSource(type="parquet", paths=[snapshot], name="production")
        source = UnionSource(type="union", sources=[source, production])
    r, split = cfg.retrain, cfg.data.split
    if split.time_column:
        new_split = SplitConfig(method="time", time_column=split.time_column, window=r.data_window,
                                test_fraction=r.gate_fraction, valid_fraction=r.valid_fraction, seed=split.seed)
    else:
        new_split = SplitConfig(method="random", test_fraction=r.gate_fraction, valid_fraction=r.valid_fraction, seed=split.seed)
    data = cfg.data.model_copy(update={"source": source, "split": new_split})
    return cfg.model_copy(update={"data": data, "model": _beside_serving(cfg)})


def _beside_serving(cfg: PipelineConfig) -> Any:
    """The model section with training sized to leave the endpoint's replicas their CPUs.

    A retrain runs next to the Serve replicas; planned from the cluster's total CPUs, its
    workers would take the CPUs Ray Data needs and the run would hang in
    ``get_dataset_shard``. An explicit ``cpus_per_worker`` is kept as given.
    """
    training = cfg.model.training
    if training.cpus_per_worker is not None or not ray.is_initialized():
        return cfg.model
    total = float(ray.cluster_resources().get("CPU", 0.0))
    serving = cfg.serve.replica_cpus * cfg.serve.autoscaling.max_replicas
    workers = 1 if training.num_workers == "auto" else int(training.num_workers)
    per = cpu_fraction(max(total - data_reserve(total) - serving, 0.1) / workers)
    return cfg.model.model_copy(update={"training": training.model_copy(update={"num_workers": workers, "cpus_per_worker": per})})


def retrain(cfg: PipelineConfig, trigger: dict[str, Any] | None = None, address: str | None = None) -> dict[str, Any]:
    """Run one retraining and return ``{"run_id", "status", "model", "promoted", "gate",
    "rows", "production_rows", "trigger"}``.

    With ``retrain.auto_promote: false`` the candidate is registered and gated but the
    champion is left as it is.
    """
    trigger = dict(trigger or {"kind": "manual"})
    snapshot, n = production_snapshot(cfg)
    trigger["production_rows"] = n
    run_cfg = retrain_config(cfg, snapshot)
    log.info("retrain: %s, %d labeled production rows", trigger.get("kind"), n)
    result = Pipeline(run_cfg, address=address).run(trigger=trigger, promote=cfg.retrain.auto_promote)
    return {
        "run_id": result.run_id,
        "status": result.status,
        "model": result.model,
        "promoted": result.promoted,
        "gate": result.gate,
        "rows": result.rows,
        "metrics": (result.metrics or {}).get("test"),
        "production_rows": n,
        "trigger": trigger,
        "report": result.report,
    }
