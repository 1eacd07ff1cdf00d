"""What a Tune experiment leaves: one row per trial, and the best trial's :class:`TrainResult`.

:class:`TrialLog` records every trial's reports on the driver while Tune runs;
afterwards :func:`trial_row` turns each Tune result into a row of
:attr:`TuneResult.trials <raypipe.train.TuneResult.trials>`, and
:func:`load_best` reads the best trial's booster from its final checkpoint
(no retraining).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from typing import Any

import ray.train
import ray.tune
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

from raypipe.errors import RaypipeError
from raypipe.runtime.storage import resolve
from raypipe.train import _worker
from raypipe.train._errors import TrainingError
from raypipe.train._params import build_params
from raypipe.train._resources import WorkerPlan
from raypipe.train._tune_trial import RESULT_FILENAME, plain_values
from raypipe.train.spec import TrainResult, TrainSpec

#: Trial statuses in :attr:`TuneResult.trials <raypipe.train.TuneResult.trials>`.
TERMINATED, EARLY_STOPPED, ERROR = "terminated", "early_stopped", "error"


class TrialLog(ray.tune.Callback):
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


def trial_row(result, log: TrialLog, metric: str, mode: str) -> dict[str, Any]:
    """One row of :attr:`TuneResult.trials <raypipe.train.TuneResult.trials>` for Tune's ``result``."""
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
        "params": plain_values(result.config or {}),
        "status": status,
        "rounds": log.rounds.get(tid, 0),
        "metric": value,
        "duration_s": (end - begin) if begin is not None and end is not None else None,
        "checkpoint_path": final[CHECKPOINT_PATH_KEY] if final else None,
        "error": _message(result.error) if result.error is not None else None,
    }


def _trial_id(result, log: TrialLog) -> str:
    trial_id = log.ids.get(str(result.path))
    if trial_id is None and result.metrics:
        trial_id = result.metrics.get("trial_id")
    return str(trial_id or os.path.basename(str(result.path).rstrip("/")))


def load_best(
    row: dict, fs, trial_spec: TrainSpec, plan: WorkerPlan, log: TrialLog
) -> TrainResult:
    """The best trial's :class:`TrainResult`, its booster read from the final checkpoint."""
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
    _, root = resolve(train_storage, "tune")
    try:
        with fs.open_input_stream(f"{root.rstrip('/')}/{trial_id}/{RESULT_FILENAME}") as f:
            return json.loads(f.read().decode())
    except (OSError, ValueError):
        return {}


def no_finished_trial(rows: list[dict], grid, run_name: str) -> RaypipeError:
    """The error to raise when no trial trained to its end: the trials' own
    raypipe error when every trial failed with it, else a :class:`TrainingError`."""
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
