"""Scoring a dataset with a bundle on Ray Data, and the primary metric of a task."""

from __future__ import annotations

from typing import Any

import numpy as np

from raypipe.config import PipelineConfig
from raypipe.errors import ConfigError
from raypipe.evaluate import compute_metrics, resolve_metric, slice_metrics
from raypipe.inference import collect, predict_dataset

__all__ = ["score", "primary_metric"]

_DEFAULT_PRIMARY = {"binary_classification": "roc_auc", "multiclass": "accuracy", "regression": "rmse"}


def primary_metric(cfg: PipelineConfig) -> str:
    name = cfg.evaluate.primary_metric or _DEFAULT_PRIMARY[cfg.model.task]
    try:
        return resolve_metric(cfg.model.task, name)
    except ValueError as exc:
        raise ConfigError(f"evaluate.primary_metric: {exc}") from None


def score(bundle: Any, ds: Any, cfg: PipelineConfig) -> dict[str, Any]:
    """Predict ``ds`` with ``bundle`` on Ray Data and compute the metrics on the driver."""
    schema = cfg.data.schema_
    keep = list(dict.fromkeys([schema.label, *cfg.evaluate.slices, *([schema.weight] if schema.weight else [])]))
    table = collect(predict_dataset(bundle, ds, keep=keep))
    y = bundle.features.encode_label(table.column(schema.label))
    scores = _scores(table)
    weight = table.column(schema.weight).to_numpy(zero_copy_only=False) if schema.weight else None
    task = cfg.model.task
    thr = bundle.threshold if task == "binary_classification" else None
    metrics = compute_metrics(task, y, scores, threshold=thr, sample_weight=weight)
    slices = slice_metrics(
        task,
        y,
        scores,
        {c: table.column(c).to_numpy(zero_copy_only=False) for c in cfg.evaluate.slices},
        threshold=thr,
    ) if cfg.evaluate.slices else {}
    return {"metrics": metrics, "slices": slices, "y": y, "scores": scores, "rows": table.num_rows}


def _scores(table: Any) -> Any:
    if "probability" not in table.column_names:
        return table.column("prediction").to_numpy(zero_copy_only=False).astype(np.float64)
    column = table.column("probability").combine_chunks()
    if hasattr(column, "flatten") and hasattr(column.type, "list_size"):
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), column.type.list_size)
    return column.to_numpy(zero_copy_only=False)

