"""One Tune trial: the trainable, its training sessions, and how a stopped trial stops.

The trainable (:func:`_trial`, named so for Tune's trial folders) receives a
:class:`TrialJob` (the typed spec and worker plan every trial shares) and the
sampled params, and either trains right in the trial actor (one worker,
:class:`_TrialSession`) or drives one Ray Train run (more workers, with
:class:`_TuneReportUntilStopped` forwarding its reports). See
:mod:`raypipe.train.tune` for the whole picture.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow.fs

import ray
import ray.tune
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY, TuneReportCallback
from ray.util.queue import Full

from raypipe.runtime.storage import resolve
from raypipe.train import _local, _worker
from raypipe.train._resources import WorkerPlan
from raypipe.train.spec import TrainSpec, check_spec
from raypipe.train.xgboost_trainer import _run, loop_config, train_result

#: The TrainResult fields of a finished trial, next to its checkpoints.
RESULT_FILENAME = "raypipe_train_result.json"
_STOP_FILENAME = "raypipe_stop_requested"
_STOP_POLL_S = 0.5
# How long a stopping trial waits for its Train run to abort (it aborts at its
# next report); Tune force-kills a stopping trial actor after 600 s
# (TUNE_FORCE_TRIAL_CLEANUP_S).
_ABORT_WAIT_S = 600.0
# Ray Train reads these on the process that builds the trainer (the trial
# actor); forwarded from the driver, as train_xgboost gets them.
FORWARDED_ENV = ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S",)


@dataclass(frozen=True)
class TrialJob:
    """What every trial of one experiment shares, handed to the trainable once.

    Attributes:
        spec: the per-trial spec (its ``params`` are the defaults the samples override).
        plan: the workers and CPUs of each trial.
        env: environment variables forwarded from the driver (:data:`FORWARDED_ENV`).
        data_key: names this experiment's datasets: a reused trial actor keeps the
            matrices it built under this key for the next trial (:class:`_TrialSession`).
    """

    spec: TrainSpec
    plan: WorkerPlan
    env: dict[str, str] = field(default_factory=dict)
    data_key: str = ""

    @classmethod
    def from_driver(cls, spec: TrainSpec, plan: WorkerPlan) -> TrialJob:
        """The job of ``spec`` on ``plan``, with the driver's :data:`FORWARDED_ENV`
        and a new :attr:`data_key`."""
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        return cls(spec=spec, plan=plan, env=env, data_key=uuid.uuid4().hex)


def plain_values(config: dict) -> dict:
    """Sampled values as plain Python scalars (numpy ints from randint)."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in config.items()}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


@dataclass
class _TrainRun:
    """The Ray Train run a trial actor drives (one per trial actor process)."""

    stop_marker: str
    local: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    stop_requested: bool = False


class _TrialStopped(Exception):
    """Raised in a one-worker trial's training loop once Tune stopped the trial."""


# The matrices the last trial of this (reused) trial actor built: (key, matrices).
_kept: tuple[tuple, _worker.Matrices] | None = None


class _TrialSession(_local.LocalSession):
    """A one-worker trial: the loop runs in the trial actor, checkpoints as a
    one-task run's, every report goes to Tune (with the checkpoint's path, as
    ``TuneReportCallback`` forwards a Ray Train run's).

    Tune reuses a finished trial's actor for the next trial (``reuse_actors``),
    and every trial of an experiment trains on the same rows: the actor keeps
    the ``QuantileDMatrix`` pair it built and the next trial with the same
    columns, ``max_bin`` and ``nthread`` trains on it (the same matrices, so
    the same model), without reading the blocks and sketching the quantiles again
    (measured: most of a trial's start-up, see ``benchmarks/pair_tune.py``).
    Only the newest pair is kept, and it goes with the actor at the end of
    the experiment.
    """

    def __init__(self, datasets: dict[str, Any], fs, path: str, run: _TrainRun, data_key: str = ""):
        super().__init__(datasets, fs, path)
        self._run = run
        self._data_key = data_key

    def matrices(self, cfg: _worker.LoopConfig) -> _worker.Matrices:
        global _kept
        key = (self._data_key, _worker.matrices_key(cfg))
        if self._data_key and _kept is not None and _kept[0] == key:
            return replace(_kept[1], timings={"read_shards": 0.0, "build_dmatrix": 0.0})
        _kept = None  # free the previous experiment's matrices before building
        data = super().matrices(cfg)
        if self._data_key:
            _kept = (key, data)
        return data

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


def _trial(config: dict, train=None, valid=None, job: TrialJob | None = None) -> None:
    """One Tune trial of the sampled params: a one-worker plan trains right here
    (:class:`_TrialSession`), a larger one drives a Ray Train run.

    A Ray Train trial never calls ``ray.tune.report`` itself: Tune's function
    session holds one result at a time, and ``TuneReportCallback`` may still
    have the final Train report queued when ``fit`` returns, so a report from
    here could deadlock with it.
    """
    os.environ.update(job.env)
    trial_id = ray.tune.get_context().get_trial_id()
    spec, plan = job.spec, job.plan
    trial_spec = replace(spec, params={**spec.params, **plain_values(config)})
    check_spec(trial_spec)
    run_dir = f"{trial_spec.storage_path.rstrip('/')}/{trial_id}"
    run = _TRAIN_RUNS[trial_id] = _TrainRun(stop_marker=f"{run_dir}/{_STOP_FILENAME}", local=plan.local)
    try:
        if plan.local:
            started = time.perf_counter()
            fs, path = _local.run_dir(trial_spec.storage_path, trial_id)
            session = _TrialSession({"train": train, "valid": valid}, fs, path, run, job.data_key)
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
        fs, path = resolve(f"{run_dir}/{RESULT_FILENAME}", "tune")
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
    fs, path = resolve(run.stop_marker, "tune")
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
            self._fs, self._path = resolve(self._stop_marker, "tune")
        return self._fs.get_file_info(self._path).type != pyarrow.fs.FileType.NotFound
