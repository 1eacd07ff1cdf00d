"""The training loop: inside each Ray Train worker, or in one Ray task.

Each worker reads ITS OWN shard of the train/valid datasets
(``ray.train.get_dataset_shard``), builds a ``QuantileDMatrix`` from the shard's
numpy batches, and calls ``xgboost.train`` inside the collective context that
``XGBoostTrainer`` sets up (so the quantile sketch, histograms and metrics are
all-reduced across workers). Resumption after a worker failure loads the latest
checkpoint (``ray.train.get_checkpoint``) and trains the remaining rounds with
``xgb_model=``, carrying the early-stopping state and the metric history over.

The loop talks to its runner through a session (:class:`TrainSession` in a Ray
Train worker; ``raypipe.train._local.LocalSession`` when one Ray task trains
alone): the shards, the checkpoint to resume from, reports and checkpoints.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import xgboost as xgb
from xgboost.callback import EarlyStopping

import ray
import ray.train
from ray.train import Checkpoint, CheckpointConsistencyMode
from ray.train.xgboost import RayTrainReportCallback

from raypipe.errors import DataError

MODEL_FILENAME = RayTrainReportCallback.CHECKPOINT_NAME  # "model.ubj"
STATE_FILENAME = "raypipe_train_state.json"


@dataclass(frozen=True)
class LoopConfig:
    """What the training loop needs, fixed on the driver (see ``xgboost_trainer.loop_config``).

    Attributes:
        params: the XGBoost params (``nthread``, ``seed``, ``device`` set; ``num_class``
            and ``scale_pos_weight`` filled in from the labels when asked for).
        task: the spec's task.
        scale_pos_weight_auto: compute ``scale_pos_weight`` from the training labels.
        label, features, feature_types, weight: the columns, as in the spec.
        num_boost_round, early_stopping_rounds: as in the spec.
        early_stopping_metric: the metric early stopping watches (the last eval metric).
        early_stopping_maximize: whether larger is better for it.
        report_every, checkpoint_every: as in the spec.
        has_valid: whether a ``valid`` dataset is there.
        fault: the test hook's ``{"round", "marker"[, "rank"][, "hold"]}`` (see ``FAULT_ENV``), or ``None``.
    """

    params: dict[str, Any]
    task: str
    scale_pos_weight_auto: bool
    label: str
    features: list[str]
    feature_types: list[str]
    weight: str | None
    num_boost_round: int
    early_stopping_rounds: int | None
    early_stopping_metric: str
    early_stopping_maximize: bool
    report_every: int
    checkpoint_every: int
    has_valid: bool
    fault: dict | None = None


#: The key of the :class:`LoopConfig` in Ray Train's ``train_loop_config`` dict.
LOOP_CONFIG_KEY = "loop"


class Session(Protocol):
    """What the training loop needs from whatever runs it."""

    rank: int

    def shard(self, name: str) -> Any:
        """This worker's rows of dataset ``name`` (anything with ``iter_batches``)."""

    def matrices(self, cfg: LoopConfig) -> Matrices:
        """This worker's shards as XGBoost matrices (:func:`build_matrices`, or kept ones)."""

    def checkpoint(self) -> Checkpoint | None:
        """The latest persisted checkpoint to resume from, or ``None``."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None, name: str | None = None) -> None:
        """Report ``metrics``; persist ``checkpoint_dir`` (rank 0) as checkpoint ``name``."""

    def wait_persisted(self) -> None:
        """Block until every checkpoint reported so far is persisted."""


class TrainSession:
    """The session of a Ray Train worker (``ray.train``'s context)."""

    def __init__(self) -> None:
        self.rank = ray.train.get_context().get_world_rank()

    def shard(self, name: str) -> Any:
        return ray.train.get_dataset_shard(name)

    def matrices(self, cfg: LoopConfig) -> Matrices:
        return build_matrices(cfg, self)

    def checkpoint(self) -> Checkpoint | None:
        return ray.train.get_checkpoint()

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None, name: str | None = None) -> None:
        checkpoint = Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)

    def wait_persisted(self) -> None:
        # Ray Train commits a report when its controller polls the workers.
        ray.train.get_all_reported_checkpoints(
            consistency_mode=CheckpointConsistencyMode.COMMITTED, timeout_s=120
        )


# --------------------------------------------------------------------------- data


class _BatchIter(xgb.DataIter):
    """Feeds already-read numpy batches to a QuantileDMatrix (no concatenation)."""

    def __init__(self, batches: list[dict[str, Any]]):
        self._batches = batches
        self._pos = 0
        super().__init__(release_data=True)

    def next(self, input_data) -> bool:
        if self._pos == len(self._batches):
            return False
        input_data(**self._batches[self._pos])
        self._pos += 1
        return True

    def reset(self) -> None:
        self._pos = 0


def _read_shard(shard, cfg: LoopConfig) -> tuple[list[dict[str, Any]], int]:
    """Read a worker's shard into (X float32 C-order, y, w) batches.

    ``batch_size=None`` hands over whole blocks, so the only copy is the
    column-to-row stack XGBoost needs.
    """
    features: list[str] = cfg.features
    label: str = cfg.label
    weight: str | None = cfg.weight
    batches: list[dict[str, Any]] = []
    rows = 0
    for batch in shard.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
        n = len(batch[label])
        if n == 0:
            continue
        X = np.empty((n, len(features)), dtype=np.float32)
        for j, name in enumerate(features):
            X[:, j] = batch[name]
        item: dict[str, Any] = {
            "data": X,
            "label": np.asarray(batch[label], dtype=np.float32),
            "feature_names": features,
            "feature_types": cfg.feature_types,
        }
        if weight is not None:
            item["weight"] = np.asarray(batch[weight], dtype=np.float32)
        batches.append(item)
        rows += n
    if not batches:
        # An empty shard still has to join the collective sketch/allreduce.
        batches.append(
            {
                "data": np.empty((0, len(features)), dtype=np.float32),
                "label": np.empty((0,), dtype=np.float32),
                "feature_names": features,
                "feature_types": cfg.feature_types,
                **({"weight": np.empty((0,), dtype=np.float32)} if weight else {}),
            }
        )
    return batches, rows


def _dmatrix(batches, cfg: LoopConfig, ref: xgb.DMatrix | None) -> xgb.QuantileDMatrix:
    return xgb.QuantileDMatrix(
        _BatchIter(batches),
        ref=ref,
        max_bin=int(cfg.params.get("max_bin", 256)),
        nthread=int(cfg.params["nthread"]),
        enable_categorical=True,
    )


def _complete_params(cfg: LoopConfig, dtrain: xgb.DMatrix) -> dict:
    """Fill in ``num_class`` / ``scale_pos_weight: auto`` from the labels.

    One all-reduce over the workers' training labels (already in the matrix),
    instead of an extra Ray Data pass over a possibly lazily transformed dataset.
    """
    params = dict(cfg.params)
    need_classes = cfg.task == "multiclass" and "num_class" not in params
    if not (need_classes or cfg.scale_pos_weight_auto):
        return params
    labels = dtrain.get_label()
    n = float(len(labels))
    pos = float(labels.sum(dtype=np.float64))
    top = float(labels.max()) if len(labels) else -np.inf
    n, pos = xgb.collective.allreduce(np.array([n, pos]), xgb.collective.Op.SUM)
    (top,) = xgb.collective.allreduce(np.array([top]), xgb.collective.Op.MAX)
    label = cfg.label
    if need_classes:
        if not np.isfinite(top) or top < 1 or top != int(top):
            raise DataError(
                f"train: label {label!r}: expected class codes 0..K-1 with K >= 2, got "
                f"max label {top!r}. Hint: encode the label as 0..K-1 or set model.num_class."
            )
        params["num_class"] = int(top) + 1
    if cfg.scale_pos_weight_auto:
        if pos <= 0 or pos >= n:
            raise DataError(
                f"model.params.scale_pos_weight: 'auto' needs both classes in the training "
                f"data, got {pos:g} positive of {n:g} rows in {label!r}. Hint: set a number "
                "or check the label column."
            )
        params["scale_pos_weight"] = (n - pos) / pos
    return params


@dataclass
class Matrices:
    """A worker's training data as XGBoost matrices, and what reading it cost.

    Attributes:
        dtrain: the training rows of this worker's shard.
        dvalid: the validation rows (quantized with ``dtrain``'s cuts), or ``None``.
        train_rows, valid_rows: rows of each shard.
        timings: seconds of ``read_shards`` and ``build_dmatrix``.
    """

    dtrain: xgb.QuantileDMatrix
    dvalid: xgb.QuantileDMatrix | None
    train_rows: int
    valid_rows: int
    timings: dict[str, float]


def matrices_key(cfg: LoopConfig) -> tuple:
    """What the matrices of :func:`build_matrices` depend on besides the rows: two
    configs with the same key build the same matrices from the same datasets."""
    return (
        tuple(cfg.features), tuple(cfg.feature_types), cfg.label, cfg.weight, cfg.has_valid,
        int(cfg.params.get("max_bin", 256)), int(cfg.params["nthread"]),
    )


def build_matrices(cfg: LoopConfig, session: Session) -> Matrices:
    """Read ``session``'s shards and build the ``QuantileDMatrix`` of each."""
    timings = {"read_shards": 0.0, "build_dmatrix": 0.0}
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[phase] += now - clock
        clock = now

    batches, train_rows = _read_shard(session.shard("train"), cfg)
    lap("read_shards")
    dtrain = _dmatrix(batches, cfg, ref=None)
    del batches
    lap("build_dmatrix")
    dvalid, valid_rows = None, 0
    if cfg.has_valid:
        batches, valid_rows = _read_shard(session.shard("valid"), cfg)
        lap("read_shards")
        dvalid = _dmatrix(batches, cfg, ref=dtrain)
        del batches
        lap("build_dmatrix")
    return Matrices(dtrain, dvalid, train_rows, valid_rows, timings)


# ------------------------------------------------------------- early stopping


class _ResumableEarlyStopping(EarlyStopping):
    """``EarlyStopping`` that can pick up where a checkpoint left it."""

    def __init__(self, *, resume: dict | None, **kwargs):
        super().__init__(**kwargs)
        self._resume = resume

    def before_training(self, model):
        model = super().before_training(model)
        if self._resume:
            name, metric = self._resume["data"], self._resume["metric"]
            best = self._resume["best_score"]
            self.stopping_history = {name: {metric: [best]}}
            self.best_scores = {name: {metric: [best]}}
            self.current_rounds = int(self._resume["current_rounds"])
        return model

    def snapshot(self) -> dict | None:
        if not self.best_scores:
            return None
        name = next(iter(self.best_scores))
        metric = next(iter(self.best_scores[name]))
        return {
            "data": name,
            "metric": metric,
            "best_score": float(self.best_scores[name][metric][-1]),
            "current_rounds": int(self.current_rounds),
        }


# ------------------------------------------------------------------ reporting


class ReportCheckpointCallback(RayTrainReportCallback):
    """Reports metrics every ``report_every`` rounds and checkpoints every
    ``checkpoint_every`` rounds and at the end.

    ``RayTrainReportCallback`` reports on EVERY round (``frequency`` only
    controls checkpoints); each ``ray.train.report`` is a barrier across workers
    plus a round trip to the controller, so reporting every round dominates the
    run time of small boosters. Early stopping lives inside this callback
    because ``xgboost``'s ``CallbackContainer`` stops calling the remaining
    callbacks of a round once one returns ``True``.

    Checkpoints hold ``model.ubj`` (readable with
    ``RayTrainReportCallback.get_model``) and ``raypipe_train_state.json``
    (rounds done, metric history, early-stopping state).
    """

    def __init__(
        self,
        *,
        report_every: int,
        checkpoint_every: int,
        early_stopping: _ResumableEarlyStopping | None,
        history: dict[str, list],
        evals: list[tuple[xgb.DMatrix, str]],
        report_only: list[tuple[xgb.DMatrix, str]],
        total_rounds: int,
        session: Session,
        fault: dict | None = None,
    ):
        super().__init__(frequency=checkpoint_every, checkpoint_at_end=True)
        self._session = session
        self._report_every = report_every
        self._total_rounds = total_rounds
        self._es = early_stopping
        self.history = history
        self._report_only = report_only
        self._evals = report_only + evals
        self.final_metrics: dict[str, float] | None = None
        self._fault = fault
        self._stopped = False

    # xgboost.callback.TrainingCallback ------------------------------------

    def before_training(self, model):
        if self._es is not None:
            model = self._es.before_training(model)
        return model

    def after_iteration(self, model, epoch, evals_log) -> bool:
        stop = bool(self._es.after_iteration(model, epoch, evals_log)) if self._es else False
        self._stopped = stop
        rounds = model.num_boosted_rounds()
        self._maybe_fail(rounds)
        checkpoint_now = rounds % self._frequency == 0
        if checkpoint_now or rounds % self._report_every == 0:
            metrics = self._metrics_at(model, rounds, evals_log)
            self._record(metrics)
            if stop or rounds == self._total_rounds:
                pass  # the final report follows at once (after_training)
            elif checkpoint_now:
                self._report_with_checkpoint(metrics, model, rounds, finished=False)
            else:
                self._session.report(metrics)
        return stop

    def after_training(self, model):
        if self._es is not None:
            model = self._es.after_training(model)
        return self.finish(model)

    # raypipe ---------------------------------------------------------------

    def finish(self, model: xgb.Booster) -> xgb.Booster:
        """Persist the final (possibly truncated) model with ``finished=True``.

        The metrics reported with it are those of the model as saved
        (evaluated again: after truncation they differ from the last round's).
        """
        rounds = model.num_boosted_rounds()
        self.final_metrics = _parse_eval(model.eval_set(self._evals)) if self._evals else {}
        metrics = dict(self.final_metrics, round=rounds)
        self._report_with_checkpoint(metrics, model, rounds, finished=True)
        return model

    def _metrics_at(self, model: xgb.Booster, rounds: int, evals_log) -> dict[str, Any]:
        # Training rows are scored only here, at the reported rounds: XGBoost would
        # score every eval set every round, and AUC sorts all the rows each time.
        metrics = _parse_eval(model.eval_set(self._report_only)) if self._report_only else {}
        metrics.update({k: float(v) for k, v in self._get_report_dict(evals_log).items()})
        metrics["round"] = rounds
        return metrics

    def _record(self, metrics: dict[str, Any]) -> None:
        for key, value in metrics.items():
            self.history.setdefault(key, []).append(value)

    def _report_with_checkpoint(self, metrics, model, rounds: int, *, finished: bool) -> None:
        state = {
            "rounds_done": rounds,
            "finished": finished,
            "stopped": self._stopped,
            "history": self.history,
            "early_stopping": self._es.snapshot() if self._es else None,
        }
        if self._session.rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                model.save_model(Path(tmp, MODEL_FILENAME).as_posix())
                Path(tmp, STATE_FILENAME).write_text(json.dumps(state))
                name = f"checkpoint_{rounds:06d}" + ("_final" if finished else "")
                self._session.report(metrics, tmp, name)
        else:
            self._session.report(metrics)

    def _maybe_fail(self, rounds: int) -> None:
        """Test hook: kill this worker process once at a given round."""
        fault = self._fault
        if not fault or rounds != fault["round"]:
            return
        if self._session.rank != fault.get("rank", 0):
            return
        marker = Path(fault["marker"])
        if marker.exists():
            return
        # Crash only once the checkpoints reported so far are persisted, so
        # the test knows which checkpoint the restart resumes from.
        self._session.wait_persisted()
        if fault.get("hold"):
            # The test removes this worker's node (the marker names it): the process
            # dies with its node. The bound keeps a failed test from hanging forever.
            marker.write_text(f"node {ray.get_runtime_context().get_node_id()}\n")
            time.sleep(fault["hold"])
            return
        marker.write_text(f"killed at round {rounds}\n")
        os._exit(1)


# --------------------------------------------------------------- train loop


def _parse_eval(text: str) -> dict[str, float]:
    # "[0]\ttrain-logloss:0.31\tvalid-auc:0.93"
    out = {}
    for item in text.split("\t")[1:]:
        key, _, value = item.rpartition(":")
        out[key] = float(value)
    return out


def _load_checkpoint(checkpoint: Checkpoint) -> tuple[xgb.Booster, dict]:
    with checkpoint.as_directory() as path:
        booster = xgb.Booster()
        booster.load_model(Path(path, MODEL_FILENAME).as_posix())
        state = json.loads(Path(path, STATE_FILENAME).read_text())
    return booster, state


def train_loop_per_worker(config: dict[str, LoopConfig]) -> dict | None:
    """``train_loop_per_worker`` of the ``XGBoostTrainer`` (one call per worker).

    Ray Train hands over its ``train_loop_config`` dict, which carries the
    :class:`LoopConfig` under :data:`LOOP_CONFIG_KEY`.
    """
    return train_loop(config[LOOP_CONFIG_KEY], TrainSession())


def _worker_nodes(world: int, rank: int) -> list[str | None]:
    """The Ray node id of every worker, in rank order (one broadcast per worker: a few
    bytes each), so the run report shows where the shards were trained."""
    try:
        mine = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside a Ray worker (unit tests): no node to name
        mine = None
    if world <= 1 or not xgb.collective.is_distributed():
        return [mine]
    return [xgb.collective.broadcast(mine if rank == r else None, r) for r in range(world)]


def train_loop(cfg: LoopConfig, session: Session) -> dict | None:
    """Train on ``session``'s shards; rank 0 returns the result, other ranks ``None``."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[phase] = timings.get(phase, 0.0) + now - clock
        clock = now

    data = session.matrices(cfg)
    timings.update(data.timings)
    clock = time.perf_counter()
    dtrain, train_rows, valid_rows = data.dtrain, data.train_rows, data.valid_rows
    params = _complete_params(cfg, dtrain)
    # XGBoost scores ``evals`` every round (early stopping needs the validation
    # rows); the training rows are scored only at reported rounds (see the callback).
    evals: list[tuple[xgb.DMatrix, str]] = [(data.dvalid, "valid")] if data.dvalid is not None else []
    train_eval = [(dtrain, "train")]

    model: xgb.Booster | None = None
    state: dict = {"rounds_done": 0, "finished": False, "stopped": False, "history": {}}
    checkpoint = session.checkpoint()
    if checkpoint is not None:
        model, state = _load_checkpoint(checkpoint)

    es = None
    if cfg.early_stopping_rounds and cfg.has_valid:
        es = _ResumableEarlyStopping(
            rounds=cfg.early_stopping_rounds,
            metric_name=cfg.early_stopping_metric,
            data_name="valid",
            maximize=cfg.early_stopping_maximize,
            save_best=True,
            resume=state.get("early_stopping"),
        )
    callback = ReportCheckpointCallback(
        report_every=cfg.report_every,
        checkpoint_every=cfg.checkpoint_every,
        early_stopping=es,
        history=state["history"],
        evals=evals,
        report_only=train_eval,
        total_rounds=cfg.num_boost_round,
        session=session,
        fault=cfg.fault,
    )

    remaining = cfg.num_boost_round - state["rounds_done"]
    if state["finished"]:
        booster = model
    elif remaining <= 0 or state["stopped"]:
        # Crashed between the last round and the final checkpoint.
        best = int(model.attr("best_iteration") or model.num_boosted_rounds() - 1)
        booster = callback.finish(model[: best + 1] if es else model)
    else:
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=remaining,
            evals=evals,
            callbacks=[callback],
            xgb_model=model,
            verbose_eval=False,
        )

    lap("boost")  # includes reports and checkpoint uploads
    # Collective calls below: every worker takes part (all-reduced).
    final_metrics = callback.final_metrics
    if final_metrics is None:  # resumed from the final checkpoint
        final_metrics = _parse_eval(booster.eval_set(train_eval + evals))
    # Each worker fills its own slot: the sum is every worker's (train, valid) rows, in rank order.
    world = max(xgb.collective.get_world_size(), 1)
    slots = np.zeros((world, 2), dtype=np.float64)
    slots[min(session.rank, world - 1)] = (train_rows, valid_rows)
    per_worker = xgb.collective.allreduce(slots.ravel(), xgb.collective.Op.SUM).reshape(world, 2)
    rows = per_worker.sum(axis=0)
    nodes = _worker_nodes(world, session.rank)
    if session.rank != 0:
        return None
    best_attr = booster.attr("best_iteration")
    return {
        "history": callback.history,
        "best_iteration": int(best_attr) if best_attr is not None else booster.num_boosted_rounds() - 1,
        "metrics": final_metrics,
        "rows": {"train": int(rows[0]), "valid": int(rows[1])},
        "worker_rows": [{"train": int(t), "valid": int(v), "node": node} for (t, v), node in zip(per_worker, nodes)],
        "resumed_from_rounds": state["rounds_done"] if checkpoint is not None else None,
        "params": params,
        "timings": timings,
    }
