"""``tune_xgboost``: hyperparameter search over XGBoost params on Ray Tune.

Each Tune trial is a function trainable that builds the trial's
:class:`TrainSpec` (the sampled params merged over ``spec.params``) and runs
the training loop of :func:`raypipe.train.train_xgboost`
(``_worker.train_loop``: the same early stopping, reports and checkpoints):

* one worker per trial (``num_workers: auto`` or ``1``, CPU): the trial actor
  itself trains, holding the trial's CPUs, and reports every ``report_every``
  rounds straight to Tune (:class:`_TrialSession`). Tune reuses a finished
  trial's actor for the next trial, so a trial starts in a warm process:
  no Train controller, no worker group (those cost ~7 s of process starts a
  trial on the 2-core CI machine);
* more workers per trial: the Ray Train V2 pattern. The trial actor is the
  *driver* of one Ray Train run (``xgboost_trainer._run``, the same
  ``XGBoostTrainer``), with Ray Tune's ``TuneReportCallback`` forwarding every
  Ray Train report (metrics, the final checkpoint's path) to Tune; a stopped
  trial aborts its Train run at the run's next report, which frees the
  workers' placement group before the trial actor goes (see
  :class:`_AbortTrainOnStop`).

ASHA stops weak trials on the intermediate reports. The best trial's booster
is read from its final checkpoint: no retraining.

Resources: the trials that run at once divide the cluster's CPUs (see
:func:`raypipe.train._resources.plan_workers`): a one-worker trial takes its
share whole (e.g. 2 trials x 1 CPU on 2 CPUs); Ray Train trials leave Ray
Data its reserve and their trial actor reserves no CPU, only a little memory
(Tune requires a non-empty resource request). The datasets are materialized
once into the object store before tuning and every trial reads the same
blocks (no per-trial copy, no per-trial re-execution of the feature pipeline).

Storage, under ``<spec.storage_path>/<run_name>``: Tune's experiment state and
trial folders, and ``train/<trial_id>/`` holding each trial's training run
(checkpoints; ``raypipe_train_result.json``, the TrainResult fields of a
finished trial; ``raypipe_stop_requested``, the marker by which a stopped
trial aborts its Train run, see :class:`_AbortTrainOnStop`).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow.fs

import ray
import ray.data
import ray.train
import ray.tune
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY, TuneReportCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.util.queue import Full

from raypipe.config import SearchDim, TuneConfig, absolute_uri
from raypipe.errors import ConfigError, RaypipeError
from raypipe.train import _local, _worker
from raypipe.train._errors import TrainingError
from raypipe.train._params import build_params, eval_metrics, maximize
from raypipe.train._resources import WorkerPlan, data_reserve, plan_workers
from raypipe.train.spec import TrainResult, TrainSpec, check_spec
from raypipe.train.xgboost_trainer import (
    _DEFAULT_STORAGE,
    _check_columns,
    _check_fresh_run_dir,
    _require_ray,
    _run,
    loop_config,
    train_result,
)

__all__ = ["TuneResult", "tune_xgboost"]

#: Trial statuses in :attr:`TuneResult.trials`.
TERMINATED, EARLY_STOPPED, ERROR = "terminated", "early_stopped", "error"

_RESULT_FILENAME = "raypipe_train_result.json"
_STOP_FILENAME = "raypipe_stop_requested"
_STOP_POLL_S = 0.5
# How long a stopping trial waits for its Train run to abort (it aborts at its
# next report); Tune force-kills a stopping trial actor after 600 s
# (TUNE_FORCE_TRIAL_CLEANUP_S).
_ABORT_WAIT_S = 600.0
# Ray Train reads these on the process that builds the trainer (the trial
# actor); forwarded from the driver, as train_xgboost gets them.
_FORWARDED_ENV = ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S",)
# Tune refuses an all-zero trial request; memory keeps the trial actor off
# the CPUs that the training workers and Ray Data need.
_TRIAL_DRIVER_MEMORY = 64 * 1024**2
_ASHA_REDUCTION_FACTOR = 3


@dataclass
class TuneResult:
    """The outcome of :func:`tune_xgboost`.

    Attributes:
        best_params: The tuned params of the best trial (search-space keys
            only; the model trained with ``{**spec.params, **best_params}``).
        best: The best trial's :class:`TrainResult`: its booster loaded from
            the trial's final checkpoint (no retraining), metric history,
            metrics of the booster on train/valid.
        trials: One row per trial, in trial order: ``trial_id``, ``params``,
            ``status`` (``"terminated"``: trained to its end; ``"early_stopped"``:
            stopped by ASHA; ``"error"``), ``rounds`` (boosting rounds done,
            as last reported), ``metric`` (for a terminated trial the metric of
            its final, early-stopped model; otherwise the best value it
            reported), ``duration_s``, ``checkpoint_path`` (final checkpoint,
            terminated trials only) and ``error`` (message, or ``None``).
        metric: The metric tuned, e.g. ``"valid-logloss"``.
        mode: ``"min"`` or ``"max"``.
        duration_s: Wall time of the whole search (driver side), including
            the materialization of the datasets.
        concurrency: Trials that ran at once.
        experiment_path: Where Tune stored the experiment.
    """

    best_params: dict
    best: TrainResult
    trials: list[dict]
    metric: str
    mode: str
    duration_s: float
    concurrency: int = 1
    experiment_path: str = ""


def tune_xgboost(
    spec: TrainSpec,
    tune_cfg: TuneConfig,
    train: ray.data.Dataset,
    valid: ray.data.Dataset,
    run_name: str,
    *,
    metric: str | None = None,
) -> TuneResult:
    """Search XGBoost params with Ray Tune; each trial is one Ray Train run.

    The search space comes from ``tune_cfg.search_space`` (``randint`` with an
    exclusive ``high``, ``uniform``, ``loguniform``, ``choice``, ``grid``);
    each sampled value overrides the same key of ``spec.params``. Grid
    dimensions are crossed, and every grid point is sampled ``num_samples``
    times (Ray Tune's semantics). ``scheduler: asha`` stops weak trials at
    rungs of ``grace * 3**k`` boosting rounds (``grace`` a multiple of
    ``spec.report_every``); ``fifo`` trains every trial to its end.

    Args:
        spec: The single-run spec; its params are the defaults the search
            overrides, its resources are per trial (``num_workers: auto``
            means 1 worker per trial: the trials are the parallelism).
        tune_cfg: The ``tune`` section of the config.
        train: Training rows; materialized once and shared by the trials.
        valid: Validation rows: early stopping, the tuned metric.
        run_name: Name of the experiment under ``spec.storage_path``; must be
            new.
        metric: Metric to tune, ``"valid-<xgboost metric>"``; default: the
            early-stopping metric of the task (the last eval metric), e.g.
            ``valid-logloss``. The mode follows the metric (``min`` for losses).

    Returns:
        A :class:`TuneResult`.

    Raises:
        ConfigError: invalid spec or search space, ``search: optuna`` without
            optuna, a grid with optuna, no validation set,
            the experiment directory exists.
        TrainingError: every trial failed, or none trained to its end.

    Example:
        >>> res = tune_xgboost(spec, cfg.tune, train_ds, valid_ds, "run-42")  # doctest: +SKIP
        >>> res.best_params, res.best.booster  # doctest: +SKIP
    """
    started = time.perf_counter()
    check_spec(spec)
    _require_ray()
    if valid is None:
        raise ConfigError(
            "tune: expected a validation set to score the trials on, got none. Hint: "
            "set data.split.valid_fraction > 0."
        )
    space = _search_space(spec, tune_cfg)
    metric, mode = _metric_and_mode(spec, metric)
    storage_path = absolute_uri(spec.storage_path or _DEFAULT_STORAGE)
    _check_fresh_run_dir(storage_path, run_name, where="tune")
    fs, _ = pyarrow.fs.FileSystem.from_uri(storage_path)
    concurrency, trial_spec, plan = _plan(spec, tune_cfg, storage_path, run_name)
    searcher, limit = _searcher(tune_cfg, spec, metric, mode, concurrency)

    # One execution of the (lazily transformed) inputs for all trials: the
    # trials stream the same object-store blocks.
    train = train.materialize()
    valid = valid.materialize()
    _check_columns(spec, train, "train")
    _check_columns(spec, valid, "valid")

    log = _TrialLog(metric)
    job = {
        "spec": trial_spec,
        "plan": plan,
        "env": {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ},
    }
    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(_trial, train=train, valid=valid, job=job),
        # A one-worker trial trains in its own actor, which holds the CPUs.
        {"cpu": plan.cpus_per_worker} if plan.local else {"cpu": 0, "memory": _TRIAL_DRIVER_MEMORY},
    )
    tuner = ray.tune.Tuner(
        trainable,
        param_space=space,
        tune_config=ray.tune.TuneConfig(
            metric=metric,
            mode=mode,
            search_alg=searcher,
            scheduler=_scheduler(tune_cfg, spec),
            num_samples=tune_cfg.num_samples,
            max_concurrent_trials=limit,
            # The next trial runs in a finished trial's actor, XGBoost already imported.
            reuse_actors=plan.local,
        ),
        run_config=ray.tune.RunConfig(
            name=run_name,
            storage_path=storage_path,
            failure_config=ray.tune.FailureConfig(max_failures=0),
            callbacks=[log],
            verbose=0,
        ),
    )
    try:
        grid = tuner.fit()
    except ray.tune.TuneError as exc:
        raise TrainingError(
            f"tune[{run_name}]: expected the Ray Tune experiment to run, got: {exc}. "
            f"Hint: see the experiment directory {storage_path.rstrip('/')}/{run_name}."
        ) from exc

    rows = [_row(result, log, metric, mode) for result in grid]
    rows.sort(key=lambda r: r["trial_id"])
    finished = [r for r in rows if r["status"] == TERMINATED and r["metric"] is not None]
    if not finished:
        raise _no_finished_trial(rows, grid, run_name) from (grid.errors or [None])[0]
    pick = min if mode == "min" else max
    best_row = pick(finished, key=lambda r: r["metric"])
    best = _load_best(best_row, fs, trial_spec, plan, log)
    return TuneResult(
        best_params=dict(best_row["params"]),
        best=best,
        trials=rows,
        metric=metric,
        mode=mode,
        duration_s=time.perf_counter() - started,
        concurrency=concurrency,
        experiment_path=grid.experiment_path,
    )


# ------------------------------------------------------------------ the trial


@dataclass
class _TrainRun:
    """The Ray Train run a trial actor drives (one per trial actor process)."""

    stop_marker: str
    local: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    stop_requested: bool = False


class _TrialStopped(Exception):
    """Raised in a one-worker trial's training loop once Tune stopped the trial."""


class _TrialSession(_local.LocalSession):
    """A one-worker trial: the loop runs in the trial actor, checkpoints as a
    one-task run's, every report goes to Tune (with the checkpoint's path, as
    ``TuneReportCallback`` forwards a Ray Train run's)."""

    def __init__(self, datasets: dict[str, Any], fs, path: str, run: _TrainRun):
        super().__init__(datasets, fs, path)
        self._run = run

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None, name: str | None = None) -> None:
        if self._run.stop_requested:
            raise _TrialStopped
        super().report(metrics, checkpoint_dir, name)
        item = dict(metrics)
        if checkpoint_dir is not None:
            item[CHECKPOINT_PATH_KEY] = self.last_checkpoint
        ray.tune.report(item)


# Trial id -> its Train run, in the trial actor's process.
_TRAIN_RUNS: dict[str, _TrainRun] = {}


def _trial(config: dict, train=None, valid=None, job=None) -> None:
    """One Tune trial of the sampled params: a one-worker plan trains right here
    (:class:`_TrialSession`), a larger one drives a Ray Train run.

    A Ray Train trial never calls ``ray.tune.report`` itself: Tune's function
    session holds one result at a time, and ``TuneReportCallback`` may still
    have the final Train report queued when ``fit`` returns, so a report from
    here could deadlock with it.
    """
    os.environ.update(job["env"])
    trial_id = ray.tune.get_context().get_trial_id()
    spec: TrainSpec = job["spec"]
    plan: WorkerPlan = job["plan"]
    trial_spec = replace(spec, params={**spec.params, **_plain(config)})
    check_spec(trial_spec)
    run_dir = f"{trial_spec.storage_path.rstrip('/')}/{trial_id}"
    run = _TRAIN_RUNS[trial_id] = _TrainRun(stop_marker=f"{run_dir}/{_STOP_FILENAME}", local=plan.local)
    try:
        if plan.local:
            started = time.perf_counter()
            fs, path = _local.run_dir(trial_spec.storage_path, trial_id)
            session = _TrialSession({"train": train, "valid": valid}, fs, path, run)
            out = _worker.train_loop(loop_config(trial_spec, plan, has_valid=True), session)
            result = train_result(out, None, plan, session.last_checkpoint or "", time.perf_counter() - started)
        else:
            result = _run(
                trial_spec,
                train,
                valid,
                trial_id,
                plan,
                callbacks=[_TuneReportUntilStopped(run.stop_marker)],
            )
        # The TrainResult fields the driver cannot read from the checkpoint.
        summary = asdict(replace(result, booster=None))
        fs, path = pyarrow.fs.FileSystem.from_uri(f"{run_dir}/{_RESULT_FILENAME}")
        with fs.open_output_stream(path) as out:
            out.write(json.dumps(summary, default=_json_default).encode())
    except BaseException:
        if run.stop_requested:
            return  # Tune stopped the trial (ASHA) and we aborted its run.
        raise
    finally:
        run.done.set()


class _AbortTrainOnStop:
    """Mixin of the trial trainable (Tune's ``__mixins__`` hook).

    When Tune stops a trial (an ASHA decision, the end of the experiment),
    it calls the trainable's ``cleanup`` and then drops the actor. Dropping it
    would kill the trial's Ray Train controller (owned by the trial actor)
    without shutting down its worker group: the workers die with it, but the
    placement group holding their CPUs stays reserved until the driver exits.
    Ray Train's own ``PlacementGroupCleaner`` would remove it, but it polls
    the controller through the state API, which needs the dashboard (off in
    raypipe's local clusters). So ``cleanup`` first asks the controller to
    abort (see :class:`_TuneReportUntilStopped`) and waits for the run to end.
    """

    def cleanup(self):
        _abort_train_run(self.trial_id)
        super().cleanup()


_trial.__mixins__ = (_AbortTrainOnStop,)


def _abort_train_run(trial_id: str, timeout_s: float = _ABORT_WAIT_S) -> None:
    run = _TRAIN_RUNS.get(trial_id)
    if run is None or run.done.is_set():
        return
    run.stop_requested = True
    if run.local:
        # The loop ends at its next report (_TrialSession) or with the actor; it
        # may be blocked in Tune's report until Tune's own cleanup releases it.
        return
    fs, path = pyarrow.fs.FileSystem.from_uri(run.stop_marker)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(b"stopped by Ray Tune\n")
    run.done.wait(timeout_s)


class _TuneReportUntilStopped(TuneReportCallback):
    """``TuneReportCallback`` that aborts the Train run once Tune stopped its trial.

    Runs on the Ray Train controller. Forwards each report (rank 0's metrics,
    plus the checkpoint path) to the trial as ``TuneReportCallback`` does, but
    waits for room in the one-slot queue in short steps: after Tune stopped
    the trial nothing drains that queue any more. Once the trial's stop marker
    exists, the controller aborts itself (``TrainController.abort``: worker
    group shut down, placement group removed).
    """

    def __init__(self, stop_marker: str):
        super().__init__()
        self._stop_marker = stop_marker
        self._fs = None

    def after_report(self, run_context, metrics, checkpoint):
        item = metrics[0].copy()
        if checkpoint:
            item[CHECKPOINT_PATH_KEY] = checkpoint.path
        while not self._stop_requested():
            try:
                self._training_actor_item_queue.put(item, timeout=_STOP_POLL_S)
                return
            except Full:
                continue
        ray.get_runtime_context().current_actor.abort.remote()

    def _stop_requested(self) -> bool:
        if self._fs is None:
            self._fs, self._path = pyarrow.fs.FileSystem.from_uri(self._stop_marker)
        return self._fs.get_file_info(self._path).type != pyarrow.fs.FileType.NotFound


# ------------------------------------------------------------- search space


def _search_space(spec: TrainSpec, tune_cfg: TuneConfig) -> dict[str, Any]:
    if not tune_cfg.search_space:
        raise ConfigError(
            "tune.search_space: expected at least one XGBoost parameter to search, got "
            "none. Hint: e.g. search_space: {max_depth: {type: randint, low: 3, high: 9}}."
        )
    space: dict[str, Any] = {}
    for key, dim in tune_cfg.search_space.items():
        where = f"tune.search_space.{key}"
        space[key] = _domain(where, dim)
        for value in _corners(dim):
            try:
                check_spec(replace(spec, params={**spec.params, key: value}))
            except ConfigError as exc:
                raise ConfigError(f"{where}: value {value!r} is invalid: {exc}") from exc
    return space


def _domain(where: str, dim: SearchDim):
    if dim.type == "choice":
        return ray.tune.choice(list(dim.values))
    if dim.type == "grid":
        return ray.tune.grid_search(list(dim.values))
    low, high = float(dim.low), float(dim.high)
    if dim.type == "randint":
        if low != int(low) or high != int(high):
            raise ConfigError(
                f"{where}: randint expected integer bounds, got low={dim.low!r} "
                f"high={dim.high!r}. Hint: use type: uniform for real values."
            )
        if int(high) - int(low) < 1:
            raise ConfigError(f"{where}: randint expected high > low, got low={low:g} high={high:g}.")
        return ray.tune.randint(int(low), int(high))
    if dim.type == "loguniform":
        if low <= 0:
            raise ConfigError(
                f"{where}: loguniform expected 0 < low < high, got low={dim.low!r}. "
                "Hint: use type: uniform to include 0."
            )
        return ray.tune.loguniform(low, high)
    return ray.tune.uniform(low, high)


def _corners(dim: SearchDim) -> list[Any]:
    """Values of ``dim`` worth checking against the spec rules up front."""
    if dim.type in ("choice", "grid"):
        return list(dim.values)
    if dim.type == "randint":
        return [int(dim.low), int(dim.high) - 1]
    return [float(dim.low), float(dim.high)]


def _metric_and_mode(spec: TrainSpec, metric: str | None) -> tuple[str, str]:
    metrics = eval_metrics(build_params(spec, nthread=1, use_gpu=False))
    if metric is None:
        metric = f"valid-{metrics[-1]}"
    choices = [f"valid-{m}" for m in metrics]
    if metric not in choices:
        from raypipe.errors import did_you_mean

        raise ConfigError(
            f"tune: metric: expected one of {choices} (the eval metrics on the validation "
            f"set), got {metric!r}.{did_you_mean(metric, choices)}"
        )
    return metric, "max" if maximize(metric.removeprefix("valid-")) else "min"


def _searcher(
    tune_cfg: TuneConfig, spec: TrainSpec, metric: str, mode: str, concurrency: int
) -> tuple[Any, int | None]:
    """The search algorithm and the ``max_concurrent_trials`` to give Tune.

    Tune applies ``max_concurrent_trials`` only to a ``Searcher`` (wrapping it
    in a ``ConcurrencyLimiter``) and ignores it, with a warning, for a
    ``BasicVariantGenerator`` instance: that one limits itself.
    """
    if tune_cfg.search == "random":
        return BasicVariantGenerator(random_state=spec.seed, max_concurrent=concurrency), None
    if importlib.util.find_spec("optuna") is None:
        raise ConfigError(
            "tune.search: expected an installed search library for 'optuna', got "
            "'optuna' without the optuna package. Hint: pip install 'raypipe[optuna]', "
            "or use search: random."
        )
    grid = [k for k, d in tune_cfg.search_space.items() if d.type == "grid"]
    if grid:
        raise ConfigError(
            f"tune.search_space.{grid[0]}: type 'grid' cannot be searched by optuna, got "
            f"search: optuna. Hint: use type: choice, or search: random."
        )
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(metric=metric, mode=mode, seed=spec.seed), concurrency


def _scheduler(tune_cfg: TuneConfig, spec: TrainSpec):
    if tune_cfg.scheduler == "fifo":
        return FIFOScheduler()
    every = spec.report_every
    rf = _ASHA_REDUCTION_FACTOR
    # Rungs at grace * rf**k rounds; grace a multiple of report_every so that
    # every rung falls on a reported round, and about 1/rf**2 of the budget so
    # that a full run passes three rungs.
    grace = every * max(1, math.ceil(spec.num_boost_round / rf**2 / every))
    grace = min(grace, spec.num_boost_round)
    return ASHAScheduler(
        time_attr="round",
        max_t=spec.num_boost_round,
        grace_period=grace,
        reduction_factor=rf,
        # A trial past the last rung trains to its end (and to its own early
        # stopping) instead of being stopped when it reaches max_t.
        stop_last_trials=False,
    )


# ------------------------------------------------------------------ resources


def _plan(
    spec: TrainSpec, tune_cfg: TuneConfig, storage_path: str, run_name: str
) -> tuple[int, TrainSpec, WorkerPlan]:
    workers = 1 if spec.num_workers == "auto" else int(spec.num_workers)
    totals = ray.cluster_resources()
    cpus = float(totals.get("CPU", 0.0))
    budget = cpus - data_reserve(cpus)
    if spec.use_gpu:
        fits = int(totals.get("GPU", 0.0)) // workers
    elif spec.cpus_per_worker:
        fits = math.floor(budget / (workers * spec.cpus_per_worker))
    else:
        fits = math.floor(budget / (workers * 0.1))  # 0.1 CPU: the smallest worker
    concurrency = max(1, min(tune_cfg.max_concurrent_trials, tune_cfg.num_samples, fits))
    trial_spec = replace(
        spec,
        num_workers=workers,
        storage_path=f"{storage_path.rstrip('/')}/{run_name}/train",
    )
    try:
        plan = plan_workers(trial_spec, concurrent_runs=concurrency)
    except ConfigError as exc:
        raise ConfigError(f"tune.max_concurrent_trials ({concurrency} at once): {exc}") from exc
    return concurrency, trial_spec, plan


# ------------------------------------------------------------------ results


class _TrialLog(ray.tune.Callback):
    """Driver-side record of every trial's reports and wall time."""

    def __init__(self, metric: str):
        self._metric = metric
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.values: dict[str, list[float]] = {}
        self.rounds: dict[str, int] = {}
        self.final: dict[str, dict] = {}
        self.ids: dict[str, str] = {}  # trial folder -> trial id

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = time.perf_counter()
        self.ids[str(trial.path)] = trial.trial_id

    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid = trial.trial_id
        if self._metric in result:
            self.values.setdefault(tid, []).append(float(result[self._metric]))
        if "round" in result:
            self.rounds[tid] = max(self.rounds.get(tid, 0), int(result["round"]))
        path = result.get(CHECKPOINT_PATH_KEY)
        if path and str(path).rstrip("/").endswith("_final"):
            self.final[tid] = {k: v for k, v in result.items() if _is_metric(k)}
            self.final[tid][CHECKPOINT_PATH_KEY] = str(path)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended[trial.trial_id] = time.perf_counter()

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended[trial.trial_id] = time.perf_counter()


def _is_metric(key: str) -> bool:
    return key.startswith(("train-", "valid-")) or key == "round"


def _row(result, log: _TrialLog, metric: str, mode: str) -> dict[str, Any]:
    tid = _trial_id(result, log)
    final = log.final.get(tid)
    values = log.values.get(tid, [])
    if result.error is not None:
        status = ERROR
    elif final is not None:
        status = TERMINATED
    else:
        status = EARLY_STOPPED
    if final is not None and metric in final:
        value = float(final[metric])
    elif values:
        value = min(values) if mode == "min" else max(values)
    else:
        value = None
    begin, end = log.started.get(tid), log.ended.get(tid)
    return {
        "trial_id": tid,
        "params": _plain(result.config or {}),
        "status": status,
        "rounds": log.rounds.get(tid, 0),
        "metric": value,
        "duration_s": (end - begin) if begin is not None and end is not None else None,
        "checkpoint_path": final[CHECKPOINT_PATH_KEY] if final else None,
        "error": _message(result.error) if result.error is not None else None,
    }


def _trial_id(result, log: _TrialLog) -> str:
    trial_id = log.ids.get(str(result.path))
    if trial_id is None and result.metrics:
        trial_id = result.metrics.get("trial_id")
    return str(trial_id or os.path.basename(str(result.path).rstrip("/")))


def _load_best(
    row: dict, fs, trial_spec: TrainSpec, plan: WorkerPlan, log: _TrialLog
) -> TrainResult:
    checkpoint = ray.train.Checkpoint(row["checkpoint_path"], filesystem=fs)
    booster, state = _worker._load_checkpoint(checkpoint)
    best_attr = booster.attr("best_iteration")
    final = log.final[row["trial_id"]]
    summary = _read_summary(fs, trial_spec.storage_path, row["trial_id"])
    params = summary.get("params") or build_params(
        replace(trial_spec, params={**trial_spec.params, **row["params"]}),
        nthread=plan.nthread,
        use_gpu=plan.use_gpu,
    )
    return TrainResult(
        booster=booster,
        best_iteration=int(best_attr) if best_attr is not None else booster.num_boosted_rounds() - 1,
        history=state["history"],
        num_workers=plan.num_workers,
        checkpoint_path=row["checkpoint_path"],
        duration_s=summary.get("duration_s", row["duration_s"] or 0.0),
        metrics={k: float(v) for k, v in final.items() if k.startswith(("train-", "valid-"))},
        rows=summary.get("rows", {}),
        resumed_from_round=summary.get("resumed_from_round"),
        params=params,
        timings=summary.get("timings", {}),
    )


def _read_summary(fs, train_storage: str, trial_id: str) -> dict:
    """The trial's TrainResult fields, written after its run; ``{}`` when the
    trial actor was stopped before it could write them."""
    _, root = pyarrow.fs.FileSystem.from_uri(train_storage)
    try:
        with fs.open_input_stream(f"{root.rstrip('/')}/{trial_id}/{_RESULT_FILENAME}") as f:
            return json.loads(f.read().decode())
    except (OSError, ValueError):
        return {}


def _no_finished_trial(rows: list[dict], grid, run_name: str) -> RaypipeError:
    errors = [r for r in rows if r["status"] == ERROR]
    for result in grid:
        cause = _raypipe_cause(result.error)
        if cause is not None and len(errors) == len(rows):
            # Every trial failed the same way on the user's config or data.
            return type(cause)(str(cause))
    counts = {s: sum(r["status"] == s for r in rows) for s in (TERMINATED, EARLY_STOPPED, ERROR)}
    first = errors[0]["error"] if errors else "no error"
    return TrainingError(
        f"tune[{run_name}]: expected at least one trial to train to its end, got "
        f"{counts[TERMINATED]} finished, {counts[EARLY_STOPPED]} early-stopped and "
        f"{counts[ERROR]} failed of {len(rows)} trial(s); first error: {first}. Hint: "
        "check the trial logs under the experiment directory."
    )


def _raypipe_cause(error: BaseException | None) -> RaypipeError | None:
    """The raypipe error behind a trial's failure, unwrapped from Ray's
    ``RayTaskError`` (which subclasses the cause's type but carries the remote
    traceback as its message)."""
    for _ in range(10):
        if error is None:
            return None
        inner = getattr(error, "cause", None)
        if isinstance(inner, BaseException) and inner is not error:
            error = inner
        elif isinstance(error, RaypipeError):
            return error
        else:
            error = error.__cause__
    return None


def _message(error: BaseException) -> str:
    cause = _raypipe_cause(error)
    if cause is not None:
        return str(cause)
    lines = str(error).strip().splitlines()
    return lines[-1] if lines else type(error).__name__


# ------------------------------------------------------------------ helpers


def _plain(config: dict) -> dict:
    """Sampled values as plain Python scalars (numpy ints from randint)."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in config.items()}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
