"""The root of a config file: :class:`PipelineConfig`, with its cluster and output sections.

The ``features:`` section is the union of the step parameter models that
:mod:`raypipe.features.steps` exports: each transform owns its parameters, so the config
lists no transform itself.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from raypipe.config.base import ConfigModel
from raypipe.config.data import DataConfig
from raypipe.config.model import EvaluateConfig, ModelConfig, RegistryConfig, TuneConfig
from raypipe.config.serving import MonitorConfig, RetrainConfig, ServeConfig
from raypipe.features.steps import FeatureStep

__all__ = ["ClusterConfig", "OutputConfig", "PipelineConfig"]


class ClusterConfig(ConfigModel):
    address: str | None = Field(
        None, description="Ray address to connect to ('auto', 'ray://host:10001'); null starts a local Ray."
    )
    runtime_env: dict[str, Any] = Field(
        default_factory=dict, description="Ray runtime_env for the job (pip, env_vars, working_dir, ...)."
    )
    num_cpus: int | None = Field(
        None, ge=1, description="CPUs of the local Ray started when address is null (default: all)."
    )
    dashboard: bool | None = Field(
        None, description="Start the Ray dashboard (on 127.0.0.1) with the local Ray. null: with the services an "
                          "operator watches (`raypipe serve`, `ingest-stream`), not with batch runs (`raypipe run`, "
                          "`predict`: the dashboard's 10 processes hold ~230 MiB); `--dashboard`/`--no-dashboard` "
                          "decide per command."
    )
    metrics_export_port: int | None = Field(
        8085, ge=1, le=65535,
        description="Port of the local Ray's Prometheus metrics export, on 127.0.0.1 (a free one when taken; "
                    "null: Ray picks one). Names are exported with Ray's `ray_` prefix: ray_raypipe_requests_total.",
    )


    def connect_options(self, *, service: bool = False) -> dict[str, Any]:
        """Keyword arguments of ``raypipe.runtime.cluster.connect`` from this section, for a
        long-running ``service`` (the dashboard on unless ``dashboard: false``) or a batch
        command (on only with ``dashboard: true``)."""
        return {"configured_address": self.address, "num_cpus": self.num_cpus, "runtime_env": self.runtime_env,
                "dashboard": service if self.dashboard is None else self.dashboard,
                "metrics_export_port": self.metrics_export_port}

class OutputConfig(ConfigModel):
    uri: str = Field("./raypipe-runs", description="Where run reports and quarantined rows are written.")


class PipelineConfig(ConfigModel):
    """The whole pipeline, as written in one YAML file."""

    version: Literal[1] = Field(1, description="Config format version.")
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Pipeline name (letters, digits, . _ -).")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Which Ray to run on.")
    data: DataConfig = Field(..., description="Ingest, validation and split.")
    features: list[FeatureStep] = Field(default_factory=list, description="Transform steps, fitted on the train split.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="What to train.")
    tune: TuneConfig = Field(default_factory=TuneConfig, description="Hyperparameter tuning.")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="Metrics and gates.")
    registry: RegistryConfig = Field(default_factory=RegistryConfig, description="Model registry.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="HTTP endpoint.")
    monitor: MonitorConfig = Field(default_factory=MonitorConfig, description="Monitoring.")
    retrain: RetrainConfig = Field(default_factory=RetrainConfig, description="Retraining policy.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Run outputs.")
    profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Named overlays merged over this file with --profile NAME."
    )

    @property
    def model_name(self) -> str:
        """The registered model name."""
        return self.registry.model_name or self.name

    @property
    def model_seed(self) -> int:
        """The seed of XGBoost and of the Tune searcher: ``model.seed``, else ``data.split.seed``.

        Falling back to the split seed keeps the models of configs written before
        ``model.seed`` existed byte-identical.
        """
        return self.data.split.seed if self.model.seed is None else self.model.seed
