"""k-fold cross-validation of a :class:`TrainSpec` on Ray Train.

Folds come from a deterministic hash (pandas' fixed-key SipHash, mixed with
the seed) of a key column, or, without one, of the row's label/feature/weight
values. So the fold of a row depends only on its content and the seed: not on
block layout, ordering or the number of workers. Identical rows share a fold,
which keeps duplicates from leaking between train and held-out parts.

Each fold is one ``train_xgboost`` run (Ray Train ``XGBoostTrainer``) whose
validation set is the held-out fold, so early stopping watches the held-out
fold, as ``xgboost.cv`` does. Folds run concurrently from driver threads, as
many as the cluster's CPUs (minus the Ray Data reserve) or GPUs allow.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

import ray
import ray.data

from raypipe.errors import ConfigError, SchemaError
from raypipe.train._resources import data_reserve, plan_workers
from raypipe.train.spec import TrainSpec, check_spec
from raypipe.train.xgboost_trainer import _require_ray, _run

__all__ = ["cross_validate", "FOLD_COLUMN", "fold_of"]

#: Column holding each row's fold (added by :func:`cross_validate`).
FOLD_COLUMN = "__raypipe_fold"

_HASH_KEY = "raypipe-cv-fold!"  # 16 bytes: pandas' SipHash key
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (wrapping uint64 arithmetic)."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(30))
        h = h * np.uint64(0xBF58476D1CE4E5B9)
        h = h ^ (h >> np.uint64(27))
        h = h * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def fold_of(columns: list[np.ndarray], k: int, seed: int) -> np.ndarray:
    """Fold (0..k-1) of each row, from the values of ``columns`` and ``seed``.

    >>> fold_of([np.arange(6)], k=3, seed=0).tolist()  # doctest: +SKIP
    [2, 0, 1, 1, 0, 2]
    """
    n = len(columns[0]) if columns else 0
    h = np.full(n, _mix64(np.array([seed], dtype=np.uint64))[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for values in columns:
            hashed = pd.util.hash_array(np.asarray(values), hash_key=_HASH_KEY, categorize=False)
            h = _mix64(h * _GOLDEN + hashed.astype(np.uint64, copy=False))
    return (h % np.uint64(k)).astype(np.int32)


class _AssignFold:
    """``map_batches`` UDF adding :data:`FOLD_COLUMN` to an Arrow batch."""

    def __init__(self, columns: list[str], k: int, seed: int):
        self._columns, self._k, self._seed = columns, k, seed

    def __call__(self, batch: pa.Table) -> pa.Table:
        arrays = [batch.column(c).to_numpy(zero_copy_only=False) for c in self._columns]
        folds = fold_of(arrays, self._k, self._seed)
        return batch.append_column(FOLD_COLUMN, pa.array(folds, type=pa.int32()))


class _SelectFold:
    def __init__(self, fold: int, keep: bool):
        self._fold, self._keep = fold, keep

    def __call__(self, batch: pa.Table) -> pa.Table:
        col = batch.column(FOLD_COLUMN)
        mask = pc.equal(col, self._fold) if self._keep else pc.not_equal(col, self._fold)
        return batch.filter(mask)


def cross_validate(
    spec: TrainSpec,
    ds: ray.data.Dataset,
    k: int = 5,
    seed: int = 42,
    *,
    key: str | None = None,
    run_name: str | None = None,
    max_concurrent: int | None = None,
) -> dict[str, Any]:
    """k-fold cross-validation with one Ray Train run per fold.

    Args:
        spec: What to train; ``num_workers: auto`` means 1 worker per fold
            (the folds are the parallelism).
        ds: All rows to cross-validate (label, features, weight, ``key``).
        k: Number of folds, >= 2.
        seed: Seed of the fold assignment (the model seed is ``spec.seed``).
        key: Row key or row-index column to hash; ``None`` hashes the row's
            label/feature/weight values.
        run_name: Prefix of the fold runs' names (``<run_name>-fold<i>``);
            default ``cv-<timestamp>``.
        max_concurrent: Cap on folds running at once; default from resources.

    Returns:
        ``{"k", "seed", "concurrency", "duration_s",
        "metrics": {"valid-auc": {"mean", "std"}, ...},
        "folds": [{"fold", "rows", "best_iteration", "metrics", "duration_s"}, ...]}``
        where metrics are those of each fold's final (early-stopped) model on
        its held-out fold (``valid-*``) and training part (``train-*``); ``std``
        is the population standard deviation over folds.

    Raises:
        ConfigError: ``k`` < 2 or an invalid spec; SchemaError: ``key`` missing;
        TrainingError: a fold failed.

    Example:
        >>> cv = cross_validate(spec, ds, k=3, seed=0)  # doctest: +SKIP
        >>> cv["metrics"]["valid-auc"]["mean"]  # doctest: +SKIP
    """
    check_spec(spec)
    _require_ray()
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(f"cross_validate: k: expected an integer >= 2, got {k!r}.")
    columns = [key] if key else [spec.label, *spec.features] + ([spec.weight] if spec.weight else [])
    if key is not None and key not in ds.schema().names:
        raise SchemaError(
            f"cross_validate: key: expected a column of the dataset, got {key!r}; "
            f"columns are {sorted(ds.schema().names)}."
        )
    run_name = run_name or f"cv-{time.strftime('%Y%m%d-%H%M%S')}"

    workers = 1 if spec.num_workers == "auto" else int(spec.num_workers)
    fold_spec = replace(spec, num_workers=workers)
    if spec.task == "multiclass" and spec.num_class is None:
        # Count classes on all rows: a fold may miss the largest class.
        top = ds.max(spec.label)
        fold_spec = replace(fold_spec, num_class=int(top) + 1 if top is not None else None)
    totals = ray.cluster_resources()
    if spec.use_gpu:
        concurrency = max(1, int(totals.get("GPU", 0)) // workers)
    elif spec.cpus_per_worker:
        budget = float(totals.get("CPU", 0)) - data_reserve(float(totals.get("CPU", 0)))
        concurrency = max(1, math.floor(budget / (workers * spec.cpus_per_worker)))
    else:
        budget = float(totals.get("CPU", 0)) - data_reserve(float(totals.get("CPU", 0)))
        # At least 2 at once: a fold run spends much of its time starting
        # processes and waiting on the controller, so 2 overlap well even on
        # a 2-CPU machine (each worker then reserves 0.5 CPU).
        concurrency = max(2, math.floor(budget))
    concurrency = min(concurrency, k, max_concurrent or k)
    plan = plan_workers(fold_spec, concurrent_runs=concurrency)

    # One distributed execution of the source for all folds (object store,
    # not the driver).
    folded = ds.map_batches(
        _AssignFold(columns, k, seed), batch_format="pyarrow", batch_size=None
    ).materialize()

    def run_fold(i: int) -> dict[str, Any]:
        train = folded.map_batches(_SelectFold(i, keep=False), batch_format="pyarrow", batch_size=None)
        valid = folded.map_batches(_SelectFold(i, keep=True), batch_format="pyarrow", batch_size=None)
        result = _run(fold_spec, train, valid, f"{run_name}-fold{i}", plan)
        return {
            "fold": i,
            "rows": result.rows,
            "best_iteration": result.best_iteration,
            "metrics": result.metrics,
            "duration_s": result.duration_s,
            "checkpoint_path": result.checkpoint_path,
        }

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="raypipe-cv") as pool:
        folds = list(pool.map(run_fold, range(k)))
    names = sorted({m for f in folds for m in f["metrics"]})
    summary = {}
    for name in names:
        values = np.array([f["metrics"][name] for f in folds], dtype=np.float64)
        summary[name] = {"mean": float(values.mean()), "std": float(values.std())}
    return {
        "k": k,
        "seed": seed,
        "concurrency": concurrency,
        "num_workers_per_fold": plan.num_workers,
        "duration_s": time.perf_counter() - started,
        "metrics": summary,
        "folds": folds,
    }
