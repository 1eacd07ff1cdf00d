"""A model's append-only event log (``events.jsonl``) and what is replayed from it.

Every change to a model (registration, promotion, rejection, rollback, alias
moves, retrain triggers) appends one JSON line.  The log is the history
:meth:`ModelRegistry.rollback <raypipe.registry.ModelRegistry.rollback>`
replays (:func:`champion_history`).  An unreadable line (a writer died
mid-append, or a hand edit) is skipped with a warning naming its file and line,
and reported by ``raypipe models verify``; an append after a torn line starts
on a new line, so every later event stays readable.
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
from raypipe.registry._errors import InvalidReferenceError
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
        """The model's readable events, oldest first.

        An unreadable line is skipped with a warning naming the file and line
        (see :meth:`read_checked`); :meth:`ModelRegistry.verify
        <raypipe.registry.ModelRegistry.verify>` reports it as a problem.
        """
        events, problems = self.read_checked(name)
        for problem in problems:
            log.warning("%s: skipping %s", self._where(name), problem)
        return events

    def read_checked(self, name: str) -> tuple[list[RegistryEvent], list[str]]:
        """The model's readable events, oldest first, and one message per unreadable line.

        A line can be unreadable because a writer died mid-append (a torn line:
        the next append starts on a new line, so later events stay readable) or
        because the file was edited by hand.  Each message names the file and
        the line number.
        """
        path = self._store.path(name, EVENTS_FILE)
        data = self._store.read_bytes(path)
        if not data:
            return [], []
        events, problems = [], []
        for i, raw in enumerate(data.split(b"\n")):
            if not raw.strip():
                continue
            try:
                events.append(RegistryEvent.from_dict(json.loads(raw)))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                problems.append(f"{path} line {i + 1}: not a valid event ({type(exc).__name__}: {exc}): {raw[:120]!r}")
        return events, problems


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
