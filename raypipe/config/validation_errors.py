"""pydantic validation errors as raypipe messages: file, dotted path, what was expected,
what was given, and the closest valid name for an unknown key or ``type``.

    q.yaml: features[2].type: unknown type 'standard_scaller'. Did you mean 'standard_scale'? Expected one of: ...
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from raypipe.config.root import PipelineConfig
from raypipe.config.sources import BROKER_TYPES, SOURCE_TYPES
from raypipe.errors import did_you_mean
from raypipe.features.steps import FEATURE_TYPES

__all__ = ["dotted_path", "format_errors"]


def dotted_path(path: tuple) -> str:
    """A location as users write it: ``('features', 2, 'columns')`` is ``features[2].columns``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _unwrap(annotation: Any, raw: Any) -> Any:
    """The model class an annotation holds for this raw value (through Optional, list, dict, unions)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0], raw)
    if origin in (Union, types.UnionType):
        candidates = [a for a in typing.get_args(annotation) if a is not type(None)]
        tagged = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel) and "type" in c.model_fields]
        if tagged and isinstance(raw, dict):
            for cls in tagged:
                if raw.get("type") in typing.get_args(cls.model_fields["type"].annotation):
                    return cls
            return None
        for cand in candidates:
            found = _unwrap(cand, raw)
            if found is not None:
                return found
        return None
    return annotation


def _model_at(loc: tuple, raw: Any) -> type[BaseModel] | None:
    """Walk a pydantic error location to the model class that owns its last key."""
    cls: Any = PipelineConfig
    node = raw
    for part in loc[:-1]:
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            field = cls.model_fields.get(part) or next(
                (f for f in cls.model_fields.values() if f.alias == part), None
            )
            if field is None:
                return None
            node = node.get(part) if isinstance(node, dict) else None
            cls = _unwrap(field.annotation, node)
        else:
            origin = typing.get_origin(cls)
            if origin in (list, dict):
                args = typing.get_args(cls)
                try:
                    node = node[part]
                except (KeyError, IndexError, TypeError):
                    node = None
                cls = _unwrap(args[-1], node)
            else:
                return None
        if cls is None:
            return None
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


_TAGS = set(SOURCE_TYPES) | set(FEATURE_TYPES) | set(BROKER_TYPES)


def _clean_loc(loc: tuple) -> tuple:
    # pydantic puts the union tag into the location (features.2.impute.strategy);
    # users wrote features[2].strategy.
    return tuple(
        p for i, p in enumerate(loc) if not (i and p in _TAGS and (isinstance(loc[i - 1], int) or loc[i - 1] == "source"))
    )


def format_errors(exc: PydanticValidationError, raw: dict, where: str) -> str:
    """One line per error of ``exc``, validating ``raw`` (the mapping as read) from file ``where``."""
    lines = []
    for err in exc.errors():
        loc = _clean_loc(tuple(err["loc"]))
        etype = err["type"]
        got = err.get("input")
        if etype == "extra_forbidden":
            owner = _model_at(loc, raw)
            known = [f.alias or n for n, f in owner.model_fields.items()] if owner else []
            parent = dotted_path(loc[:-1]) if loc[:-1] else "the top level"
            lines.append(
                f"{where}: {dotted_path(loc)}: unknown key '{loc[-1]}' in {parent}.{did_you_mean(loc[-1], known)}"
                + (f" Expected one of: {', '.join(sorted(known))}." if known else "")
            )
        elif etype == "union_tag_invalid":
            expected = err.get("ctx", {}).get("expected_tags", "")
            tags = [t.strip().strip("'") for t in str(expected).split(",")]
            tag = err.get("ctx", {}).get("tag")
            lines.append(
                f"{where}: {dotted_path(loc)}.type: unknown type '{tag}'.{did_you_mean(tag, tags)} Expected one of: {', '.join(tags)}."
            )
        elif etype == "union_tag_not_found":
            lines.append(f"{where}: {dotted_path(loc)}: missing 'type' key (expected one of: {', '.join(sorted(_TAGS))}).")
        elif etype == "missing":
            lines.append(f"{where}: {dotted_path(loc)}: required key is missing.")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            shown = "" if isinstance(got, dict) else f" Got {got!r}."
            lines.append(f"{where}: {dotted_path(loc)}: {msg}.{shown}")
    return "\n".join(lines)
