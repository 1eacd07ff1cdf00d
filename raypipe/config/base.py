"""What every config section is built from: the base model, list coercion, time spans."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["ConfigModel", "as_list", "parse_span"]


class ConfigModel(BaseModel):
    """Base of every config model: immutable, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def as_list(value: Any) -> Any:
    """A lone string as a one-element list (a ``mode="before"`` field validator).

    A single path is the common case in YAML: ``paths: data.csv`` means ``[data.csv]``.
    """
    return [value] if isinstance(value, str) else value


_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SPAN_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_span(text: str) -> float:
    """Seconds in a span such as ``'90d'``, ``'12h'``, ``'2w'``, ``'30m'`` or ``'45s'``.

    >>> parse_span("90d")
    7776000.0
    """
    m = _SPAN.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"expected a positive span like '90d', '12h', '2w', '30m' or '45s', got {text!r}")
    return float(m.group(1)) * _SPAN_SECONDS[m.group(2)]
