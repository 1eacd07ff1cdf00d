"""raypipe: config-driven ML pipelines on Ray.

One YAML file takes raw data through ingest, validation and transforms (Ray Data),
XGBoost training and tuning (Ray Train, Ray Tune), evaluation and a gated model
registry, to a monitored prediction endpoint (Ray Serve).

Example::

    from raypipe import Pipeline
    result = Pipeline.from_yaml("configs/quickstart.yaml").run()
    print(result.summary())
"""

from raypipe.config import PipelineConfig, load_config
from raypipe.errors import (
    ConfigError,
    DataError,
    GateRejected,
    RaypipeError,
    SchemaError,
    StageError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "Pipeline",
    "RunResult",
    "PipelineConfig",
    "load_config",
    "RaypipeError",
    "ConfigError",
    "DataError",
    "SchemaError",
    "ValidationError",
    "StageError",
    "GateRejected",
]


def __getattr__(name: str):
    # Pipeline pulls in the stage modules; keep `import raypipe` (and the CLI's
    # `validate`) free of that cost until it is used.
    if name in ("Pipeline", "RunResult"):
        from raypipe import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'raypipe' has no attribute {name!r}")
