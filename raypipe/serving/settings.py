"""What an endpoint replica is built from: typed settings resolved on the driver.

:func:`endpoint_settings` checks the model reference and the API keys where the user
runs ``raypipe serve`` (so a bad reference or key file fails before anything deploys)
and hands each replica a frozen :class:`EndpointSettings`: the config's own typed
``serve`` and ``monitor`` sections, never a dict read back by string keys.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from raypipe.config import MonitorConfig, PipelineConfig, ServeConfig
from raypipe.errors import ConfigError
from raypipe.registry import resolve_model, resolve_version
from raypipe.runtime.storage import absolute_uri, join_uri, resolve
from raypipe.serving.request import load_api_key_hashes

__all__ = ["EndpointSettings", "endpoint_settings", "deployment_options", "id_key"]

log = logging.getLogger("raypipe.serve")


@dataclass(frozen=True)
class EndpointSettings:
    """Everything a replica needs (pickled once per replica by Ray Serve).

    Attributes:
        registry_uri: absolute registry location.
        model_name: the registered model.
        model: the reference followed (an alias such as ``champion``) or a version.
        serve: the ``serve`` config section.
        monitor: the ``monitor`` config section, ``log_uri`` absolute.
        api_key_hashes: SHA-256 hashes of the accepted keys; ``None``: each replica
            reads ``serve.auth`` from its own environment (``serve deploy``).
        id_key: the secret every replica tags prediction ids with (HMAC), so
            ``/feedback`` on any replica knows an id this deployment issued.
    """

    registry_uri: str
    model_name: str
    model: str
    serve: ServeConfig
    monitor: MonitorConfig
    api_key_hashes: tuple[str, ...] | None = None
    id_key: bytes = b""


def endpoint_settings(cfg: PipelineConfig, model: str | None = None, with_keys: bool = True) -> EndpointSettings:
    """The replica settings of ``cfg``, checked here so a bad model or key file fails before deploying.

    Args:
        cfg: the pipeline config (registry, serve, monitor sections).
        model: ``NAME@REF``, or a reference (alias or version) of the config's model;
            default ``serve.model`` (``champion``).
        with_keys: read the API keys now and pass their hashes (``raypipe serve``); with
            ``False`` replicas read them from their own environment (``serve deploy``).

    Raises:
        ConfigError: a malformed reference, unset key variable or unreadable key file.
        StageError: the model or reference is not in the registry.
    """
    name, ref = resolve_model(cfg, model)
    uri = absolute_uri(cfg.registry.uri)
    version = resolve_version(cfg, model, "serve")
    hashes = None
    if with_keys:
        try:
            hashes = tuple(load_api_key_hashes(cfg.serve.auth.api_keys_env, cfg.serve.auth.api_keys_file))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    log.info("serve: %s@%s is version %s", name, ref, version.version)
    log_uri = absolute_uri(cfg.monitor.log_uri)
    return EndpointSettings(
        registry_uri=uri,
        model_name=name,
        model=ref,
        serve=cfg.serve,
        monitor=cfg.monitor.model_copy(update={"log_uri": log_uri}),
        api_key_hashes=hashes,
        id_key=id_key(join_uri(log_uri, name)) if cfg.monitor.enabled else secrets.token_bytes(32),
    )


def id_key(log_root: str) -> bytes:
    """The prediction-id key of the model whose log is ``log_root``: read from its
    ``.id-key`` file (a dot-file: log readers skip it), created on first use. Kept
    with the log, so ids issued before a redeploy or restart still take feedback."""
    fs, path = resolve(join_uri(log_root, ".id-key"), "monitor.log_uri")
    try:
        with fs.open_input_stream(path) as f:
            key = f.read()
        if len(key) >= 32:
            return key
    except (FileNotFoundError, OSError):
        pass
    key = secrets.token_bytes(32)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(key)
    return key


def deployment_options(cfg: PipelineConfig) -> dict[str, Any]:
    """``Deployment.options`` from the ``serve`` section."""
    s = cfg.serve
    a = s.autoscaling
    return {
        "name": "Endpoint",
        "max_ongoing_requests": s.max_ongoing_requests,
        # A replica that dies takes its in-flight requests with it: Serve retries what it
        # had not sent; the health check finds a hung replica.
        "health_check_period_s": 2.0,
        "health_check_timeout_s": 10.0,
        "ray_actor_options": {"num_cpus": s.replica_cpus},
        "logging_config": {"enable_access_log": s.access_log},
        "autoscaling_config": {
            "min_replicas": a.min_replicas,
            "initial_replicas": max(a.min_replicas, 1),
            "max_replicas": a.max_replicas,
            "target_ongoing_requests": a.target_ongoing_requests,
            "upscale_delay_s": a.upscale_delay_s,
            "downscale_delay_s": a.downscale_delay_s,
        },
    }
