"""``train_xgboost``: XGBoost on Ray Train V2 (``XGBoostTrainer``), or in one Ray task for one worker."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import pyarrow.fs
import xgboost as xgb

import ray
import ray.data
import ray.train
from ray.data import ExecutionOptions
from ray.data.dataset import MaterializedDataset
from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.xgboost import XGBoostTrainer

from raypipe.errors import ConfigError, DataError, RaypipeError, SchemaError
from raypipe.train import _local, _worker
from raypipe.train._errors import TrainingError
from raypipe.train._params import build_params, eval_metrics, maximize
from raypipe.train._resources import WorkerPlan, plan_workers
from raypipe.train.spec import TrainResult, TrainSpec, check_spec

#: Test hook, read on the driver: "ROUND:MARKER_PATH[:RANK]" makes that worker
#: kill its process (os._exit) once at ROUND, then never again (marker file);
#: "ROUND:MARKER_PATH:RANK:hold=S" holds it at ROUND for up to S seconds instead,
#: its node id in the marker, so a test can remove that node.
FAULT_ENV = "RAYPIPE_TRAIN_INJECT_FAILURE"

_DEFAULT_STORAGE = os.path.join(tempfile.gettempdir(), "raypipe-train")

# Ray Train's controller polls its workers every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S
# (2 s by default) and a worker's ``ray.train.report`` returns only after that poll:
# with the default, 100 rounds reported every 10 cost about 16 s of waiting on 2k rows.
# Ray Train hands this variable from the driver to its controller at ``fit()``;
# a value the user set wins.
_POLL_ENV, _POLL_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2"


class _AllRowsDataConfig(DataConfig):
    """Shard every dataset to the workers without dropping rows.

    Ray Train splits with ``streaming_split(equal=True)``, which drops up to
    ``num_workers - 1`` rows so that shards have equal length (needed for
    lock-step SGD). XGBoost allreduces histograms and metric sums, so unequal
    shards are exact; dropping rows would silently lose training data.
    """

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        output: list[dict[str, Any]] = [{} for _ in range(world_size)]
        for name, ds in datasets.items():
            if ds.name is None:
                ds.set_name(name)
            if isinstance(ds, MaterializedDataset):
                # Already in the object store: hand each worker a slice of it, without
                # the coordinator actor (a process start) a streaming split needs.
                for i, split in enumerate(split_by_rows(ds, world_size)):
                    output[i][name] = split.iterator()
                continue
            ds = ds.copy(ds)
            ds.context.execution_options = self._resolve_execution_options(name)
            for i, split in enumerate(ds.streaming_split(world_size, equal=False)):
                output[i][name] = split
        return output


def split_by_rows(ds: MaterializedDataset, n: int) -> list[MaterializedDataset]:
    """``ds`` cut into ``n`` consecutive slices whose row counts differ by at most one.

    Splitting by blocks (``ds.split(n, equal=False)``) hands whole blocks out, so a small
    dataset of one or two blocks left a worker with an empty shard ("Empty dataset at
    worker"); cutting at row indices never does while ``ds`` has ``n`` rows or more,
    keeps the row order (same shards, same model bytes) and drops no row.
    """
    rows = ds.count()
    if n <= 1:
        return [ds]
    return ds.split_at_indices([rows * i // n for i in range(1, n)])


def train_xgboost(
    spec: TrainSpec,
    train: ray.data.Dataset,
    valid: ray.data.Dataset | None,
    run_name: str,
) -> TrainResult:
    """Train an XGBoost model on the connected Ray cluster.

    A one-worker plan (``num_workers: auto`` on one node, or ``num_workers: 1``)
    trains in one Ray task with every CPU it was given (see
    :mod:`raypipe.train._local`); more workers train with Ray Train. Each worker
    builds a ``QuantileDMatrix`` from its own shard of ``train`` (and ``valid``); XGBoost's collective does distributed boosting. Metrics
    are reported every ``spec.report_every`` rounds, checkpoints persisted every
    ``spec.checkpoint_every`` rounds and at the end under
    ``<storage_path>/<run_name>``; after a worker failure the run resumes from
    the latest checkpoint (up to ``spec.max_failures`` times).

    Args:
        spec: What to train.
        train: Training rows (features float32, label numeric).
        valid: Validation rows for early stopping and metrics, or ``None``
            (then ``spec.early_stopping_rounds`` must be ``None``).
        run_name: Name of the Ray Train run; must not exist yet under the
            storage path (reusing a name would make Ray resume that old run).

    Returns:
        A :class:`TrainResult`; same data, spec and worker count give the same
        model bytes.

    Raises:
        ConfigError: invalid spec, ``use_gpu`` without GPUs, run dir exists.
        SchemaError: a column is missing from a dataset.
        DataError: labels unusable (e.g. ``scale_pos_weight: auto`` without positives).
        TrainingError: training failed (past ``max_failures``).

    Example:
        >>> result = train_xgboost(spec, train_ds, valid_ds, "run-42")  # doctest: +SKIP
        >>> result.booster.predict(xgboost.DMatrix(X))  # doctest: +SKIP
    """
    check_spec(spec)
    _require_ray()
    if valid is None and spec.early_stopping_rounds is not None:
        raise ConfigError(
            "model.early_stopping_rounds: early stopping needs a validation set, got "
            f"early_stopping_rounds={spec.early_stopping_rounds} and no validation "
            "data. Hint: set data.split.valid_fraction > 0, or early_stopping_rounds: null."
        )
    plan = plan_workers(spec)
    return _run(spec, train, valid, run_name, plan)


def _run(
    spec: TrainSpec,
    train: ray.data.Dataset,
    valid: ray.data.Dataset | None,
    run_name: str,
    plan: WorkerPlan,
    *,
    callbacks: list | None = None,
) -> TrainResult:
    """One training run of ``spec`` with ``plan``'s workers: one Ray task for a
    one-worker plan (``plan.local``), else a Ray Train run.

    ``callbacks`` are Ray Train run callbacks (``RunConfig(callbacks=...)``);
    passing a list (even empty) asks for a Ray Train run.
    """
    _check_columns(spec, train, "train")
    if valid is not None:
        _check_columns(spec, valid, "valid")
    storage_path = spec.storage_path or _DEFAULT_STORAGE
    _check_fresh_run_dir(storage_path, run_name)
    config = loop_config(spec, plan, has_valid=valid is not None)
    datasets = {"train": train}
    if valid is not None:
        datasets["valid"] = valid
    if plan.local and callbacks is None:
        return _run_local(spec, datasets, run_name, plan, config, storage_path)

    # preserve_order makes Ray Data's streaming split hand the same rows to
    # the same worker on every run (locality hints are ignored then), which
    # byte-identical models need. The split is unequal (see _AllRowsDataConfig):
    # every row is trained on.
    ingest = DataConfig.default_ingest_options()
    ingest_options = ExecutionOptions(
        resource_limits=ingest.resource_limits,
        exclude_resources=ingest.exclude_resources,
        preserve_order=True,
        verbose_progress=ingest.verbose_progress,
    )
    trainer = XGBoostTrainer(
        _worker.train_loop_per_worker,
        train_loop_config={_worker.LOOP_CONFIG_KEY: config},
        scaling_config=ScalingConfig(
            num_workers=plan.num_workers,
            use_gpu=plan.use_gpu,
            resources_per_worker=plan.resources_per_worker(),
            placement_strategy=spec.placement_strategy,
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path,
            failure_config=FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
        ),
        datasets=datasets,
        dataset_config=_AllRowsDataConfig(execution_options=ingest_options),
    )
    os.environ.setdefault(_POLL_ENV, _POLL_S)
    started = time.perf_counter()
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as exc:
        for failure in getattr(exc, "worker_failures", {}).values():
            cause = getattr(failure, "cause", failure)
            if isinstance(cause, RaypipeError):  # e.g. DataError about the labels
                raise type(cause)(str(cause)) from exc
        raise _failed(run_name, plan, spec, exc) from exc
    duration = time.perf_counter() - started

    out = result.return_value
    if out is None or result.checkpoint is None:
        raise TrainingError(
            f"train[{run_name}]: expected a final checkpoint and the rank-0 result, "
            f"got checkpoint={result.checkpoint!r}, return_value={out!r}. Hint: this "
            "is a raypipe bug; please report it with the run directory "
            f"{result.path!r}."
        )
    return train_result(out, _worker_model(result.checkpoint), plan, result.checkpoint.path, duration)


def loop_config(spec: TrainSpec, plan: WorkerPlan, *, has_valid: bool) -> _worker.LoopConfig:
    """The config of ``_worker.train_loop`` for ``spec`` on ``plan``'s workers."""
    params = build_params(spec, nthread=plan.nthread, use_gpu=plan.use_gpu)
    es_metric = eval_metrics(params)[-1]
    return _worker.LoopConfig(
        params=params,
        task=spec.task,
        scale_pos_weight_auto=spec.params.get("scale_pos_weight") == "auto",
        label=spec.label,
        features=list(spec.features),
        feature_types=list(spec.feature_types),
        weight=spec.weight,
        num_boost_round=spec.num_boost_round,
        early_stopping_rounds=spec.early_stopping_rounds,
        early_stopping_metric=es_metric,
        early_stopping_maximize=maximize(es_metric),
        report_every=spec.report_every,
        checkpoint_every=spec.checkpoint_every,
        has_valid=has_valid,
        fault=_fault_from_env(),
    )


def train_result(out: dict[str, Any], booster: xgb.Booster | None, plan: WorkerPlan,
                 checkpoint_path: str, duration: float) -> TrainResult:
    """The :class:`TrainResult` of rank 0's return value ``out`` (see ``_worker.train_loop``)."""
    return TrainResult(
        booster=booster,
        best_iteration=out["best_iteration"],
        history=out["history"],
        num_workers=plan.num_workers,
        checkpoint_path=checkpoint_path,
        duration_s=duration,
        metrics=out["metrics"],
        rows=out["rows"],
        worker_rows=out.get("worker_rows", [dict(out["rows"])]),
        resumed_from_round=out["resumed_from_rounds"],
        params=out["params"],
        timings=out["timings"],
    )


def _run_local(
    spec: TrainSpec,
    datasets: dict[str, ray.data.Dataset],
    run_name: str,
    plan: WorkerPlan,
    config: _worker.LoopConfig,
    storage_path: str,
) -> TrainResult:
    """One worker: the training loop in one Ray task (see :mod:`raypipe.train._local`)."""
    materialized = {}
    for name, ds in datasets.items():
        if not isinstance(ds, MaterializedDataset):
            # In order, so that the same rows give the same model (as the Ray Train path).
            ds = ds.copy(ds)
            ds.context.execution_options.preserve_order = True
            ds = ds.materialize()
        materialized[name] = ds
    task = ray.remote(_local.train_task).options(
        name=f"raypipe.train[{run_name}]",
        num_cpus=plan.cpus_per_worker,
        max_retries=spec.max_failures,
        retry_exceptions=False,  # a bad label is not fixed by a retry; a dead process is
    )
    started = time.perf_counter()
    try:
        out = ray.get(task.remote(config, materialized, storage_path, run_name))
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, RaypipeError):  # e.g. DataError about the labels
            raise type(exc.cause)(str(exc.cause)) from exc
        raise _failed(run_name, plan, spec, exc) from exc
    except ray.exceptions.RayError as exc:  # the process died more often than allowed
        raise _failed(run_name, plan, spec, exc) from exc
    duration = time.perf_counter() - started
    fs, _ = _local.run_dir(storage_path, run_name)
    booster = _worker_model(ray.train.Checkpoint(out["checkpoint_path"], filesystem=fs))
    return train_result(out, booster, plan, out["checkpoint_path"], duration)


# ------------------------------------------------------------------ helpers


def _failed(run_name: str, plan: WorkerPlan, spec: TrainSpec, exc: BaseException) -> TrainingError:
    root = _root_message(exc)
    # An OS error raised by pyarrow while persisting a checkpoint ("Error writing bytes to
    # file", a full disk) does not say which file: name the folder the checkpoints go to.
    os_error = "OSError" in root or "errno" in root.lower()
    where = f" (checkpoints: {(spec.storage_path or _DEFAULT_STORAGE).rstrip('/')}/{run_name})" if os_error else ""
    return TrainingError(
        f"train[{run_name}]: expected XGBoost training on {plan.num_workers} "
        f"worker(s) to finish, got a failure after "
        f"{spec.max_failures} allowed restart(s): {root}{where}. Hint: check "
        "the worker logs in the Ray dashboard; raise model.training.max_failures "
        "for flaky nodes."
    )


def _require_ray() -> None:
    if not ray.is_initialized():
        raise TrainingError(
            "train: expected a running Ray instance, got none. Hint: call "
            "ray.init() (raypipe.Pipeline does it for you)."
        )


def _worker_model(checkpoint: ray.train.Checkpoint) -> xgb.Booster:
    return _worker.RayTrainReportCallback.get_model(checkpoint, filename=_worker.MODEL_FILENAME)


def _root_message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _check_columns(spec: TrainSpec, ds: ray.data.Dataset, name: str) -> None:
    schema = ds.schema()
    if schema is None:
        raise DataError(f"train: the {name} dataset is empty (no schema); expected rows.")
    columns = set(schema.names)
    needed = [spec.label, *spec.features] + ([spec.weight] if spec.weight else [])
    missing = [c for c in needed if c not in columns]
    if missing:
        from raypipe.errors import did_you_mean

        hint = did_you_mean(missing[0], columns)
        raise SchemaError(
            f"train: {name} dataset: expected columns {missing} "
            f"(label/features/weight of the model), got columns {sorted(columns)}.{hint}"
        )


def _check_fresh_run_dir(storage_path: str, run_name: str, where: str = "train") -> None:
    # Ray Train and Ray Tune both silently resume a run whose directory exists.
    fs, run_dir = _local.run_dir(storage_path, run_name)
    if fs.get_file_info(run_dir).type != pyarrow.fs.FileType.NotFound:
        raise ConfigError(
            f"{where}: run directory {storage_path.rstrip('/')}/{run_name}: expected a "
            "new run, got an existing directory (Ray would silently resume that "
            "run). Hint: use a new run name or delete the directory."
        )


def _fault_from_env() -> dict | None:
    raw = os.environ.get(FAULT_ENV)
    if not raw:
        return None
    parts = raw.split(":")
    try:
        fault = {"round": int(parts[0]), "marker": parts[1]}
        if len(parts) > 2:
            fault["rank"] = int(parts[2])
        if len(parts) > 3:
            key, _, seconds = parts[3].partition("=")
            if key != "hold" or len(parts) > 4:
                raise ValueError(parts[3])
            fault["hold"] = float(seconds)
    except (IndexError, ValueError) as exc:
        raise ConfigError(
            f"{FAULT_ENV}: expected 'ROUND:MARKER_PATH[:RANK[:hold=SECONDS]]', got {raw!r}."
        ) from exc
    return fault
