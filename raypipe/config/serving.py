"""The ``serve``, ``monitor`` and ``retrain`` sections: the model in production."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from raypipe.config.base import ConfigModel, parse_span

__all__ = [
    "HttpConfig",
    "AutoscalingConfig",
    "BatchingConfig",
    "AuthConfig",
    "ServeConfig",
    "DriftConfig",
    "MonitorConfig",
    "PerformanceTrigger",
    "RetrainConfig",
]


class HttpConfig(ConfigModel):
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")


class AutoscalingConfig(ConfigModel):
    min_replicas: int = Field(1, ge=0, description="Fewest replicas.")
    max_replicas: int = Field(4, ge=1, description="Most replicas.")
    target_ongoing_requests: float = Field(2, gt=0, description="Requests per replica the autoscaler aims for.")
    upscale_delay_s: float = Field(5, ge=0, description="Seconds of high load before adding replicas.")
    downscale_delay_s: float = Field(30, ge=0, description="Seconds of low load before removing replicas.")


class BatchingConfig(ConfigModel):
    max_batch_size: int = Field(
        32, ge=1, description="Requests merged into one prediction call (at most serve.max_ongoing_requests: a replica "
        "never holds more requests than that, and Serve warns about a larger batch)."
    )
    wait_timeout_ms: float = Field(
        0, ge=0, description="How long to wait to fill a batch. 0: predict as soon as a request waits; requests "
        "arriving while a batch runs form the next one, so batches still grow under load without adding latency at low load."
    )


class AuthConfig(ConfigModel):
    api_keys_env: str | None = Field(None, description="Environment variable holding comma-separated API keys.")
    api_keys_file: str | None = Field(None, description="File with one API key per line (a mounted secret).")


class ServeConfig(ConfigModel):
    http: HttpConfig = Field(default_factory=HttpConfig, description="Where the endpoint listens.")
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig, description="Replica autoscaling.")
    batching: BatchingConfig = Field(default_factory=BatchingConfig, description="Dynamic request batching.")
    auth: AuthConfig = Field(default_factory=AuthConfig, description="API-key authentication.")
    max_request_bytes: int = Field(1_000_000, ge=1, description="Larger bodies get 413.")
    max_instances: int = Field(1000, ge=1, description="Most rows per request.")
    canary_fraction: float = Field(
        0.0, ge=0, le=1, description="Share of requests answered by the 'challenger' alias's version (when it exists)."
    )
    shadow: str | None = Field(
        None, description="Alias or version mirrored in shadow: it predicts every request, the champion answers."
    )
    model: str = Field("champion", description="Alias (followed live) or version number served by default.")
    replica_cpus: float = Field(0.5, gt=0, description="CPUs reserved per replica.")
    max_ongoing_requests: int = Field(32, ge=1, description="Requests in flight per replica (the batching queue).")
    reload_interval_s: float = Field(2.0, gt=0, description="How often replicas check the registry for a moved alias.")
    request_timeout_s: float = Field(
        10.0, gt=0, description="Most seconds a request body may take to arrive; a slower (or incomplete) body gets 408 "
        "and frees its slot of the replica."
    )
    access_log: bool = Field(
        False, description="Serve's access log: one line per request in each replica's log file. Off by default: "
        "raypipe_requests_total and the prediction log already record every request, and each line costs the "
        "replica CPU on every request."
    )
    fast_path: bool = Field(
        True, description="A local Ray that raypipe starts runs Serve's HAProxy ingress and throughput-optimized mode "
        "(RAY_SERVE_ENABLE_HA_PROXY=1, RAY_SERVE_THROUGHPUT_OPTIMIZED=1), with HAProxy's stats and metrics on loopback, "
        "JSON 503 pages and no HAProxy outliving the endpoint. On a cluster, set these where it starts "
        "(`raypipe serve --export-config` lists them). false: Ray's own Python proxy."
    )


class DriftConfig(ConfigModel):
    method: Literal["psi", "ks", "js"] = Field("psi", description="Drift statistic per feature.")
    threshold: float = Field(0.2, gt=0, description="Drift score above which a feature is drifting.")
    consecutive_windows: int = Field(1, ge=1, description="Windows over threshold before an alert.")


class MonitorConfig(ConfigModel):
    enabled: bool = Field(True, description="Log predictions and run the monitor actors.")
    sample_rate: float = Field(1.0, ge=0, le=1, description="Share of predictions logged.")
    window_rows: int = Field(2000, ge=1, description="Rows per monitoring window.")
    window_s: float | None = Field(None, gt=0, description="Also close a window after this many seconds.")
    drift: DriftConfig = Field(default_factory=DriftConfig, description="Drift detection.")
    log_uri: str = Field("./raypipe-logs", description="Where the prediction log is written (Parquet).")
    flush_s: float = Field(2.0, gt=0, description="Replicas write buffered log rows at least this often.")
    flush_rows: int = Field(5000, ge=1, description="Replicas write a log file once this many rows are buffered.")
    poll_s: float = Field(1.0, gt=0, description="How often the monitor actor reads new log files.")
    pii: Literal["hash", "drop"] = Field("hash", description="What the log does with columns marked pii.")
    webhook_env: str | None = Field(None, description="Environment variable holding a webhook URL for alerts.")


class PerformanceTrigger(ConfigModel):
    metric: str = Field(..., description="Live metric watched (rmse, auc, accuracy, ...).")
    min: float | None = Field(None, description="Retrain when the metric falls below this.")
    max: float | None = Field(None, description="Retrain when the metric rises above this.")


class RetrainConfig(ConfigModel):
    on_drift: bool = Field(False, description="Retrain after a drift alert.")
    on_performance: PerformanceTrigger | None = Field(None, description="Retrain when live performance crosses a bound.")
    schedule_s: float | None = Field(None, gt=0, description="Retrain every this many seconds.")
    cooldown_s: float = Field(600, ge=0, description="Least time between two retrains.")
    data_window: str | None = Field(
        None, description="Retrain on the newest span of data only (by data.split.time_column), e.g. '90d' or '12h'."
    )
    cooldown_rows: int = Field(
        0, ge=0, description="Least predictions logged since the last retrain (or the monitor's start) before the next."
    )
    gate_fraction: float = Field(
        0.1, gt=0, lt=1, description="Newest share of the retraining rows held out to gate candidate vs champion."
    )
    valid_fraction: float = Field(0.1, gt=0, lt=1, description="Share before the gate rows used for early stopping.")

    @field_validator("data_window")
    @classmethod
    def _span(cls, value: str | None) -> str | None:
        if value is not None:
            parse_span(value)
        return value
    auto_promote: bool = Field(True, description="Promote a candidate that passes its gates.")

    @field_validator("data_window")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d+(s|m|h|d|w)", value):
            raise ValueError(f"data_window must look like '90d', '12h', '30m', got {value!r}")
        return value
