"""ModelRegistry: versions, aliases and an event log on any pyarrow filesystem.

The facade over the registry's rooms, one per concern:

* :mod:`~raypipe.registry._versions`: the immutable version folders and their records;
* :mod:`~raypipe.registry._aliases`: ``aliases.json``, the pointer a promotion moves;
* :mod:`~raypipe.registry._events`: the append-only event log, replayed by rollbacks;
* :mod:`~raypipe.registry._lock`: the per-model lock that serializes writers;
* :mod:`~raypipe.registry._store`: the atomic file primitives all of them stand on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from raypipe.errors import did_you_mean
from raypipe.registry._aliases import AliasTable
from raypipe.registry._errors import (
    AliasNotFoundError,
    ChampionChangedError,
    ModelNotFoundError,
    PromotionError,
    RegistryCorruptError,
    RegistryError,
    VersionNotFoundError,
)
from raypipe.registry._events import EVENTS_FILE, EventLog, champion_history, check_event_type
from raypipe.registry._lock import Lock, process_gone
from raypipe.registry._records import (
    CHAMPION,
    LATEST,
    ModelVersion,
    RegistryEvent,
    check_alias,
    check_model_name,
    check_version,
    parse_model_ref,
    split_model_ref,
)
from raypipe.registry._store import Store, to_json
from raypipe.registry._versions import VERSION_FILE, VersionStore, check_artifact_dir
from raypipe.runtime.storage import absolute_uri, resolve

__all__ = ["ModelRegistry"]

log = logging.getLogger(__name__)

_ANY = object()  # promote() without an expected champion


def _open_root(uri: str, filesystem: pafs.FileSystem | None) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of the registry at ``uri`` (see :mod:`raypipe.runtime.storage`)."""
    if filesystem is not None:
        if isinstance(filesystem, pafs.LocalFileSystem):
            return filesystem, absolute_uri(uri)  # it only takes absolute paths
        return filesystem, uri
    try:
        return resolve(uri, f"registry {uri}")
    except ValueError as exc:
        raise RegistryError(
            f"registry {uri}: cannot open this URI ({exc.__cause__ or exc}). Expected a local path or a URI "
            f"pyarrow understands (file://, s3://, gs://, hdfs://, abfs://)."
        ) from exc


class ModelRegistry:
    """A model registry in a folder or on object storage.

    Layout, per model, under the registry root::

        <model>/versions/<N>/      immutable artifacts, plus version.json written LAST
        <model>/aliases.json       {"champion": 3, "challenger": 4}, replaced atomically
        <model>/events.jsonl       append-only log, one JSON event per line
        <model>/sequence.json      highest version number ever allocated
        <model>/.lock              held while metadata changes

    A version folder without ``version.json`` is an interrupted registration:
    it is never listed, and :meth:`clean_incomplete` removes it.  Version
    numbers are allocated under the lock and never reused, even after such a
    cleanup.  The ``champion`` alias is the truth about which version serves;
    ``version.json``'s ``status`` is the only field that changes after
    registration.  See :mod:`raypipe.registry._store` for what "atomic" means
    on object stores, and :mod:`raypipe.registry._lock` for the lock.

    Args:
        uri: a local path (``./raypipe-registry``, ``~/reg``), ``file:///abs/path`` or
            any URI :func:`raypipe.runtime.storage.resolve` opens (``s3://bucket/reg``,
            ``gs://``, fsspec schemes).
        filesystem: use this pyarrow filesystem; ``uri`` is then the root path on it.
        actor: who is acting, for the event log; default ``$RAYPIPE_ACTOR`` or ``user@host``.
        lock_timeout_s: how long a writer waits for another writer of the same model.
        stale_lock_s: age after which a lock is presumed abandoned and broken.

    Raises:
        RegistryError: the URI cannot be opened.

    Example::

        reg = ModelRegistry("./raypipe-registry")
        v = reg.register("adult", "out/bundle", metrics={"roc_auc": 0.91}, run_id="r-1")
        reg.promote("adult", v.version, reason="passed gates")
        champion = reg.get("adult@champion")         # a ModelVersion
        folder = reg.local_path("adult", "champion")  # a local folder to load the bundle from
    """

    def __init__(
        self,
        uri: str | os.PathLike[str] = "./raypipe-registry",
        *,
        filesystem: pafs.FileSystem | None = None,
        actor: str | None = None,
        lock_timeout_s: float = 30.0,
        stale_lock_s: float = 300.0,
    ):
        self._uri = os.fspath(uri)
        fs, root = _open_root(self._uri, filesystem)
        scheme = self._uri.split("://", 1)[0] if filesystem is None and "://" in self._uri else None
        self._store = Store(fs, root, display=self._uri, scheme=scheme)
        self._versions = VersionStore(self._store, self._where)
        self._aliases = AliasTable(self._store, self._where)
        self._events = EventLog(self._store, self._where, actor)
        self._lock_timeout_s = float(lock_timeout_s)
        self._stale_lock_s = float(stale_lock_s)

    def __repr__(self) -> str:
        return f"ModelRegistry({self._uri!r})"

    @property
    def uri(self) -> str:
        """The registry root as given to the constructor."""
        return self._uri

    def _where(self, name: str | None = None) -> str:
        return f"registry {self._uri}" + (f": model '{name}'" if name else "")

    def _lock(self, name: str) -> Lock:
        return Lock(
            self._store,
            self._store.path(name, ".lock"),
            f"model '{name}'",
            self._lock_timeout_s,
            self._stale_lock_s,
        )

    @contextlib.contextmanager
    def _writing(self, name: str) -> Iterator[None]:
        """The model's lock, taken by a writer; first, while holding it, record the
        versions abandoned by their runs (:meth:`_record_abandoned`)."""
        with self._lock(name):
            self._record_abandoned(name)
            yield

    # ------------------------------------------------------------------ reading

    def models(self) -> list[str]:
        """Names of the registered models, sorted.

        >>> import tempfile
        >>> ModelRegistry(tempfile.mkdtemp()).models()
        []
        """
        names = []
        for info in self._store.list_dir(self._store.root):
            name = info.base_name
            if info.type != pafs.FileType.Directory or name.startswith("."):
                continue
            if self._store.exists(self._store.path(name, "versions")) or self._store.exists(
                self._store.path(name, EVENTS_FILE)
            ):
                names.append(name)
        return sorted(names)

    def list_versions(self, model_name: str) -> list[ModelVersion]:
        """Every complete version of ``model_name``, oldest first.

        Raises:
            ModelNotFoundError: no such model.
        """
        name = self._require_model(model_name)
        aliases = self._aliases.read(name)
        found = (self._versions.load(name, n, aliases) for n in self._versions.numbers(name))
        return [v for v in found if v is not None]

    def aliases(self, model_name: str) -> dict[str, int]:
        """The aliases of ``model_name``: alias -> version number.

        Raises:
            ModelNotFoundError: no such model.
        """
        return dict(self._aliases.read(self._require_model(model_name)))

    def get(self, model_name: str, version_or_alias: int | str | None = None) -> ModelVersion:
        """One version, by number, alias, ``"latest"``, or a ``"NAME@REF"`` string.

        Args:
            model_name: the model, or ``"NAME@REF"`` when ``version_or_alias`` is omitted.
            version_or_alias: ``3``, ``"3"``, ``"champion"``, ``"latest"``...;
                default: the champion.

        Raises:
            InvalidReferenceError: a malformed name or reference.
            ModelNotFoundError, VersionNotFoundError, AliasNotFoundError: nothing there.

        Example::

            reg.get("adult", 3); reg.get("adult", "champion"); reg.get("adult@champion")
        """
        name, number = self._resolve(model_name, version_or_alias)
        version = self._versions.load(name, number, self._aliases.read(name))
        assert version is not None  # _resolve checked it
        return version

    def resolve(
        self, model: str | None, *, default_name: str, default_ref: int | str = CHAMPION
    ) -> ModelVersion:
        """The version a ``--model`` value names: ``"NAME@REF"``, a bare reference of
        ``default_name`` (``"3"``, ``"challenger"``, ``"latest"``), or ``None`` for
        ``default_name@default_ref``.

        This is the one place model references are resolved: serving, batch
        prediction and the CLI call it instead of parsing ``NAME@REF`` themselves.
        :func:`~raypipe.registry.split_model_ref` gives the ``(name, reference)``
        without the lookup, e.g. for messages.

        Raises:
            InvalidReferenceError: a malformed ``"NAME@REF"``, name or reference.
            ModelNotFoundError, VersionNotFoundError, AliasNotFoundError: nothing there.

        Example::

            reg.resolve("adult@3", default_name="bike")               # adult, version 3
            reg.resolve(None, default_name="adult")                    # adult's champion
            reg.resolve("challenger", default_name="adult").version    # what challenger points at
        """
        name, ref = split_model_ref(model, default_name, default_ref)
        return self.get(name, ref)

    def events(self, model_name: str) -> list[RegistryEvent]:
        """The event log of ``model_name``, oldest first.

        An unreadable line (a writer died mid-append, a hand edit) is skipped
        with a warning naming the file and line; :meth:`verify` reports it.

        Raises:
            ModelNotFoundError: no such model.
        """
        name = self._require_model(model_name)
        return self._events.read(name)

    def local_path(
        self,
        model_name: str,
        version_or_alias: int | str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> Path:
        """A local folder holding the version's artifacts, for reading only.

        On a local registry this is the version folder itself (no copy).  On
        other filesystems the version is downloaded once into ``cache_dir``
        (default: ``<tmp>/raypipe-registry-cache``) and reused afterwards,
        which is safe because versions are immutable.

        Raises:
            the errors of :meth:`get`; RegistryCorruptError: a checksum mismatch.
        """
        version = self.get(model_name, version_or_alias)
        return self._versions.local_copy(version, self._uri, cache_dir)

    def download(
        self, model_name: str, version_or_alias: int | str | None, dest: str | os.PathLike[str]
    ) -> Path:
        """Copy a version's files (``version.json`` included) into the new or empty folder ``dest``.

        Every file is checked against the sha256 recorded at registration.

        Raises:
            the errors of :meth:`get`; RegistryError: ``dest`` is a non-empty
            folder; RegistryCorruptError: a checksum mismatch.
        """
        version = self.get(model_name, version_or_alias)
        dest = Path(dest)
        if dest.exists() and any(dest.iterdir()):
            raise RegistryError(
                f"{self._where(version.model)}: download destination must be a new or empty folder. "
                f"Got {str(dest)!r}, which has files."
            )
        self._versions.download_into(version, dest)
        return dest

    # ------------------------------------------------------------------ writing

    def register(
        self,
        model_name: str,
        artifact_dir: str | os.PathLike[str],
        metrics: Mapping[str, Any],
        run_id: str | None,
        tags: Mapping[str, Any] | None = None,
        *,
        awaiting_gate: bool = False,
    ) -> ModelVersion:
        """Copy ``artifact_dir`` into the registry as the next version (status ``candidate``).

        The number is allocated under the model's lock; the (possibly slow)
        upload runs outside it; ``version.json`` is written last, then a
        ``registered`` event is logged. ``version.json`` records the writer (pid and
        host); with ``awaiting_gate`` it also says that this process will decide the
        version (promote, reject or log it): if the process ends before it does (killed
        with ``-9``, a crash), the next writer of the model on this host records an
        ``abandoned`` event for it (:meth:`abandoned`).

        Args:
            model_name: the model; created on first registration.
            artifact_dir: local folder with the bundle files (``model.ubj``,
                ``features.json``, ...); must not contain ``version.json``.
            metrics: evaluation metrics (JSON-serializable; numpy scalars are fine).
            run_id: the pipeline run that produced the model.
            tags: free-form JSON-serializable labels.
            awaiting_gate: this process gates the version next (``raypipe run`` does).

        Returns:
            The new :class:`ModelVersion`.

        Raises:
            InvalidReferenceError: a bad model name.
            RegistryError: ``artifact_dir`` missing or empty, or the upload failed
                (the partial folder is removed; its number is not reused).
            LockTimeoutError: another writer kept the lock too long.

        Example::

            v = reg.register("adult", "out/bundle", {"roc_auc": 0.91}, run_id="r-1", tags={"git": "abc"})
        """
        name = check_model_name(model_name, self._where())
        where = self._where(name)
        folder = check_artifact_dir(artifact_dir, where)
        metrics = dict(metrics or {})
        tags = dict(tags or {})
        to_json({"metrics": metrics, "tags": tags}, f"{where}: metrics/tags")

        with self._writing(name):
            number = self._versions.allocate(name)
        # The (possibly slow) upload runs outside the lock: the number is ours.
        writer: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname()}
        if awaiting_gate:
            writer["awaiting_gate"] = True
        self._versions.upload(
            name, number, folder, metrics=metrics, tags=tags, run_id=run_id, actor=self._events.actor(), writer=writer
        )
        with self._lock(name):
            self._events.append(name, "registered", number, None, "", {"run_id": run_id})
        version = self._versions.load(name, number, self._aliases.read(name))
        assert version is not None
        return version

    def set_alias(
        self,
        model_name: str,
        alias: str,
        version: int | str,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Point ``alias`` at ``version`` (atomically) and log ``alias_set``.

        Setting ``"champion"`` is a :meth:`promote`, so rollback history stays whole.

        Raises:
            InvalidReferenceError: a malformed alias (letters, digits, ``_``, ``-``;
                not ``latest``).
            ModelNotFoundError, VersionNotFoundError, AliasNotFoundError: bad target.

        Example::

            reg.set_alias("adult", "challenger", 4, reason="shadow traffic")
        """
        name = check_model_name(model_name, self._where())
        alias = check_alias(alias, self._where(name))
        if alias == CHAMPION:
            return self.promote(name, version, reason, details)
        with self._writing(name):
            _, number = self._resolve(name, version)
            aliases = self._aliases.read(name)
            previous = aliases.get(alias)
            if previous != number:
                aliases[alias] = number
                self._aliases.write(name, aliases)
                self._events.append(
                    name, "alias_set", number, alias, reason, {**(details or {}), "previous_version": previous}
                )
        return self.get(name, number)

    def promote(
        self,
        model_name: str,
        version: int | str,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
        *,
        expected_champion: int | None | object = _ANY,
    ) -> ModelVersion:
        """Make ``version`` the champion; the previous champion becomes ``archived``.

        ``aliases.json`` is replaced first (the commit point), then the two
        statuses, then a ``promoted`` event records the previous champion, so
        :meth:`rollback` can restore it.  Promoting the current champion again
        changes nothing and logs nothing.  A rejected version may be promoted
        (a human overriding the gates); the event says who did.

        Args:
            model_name: the model.
            version: number, ``"3"``, an alias or ``"latest"``.
            reason: why, for the event log.
            details: evidence, e.g. the gate results.
            expected_champion: the champion the candidate was compared with
                (``None``: there was none).  Checked under the lock, so a
                candidate never replaces a newer champion it was not gated against.

        Raises:
            ChampionChangedError: the champion under the lock is not ``expected_champion``
                (its ``current`` says which it is: compare again, then retry).
            ModelNotFoundError, VersionNotFoundError, AliasNotFoundError: bad target.
            LockTimeoutError: another writer kept the lock too long.

        Example::

            reg.promote("adult", 4, reason="passed gates", details={"gate": gate.to_dict()})
        """
        name = check_model_name(model_name, self._where())
        with self._writing(name):
            _, number = self._resolve(name, version)
            aliases = self._aliases.read(name)
            previous = aliases.get(CHAMPION)
            if expected_champion is not _ANY and previous != expected_champion:
                raise ChampionChangedError(
                    f"{self._where(name)}: version {number} was compared with champion {expected_champion}, "
                    f"but the champion is now {previous}; compare it with the new champion before promoting.",
                    current=previous,
                )
            if previous != number:
                self._move_champion(name, aliases, number)
                self._events.append(
                    name, "promoted", number, CHAMPION, reason,
                    {**(details or {}), "previous_champion": previous},
                )
        return self.get(name, number)

    def reject(
        self,
        model_name: str,
        version: int | str,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Mark ``version`` ``rejected`` (e.g. it failed its gates) and log why.

        Raises:
            PromotionError: ``version`` is the champion (promote another or roll back first).
            ModelNotFoundError, VersionNotFoundError, AliasNotFoundError: bad target.

        Example::

            reg.reject("adult", 5, reason="auc 0.81 < min 0.85", details={"gate": {...}})
        """
        name = check_model_name(model_name, self._where())
        with self._writing(name):
            _, number = self._resolve(name, version)
            if self._aliases.read(name).get(CHAMPION) == number:
                raise PromotionError(
                    f"{self._where(name)}: version {number} is the champion and cannot be rejected. "
                    f"Promote another version or roll back first."
                )
            self._versions.set_status(name, number, "rejected")
            self._events.append(name, "rejected", number, None, reason, dict(details or {}))
        return self.get(name, number)

    def rollback(
        self, model_name: str, reason: str = "", details: Mapping[str, Any] | None = None
    ) -> ModelVersion:
        """Restore the champion that preceded the current one, as recorded in the event log.

        Rollbacks stack: after promoting 1, 2, 3, two rollbacks give 2, then 1.

        Returns:
            The restored champion.

        Raises:
            PromotionError: there is no champion, or no earlier champion.
            ModelNotFoundError: no such model.

        Example::

            reg.rollback("adult", reason="error rate doubled after deploy")
        """
        name = self._require_model(model_name)
        with self._writing(name):
            aliases = self._aliases.read(name)
            current = aliases.get(CHAMPION)
            if current is None:
                raise PromotionError(f"{self._where(name)}: has no champion, so nothing to roll back.")
            history = champion_history(self._events.read(name), current)
            if len(history) < 2:
                raise PromotionError(
                    f"{self._where(name)}: version {current} is the first champion; there is no "
                    f"previous champion to roll back to. Promote a version instead."
                )
            target = history[-2]
            if self._versions.load(name, target, aliases) is None:
                raise RegistryCorruptError(
                    f"{self._where(name)}: the previous champion, version {target}, has no "
                    f"{VERSION_FILE}; promote a version explicitly instead."
                )
            self._move_champion(name, aliases, target)
            self._events.append(
                name, "rolled_back", target, CHAMPION, reason,
                {**(details or {}), "from_version": current},
            )
        return self.get(name, target)

    def log_event(
        self,
        model_name: str,
        event: str,
        version: int | None = None,
        alias: str | None = None,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> RegistryEvent:
        """Append an event that no other method logs (e.g. ``retrain_triggered``).

        Args:
            model_name: the model (need not have versions yet).
            event: one of :data:`~raypipe.registry.EVENT_TYPES`.
            version, alias: what the event concerns, if anything.
            reason: why.
            details: JSON-serializable evidence (drift scores, trigger, ...).

        Raises:
            InvalidReferenceError: unknown event type or malformed name/version/alias.

        Example::

            reg.log_event("adult", "retrain_triggered", reason="drift", details={"psi": {"age": 0.31}})
        """
        name = check_model_name(model_name, self._where())
        where = self._where(name)
        check_event_type(event, where)
        number = None if version is None else check_version(version, where)
        alias = None if alias is None else check_alias(alias, where)
        with self._writing(name):
            return self._events.append(name, event, number, alias, reason, dict(details or {}))

    def verify(self, model_name: str | None = None, version: int | str | None = None) -> dict[str, Any]:
        """Check what the registry holds: every artifact against its sha256, every
        event line, every alias.

        Args:
            model_name: one model; ``None``: every model.
            version: one version of ``model_name``; ``None``: all its complete versions.

        Returns:
            ``{"models": n, "versions": n, "files": n, "events": n, "problems": [...],
            "abandoned": [...]}``: each problem one line naming the file (and line number,
            for events); ``abandoned``: the candidates their runs left undecided
            (:meth:`abandoned`, with ``model``), not problems.

        Raises:
            ModelNotFoundError, VersionNotFoundError, AliasNotFoundError: nothing to check.

        Example::

            report = reg.verify("adult")
            assert not report["problems"], "\\n".join(report["problems"])
        """
        names = [self._require_model(model_name)] if model_name is not None else self.models()
        report: dict[str, Any] = {"models": len(names), "versions": 0, "files": 0, "events": 0, "problems": [],
                                  "abandoned": []}
        problems: list[str] = report["problems"]
        for name in names:
            try:
                aliases = self._aliases.read(name)
            except RegistryError as exc:
                problems.append(str(exc))
                aliases = {}
            if version is not None:
                versions = [self.get(name, version)]
            else:
                versions = [v for v in (self._versions.load(name, n, aliases) for n in self._versions.numbers(name)) if v]
                complete = {v.version for v in versions}
                for alias, number in sorted(aliases.items()):
                    if number not in complete:
                        problems.append(f"{self._where(name)}: alias '{alias}' points at version {number}, "
                                        f"which has no {VERSION_FILE}.")
                events, bad_lines = self._events.read_checked(name)
                report["events"] += len(events)
                problems.extend(bad_lines)
                # Not a problem (nothing is damaged), but a candidate nobody will decide.
                report["abandoned"].extend({"model": name, **a} for a in self.abandoned(name))
            for v in versions:
                report["versions"] += 1
                try:
                    report["files"] += self._versions.verify(v)
                except RegistryError as exc:
                    problems.append(str(exc))
        return report

    def clean_incomplete(self, model_name: str, older_than_s: float = 3600.0) -> list[int]:
        """Delete version folders without ``version.json`` untouched for ``older_than_s``.

        Such folders are registrations that died mid-upload; the age guard
        spares uploads still in progress.  Their numbers stay retired.

        Returns:
            The version numbers removed.

        Raises:
            ModelNotFoundError: no such model.
        """
        name = self._require_model(model_name)
        return self._versions.clean_incomplete(name, older_than_s)

    def abandoned(self, model_name: str) -> list[dict[str, Any]]:
        """The versions whose run registered them for its gate and ended before deciding
        them (killed with ``-9``, a crash, a run stopped between register and gate), that
        nobody decided since (still candidates).

        Returns:
            One dict per version, oldest first: ``version``, ``reason`` (``"abandoned:
            ..."``) and ``recorded``: whether the ``abandoned`` event is in the log (the
            next writer of the model records it when it is not yet).

        Raises:
            ModelNotFoundError: no such model.

        Example::

            for v in reg.abandoned("adult"):
                print(v["version"], v["reason"])
        """
        name = self._require_model(model_name)
        events, _ = self._events.read_checked(name)
        aliases = self._aliases.read(name)
        found = {}
        for e in events:  # recorded: the last deciding event of the version is "abandoned"
            if e.version is None or e.event == "registered":
                continue
            if e.event == "abandoned":
                found[e.version] = {"version": e.version, "reason": e.reason, "recorded": True}
            else:
                found.pop(e.version, None)
        for number in list(found):
            version = self._versions.load(name, number, aliases)
            if version is None or version.status != "candidate":
                del found[number]
        for number, reason, _ in self._abandoned_unrecorded(name, events):
            found[number] = {"version": number, "reason": reason, "recorded": False}
        return [found[n] for n in sorted(found)]

    # ------------------------------------------------------------------ internals

    def _abandoned_unrecorded(self, name: str, events: list[RegistryEvent]) -> list[tuple[int, str, dict[str, Any]]]:
        """``(version, reason, details)`` of each complete candidate registered with
        ``awaiting_gate`` whose writer ran on this host and is gone, with no event after its
        ``registered`` one (no gate decided it, no ``abandoned`` recorded yet)."""
        decided = {e.version for e in events if e.version is not None and e.event != "registered"}
        found = []
        for number in self._versions.numbers(name, complete=False):
            if number in decided:
                continue
            try:
                record = self._store.read_json(f"{self._versions.folder(name, number)}/{VERSION_FILE}")
            except RegistryError:
                continue  # an unreadable record: verify reports it
            if not isinstance(record, dict) or record.get("status", "candidate") != "candidate":
                continue
            writer = record.get("writer") or {}
            if not writer.get("awaiting_gate") or not process_gone(writer.get("pid"), writer.get("host")):
                continue
            run = f" {record['run_id']}" if record.get("run_id") else ""
            reason = f"abandoned: its run{run} (pid {writer['pid']} on {writer['host']}) ended before the gate"
            found.append((number, reason, {"run_id": record.get("run_id"), "writer": writer}))
        return found

    def _record_abandoned(self, name: str) -> None:
        """Log an ``abandoned`` event for each version :meth:`_abandoned_unrecorded` finds
        (callers hold the lock). Never fails the write that called it: a problem is a warning."""
        try:
            events, _ = self._events.read_checked(name)
            for number, reason, details in self._abandoned_unrecorded(name, events):
                self._events.append(name, "abandoned", number, None, reason, details)
                log.warning("%s: version %s %s; it stays a candidate.", self._where(name), number, reason)
        except (RegistryError, OSError) as exc:
            log.warning("%s: could not check for versions abandoned by their runs: %s", self._where(name), exc)


    def _require_model(self, model_name: str) -> str:
        name = check_model_name(model_name, self._where())
        if not self._store.is_dir(self._store.path(name)):
            models = self.models()
            listed = ", ".join(models) if models else "none"
            raise ModelNotFoundError(
                f"{self._where()}: no model '{name}' (models: {listed}).{did_you_mean(name, models)}"
            )
        return name

    def _resolve(self, model_name: str, ref: int | str | None) -> tuple[str, int]:
        if ref is None and isinstance(model_name, str) and "@" in model_name:
            model_name, ref = parse_model_ref(model_name)
        name = self._require_model(model_name)
        where = self._where(name)
        if ref is None:
            ref = CHAMPION
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            number = check_version(ref, where)
            if self._versions.is_complete(name, number):
                return name, number
            complete = [v.version for v in self.list_versions(name)]
            listed = ", ".join(map(str, complete)) if complete else "none"
            hint = ""
            if self._versions.has_folder(name, number):
                hint = f" Version {number} is an interrupted registration (no {VERSION_FILE})."
            raise VersionNotFoundError(f"{where} has no version {number} (versions: {listed}).{hint}")
        if ref == LATEST:
            complete = [v.version for v in self.list_versions(name)]
            if not complete:
                raise VersionNotFoundError(f"{where} has no complete version yet. Register one first.")
            return name, complete[-1]
        alias = check_alias(ref, where)
        aliases = self._aliases.read(name)
        if alias not in aliases:
            listed = ", ".join(f"{a}={v}" for a, v in sorted(aliases.items())) or "none"
            hint = did_you_mean(alias, aliases) or (
                f" Promote a version first: raypipe models promote {name} VERSION." if alias == CHAMPION else ""
            )
            raise AliasNotFoundError(f"{where} has no alias '{alias}' (aliases: {listed}).{hint}")
        number = aliases[alias]
        if not self._versions.is_complete(name, number):
            raise RegistryCorruptError(
                f"{where}: alias '{alias}' points at version {number}, which has no {VERSION_FILE}. "
                f"Point the alias at a complete version."
            )
        return name, number

    def _move_champion(self, name: str, aliases: dict[str, int], number: int) -> None:
        previous = aliases.get(CHAMPION)
        aliases[CHAMPION] = number
        self._aliases.write(name, aliases)  # the commit point
        self._versions.set_status(name, number, CHAMPION)
        if previous is not None:
            self._versions.set_status(name, previous, "archived")
