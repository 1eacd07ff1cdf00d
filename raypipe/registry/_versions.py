"""Version storage: the immutable version folders of a model and their records.

Per model, under the registry root::

    <model>/versions/<N>/      immutable artifacts, plus version.json written LAST
    <model>/sequence.json      highest version number ever allocated

A version folder without ``version.json`` is an interrupted registration: it is
never listed and :meth:`VersionStore.clean_incomplete` removes it.  Numbers are
allocated under the model's lock and never reused, even after such a cleanup.
``version.json``'s ``status`` is the only field that changes after
registration; the ``champion`` alias overrides it when they disagree.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from raypipe.registry._errors import RegistryCorruptError, RegistryError
from raypipe.registry._records import CHAMPION, ModelVersion
from raypipe.registry._store import Store, to_json, utc_now

VERSION_FILE = "version.json"
SEQUENCE_FILE = "sequence.json"
_FORMAT = 1


def check_artifact_dir(artifact_dir: str | os.PathLike[str], where: str) -> Path:
    """``artifact_dir`` as a Path, if it is a local folder that can be registered.

    Raises:
        RegistryError: missing, empty, or holding a ``version.json`` of its own.
    """
    src = Path(artifact_dir)
    if not src.is_dir():
        raise RegistryError(f"{where}: artifact_dir must be an existing local folder. Got {str(src)!r}.")
    if not any(p.is_file() for p in src.rglob("*")):
        raise RegistryError(f"{where}: artifact_dir {str(src)!r} holds no files; nothing to register.")
    if (src / VERSION_FILE).exists():
        raise RegistryError(
            f"{where}: artifact_dir {str(src)!r} contains '{VERSION_FILE}', a name the registry "
            f"reserves for its own record. Rename that file."
        )
    return src


class VersionStore:
    """The version folders and records of the models under one registry root.

    Args:
        store: the registry's store.
        where: ``where(name)`` names the registry and model in messages.
    """

    def __init__(self, store: Store, where: Callable[[str], str]):
        self._store = store
        self._where = where

    def folder(self, name: str, number: int) -> str:
        """The folder of version ``number`` (complete or not)."""
        return self._store.path(name, "versions", number)

    def is_complete(self, name: str, number: int) -> bool:
        """Whether version ``number`` exists with its ``version.json``."""
        return self._store.exists(f"{self.folder(name, number)}/{VERSION_FILE}")

    def has_folder(self, name: str, number: int) -> bool:
        """Whether version ``number`` has a folder (an interrupted registration has one)."""
        return self._store.is_dir(self.folder(name, number))

    def numbers(self, name: str, complete: bool = True) -> list[int]:
        """The version numbers of ``name``, ascending; with ``complete=False`` the
        interrupted registrations too."""
        numbers = sorted(
            int(info.base_name)
            for info in self._store.list_dir(self._store.path(name, "versions"))
            if info.type == pafs.FileType.Directory and info.base_name.isdigit()
        )
        if not complete:
            return numbers
        return [n for n in numbers if self.is_complete(name, n)]

    def allocate(self, name: str) -> int:
        """The next version number, recorded in ``sequence.json`` (callers hold the lock)."""
        sequence = self._store.read_json(self._store.path(name, SEQUENCE_FILE)) or {}
        last = int(sequence.get("last_version", 0))
        # The folders guard against a lost sequence.json; sequence.json guards
        # numbers whose folders were cleaned away.
        number = max([last, *self.numbers(name, complete=False)]) + 1
        self._store.write_atomic(
            self._store.path(name, SEQUENCE_FILE), to_json({"last_version": number}, self._where(name))
        )
        return number

    def upload(
        self,
        name: str,
        number: int,
        src: Path,
        *,
        metrics: Mapping[str, Any],
        tags: Mapping[str, Any],
        run_id: str | None,
        actor: str,
        writer: Mapping[str, Any] | None = None,
    ) -> None:
        """Copy ``src`` into version ``number``, then write its ``version.json`` last.

        ``writer`` (``{"pid", "host", "awaiting_gate"}``) is recorded as it is: who wrote the
        version, and whether a gate is to decide it (see ``ModelRegistry.register``).

        Raises:
            RegistryError: the upload failed (the partial folder is removed).
        """
        where = self._where(name)
        dest = self.folder(name, number)
        try:
            files = self._store.upload_dir(src, dest)
        except Exception as exc:
            with contextlib.suppress(Exception):
                self._store.delete_dir(dest)
            raise RegistryError(
                f"{where}: uploading version {number} from {str(src)!r} failed: {exc}. "
                f"Nothing was registered; version {number} will not be reused."
            ) from exc
        record = {
            "format": _FORMAT,
            "model": name,
            "version": number,
            "created_at": utc_now(),
            "status": "candidate",
            "metrics": dict(metrics),
            "tags": dict(tags),
            "run_id": run_id,
            "actor": actor,
            "files": files,
        }
        if writer is not None:
            record["writer"] = dict(writer)
        # Written last: its presence is what makes the version exist.
        self._store.write_atomic(f"{dest}/{VERSION_FILE}", to_json(record, where))

    def load(self, name: str, number: int, aliases: Mapping[str, int]) -> ModelVersion | None:
        """Version ``number`` as a :class:`ModelVersion`, or ``None`` when incomplete."""
        folder = self.folder(name, number)
        data = self._store.read_json(f"{folder}/{VERSION_FILE}")
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

    def set_status(self, name: str, number: int, status: str) -> None:
        """Record ``status`` in the version's ``version.json`` (callers hold the lock)."""
        path = f"{self.folder(name, number)}/{VERSION_FILE}"
        data = self._store.read_json(path)
        if data is None or data.get("status") == status:
            return
        data["status"] = status
        data["status_changed_at"] = utc_now()
        self._store.write_atomic(path, to_json(data, self._where(name)))

    def download_into(self, version: ModelVersion, dest: Path) -> None:
        """Copy the version's files into ``dest``, each checked against its sha256."""
        dest.mkdir(parents=True, exist_ok=True)
        self._store.download_dir(self.folder(version.model, version.version), dest, version.files)

    def local_copy(self, version: ModelVersion, cache_key: str, cache_dir: str | os.PathLike[str] | None) -> Path:
        """A local folder with the version's files: the folder itself on a local
        registry, else a checked download cached under ``cache_dir`` (versions are
        immutable, so a cached copy stays valid)."""
        if self._store.is_local:
            # Checked here, on every load from the registry (serve, predict, gate,
            # rollback): a local registry is as easy to damage as a bucket.
            folder = Path(self.folder(version.model, version.version))
            self._store.verify_local(folder, version.files)
            return folder
        root_key = hashlib.sha256(cache_key.encode()).hexdigest()[:16]
        base = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "raypipe-registry-cache"
        target = base / root_key / version.model / str(version.version)
        if (target / VERSION_FILE).exists():
            self._store.verify_local(target, version.files)
            return target
        staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
        self.download_into(version, staging)
        try:
            os.replace(staging, target)
        except OSError:
            # Another process finished the same download first: theirs is as good as ours.
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def verify(self, version: ModelVersion) -> int:
        """Check every file of ``version`` where it is stored against its recorded sha256.

        Returns:
            The number of files checked.

        Raises:
            RegistryCorruptError: a file is missing, or has another digest.
        """
        folder = self.folder(version.model, version.version)
        if self._store.is_local:
            return self._store.verify_local(folder, version.files)
        with tempfile.TemporaryDirectory(prefix="raypipe-verify-") as tmp:
            self._store.download_dir(folder, Path(tmp), version.files)
            missing = sorted(set(version.files) - {p.relative_to(tmp).as_posix() for p in Path(tmp).rglob("*") if p.is_file()})
        if missing:
            raise RegistryCorruptError(
                f"{self._where(version.model)}: version {version.version} is missing {', '.join(missing)} "
                f"listed in {VERSION_FILE}; register the model again."
            )
        return len(version.files)

    def clean_incomplete(self, name: str, older_than_s: float) -> list[int]:
        """Delete the folders without ``version.json`` untouched for ``older_than_s``;
        return their numbers."""
        removed = []
        now = time.time()
        for number in self.numbers(name, complete=False):
            if self.is_complete(name, number):
                continue
            folder = self.folder(name, number)
            files = self._store.list_files(folder)
            newest = max((f.mtime.timestamp() for f in files if f.mtime is not None), default=0.0)
            if now - newest >= older_than_s:
                self._store.delete_dir(folder)
                removed.append(number)
        return removed
