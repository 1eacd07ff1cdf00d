"""raypipe: config-driven ML pipelines on Ray.

One YAML file takes raw data through ingest, validation and transforms (Ray Data),
XGBoost training and tuning (Ray Train, Ray Tune), evaluation and a gated model
registry, to a monitored prediction endpoint (Ray Serve).

Every command is a function here, with the same checks as the CLI::

    import raypipe

    result = raypipe.run("configs/quickstart.yaml")
    print(result.summary())
    info = raypipe.serve("configs/quickstart.yaml")      # info["url"]

Names are imported on first use, so ``import raypipe`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "check_config": "raypipe.api",
    "run": "raypipe.api",
    "serve": "raypipe.api",
    "predict": "raypipe.api",
    "retrain": "raypipe.api",
    "ingest_stream": "raypipe.api",
    "infer_schema": "raypipe.api",
    "open_registry": "raypipe.api",
    "Pipeline": "raypipe.pipeline",
    "RunResult": "raypipe.pipeline",
    "PipelineConfig": "raypipe.config",
    "load_config": "raypipe.config",
    "ModelRegistry": "raypipe.registry",
    "ModelBundle": "raypipe.bundle",
    "RaypipeError": "raypipe.errors",
    "ConfigError": "raypipe.errors",
    "DataError": "raypipe.errors",
    "SchemaError": "raypipe.errors",
    "ValidationError": "raypipe.errors",
    "StageError": "raypipe.errors",
    "GateRejected": "raypipe.errors",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'raypipe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
