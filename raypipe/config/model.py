"""The ``model``, ``tune``, ``evaluate`` and ``registry`` sections: what is trained, how it
is searched, judged and stored."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from raypipe.config.base import ConfigModel

__all__ = [
    "Task",
    "TrainingConfig",
    "ModelConfig",
    "SearchDim",
    "TuneConfig",
    "VsChampionGate",
    "GatesConfig",
    "EvaluateConfig",
    "RegistryConfig",
]

Task = Literal["binary_classification", "multiclass", "regression"]


class TrainingConfig(ConfigModel):
    num_workers: int | Literal["auto"] = Field("auto", description="Training workers: 1 trains in one Ray task, 2 or more as a Ray Train worker group; 'auto' is 1 on a one-node cluster, else sized from the cluster.")
    use_gpu: bool = Field(False, description="One GPU per worker and XGBoost device=cuda.")
    cpus_per_worker: float | None = Field(None, gt=0, description="CPUs per worker (default: sized from the cluster).")
    report_every: int = Field(10, ge=1, description="Report metrics (the training rows scored too) every N boosting rounds.")
    checkpoint_every: int = Field(50, ge=1, description="Checkpoint every K rounds (and at the end).")
    max_failures: int = Field(1, ge=0, description="Worker failures tolerated; training resumes from the last checkpoint.")
    placement_strategy: Literal["SPREAD", "PACK", "STRICT_SPREAD", "STRICT_PACK"] = Field(
        "SPREAD",
        description="How a Ray Train worker group (2 or more workers) is placed on the nodes: SPREAD puts the "
        "workers on different nodes where it can (each node's CPUs and memory bandwidth work), PACK fills one "
        "node first; STRICT_* fail instead of falling back.",
    )


class ModelConfig(ConfigModel):
    task: Task = Field("binary_classification", description="What is predicted; sets the XGBoost objective.")
    params: dict[str, Any] = Field(default_factory=dict, description="XGBoost parameters (max_depth, eta, ...).")
    num_boost_round: int = Field(300, ge=1, description="Maximum boosting rounds.")
    early_stopping_rounds: int | None = Field(20, ge=1, description="Stop when the validation metric stalls this long.")
    positive_class: str | None = Field(
        None, description="Label value that is the positive class (binary); default: the larger of the two sorted values."
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Ray Train resources and cadence.")
    seed: int | None = Field(
        None,
        description="Seed of XGBoost and of the Tune searcher; null: data.split.seed (see PipelineConfig.model_seed).",
    )


class SearchDim(ConfigModel):
    type: Literal["randint", "uniform", "loguniform", "choice", "grid"] = Field(..., description="Distribution.")
    low: float | None = Field(None, description="Lower bound (randint, uniform, loguniform).")
    high: float | None = Field(None, description="Upper bound (randint exclusive).")
    values: list[Any] | None = Field(None, description="Values (choice, grid).")

    @model_validator(mode="after")
    def _shape(self) -> SearchDim:
        if self.type in ("choice", "grid"):
            if not self.values:
                raise ValueError(f"'{self.type}' needs a non-empty 'values' list")
        elif self.low is None or self.high is None or self.low >= self.high:
            raise ValueError(f"'{self.type}' needs low < high, got low={self.low} high={self.high}")
        return self


class TuneConfig(ConfigModel):
    enabled: bool = Field(False, description="Tune hyperparameters with Ray Tune instead of one training run.")
    num_samples: int = Field(16, ge=1, description="Trials to run.")
    max_concurrent_trials: int = Field(2, ge=1, description="Trials running at once.")
    scheduler: Literal["asha", "fifo"] = Field("asha", description="ASHA stops weak trials early; FIFO runs all.")
    search: Literal["random", "optuna"] = Field("random", description="Search algorithm (optuna when installed).")
    search_space: dict[str, SearchDim] = Field(default_factory=dict, description="XGBoost parameter → distribution.")


class VsChampionGate(ConfigModel):
    enabled: bool = Field(True, description="Compare with the champion re-scored on the same evaluation data.")
    min_delta: float = Field(0.0, description="The candidate may be worse than the champion by at most this much.")


class GatesConfig(ConfigModel):
    min: dict[str, float] = Field(default_factory=dict, description="Metric → smallest acceptable value.")
    max: dict[str, float] = Field(default_factory=dict, description="Metric → largest acceptable value.")
    vs_champion: VsChampionGate = Field(default_factory=VsChampionGate, description="Champion comparison.")


class EvaluateConfig(ConfigModel):
    primary_metric: str | None = Field(None, description="Metric for early stopping, tuning and the champion gate.")
    metrics: list[str] = Field(default_factory=list, description="Metrics to report (default: all for the task).")
    slices: list[str] = Field(default_factory=list, description="Columns whose values get metrics of their own.")
    threshold: float | Literal["tune"] = Field(0.5, description="Decision threshold (binary), or 'tune' on validation.")
    cv_folds: int | None = Field(
        None, ge=2, description="Also cross-validate on the training split: k folds trained in parallel, mean and std per metric."
    )
    gates: GatesConfig = Field(default_factory=GatesConfig, description="Promotion gates.")


class RegistryConfig(ConfigModel):
    uri: str = Field("./raypipe-registry", description="Registry root: a folder or any pyarrow/fsspec URI.")
    model_name: str | None = Field(None, description="Registered model name (default: the config's name).")
