"""Driver side of serving: resolve the model, deploy the Serve application, export its config."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from raypipe.config import PipelineConfig, absolute_uri
from raypipe.errors import ConfigError, StageError

__all__ = ["endpoint_settings", "deployment_options", "serve_model", "export_serve_config", "ServeInfo"]

log = logging.getLogger("raypipe.serve")


def endpoint_settings(cfg: PipelineConfig, model: str | None = None, with_keys: bool = True) -> dict[str, Any]:
    """What each replica needs, checked here so a bad model or key file fails before deploying.

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
    from raypipe.registry import ModelRegistry, RegistryError, parse_model_ref
    from raypipe.serving.request import load_api_key_hashes

    name, ref = cfg.model_name, cfg.serve.model
    if model:
        try:
            if "@" in model:
                name, parsed = parse_model_ref(model)
                ref = str(parsed) if parsed is not None else ref
            else:
                ref = model
        except RegistryError as exc:
            raise ConfigError(f"--model: {exc}") from None
    uri = absolute_uri(cfg.registry.uri)
    try:
        version = ModelRegistry(uri).get(name, ref)
    except RegistryError as exc:
        raise StageError(
            f"serve: cannot serve {name}@{ref} from registry {cfg.registry.uri}: {exc} "
            "Hint: train and register one first with `raypipe run CONFIG`, or pick a version with --model NAME@VERSION."
        ) from None
    hashes = None
    if with_keys:
        try:
            hashes = load_api_key_hashes(cfg.serve.auth.api_keys_env, cfg.serve.auth.api_keys_file)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    log.info("serve: %s@%s is version %s", name, ref, version.version)
    return {
        "registry_uri": uri,
        "model_name": name,
        "model": ref,
        "serve": cfg.serve.model_dump(mode="json"),
        "monitor": {**cfg.monitor.model_dump(mode="json"), "log_uri": absolute_uri(cfg.monitor.log_uri)},
        "api_key_hashes": hashes,
    }


def deployment_options(cfg: PipelineConfig) -> dict[str, Any]:
    """``Deployment.options`` from the ``serve`` section."""
    s = cfg.serve
    a = s.autoscaling
    return {
        "name": "Endpoint",
        "max_ongoing_requests": s.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": s.replica_cpus},
        "autoscaling_config": {
            "min_replicas": a.min_replicas,
            "initial_replicas": max(a.min_replicas, 1),
            "max_replicas": a.max_replicas,
            "target_ongoing_requests": a.target_ongoing_requests,
            "upscale_delay_s": a.upscale_delay_s,
            "downscale_delay_s": a.downscale_delay_s,
        },
    }


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServeInfo(dict):
    """What :func:`serve_model` deployed: ``url``, ``app``, ``model`` (name, version), ``auth``."""


def serve_model(cfg: PipelineConfig, model: str | None = None, address: str | None = None) -> ServeInfo:
    """Deploy (or update) the endpoint on Ray Serve and wait until it answers.

    Connects to the configured Ray (or starts a local one), starts Serve's HTTP
    proxy on ``serve.http`` and runs the application named after the pipeline.

    Returns:
        A :class:`ServeInfo` describing the running endpoint.
    """
    from ray import serve

    from raypipe.pipeline import connect
    from raypipe.serving.app import Endpoint

    settings = endpoint_settings(cfg, model)
    host, port = cfg.serve.http.host, cfg.serve.http.port
    if not settings["api_key_hashes"] and not _is_loopback(host):
        log.warning(
            "serve: WARNING: the endpoint listens on %s without authentication: anyone who can reach it can call it. "
            "Set serve.auth.api_keys_env (or api_keys_file) to require API keys.", host,
        )
    connect(cfg, address)
    if cfg.monitor.enabled:
        from raypipe.monitor.actor import start_monitor

        start_monitor(cfg)  # before the replicas, which look it up by name
    serve.start(http_options={"host": host, "port": port})
    app = Endpoint.options(**deployment_options(cfg)).bind(settings)
    serve.run(app, name=cfg.name, route_prefix="/")
    from raypipe.registry import ModelRegistry

    version = ModelRegistry(settings["registry_uri"]).get(settings["model_name"], settings["model"]).version
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return ServeInfo(
        url=f"http://{shown}:{port}",
        app=cfg.name,
        model={"name": settings["model_name"], "version": version, "ref": settings["model"]},
        auth=bool(settings["api_key_hashes"]),
    )


def export_serve_config(cfg: PipelineConfig, config_path: str, model: str | None = None,
                        profile: str | None = None, overrides: list[str] | tuple = ()) -> dict[str, Any]:
    """A Serve config (for ``serve deploy FILE``) running :func:`raypipe.serving.app.build`.

    The cluster needs raypipe installed and the pipeline config at ``config_path``
    (relative to the job's working directory); replicas read API keys from their own
    environment.
    """
    args: dict[str, Any] = {"config": config_path}
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
