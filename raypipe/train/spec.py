"""What to train (:class:`TrainSpec`) and what came out (:class:`TrainResult`).

Pure module: no Ray import, so the spec can be built and checked before a
cluster exists. :func:`check_spec` is the single place that validates a spec;
``train_xgboost`` and ``cross_validate`` call it before anything runs.

One default per setting: a field that mirrors a config setting
(``model.num_boost_round``, ``model.training.*``, the seed) takes its default
from the config model (:mod:`raypipe.config`), never a second literal, and
:meth:`TrainSpec.from_config` builds the spec of a pipeline from its config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from raypipe.config import ModelConfig, PipelineConfig, SplitConfig, TrainingConfig
from raypipe.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    import xgboost

__all__ = ["TASKS", "TrainSpec", "TrainResult", "check_spec"]

#: The tasks raypipe trains, each with its XGBoost objective family.
TASKS = ("binary_classification", "multiclass", "regression")

_FEATURE_TYPES = ("q", "c")

# Parameters raypipe sets itself; a user value would silently fight ours.
_RESERVED_PARAMS = {
    "nthread": "it is set from the CPUs each training worker reserves "
    "(model.training.cpus_per_worker)",
    "n_jobs": "it is set from the CPUs each training worker reserves "
    "(model.training.cpus_per_worker)",
    "device": "set model.training.use_gpu instead",
    "gpu_id": "set model.training.use_gpu instead",
    "seed": "set the spec's seed instead",
    "random_state": "set the spec's seed instead",
    "num_class": "set model.num_class (or leave it out to count the label values)",
}

# Objectives a user may pick per task (prefix match); anything else is a mistake.
_OBJECTIVE_PREFIXES = {
    "binary_classification": ("binary:",),
    "multiclass": ("multi:",),
    "regression": ("reg:", "count:", "survival:"),
}


def _config_default(model: type, name: str) -> Any:
    """The default of config field ``name``: the one definition a spec field mirrors."""
    return model.model_fields[name].default


@dataclass(frozen=True)
class TrainSpec:
    """Everything needed to train one XGBoost model on Ray Train.

    Args:
        task: ``"binary_classification"``, ``"multiclass"`` or ``"regression"``.
        label: Name of the numeric label column (0/1, 0..K-1 or float).
        features: Feature column names, float32 in the datasets.
        feature_types: One per feature: ``"q"`` numeric, ``"c"`` categorical
            (non-negative integer codes stored as float, NaN for missing).
        params: XGBoost parameters from the user (``max_depth``, ``eta``, ...).
            ``objective``/``eval_metric`` default from ``task``;
            ``scale_pos_weight: "auto"`` is computed from the training labels.
        num_boost_round: Maximum number of boosting rounds.
        early_stopping_rounds: Stop after this many rounds without improvement
            on the validation set; ``None`` disables early stopping.
        num_workers: Training workers, or ``"auto"`` to size from the cluster
            (one worker, trained in one Ray task, on a one-node cluster).
        use_gpu: Train on GPUs (one per worker), ``device="cuda"``.
        cpus_per_worker: CPUs reserved by each worker; ``None`` picks one.
        report_every: Report metrics every N rounds. In a Ray Train run each
            ``ray.train.report`` waits for the controller's next poll of the
            workers (``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``: raypipe makes it
            0.2 s unless set), so reporting every round would dominate small runs;
            training-set metrics are computed at reported rounds only (one pass
            over the training rows each: 0.72 s on 5M rows here).
        checkpoint_every: Persist a checkpoint every N rounds (and at the end);
            those rounds are reported too.
        max_failures: Worker-group (or task) restarts allowed; each resumes
            from the latest checkpoint.
        placement_strategy: Placement of a Ray Train worker group's bundles
            (``SPREAD``: one worker per node where the nodes allow).
        weight: Optional sample-weight column.
        num_class: Classes for ``multiclass``; ``None`` counts ``max(label)+1``.
        seed: XGBoost seed (and the Tune searcher's); default: the config's
            default seed (``model.seed`` falls back to ``data.split.seed``).
        storage_path: Where Ray Train persists checkpoints; ``None`` uses a
            folder under the system temp dir (use shared storage on a cluster).

    Example:
        >>> spec = TrainSpec(task="regression", label="y", features=["a", "b"],
        ...                  feature_types=["q", "q"], params={"max_depth": 4})
    """

    task: str
    label: str
    features: list[str]
    feature_types: list[str]
    params: dict
    num_boost_round: int = _config_default(ModelConfig, "num_boost_round")
    early_stopping_rounds: int | None = _config_default(ModelConfig, "early_stopping_rounds")
    num_workers: int | str = _config_default(TrainingConfig, "num_workers")
    use_gpu: bool = _config_default(TrainingConfig, "use_gpu")
    cpus_per_worker: float | None = _config_default(TrainingConfig, "cpus_per_worker")
    report_every: int = _config_default(TrainingConfig, "report_every")
    checkpoint_every: int = _config_default(TrainingConfig, "checkpoint_every")
    max_failures: int = _config_default(TrainingConfig, "max_failures")
    placement_strategy: str = _config_default(TrainingConfig, "placement_strategy")
    weight: str | None = None
    num_class: int | None = None
    seed: int = _config_default(SplitConfig, "seed")
    storage_path: str | None = None

    @classmethod
    def from_config(
        cls,
        cfg: PipelineConfig,
        *,
        features: list[str],
        feature_types: list[str],
        num_class: int | None,
        has_valid: bool,
        storage_path: str | None,
    ) -> TrainSpec:
        """The spec of the pipeline ``cfg``: its ``model`` section, its label and
        weight columns, and its model seed; the rest comes from the fitted features.

        Args:
            cfg: the pipeline config.
            features: the feature columns the feature pipeline outputs.
            feature_types: one ``"q"``/``"c"`` per feature.
            num_class: the label's classes for ``multiclass`` (else ``None``).
            has_valid: whether there is a validation split; without one early
                stopping is off.
            storage_path: where Ray Train persists checkpoints (an absolute URI).

        Example::

            spec = TrainSpec.from_config(cfg, features=fp.feature_names, feature_types=fp.feature_types,
                                         num_class=None, has_valid=True, storage_path="/runs/r1/train")
        """
        model, training, schema = cfg.model, cfg.model.training, cfg.data.schema_
        return cls(
            task=model.task,
            label=schema.label,
            features=list(features),
            feature_types=list(feature_types),
            params=dict(model.params),
            num_boost_round=model.num_boost_round,
            early_stopping_rounds=model.early_stopping_rounds if has_valid else None,
            num_workers=training.num_workers,
            use_gpu=training.use_gpu,
            cpus_per_worker=training.cpus_per_worker,
            report_every=training.report_every,
            checkpoint_every=training.checkpoint_every,
            max_failures=training.max_failures,
            placement_strategy=training.placement_strategy,
            weight=schema.weight,
            num_class=num_class,
            seed=cfg.model_seed,
            storage_path=storage_path,
        )


@dataclass
class TrainResult:
    """The outcome of :func:`raypipe.train.train_xgboost`.

    Attributes:
        booster: The trained model, truncated to ``best_iteration`` when early
            stopping ran, so ``booster.predict`` needs no ``iteration_range``.
        best_iteration: 0-based index of the last round kept.
        history: Metric history at the reported rounds:
            ``{"round": [10, 20, ...], "train-logloss": [...], "valid-auc": [...]}``
            (``round`` counts boosted rounds, 1-based).
        num_workers: Training workers used.
        checkpoint_path: Persisted location of the final checkpoint.
        duration_s: Wall time of the Ray Train run (driver side).
        metrics: Metrics of ``booster`` itself on the train/valid sets,
            ``{"train-logloss": ..., "valid-auc": ...}``.
        rows: Rows the workers trained/validated on, ``{"train": n, "valid": m}``
            (every row: shards may differ in length, see ``_AllRowsDataConfig``).
        worker_rows: Each worker's shard, in rank order: ``[{"train": n0, "valid": m0,
            "node": ray_node_id}, ...]`` (split by rows: no worker is empty while there
            are as many rows as workers, and two shards differ by at most one row).
        resumed_from_round: Boosted rounds restored from a checkpoint after a
            worker failure (``None`` when the run never restarted from one).
        params: The XGBoost parameters trained with (after ``num_class`` and
            ``scale_pos_weight: auto`` were filled in), for the lineage.
        timings: Seconds per phase on the rank-0 worker of the last attempt:
            ``read_shards`` (Ray Data ingest), ``build_dmatrix``, ``boost``
            (rounds, reports and checkpoints). ``duration_s`` minus their sum
            is Ray Train's start-up and shutdown.
    """

    booster: xgboost.Booster
    best_iteration: int
    history: dict
    num_workers: int
    checkpoint_path: str | None
    duration_s: float
    metrics: dict = field(default_factory=dict)
    rows: dict = field(default_factory=dict)
    worker_rows: list = field(default_factory=list)
    resumed_from_round: int | None = None
    params: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def _positive_int(value: Any, where: str, *, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _fail(where, f"expected an integer >= {low}, got {value!r}.")


def check_spec(spec: TrainSpec) -> None:
    """Check a :class:`TrainSpec` on its own (no data, no cluster).

    Raises:
        ConfigError: naming the offending field, what was expected, what was
            got and a hint.
    """
    if spec.task not in TASKS:
        raise _fail(
            "model.task",
            f"expected one of {', '.join(TASKS)}, got {spec.task!r}."
            + did_you_mean(spec.task, TASKS),
        )
    if not spec.features:
        raise _fail("model.features", "expected at least one feature column, got none.")
    if len(set(spec.features)) != len(spec.features):
        dupes = sorted({f for f in spec.features if spec.features.count(f) > 1})
        raise _fail("model.features", f"expected unique names, got duplicates {dupes}.")
    if len(spec.feature_types) != len(spec.features):
        raise _fail(
            "model.feature_types",
            f"expected one type per feature ({len(spec.features)}), "
            f"got {len(spec.feature_types)}.",
        )
    for i, kind in enumerate(spec.feature_types):
        if kind not in _FEATURE_TYPES:
            raise _fail(
                f"model.feature_types[{i}] ({spec.features[i]})",
                f"expected 'q' (numeric) or 'c' (categorical), got {kind!r}.",
            )
    if spec.label in spec.features:
        raise _fail(
            "model.features",
            f"the label column {spec.label!r} is also listed as a feature; "
            "hint: remove it from the features (target leakage).",
        )
    if spec.weight is not None and (spec.weight in spec.features or spec.weight == spec.label):
        raise _fail(
            "model.weight",
            f"expected a column that is neither the label nor a feature, got {spec.weight!r}.",
        )
    _positive_int(spec.num_boost_round, "model.num_boost_round")
    if spec.early_stopping_rounds is not None:
        _positive_int(spec.early_stopping_rounds, "model.early_stopping_rounds")
    _positive_int(spec.report_every, "model.training.report_every")
    _positive_int(spec.checkpoint_every, "model.training.checkpoint_every")
    if spec.max_failures != -1:
        _positive_int(spec.max_failures, "model.training.max_failures", allow_zero=True)
    if spec.num_workers != "auto":
        _positive_int(spec.num_workers, "model.training.num_workers")
    if spec.cpus_per_worker is not None:
        c = spec.cpus_per_worker
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not c > 0:
            raise _fail("model.training.cpus_per_worker", f"expected a number > 0 (fractions allowed), got {c!r}.")
    if spec.num_class is not None:
        if spec.task != "multiclass":
            raise _fail(
                "model.num_class",
                f"only applies to task 'multiclass', got it set to {spec.num_class!r} "
                f"for task {spec.task!r}.",
            )
        _positive_int(spec.num_class, "model.num_class")
        if spec.num_class < 2:
            raise _fail("model.num_class", f"expected >= 2, got {spec.num_class}.")
    if not isinstance(spec.params, dict):
        raise _fail("model.params", f"expected a mapping, got {type(spec.params).__name__}.")
    for key, why in _RESERVED_PARAMS.items():
        if key in spec.params:
            raise _fail(
                f"model.params.{key}",
                f"raypipe sets this parameter itself, got {spec.params[key]!r}; hint: {why}.",
            )
    objective = spec.params.get("objective")
    if objective is not None and not str(objective).startswith(_OBJECTIVE_PREFIXES[spec.task]):
        raise _fail(
            "model.params.objective",
            f"expected an objective starting with "
            f"{' or '.join(_OBJECTIVE_PREFIXES[spec.task])} for task {spec.task!r}, "
            f"got {objective!r}; hint: leave it out to use the task's default.",
        )
    spw = spec.params.get("scale_pos_weight")
    if spw is not None:
        if spec.task != "binary_classification":
            raise _fail(
                "model.params.scale_pos_weight",
                f"only applies to binary_classification, got it for task {spec.task!r}.",
            )
        if spw != "auto" and (
            isinstance(spw, bool)
            or not isinstance(spw, (int, float))
            or not math.isfinite(spw)
            or spw <= 0
        ):
            raise _fail(
                "model.params.scale_pos_weight",
                f"expected a positive number or 'auto', got {spw!r}.",
            )
