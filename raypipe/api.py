"""The Python API: every ``raypipe`` command as a function, for drivers on a cluster.

Each function takes a config (a path, or a :class:`~raypipe.config.PipelineConfig`), runs
the same checks as the CLI — the config is checked before Ray starts — and returns what
the command prints. They are importable from the package root::

    import raypipe

    result = raypipe.run("configs/quickstart.yaml")            # RunResult
    info = raypipe.serve("configs/quickstart.yaml")            # ServeInfo: url, model, auth
    raypipe.predict("configs/quickstart.yaml", "in.csv", "out.parquet")
    raypipe.open_registry("configs/quickstart.yaml").list_versions("adult-income")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from raypipe.config import PipelineConfig, load_config
from raypipe.config import check_config as _check_loaded
from raypipe.data.ingest import infer_schema_section
from raypipe.data.validate import INFER_SAMPLE_ROWS
from raypipe.inference import batch_predict
from raypipe.loop import retrain as loop_retrain
from raypipe.pipeline import Pipeline, RunResult
from raypipe.registry import ModelRegistry
from raypipe.registry import open_registry as _open_configured
from raypipe.runtime.cluster import connect
from raypipe.serving import ServeInfo, serve_model
from raypipe.streams.consumer import ingest_stream as _run_consumers

__all__ = ["check_config", "run", "serve", "predict", "retrain", "ingest_stream", "infer_schema", "open_registry"]

Config = str | os.PathLike | PipelineConfig


def _load(config: Config, profile: str | None, overrides: Sequence[str]) -> tuple[PipelineConfig, str]:
    """The typed config and where it came from (for messages)."""
    if isinstance(config, PipelineConfig):
        if profile or overrides:
            raise TypeError("profile and overrides apply to a config file; pass a path, or change the PipelineConfig itself.")
        return config, "<config>"
    return load_config(config, profile=profile, overrides=list(overrides)), os.fspath(config)


def _loaded_and_checked(config: Config, profile: str | None, overrides: Sequence[str]) -> tuple[PipelineConfig, str]:
    cfg, where = _load(config, profile, overrides)
    _check_loaded(cfg, where)
    return cfg, where


def _connect(cfg: PipelineConfig, address: str | None) -> None:
    connect(address, **cfg.cluster.connect_options())


def check_config(config: Config, *, profile: str | None = None, overrides: Sequence[str] = ()) -> list[str]:
    """Check a config without starting Ray (``raypipe validate``): keys, types, paths,
    columns, label. Returns the warnings.

    Raises:
        ConfigError: every problem found, in one message.
    """
    cfg, where = _load(config, profile, overrides)
    return _check_loaded(cfg, where)


def run(config: Config, *, until: str | None = None, address: str | None = None, profile: str | None = None,
        overrides: Sequence[str] = (), trigger: str | dict[str, Any] = "manual", promote: bool = True) -> RunResult:
    """Run the batch pipeline (``raypipe run``): ingest → … → register and gate.

    Args:
        config: path of the YAML config, or a loaded config.
        until: last stage to run (``ingest``, ``split``, …); ``None`` runs all.
        address: Ray cluster to use (default: ``cluster.address``, ``RAY_ADDRESS``, else a local Ray).
        profile, overrides: as ``--profile`` and ``--set PATH=VALUE``.
        trigger: why the run happens (recorded in the lineage and the registry).
        promote: make a candidate that passes its gates champion.

    Raises:
        ConfigError: the config is wrong (found before Ray starts).
        RaypipeError: a data or stage failure; the run report is still written.
    """
    cfg, where = _loaded_and_checked(config, profile, overrides)
    return Pipeline(cfg, config_path=None if where == "<config>" else where, address=address).run(
        until=until, trigger=trigger, promote=promote)


def serve(config: Config, *, model: str | None = None, address: str | None = None, profile: str | None = None,
          overrides: Sequence[str] = (), retrain: bool = True) -> ServeInfo:
    """Deploy the model as an autoscaling HTTP endpoint with its monitor (``raypipe serve``).

    Returns once the endpoint answers; it runs until Serve is shut down (``ray.serve.shutdown()``).

    Args:
        model: ``NAME@ALIAS`` (followed live) or ``NAME@VERSION``; default ``serve.model``.
        retrain: let the monitor retrain by the config's ``retrain`` policy (the closed
            loop); ``False`` only alerts.
    """
    cfg, _ = _load(config, profile, overrides)  # serving needs the registry, not the training data
    return serve_model(cfg, model, address, retrain=loop_retrain if retrain else None)


def predict(config: Config, input_uri: str, output_uri: str, *, model: str | None = None, address: str | None = None,
            profile: str | None = None, overrides: Sequence[str] = (), overwrite: bool = False, folder: bool = False,
            output_format: str | None = None) -> dict[str, Any]:
    """Batch inference with Ray Data (``raypipe predict``): the same bundle as the endpoint.

    ``output_uri`` ending in ``.csv``/``.parquet``/``.jsonl`` is one file (a folder of
    parts with ``folder=True`` or a name without extension); an existing output is
    refused unless ``overwrite``, which replaces output and quarantine together.

    Returns:
        ``{"model", "rows": {"input", "predicted", "quarantined"}, "output", "quarantine"}``.
    """
    cfg, _ = _load(config, profile, overrides)
    return batch_predict(cfg, input_uri, output_uri, model, address, overwrite=overwrite, folder=folder, output_format=output_format)


def retrain(config: Config, *, address: str | None = None, profile: str | None = None, overrides: Sequence[str] = (),
            trigger: dict[str, Any] | None = None) -> dict[str, Any]:
    """Retrain now (``raypipe retrain``): the configured sources plus labeled production
    data, gated against the champion, promoted if better and ``retrain.auto_promote``."""
    cfg, _ = _loaded_and_checked(config, profile, overrides)
    _connect(cfg, address)
    return loop_retrain(cfg, trigger or {"kind": "manual", "by": "raypipe.retrain"}, address)


def ingest_stream(config: Config, *, address: str | None = None, max_messages: int | None = None,
                  duration_s: float | None = None, subscriptions: Sequence[str] | None = None,
                  on_event: Callable[[str, str, dict[str, Any]], None] | None = None,
                  profile: str | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Land a ``type: stream`` source's messages as Parquet (``raypipe ingest-stream``)
    until Ctrl-C, ``duration_s``, or ``max_messages`` per subscription."""
    cfg, _ = _load(config, profile, overrides)
    return _run_consumers(cfg, address, max_messages, duration_s, list(subscriptions) if subscriptions else None, on_event)


def infer_schema(config: Config, *, address: str | None = None, sample_rows: int = INFER_SAMPLE_ROWS, profile: str | None = None,
                 overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Infer a ``data.schema`` section from the first ``sample_rows`` rows of the source
    (``raypipe infer-schema``): each column's type and nullability, the roles (label,
    weight, id) kept; exactly the schema a run with empty ``data.schema.columns`` uses."""
    cfg, _ = _load(config, profile, overrides)
    _connect(cfg, address)
    return infer_schema_section(cfg, sample_rows=sample_rows)


def open_registry(config: Config, *, profile: str | None = None, overrides: Sequence[str] = ()) -> ModelRegistry:
    """The config's model registry (``raypipe models …``)."""
    return _open_configured(_load(config, profile, overrides)[0])
