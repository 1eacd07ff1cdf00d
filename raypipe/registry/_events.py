"""A model's append-only event log (``events.jsonl``) and what is replayed from it.

Every change to a model (registration, promotion, rejection, rollback, alias
moves, retrain triggers) appends one JSON line.  The log is the history
:meth:`ModelRegistry.rollback <raypipe.registry.ModelRegistry.rollback>`
replays (:func:`champion_history`); a torn last line (a writer died mid-append
on a store without atomic appends) is skipped with a warning.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

from raypipe.errors import did_you_mean
from raypipe.registry._errors import InvalidReferenceError, RegistryCorruptError
from raypipe.registry._records import CHAMPION, EVENT_TYPES, RegistryEvent
from raypipe.registry._store import Store, to_json, utc_now

log = logging.getLogger(__name__)

EVENTS_FILE = "events.jsonl"


def current_actor(actor: str | None = None) -> str:
    """Who is acting: ``actor`` if given, else ``$RAYPIPE_ACTOR``, else ``user@host``."""
    if actor:
        return actor
    if os.environ.get("RAYPIPE_ACTOR"):
        return os.environ["RAYPIPE_ACTOR"]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # containers often run as a uid without a passwd entry
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def check_event_type(event: Any, where: str) -> str:
    """``event`` if it is one of :data:`EVENT_TYPES`.

    Raises:
        InvalidReferenceError: any other value, with the closest valid name.
    """
    if event not in EVENT_TYPES:
        raise InvalidReferenceError(
            f"{where}: event must be one of {list(EVENT_TYPES)}. Got {event!r} instead."
            f"{did_you_mean(event, EVENT_TYPES)}"
        )
    return event


class EventLog:
    """Appends to and reads the ``events.jsonl`` of the models under one registry root.

    Args:
        store: the registry's store.
        where: ``where(name)`` names the registry and model in messages.
        actor: who is acting (see :func:`current_actor`); resolved at each append.
    """

    def __init__(self, store: Store, where: Callable[[str], str], actor: str | None = None):
        self._store = store
        self._where = where
        self._actor = actor

    def actor(self) -> str:
        """Who is acting now, as recorded in events and version records."""
        return current_actor(self._actor)

    def append(
        self,
        name: str,
        event: str,
        version: int | None,
        alias: str | None,
        reason: str,
        details: Mapping[str, Any],
    ) -> RegistryEvent:
        """Append one event (callers hold the model's lock) and return it.

        Raises:
            RegistryError: ``details`` is not JSON-serializable.
        """
        record = RegistryEvent(
            ts=utc_now(),
            event=event,
            model=name,
            version=version,
            alias=alias,
            actor=self.actor(),
            reason=str(reason or ""),
            details=dict(details),
        )
        line = to_json(record.to_dict(), f"{self._where(name)}: event details") + b"\n"
        self._store.append_line(self._store.path(name, EVENTS_FILE), line)
        return record

    def read(self, name: str) -> list[RegistryEvent]:
        """The model's events, oldest first.

        Raises:
            RegistryCorruptError: a line other than the last is not a valid event.
        """
        path = self._store.path(name, EVENTS_FILE)
        data = self._store.read_bytes(path)
        if not data:
            return []
        lines = data.decode().splitlines()
        events = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                events.append(RegistryEvent.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                if i == len(lines) - 1:
                    log.warning("%s: skipping a torn last line of %s: %r", self._where(name), path, line[:80])
                    continue
                raise RegistryCorruptError(
                    f"{self._where(name)}: {path} line {i + 1} is not a valid event ({exc}): {line[:120]!r}."
                ) from exc
        return events


def champion_history(events: list[RegistryEvent], current: int) -> list[int]:
    """The stack of champions, oldest first, replayed from the event log.

    Rollbacks pop the stack, so after promoting 1, 2, 3 and one rollback the
    stack is ``[1, 2]``.  ``current`` (the ``champion`` alias) always ends it.
    """
    stack: list[int] = []
    for e in events:
        if e.alias != CHAMPION or e.version is None:
            continue
        if e.event in ("promoted", "alias_set"):
            if not stack or stack[-1] != e.version:
                stack.append(e.version)
        elif e.event == "rolled_back":
            while stack and stack[-1] != e.version:
                stack.pop()
            if not stack:
                stack.append(e.version)
    # A crash after the alias write but before its event: trust the alias.
    if not stack or stack[-1] != current:
        stack.append(current)
    return stack
