"""Typed configuration: the YAML file as frozen pydantic models, its loader and its checker.

:func:`load_config` reads YAML, interpolates ``${VAR}`` / ``${VAR:-default}`` from the
environment, overlays a profile, applies ``--set dotted.path=value`` overrides and
validates the result into :class:`PipelineConfig`. Every mistake becomes a
:class:`~raypipe.errors.ConfigError` that names the file, the dotted path, what was
expected, what was given and, for unknown keys or ``type`` names, the closest valid
name. :func:`check_config` then checks what can be checked without Ray or data.

The package is pure: it never imports Ray, so ``raypipe validate`` is instant.

Modules, one per concern:

* :mod:`~raypipe.config.base`: the base model, list coercion, time spans;
* :mod:`~raypipe.config.sources`: ``data.source`` (files, SQL, API, streams, unions);
* :mod:`~raypipe.config.data`: ``data.schema``, ``data.validation``, ``data.split``;
* :mod:`~raypipe.config.model`: ``model``, ``tune``, ``evaluate``, ``registry``;
* :mod:`~raypipe.config.serving`: ``serve``, ``monitor``, ``retrain``;
* :mod:`~raypipe.config.root`: :class:`PipelineConfig`; its ``features:`` section is
  :data:`raypipe.features.steps.FeatureStep`, owned by the feature steps;
* :mod:`~raypipe.config.loader`, :mod:`~raypipe.config.validation_errors`,
  :mod:`~raypipe.config.check`: loading, error messages, static checks.

Example::

    cfg = load_config("configs/quickstart.yaml", profile="test", overrides=["model.num_boost_round=50"])
    cfg.model.task  # 'binary_classification'
    cfg.model_seed  # model.seed, else data.split.seed
"""

from raypipe.config.base import parse_span
from raypipe.config.check import check_config, local_paths
from raypipe.config.data import ColumnSpec, ColumnType, DataConfig, SchemaConfig, SplitConfig, ValidationConfig
from raypipe.config.loader import load_config, parse_config
from raypipe.config.model import (
    EvaluateConfig,
    GatesConfig,
    ModelConfig,
    RegistryConfig,
    SearchDim,
    Task,
    TrainingConfig,
    TuneConfig,
    VsChampionGate,
)
from raypipe.config.root import ClusterConfig, OutputConfig, PipelineConfig
from raypipe.config.serving import (
    AuthConfig,
    AutoscalingConfig,
    BatchingConfig,
    DriftConfig,
    HttpConfig,
    MonitorConfig,
    PerformanceTrigger,
    RetrainConfig,
    ServeConfig,
)
from raypipe.config.sources import (
    BROKER_TYPES,
    SOURCE_TYPES,
    ApiAuth,
    ApiPagination,
    ApiSource,
    CsvSource,
    JsonSource,
    KafkaSubscription,
    MqttSubscription,
    NatsSubscription,
    ParquetSource,
    RedisSubscription,
    Source,
    SqlBound,
    SqlIncremental,
    SqlPartition,
    SqlSource,
    StreamSource,
    Subscription,
    TextSource,
    UnionSource,
)
from raypipe.features.steps import (
    FEATURE_TYPES,
    BucketizeStep,
    CategoricalStep,
    ClipStep,
    DatetimePartsStep,
    DropStep,
    ExpressionStep,
    FeatureStep,
    ImputeStep,
    Log1pStep,
    MinMaxScaleStep,
    OneHotStep,
    OrdinalStep,
    RobustScaleStep,
    StandardScaleStep,
)


__all__ = [
    # loading and checking
    "load_config",
    "parse_config",
    "check_config",
    "local_paths",
    "parse_span",
    # the root and its sections
    "PipelineConfig",
    "ClusterConfig",
    "OutputConfig",
    # data
    "DataConfig",
    "Source",
    "SOURCE_TYPES",
    "CsvSource",
    "ParquetSource",
    "JsonSource",
    "TextSource",
    "SqlBound",
    "SqlPartition",
    "SqlIncremental",
    "SqlSource",
    "ApiAuth",
    "ApiPagination",
    "ApiSource",
    "StreamSource",
    "Subscription",
    "BROKER_TYPES",
    "MqttSubscription",
    "NatsSubscription",
    "RedisSubscription",
    "KafkaSubscription",
    "UnionSource",
    "ColumnType",
    "ColumnSpec",
    "SchemaConfig",
    "ValidationConfig",
    "SplitConfig",
    # features (owned by raypipe.features)
    "FeatureStep",
    "FEATURE_TYPES",
    "ImputeStep",
    "OneHotStep",
    "OrdinalStep",
    "CategoricalStep",
    "StandardScaleStep",
    "MinMaxScaleStep",
    "RobustScaleStep",
    "ClipStep",
    "Log1pStep",
    "BucketizeStep",
    "DatetimePartsStep",
    "ExpressionStep",
    "DropStep",
    # model, tune, evaluate, registry
    "Task",
    "TrainingConfig",
    "ModelConfig",
    "SearchDim",
    "TuneConfig",
    "VsChampionGate",
    "GatesConfig",
    "EvaluateConfig",
    "RegistryConfig",
    # serve, monitor, retrain
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
