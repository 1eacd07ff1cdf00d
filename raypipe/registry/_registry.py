"""ModelRegistry: versions, aliases and an event log on any pyarrow filesystem."""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from raypipe.errors import did_you_mean
from raypipe.registry._errors import (
    AliasNotFoundError,
    InvalidReferenceError,
    ModelNotFoundError,
    PromotionError,
    RegistryCorruptError,
    RegistryError,
    VersionNotFoundError,
)
from raypipe.registry._records import (
    CHAMPION,
    EVENT_TYPES,
    LATEST,
    ModelVersion,
    RegistryEvent,
    check_alias,
    check_model_name,
    check_version,
    parse_model_ref,
)
from raypipe.registry._store import Lock, Store, to_json, utc_now

__all__ = ["ModelRegistry"]

log = logging.getLogger(__name__)

_VERSION_FILE = "version.json"
_FORMAT = 1


def _open_filesystem(uri: str, filesystem: pafs.FileSystem | None) -> tuple[pafs.FileSystem, str]:
    if filesystem is not None:
        if isinstance(filesystem, pafs.LocalFileSystem):
            return filesystem, os.path.abspath(os.path.expanduser(uri))  # it only takes absolute paths
        return filesystem, uri
    if "://" not in uri:
        # A plain path is a local folder, relative to the working directory.
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError) as exc:
        raise RegistryError(
            f"registry {uri}: cannot open this URI ({exc}). Expected a local path or a URI "
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
    on object stores.

    Args:
        uri: a local path (``./raypipe-registry``), ``file:///abs/path`` or any
            URI ``pyarrow.fs.FileSystem.from_uri`` understands (``s3://bucket/reg``).
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
        fs, root = _open_filesystem(self._uri, filesystem)
        scheme = self._uri.split("://", 1)[0] if filesystem is None and "://" in self._uri else None
        self._store = Store(fs, root, display=self._uri, scheme=scheme)
        self._actor = actor
        self._lock_timeout_s = float(lock_timeout_s)
        self._stale_lock_s = float(stale_lock_s)

    def __repr__(self) -> str:
        return f"ModelRegistry({self._uri!r})"

    @property
    def uri(self) -> str:
        """The registry root as given to the constructor."""
        return self._uri

    # ------------------------------------------------------------------ paths

    def _where(self, name: str | None = None) -> str:
        return f"registry {self._uri}" + (f": model '{name}'" if name else "")

    def _model_dir(self, name: str) -> str:
        return self._store.path(name)

    def _version_dir(self, name: str, number: int) -> str:
        return self._store.path(name, "versions", number)

    def _file(self, name: str, filename: str) -> str:
        return self._store.path(name, filename)

    def _lock(self, name: str) -> Lock:
        return Lock(
            self._store,
            self._file(name, ".lock"),
            f"model '{name}'",
            self._lock_timeout_s,
            self._stale_lock_s,
        )

    def _current_actor(self) -> str:
        if self._actor:
            return self._actor
        if os.environ.get("RAYPIPE_ACTOR"):
            return os.environ["RAYPIPE_ACTOR"]
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # containers often run as a uid without a passwd entry
            user = "unknown"
        return f"{user}@{socket.gethostname()}"

    # ------------------------------------------------------------------ reading

    def models(self) -> list[str]:
        """Names of the registered models, sorted.

        >>> ModelRegistry(tempfile.mkdtemp()).models()
        []
        """
        names = []
        for info in self._store.list_dir(self._store.root):
            name = info.base_name
            if info.type != pafs.FileType.Directory or name.startswith("."):
                continue
            if self._store.exists(self._store.path(name, "versions")) or self._store.exists(
                self._file(name, "events.jsonl")
            ):
                names.append(name)
        return sorted(names)

    def list_versions(self, model_name: str) -> list[ModelVersion]:
        """Every complete version of ``model_name``, oldest first.

        Raises:
            ModelNotFoundError: no such model.
        """
        name = self._require_model(model_name)
        aliases = self._read_aliases(name)
        found = (self._load_version(name, n, aliases) for n in self._version_numbers(name))
        return [v for v in found if v is not None]

    def aliases(self, model_name: str) -> dict[str, int]:
        """The aliases of ``model_name``: alias -> version number.

        Raises:
            ModelNotFoundError: no such model.
        """
        return dict(self._read_aliases(self._require_model(model_name)))

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
        version = self._load_version(name, number, self._read_aliases(name))
        assert version is not None  # _resolve checked it
        return version

    def events(self, model_name: str) -> list[RegistryEvent]:
        """The event log of ``model_name``, oldest first.

        A torn last line (a writer died mid-append on a store without atomic
        appends) is skipped with a warning.

        Raises:
            ModelNotFoundError: no such model.
        """
        name = self._require_model(model_name)
        return self._read_events(name)

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
        if self._store.is_local:
            return Path(self._version_dir(version.model, version.version))
        root_key = hashlib.sha256(self._uri.encode()).hexdigest()[:16]
        base = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "raypipe-registry-cache"
        target = base / root_key / version.model / str(version.version)
        if (target / _VERSION_FILE).exists():
            return target
        staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
        self._download_into(version, staging)
        try:
            os.replace(staging, target)
        except OSError:
            # Another process finished the same download first: theirs is as good as ours.
            shutil.rmtree(staging, ignore_errors=True)
        return target

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
        self._download_into(version, dest)
        return dest

    def _download_into(self, version: ModelVersion, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        self._store.download_dir(self._version_dir(version.model, version.version), dest, version.files)

    # ------------------------------------------------------------------ writing

    def register(
        self,
        model_name: str,
        artifact_dir: str | os.PathLike[str],
        metrics: Mapping[str, Any],
        run_id: str | None,
        tags: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Copy ``artifact_dir`` into the registry as the next version (status ``candidate``).

        The number is allocated under the model's lock; the (possibly slow)
        upload runs outside it; ``version.json`` is written last, then a
        ``registered`` event is logged.

        Args:
            model_name: the model; created on first registration.
            artifact_dir: local folder with the bundle files (``model.ubj``,
                ``features.json``, ...); must not contain ``version.json``.
            metrics: evaluation metrics (JSON-serializable; numpy scalars are fine).
            run_id: the pipeline run that produced the model.
            tags: free-form JSON-serializable labels.

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
        src = Path(artifact_dir)
        if not src.is_dir():
            raise RegistryError(f"{where}: artifact_dir must be an existing local folder. Got {str(src)!r}.")
        if not any(p.is_file() for p in src.rglob("*")):
            raise RegistryError(f"{where}: artifact_dir {str(src)!r} holds no files; nothing to register.")
        if (src / _VERSION_FILE).exists():
            raise RegistryError(
                f"{where}: artifact_dir {str(src)!r} contains '{_VERSION_FILE}', a name the registry "
                f"reserves for its own record. Rename that file."
            )
        metrics = dict(metrics or {})
        tags = dict(tags or {})
        to_json({"metrics": metrics, "tags": tags}, f"{where}: metrics/tags")

        with self._lock(name):
            number = self._next_version(name)
            self._store.write_atomic(
                self._file(name, "sequence.json"), to_json({"last_version": number}, where)
            )

        dest = self._version_dir(name, number)
        try:
            files = self._store.upload_dir(src, dest)
        except Exception as exc:
            with contextlib.suppress(Exception):
                self._store.delete_dir(dest)
            raise RegistryError(
                f"{where}: uploading version {number} from {str(src)!r} failed: {exc}. "
                f"Nothing was registered; version {number} will not be reused."
            ) from exc
        actor = self._current_actor()
        record = {
            "format": _FORMAT,
            "model": name,
            "version": number,
            "created_at": utc_now(),
            "status": "candidate",
            "metrics": metrics,
            "tags": tags,
            "run_id": run_id,
            "actor": actor,
            "files": files,
        }
        # Written last: its presence is what makes the version exist.
        self._store.write_atomic(f"{dest}/{_VERSION_FILE}", to_json(record, where))
        with self._lock(name):
            self._append_event(name, "registered", number, None, "", {"run_id": run_id})
        version = self._load_version(name, number, self._read_aliases(name))
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
        with self._lock(name):
            _, number = self._resolve(name, version)
            aliases = self._read_aliases(name)
            previous = aliases.get(alias)
            if previous != number:
                aliases[alias] = number
                self._write_aliases(name, aliases)
                self._append_event(
                    name, "alias_set", number, alias, reason, {**(details or {}), "previous_version": previous}
                )
        return self.get(name, number)

    def promote(
        self,
        model_name: str,
        version: int | str,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
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

        Raises:
            ModelNotFoundError, VersionNotFoundError, AliasNotFoundError: bad target.
            LockTimeoutError: another writer kept the lock too long.

        Example::

            reg.promote("adult", 4, reason="passed gates", details={"gate": gate.to_dict()})
        """
        name = check_model_name(model_name, self._where())
        with self._lock(name):
            _, number = self._resolve(name, version)
            aliases = self._read_aliases(name)
            previous = aliases.get(CHAMPION)
            if previous != number:
                self._move_champion(name, aliases, number)
                self._append_event(
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
        with self._lock(name):
            _, number = self._resolve(name, version)
            if self._read_aliases(name).get(CHAMPION) == number:
                raise PromotionError(
                    f"{self._where(name)}: version {number} is the champion and cannot be rejected. "
                    f"Promote another version or roll back first."
                )
            self._set_status(name, number, "rejected")
            self._append_event(name, "rejected", number, None, reason, dict(details or {}))
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
        with self._lock(name):
            aliases = self._read_aliases(name)
            current = aliases.get(CHAMPION)
            if current is None:
                raise PromotionError(f"{self._where(name)}: has no champion, so nothing to roll back.")
            history = self._champion_history(self._read_events(name), current)
            if len(history) < 2:
                raise PromotionError(
                    f"{self._where(name)}: version {current} is the first champion; there is no "
                    f"previous champion to roll back to. Promote a version instead."
                )
            target = history[-2]
            if self._load_version(name, target, aliases) is None:
                raise RegistryCorruptError(
                    f"{self._where(name)}: the previous champion, version {target}, has no "
                    f"{_VERSION_FILE}; promote a version explicitly instead."
                )
            self._move_champion(name, aliases, target)
            self._append_event(
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
        if event not in EVENT_TYPES:
            raise InvalidReferenceError(
                f"{where}: event must be one of {list(EVENT_TYPES)}. Got {event!r} instead."
                f"{did_you_mean(event, EVENT_TYPES)}"
            )
        number = None if version is None else check_version(version, where)
        alias = None if alias is None else check_alias(alias, where)
        with self._lock(name):
            return self._append_event(name, event, number, alias, reason, dict(details or {}))

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
        removed = []
        now = time.time()
        for number in self._version_numbers(name, complete=False):
            folder = self._version_dir(name, number)
            if self._store.exists(f"{folder}/{_VERSION_FILE}"):
                continue
            files = self._store.list_files(folder)
            newest = max((f.mtime.timestamp() for f in files if f.mtime is not None), default=0.0)
            if now - newest >= older_than_s:
                self._store.delete_dir(folder)
                removed.append(number)
        return removed

    # ------------------------------------------------------------------ internals

    def _require_model(self, model_name: str) -> str:
        name = check_model_name(model_name, self._where())
        if not self._store.is_dir(self._model_dir(name)):
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
            if self._store.exists(f"{self._version_dir(name, number)}/{_VERSION_FILE}"):
                return name, number
            complete = [v.version for v in self.list_versions(name)]
            listed = ", ".join(map(str, complete)) if complete else "none"
            hint = ""
            if self._store.is_dir(self._version_dir(name, number)):
                hint = f" Version {number} is an interrupted registration (no {_VERSION_FILE})."
            raise VersionNotFoundError(f"{where} has no version {number} (versions: {listed}).{hint}")
        if ref == LATEST:
            complete = [v.version for v in self.list_versions(name)]
            if not complete:
                raise VersionNotFoundError(f"{where} has no complete version yet. Register one first.")
            return name, complete[-1]
        alias = check_alias(ref, where)
        aliases = self._read_aliases(name)
        if alias not in aliases:
            listed = ", ".join(f"{a}={v}" for a, v in sorted(aliases.items())) or "none"
            hint = did_you_mean(alias, aliases) or (
                f" Promote a version first: raypipe models promote {name} VERSION." if alias == CHAMPION else ""
            )
            raise AliasNotFoundError(f"{where} has no alias '{alias}' (aliases: {listed}).{hint}")
        number = aliases[alias]
        if not self._store.exists(f"{self._version_dir(name, number)}/{_VERSION_FILE}"):
            raise RegistryCorruptError(
                f"{where}: alias '{alias}' points at version {number}, which has no {_VERSION_FILE}. "
                f"Point the alias at a complete version."
            )
        return name, number

    def _version_numbers(self, name: str, complete: bool = True) -> list[int]:
        numbers = sorted(
            int(info.base_name)
            for info in self._store.list_dir(self._store.path(name, "versions"))
            if info.type == pafs.FileType.Directory and info.base_name.isdigit()
        )
        if not complete:
            return numbers
        return [n for n in numbers if self._store.exists(f"{self._version_dir(name, n)}/{_VERSION_FILE}")]

    def _next_version(self, name: str) -> int:
        sequence = self._store.read_json(self._file(name, "sequence.json")) or {}
        last = int(sequence.get("last_version", 0))
        # The folders guard against a lost sequence.json; sequence.json guards
        # numbers whose folders were cleaned away.
        return max([last, *self._version_numbers(name, complete=False)]) + 1

    def _load_version(self, name: str, number: int, aliases: Mapping[str, int]) -> ModelVersion | None:
        folder = self._version_dir(name, number)
        data = self._store.read_json(f"{folder}/{_VERSION_FILE}")
        if data is None:
            return None
        stored = data.get("status", "candidate")
        # The alias is the truth; a stale "champion" status (a crash between
        # the alias write and the status write) reads as archived.
        if aliases.get(CHAMPION) == number:
            status = CHAMPION
        elif stored == CHAMPION:
            status = "archived"
        else:
            status = stored
        return ModelVersion(
            model=name,
            version=number,
            status=status,
            created_at=data.get("created_at", ""),
            metrics=dict(data.get("metrics") or {}),
            tags=dict(data.get("tags") or {}),
            run_id=data.get("run_id"),
            actor=data.get("actor"),
            aliases=tuple(sorted(a for a, v in aliases.items() if v == number)),
            uri=self._store.uri(folder),
            files=dict(data.get("files") or {}),
        )

    def _set_status(self, name: str, number: int, status: str) -> None:
        path = f"{self._version_dir(name, number)}/{_VERSION_FILE}"
        data = self._store.read_json(path)
        if data is None or data.get("status") == status:
            return
        data["status"] = status
        data["status_changed_at"] = utc_now()
        self._store.write_atomic(path, to_json(data, self._where(name)))

    def _read_aliases(self, name: str) -> dict[str, int]:
        path = self._file(name, "aliases.json")
        data = self._store.read_json(path)
        if data is None:
            return {}
        if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
            raise RegistryCorruptError(
                f"{self._where(name)}: {path} must map alias names to version numbers. Got {data!r}."
            )
        return data

    def _write_aliases(self, name: str, aliases: Mapping[str, int]) -> None:
        self._store.write_atomic(
            self._file(name, "aliases.json"), json.dumps(dict(sorted(aliases.items())), indent=2).encode()
        )

    def _move_champion(self, name: str, aliases: dict[str, int], number: int) -> None:
        previous = aliases.get(CHAMPION)
        aliases[CHAMPION] = number
        self._write_aliases(name, aliases)  # the commit point
        self._set_status(name, number, CHAMPION)
        if previous is not None:
            self._set_status(name, previous, "archived")

    def _append_event(
        self,
        name: str,
        event: str,
        version: int | None,
        alias: str | None,
        reason: str,
        details: Mapping[str, Any],
    ) -> RegistryEvent:
        record = RegistryEvent(
            ts=utc_now(),
            event=event,
            model=name,
            version=version,
            alias=alias,
            actor=self._current_actor(),
            reason=str(reason or ""),
            details=dict(details),
        )
        line = to_json(record.to_dict(), f"{self._where(name)}: event details") + b"\n"
        self._store.append_line(self._file(name, "events.jsonl"), line)
        return record

    def _read_events(self, name: str) -> list[RegistryEvent]:
        path = self._file(name, "events.jsonl")
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

    @staticmethod
    def _champion_history(events: list[RegistryEvent], current: int) -> list[int]:
        """The stack of champions, oldest first, replayed from the event log."""
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
