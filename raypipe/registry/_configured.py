"""The registry a pipeline config names, and the version a ``--model`` value picks there.

One resolution of ``--model`` (``NAME@REF``, a bare alias or version, or nothing: the
config's model at ``serve.model``) for everything that loads a model: the endpoint,
batch prediction and the CLI.
"""

from __future__ import annotations

from raypipe.config import PipelineConfig
from raypipe.errors import ConfigError, StageError
from raypipe.registry._errors import RegistryError
from raypipe.registry._records import ModelVersion, split_model_ref
from raypipe.registry._registry import ModelRegistry
from raypipe.runtime.storage import absolute_uri

__all__ = ["open_registry", "resolve_model", "resolve_version"]


def open_registry(cfg: PipelineConfig) -> ModelRegistry:
    """The registry at ``registry.uri`` (made absolute: Ray workers share it)."""
    return ModelRegistry(absolute_uri(cfg.registry.uri))


def resolve_model(cfg: PipelineConfig, model: str | None = None) -> tuple[str, str]:
    """``(name, reference)`` of ``--model``, defaulting to the config's model and ``serve.model``.

    Raises:
        ConfigError: a malformed ``NAME@REF``.
    """
    try:
        name, ref = split_model_ref(model, cfg.model_name, cfg.serve.model)
    except RegistryError as exc:
        raise ConfigError(f"--model: {exc}") from None
    return name, str(ref)


def resolve_version(cfg: PipelineConfig, model: str | None = None, verb: str = "serve") -> ModelVersion:
    """The registered version ``model`` names now (see :func:`resolve_model`).

    Raises:
        ConfigError: a malformed reference.
        StageError: the model or reference is not in the registry (with a hint).
    """
    name, ref = resolve_model(cfg, model)
    try:
        return open_registry(cfg).get(name, ref)
    except RegistryError as exc:
        raise StageError(
            f"{verb}: cannot {verb} {name}@{ref} from registry {cfg.registry.uri}: {exc} "
            "Hint: train and register one first with `raypipe run CONFIG`, or pick a version with --model NAME@VERSION."
        ) from None
