"""What the registry hands out: model versions, events, and "NAME@REF" references."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from raypipe.registry._errors import InvalidReferenceError

__all__ = [
    "EVENT_TYPES",
    "VERSION_STATUSES",
    "ModelVersion",
    "RegistryEvent",
    "parse_model_ref",
    "split_model_ref",
]

EVENT_TYPES: tuple[str, ...] = (
    "registered",
    "promoted",
    "rejected",
    "rolled_back",
    "retrain_triggered",
    "retrain_finished",
    "alert",
    "alias_set",
    "abandoned",
)
"""The kinds of entries in a model's ``events.jsonl``."""

VERSION_STATUSES: tuple[str, ...] = ("candidate", "champion", "rejected", "archived")
"""``candidate``: registered, never promoted; ``champion``: the ``champion``
alias points at it; ``rejected``: failed its gates (or rejected by hand);
``archived``: was champion, then replaced or rolled back."""

CHAMPION = "champion"
LATEST = "latest"

# Names become path components on every filesystem, object stores included.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


def check_model_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidReferenceError(
            f"{where}: model name must be 1-128 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit. Got {name!r} instead."
        )
    return name


def check_alias(alias: Any, where: str) -> str:
    if not isinstance(alias, str) or not _ALIAS_RE.match(alias) or alias == LATEST:
        raise InvalidReferenceError(
            f"{where}: alias must be 1-64 letters, digits, '_' or '-', starting with a letter, "
            f"and not the reserved word '{LATEST}'. Got {alias!r} instead."
        )
    return alias


def check_version(version: Any, where: str) -> int:
    """An int >= 1 from an int or a string of digits."""
    if isinstance(version, bool):
        number = None
    elif isinstance(version, int):
        number = version
    elif isinstance(version, str) and version.isdigit():
        number = int(version)
    else:
        number = None
    if number is None or number < 1:
        raise InvalidReferenceError(f"{where}: a version is an integer >= 1. Got {version!r} instead.")
    return number


def parse_model_ref(ref: str) -> tuple[str, int | str | None]:
    """Split ``"NAME@VERSION"`` / ``"NAME@ALIAS"`` / ``"NAME"`` into ``(name, version_or_alias)``.

    A numeric suffix becomes an ``int``; no ``@`` gives ``None`` (the caller
    picks a default, usually the champion).  ``"latest"`` is a valid reference
    to the highest complete version.

    Raises:
        InvalidReferenceError: empty parts, several ``@``, or an invalid name/alias.

    >>> parse_model_ref("adult@champion")
    ('adult', 'champion')
    >>> parse_model_ref("adult@3")
    ('adult', 3)
    >>> parse_model_ref("adult")
    ('adult', None)
    """
    where = f"model reference {ref!r}"
    if not isinstance(ref, str) or ref.count("@") > 1:
        raise InvalidReferenceError(
            f"{where}: expected 'NAME', 'NAME@VERSION' or 'NAME@ALIAS'. Got {ref!r} instead."
        )
    name, sep, suffix = ref.partition("@")
    check_model_name(name, where)
    if not sep:
        return name, None
    if suffix.isdigit():
        return name, check_version(suffix, where)
    if suffix == LATEST:
        return name, LATEST
    return name, check_alias(suffix, where)


def split_model_ref(model: str | None, default_name: str, default_ref: str | int = CHAMPION) -> tuple[str, str]:
    """``(name, reference)`` named by a ``--model`` value, with defaults for what it leaves out.

    ``"NAME@REF"`` names both; ``"NAME"`` is not told apart from a bare
    reference, so a value without ``@`` is the reference (an alias, a version
    number or ``"latest"``) of ``default_name``; ``None`` or ``""`` gives both
    defaults.  A bare reference is returned unchecked:
    :meth:`ModelRegistry.get <raypipe.registry.ModelRegistry.get>` checks it.

    Raises:
        InvalidReferenceError: a malformed ``"NAME@REF"``.

    >>> split_model_ref("adult@3", "bike")
    ('adult', '3')
    >>> split_model_ref("challenger", "bike")
    ('bike', 'challenger')
    >>> split_model_ref(None, "bike", "champion")
    ('bike', 'champion')
    """
    name, ref = default_name, default_ref
    if model:
        if "@" in model:
            name, parsed = parse_model_ref(model)
            ref = parsed if parsed is not None else ref
        else:
            ref = model
    return name, str(ref)


@dataclass(frozen=True)
class ModelVersion:
    """One immutable registered version of a model.

    Attributes:
        model: model name.
        version: version number (1, 2, 3, ...; never reused).
        status: one of :data:`VERSION_STATUSES`; ``champion`` exactly when the
            ``champion`` alias points here.
        created_at: ISO 8601 UTC time of registration.
        metrics: evaluation metrics given at registration.
        tags: free-form string tags.
        run_id: the pipeline run that produced it.
        actor: ``user@host`` that registered it.
        aliases: aliases currently pointing at this version.
        uri: where the version folder lives (path or URI).
        files: artifact path (relative, '/'-separated) -> ``{"size", "sha256"}``.

    >>> v = ModelVersion("adult", 3, "candidate", "2024-01-01T00:00:00+00:00", {}, {}, "r1")
    >>> v.ref
    'adult@3'
    """

    model: str
    version: int
    status: str
    created_at: str
    metrics: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    actor: str | None = None
    aliases: tuple[str, ...] = ()
    uri: str = ""
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """``"NAME@VERSION"``, accepted by :func:`parse_model_ref` and ``--model``."""
        return f"{self.model}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict of every field (for ``--json`` output)."""
        out = asdict(self)
        out["aliases"] = list(self.aliases)
        return out


@dataclass(frozen=True)
class RegistryEvent:
    """One line of a model's append-only event log.

    Attributes:
        ts: ISO 8601 UTC time of the event.
        event: one of :data:`EVENT_TYPES`.
        model: model name.
        version: the version concerned (``None`` for e.g. a retrain trigger).
        alias: the alias moved, if any.
        actor: ``user@host`` (or ``$RAYPIPE_ACTOR``) who caused it.
        reason: a human-readable why.
        details: structured evidence (gate results, drift scores, previous champion, ...).
    """

    ts: str
    event: str
    model: str
    version: int | None = None
    alias: str | None = None
    actor: str | None = None
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (one line of ``events.jsonl``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegistryEvent:
        """Rebuild an event from :meth:`to_dict` output (unknown keys are ignored)."""
        return cls(
            ts=data["ts"],
            event=data["event"],
            model=data["model"],
            version=data.get("version"),
            alias=data.get("alias"),
            actor=data.get("actor"),
            reason=data.get("reason") or "",
            details=dict(data.get("details") or {}),
        )
