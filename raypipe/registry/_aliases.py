"""A model's aliases (``aliases.json``): which version each name points at.

The file maps alias names to version numbers and is replaced atomically
(:meth:`~raypipe.registry._store.Store.write_atomic`), so a reader sees the
aliases before or after a move, never half of one.  The ``champion`` alias is
the truth about which version serves; moving it is the commit point of a
promotion or rollback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from raypipe.registry._errors import RegistryCorruptError
from raypipe.registry._store import Store

ALIASES_FILE = "aliases.json"


class AliasTable:
    """Reads and replaces the ``aliases.json`` of the models under one registry root.

    Args:
        store: the registry's store.
        where: ``where(name)`` names the registry and model in messages.
    """

    def __init__(self, store: Store, where: Callable[[str], str]):
        self._store = store
        self._where = where

    def read(self, name: str) -> dict[str, int]:
        """Alias -> version number; ``{}`` when the model has no aliases yet.

        Raises:
            RegistryCorruptError: the file does not map names to integers.
        """
        path = self._store.path(name, ALIASES_FILE)
        data = self._store.read_json(path)
        if data is None:
            return {}
        if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
            raise RegistryCorruptError(
                f"{self._where(name)}: {path} must map alias names to version numbers. Got {data!r}."
            )
        return data

    def write(self, name: str, aliases: Mapping[str, int]) -> None:
        """Replace the model's aliases atomically (callers hold the model's lock)."""
        self._store.write_atomic(
            self._store.path(name, ALIASES_FILE), json.dumps(dict(sorted(aliases.items())), indent=2).encode()
        )
