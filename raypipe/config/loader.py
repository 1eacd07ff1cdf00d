"""Reading a config file: YAML, ``${VAR}`` / ``${VAR:-default}`` from the environment, a
profile overlaid, ``--set dotted.path=value`` overrides, then validation into
:class:`~raypipe.config.PipelineConfig`. Every mistake is a
:class:`~raypipe.errors.ConfigError` that names the file and the dotted path.

Example::

    cfg = load_config("configs/quickstart.yaml", profile="test", overrides=["model.num_boost_round=50"])
    cfg.model.task  # 'binary_classification'
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from raypipe.config.root import PipelineConfig
from raypipe.config.validation_errors import dotted_path, format_errors
from raypipe.errors import ConfigError, did_you_mean

__all__ = ["load_config", "parse_config"]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(node: Any, where: str, path: tuple = ()) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, where, path + (k,)) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, where, path + (i,)) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def sub(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{where}: {dotted_path(path)}: environment variable ${{{name}}} is not set. "
            f"Hint: export {name}=... or write ${{{name}:-default}}."
        )

    return _ENV.sub(sub, node)


def _deep_merge(base: dict, overlay: dict) -> dict:
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


_SET_PATH = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)((?:\[\d+\])*)")


def _apply_override(raw: dict, override: str, where: str) -> None:
    if "=" not in override:
        raise ConfigError(f"{where}: --set {override!r}: expected dotted.path=value, e.g. model.num_boost_round=50.")
    dotted, _, text = override.partition("=")
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: --set {dotted}: value {text!r} is not valid YAML ({exc}).") from exc
    keys: list[str | int] = []
    for part in dotted.split("."):
        match = _SET_PATH.fullmatch(part)
        if not match:
            raise ConfigError(f"{where}: --set {dotted}: {part!r} is not a key (expected name or name[index]).")
        keys.append(match.group(1))
        keys.extend(int(i) for i in re.findall(r"\[(\d+)\]", match.group(2)))
    node: Any = raw
    for i, key in enumerate(keys[:-1]):
        nxt = keys[i + 1]
        if isinstance(key, int):
            if not isinstance(node, list) or key >= len(node):
                raise ConfigError(f"{where}: --set {dotted}: {dotted_path(tuple(keys[: i + 1]))} has no such list item.")
            node = node[key]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: --set {dotted}: {dotted_path(tuple(keys[:i]))} is not a mapping.")
            node = node.setdefault(key, [] if isinstance(nxt, int) else {})
    last = keys[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"{where}: --set {dotted}: no list item [{last}].")
    elif not isinstance(node, dict):
        raise ConfigError(f"{where}: --set {dotted}: {dotted_path(tuple(keys[:-1]))} is not a mapping.")
    node[last] = value


def parse_config(raw: Any, where: str = "<config>", profile: str | None = None, overrides: list[str] | tuple = ()) -> PipelineConfig:
    """Validate an already-parsed YAML mapping (see :func:`load_config`).

    Raises:
        ConfigError: the mapping, profile or an override is invalid.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a YAML mapping at the top level, got {type(raw).__name__}.")
    raw = _interpolate(raw, where)
    if profile:
        profiles = raw.get("profiles") or {}
        if profile not in profiles:
            raise ConfigError(
                f"{where}: --profile {profile!r} is not defined in profiles.{did_you_mean(profile, profiles)}"
                f" Defined: {', '.join(profiles) or 'none'}."
            )
        overlay = profiles[profile]
        if not isinstance(overlay, dict):
            raise ConfigError(f"{where}: profiles.{profile}: expected a mapping, got {type(overlay).__name__}.")
        raw = _deep_merge(raw, overlay)
    raw = copy.deepcopy(raw)
    for override in overrides:
        _apply_override(raw, override, "command line")
    try:
        return PipelineConfig.model_validate(raw)
    except PydanticValidationError as exc:
        raise ConfigError(_blame_overrides(format_errors(exc, raw, where), where, overrides)) from None


def _blame_overrides(message: str, where: str, overrides: list[str] | tuple) -> str:
    """Errors at a path a ``--set`` wrote name the command line, not the file."""
    set_paths = {o.partition("=")[0]: o for o in overrides if "=" in o}
    lines = []
    for line in message.splitlines():
        rest = line.removeprefix(f"{where}: ")
        path = rest.partition(":")[0]
        hit = next((o for p, o in set_paths.items() if path == p or path.startswith((p + ".", p + "["))), None)
        lines.append(f"command line: --set {hit}: {rest}" if hit is not None else line)
    return "\n".join(lines)


def load_config(path: str | os.PathLike, profile: str | None = None, overrides: list[str] | tuple = ()) -> PipelineConfig:
    """Read, interpolate, overlay and validate a pipeline config file.

    Args:
        path: the YAML file.
        profile: name of an entry of ``profiles:`` merged over the file.
        overrides: ``dotted.path=value`` strings (``features[0].strategy=mean``);
            values are parsed as YAML scalars.

    Raises:
        ConfigError: the file is missing, not YAML, or does not validate; the
            message names the file and the dotted path of each problem.
    """
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the config file ({exc.strerror or exc}).") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    return parse_config(raw, where, profile, overrides)
