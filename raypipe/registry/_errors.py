"""Errors of the model registry.

::

    RaypipeError                      (raypipe.errors)
    └── RegistryError                 anything the registry refuses or cannot do
        ├── InvalidReferenceError     a malformed model name, version, alias or "NAME@REF"
        ├── ModelNotFoundError        no such model under the registry root
        ├── VersionNotFoundError      no such (complete) version of a model
        ├── AliasNotFoundError        the alias is not set for this model
        ├── PromotionError            a promote / reject / rollback that makes no sense now
        │   └── ChampionChangedError  the champion moved since the candidate was compared with it
        ├── LockTimeoutError          another writer held the model's lock for too long
        └── RegistryCorruptError      a registry file is unreadable or fails its checksum

Messages name the registry and model first, then what was expected, what was
found, and a hint: ``registry ./reg: model 'adult' has no version 7 (versions: 1, 2, 3).``
"""

from __future__ import annotations

from raypipe.errors import RaypipeError

__all__ = [
    "RegistryError",
    "InvalidReferenceError",
    "ModelNotFoundError",
    "VersionNotFoundError",
    "AliasNotFoundError",
    "PromotionError",
    "ChampionChangedError",
    "LockTimeoutError",
    "RegistryCorruptError",
]


class RegistryError(RaypipeError):
    """Base class of every error raised by :mod:`raypipe.registry`."""


class InvalidReferenceError(RegistryError, ValueError):
    """A model name, version, alias or ``NAME@REF`` string is malformed."""


class ModelNotFoundError(RegistryError, LookupError):
    """The registry holds no model of that name."""


class VersionNotFoundError(RegistryError, LookupError):
    """The model has no complete version of that number."""


class AliasNotFoundError(RegistryError, LookupError):
    """The model has no such alias (e.g. no champion yet)."""


class PromotionError(RegistryError):
    """A promotion, rejection or rollback is not possible in the current state."""


class ChampionChangedError(PromotionError):
    """``promote(..., expected_champion=N)`` found another champion under the lock.

    Attributes:
        current: the champion now (``None``: there is none).
    """

    def __init__(self, message: str, current: int | None):
        super().__init__(message)
        self.current = current


class LockTimeoutError(RegistryError, TimeoutError):
    """The model's lock stayed taken by another writer past the timeout."""


class RegistryCorruptError(RegistryError):
    """A registry file cannot be parsed, or an artifact does not match its checksum."""
