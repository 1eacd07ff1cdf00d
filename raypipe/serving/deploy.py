"""Driver side of serving: resolve the model, deploy the Serve application, export its config."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from ray import serve

from raypipe.config import PipelineConfig
from raypipe.monitor.actor import Retrain, start_monitor
from raypipe.registry import ModelRegistry
from raypipe.runtime.cluster import LOCAL_RAY_ENV, SERVE_FAST_PATH_ENV, connect
from raypipe.runtime.haproxy import RETRY_ON
from raypipe.serving.app import DEFAULT_RETRAIN, Endpoint
from raypipe.serving.settings import deployment_options, endpoint_settings

__all__ = ["serve_model", "export_serve_config", "cluster_env", "export_notes", "ServeInfo"]

log = logging.getLogger("raypipe.serve")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServeInfo(dict):
    """What :func:`serve_model` deployed: ``url``, ``app``, ``model`` (name, version), ``auth``."""


def serve_model(cfg: PipelineConfig, model: str | None = None, address: str | None = None,
                retrain: Retrain | None = None) -> ServeInfo:
    """Deploy (or update) the endpoint on Ray Serve and wait until it answers.

    Connects to the configured Ray (or starts a local one), starts the model's monitor
    (when ``monitor.enabled``), Serve's HTTP proxy on ``serve.http`` and the application
    named after the pipeline.

    Args:
        cfg: the pipeline config.
        model: ``NAME@REF`` or a reference (default ``serve.model``).
        address: Ray address overriding ``cluster.address``.
        retrain: what the monitor runs when its policy asks for a retraining
            (:func:`raypipe.serve` passes :func:`raypipe.loop.retrain`); ``None`` alerts only.

    Returns:
        A :class:`ServeInfo` describing the running endpoint.
    """
    settings = endpoint_settings(cfg, model)
    host, port = cfg.serve.http.host, cfg.serve.http.port
    if not settings.api_key_hashes and not _is_loopback(host):
        log.warning(
            "serve: WARNING: the endpoint listens on %s without authentication: anyone who can reach it can call it. "
            "Set serve.auth.api_keys_env (or api_keys_file) to require API keys.", host,
        )
    connect(address, **cfg.cluster.connect_options(service=True), serve_fast_path=cfg.serve.fast_path)
    if cfg.monitor.enabled:
        start_monitor(cfg, retrain)  # before the replicas, which look it up by name
    serve.start(http_options={"host": host, "port": port})
    app = Endpoint.options(**deployment_options(cfg)).bind(settings)
    serve.run(app, name=cfg.name, route_prefix="/")
    version = ModelRegistry(settings.registry_uri).get(settings.model_name, settings.model).version
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return ServeInfo(
        url=f"http://{shown}:{port}",
        app=cfg.name,
        model={"name": settings.model_name, "version": version, "ref": settings.model},
        auth=bool(settings.api_key_hashes),
    )


def export_serve_config(cfg: PipelineConfig, config_path: str, model: str | None = None,
                        profile: str | None = None, overrides: list[str] | tuple = ()) -> dict[str, Any]:
    """A Serve config (for ``serve deploy FILE``) running :func:`raypipe.serving.app.build`.

    The cluster needs raypipe installed and the pipeline config at ``config_path``
    (relative to the job's working directory); replicas read API keys from their own
    environment.
    """
    args: dict[str, Any] = {"config": config_path, "retrain": DEFAULT_RETRAIN}
    if model:
        args["model"] = model
    if profile:
        args["profile"] = profile
    if overrides:
        args["set"] = list(overrides)
    options = deployment_options(cfg)
    deployment = {"name": options.pop("name"), **options}
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": cfg.serve.http.host, "port": cfg.serve.http.port},
        "applications": [
            {
                "name": cfg.name,
                "route_prefix": "/",
                "import_path": "raypipe.serving.app:build",
                "args": args,
                "runtime_env": dict(cfg.cluster.runtime_env),
                "deployments": [deployment],
            }
        ],
    }


def cluster_env(cfg: PipelineConfig) -> dict[str, str]:
    """The environment every node of a cluster needs, where it is started, to serve ``cfg``
    as a local Ray of raypipe's does: :data:`~raypipe.runtime.cluster.LOCAL_RAY_ENV`, and
    with ``serve.fast_path`` the HAProxy ingress, the throughput-optimized mode and the
    retry policy. Ray reads them when it starts; a Serve config cannot set them."""
    env = dict(LOCAL_RAY_ENV)
    if cfg.serve.fast_path:
        env.update(SERVE_FAST_PATH_ENV, RAY_SERVE_HAPROXY_RETRY_ON=RETRY_ON)
    return env


def export_notes(cfg: PipelineConfig) -> list[str]:
    """Comment lines for the top of the ``--export-config`` file: the cluster's environment
    (:func:`cluster_env`) and what the fast path exposes there."""
    env = " ".join(f"{key}={value!r}" if " " in value else f"{key}={value}" for key, value in cluster_env(cfg).items())
    lines = [
        f"Serve config of {cfg.name!r} written by `raypipe serve --export-config`; deploy it with `serve deploy FILE`.",
        "Start every node of the cluster with this environment (Ray reads it at start; this file cannot set it):",
        f"  {env} ray start ...",
    ]
    if cfg.serve.fast_path:
        lines += [
            "serve.fast_path: HAProxy on each node answers on http_options; its stats (8404) and Prometheus (9101)",
            "ports and the replicas' ports listen on every interface there: keep them behind the cluster's firewall.",
        ]
    else:
        lines.append("serve.fast_path is false: Ray's own Python proxy answers on http_options.")
    return lines
