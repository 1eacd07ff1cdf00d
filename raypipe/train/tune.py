"""``tune_xgboost``: hyperparameter search over XGBoost params on Ray Tune.

Each Tune trial is a function trainable that builds the trial's
:class:`TrainSpec` (the sampled params merged over ``spec.params``) and runs
the training loop of :func:`raypipe.train.train_xgboost`
(``_worker.train_loop``: the same early stopping, reports and checkpoints):

* one worker per trial (``num_workers: auto`` or ``1``, CPU): the trial actor
  itself trains, holding the trial's CPUs, and reports every ``report_every``
  rounds straight to Tune (``_tune_trial._TrialSession``). Tune reuses a finished
  trial's actor for the next trial, so a trial starts in a warm process:
  no Train controller, no worker group (those cost ~7 s of process starts a
  trial on the 2-core CI machine);
* more workers per trial: the Ray Train V2 pattern. The trial actor is the
  *driver* of one Ray Train run (``xgboost_trainer._run``, the same
  ``XGBoostTrainer``), with Ray Tune's ``TuneReportCallback`` forwarding every
  Ray Train report (metrics, the final checkpoint's path) to Tune; a stopped
  trial aborts its Train run at the run's next report, which frees the
  workers' placement group before the trial actor goes (see
  ``_tune_trial._AbortTrainOnStop``).

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
trial aborts its Train run, see ``_tune_trial._AbortTrainOnStop``).

Modules: :mod:`raypipe.train._tune_search` builds the search space, the
metric, the searcher and the scheduler from the typed ``tune`` section;
:mod:`raypipe.train._tune_trial` is the trial (trainable, sessions, stopping);
:mod:`raypipe.train._tune_results` turns Tune's results into rows and the best
:class:`TrainResult`. This module plans the trials and runs the experiment.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import ray
import ray.data
import ray.tune

from raypipe.config import TuneConfig
from raypipe.errors import ConfigError
from raypipe.runtime.storage import absolute_uri, resolve
from raypipe.train._errors import TrainingError
from raypipe.train._resources import WorkerPlan, data_reserve, plan_workers
from raypipe.train._tune_results import (
    EARLY_STOPPED,
    ERROR,
    TERMINATED,
    TrialLog,
    load_best,
    no_finished_trial,
    trial_row,
)
from raypipe.train._tune_search import metric_and_mode, scheduler, search_space, searcher
from raypipe.train._tune_trial import TrialJob, _trial
from raypipe.train.spec import TrainResult, TrainSpec, check_spec
from raypipe.train.xgboost_trainer import (
    _DEFAULT_STORAGE,
    _check_columns,
    _check_fresh_run_dir,
    _require_ray,
)

__all__ = ["TuneResult", "tune_xgboost", "TERMINATED", "EARLY_STOPPED", "ERROR"]

# Tune refuses an all-zero trial request; memory keeps the trial actor off
# the CPUs that the training workers and Ray Data need.
_TRIAL_DRIVER_MEMORY = 64 * 1024**2


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
    space = search_space(spec, tune_cfg)
    metric, mode = metric_and_mode(spec, metric)
    storage_path = absolute_uri(spec.storage_path or _DEFAULT_STORAGE)
    _check_fresh_run_dir(storage_path, run_name, where="tune")
    fs, _ = resolve(storage_path, "tune")
    concurrency, trial_spec, plan = _plan(spec, tune_cfg, storage_path, run_name)
    search_alg, limit = searcher(tune_cfg, spec, metric, mode, concurrency)

    # One execution of the (lazily transformed) inputs for all trials: the
    # trials stream the same object-store blocks.
    train = train.materialize()
    valid = valid.materialize()
    _check_columns(spec, train, "train")
    _check_columns(spec, valid, "valid")

    log = TrialLog(metric)
    job = TrialJob.from_driver(trial_spec, plan)
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
            search_alg=search_alg,
            scheduler=scheduler(tune_cfg, spec),
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

    rows = [trial_row(result, log, metric, mode) for result in grid]
    rows.sort(key=lambda r: r["trial_id"])
    finished = [r for r in rows if r["status"] == TERMINATED and r["metric"] is not None]
    if not finished:
        raise no_finished_trial(rows, grid, run_name) from (grid.errors or [None])[0]
    pick = min if mode == "min" else max
    best_row = pick(finished, key=lambda r: r["metric"])
    best = load_best(best_row, fs, trial_spec, plan, log)
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
