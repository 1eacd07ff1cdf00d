"""The registry's storage primitives over a pyarrow filesystem.

Three primitives carry all of the registry's consistency:

* :meth:`Store.write_atomic` writes a temporary file next to the target, then
  moves it over the target.  On a local filesystem the move is ``rename(2)``,
  atomic: readers see the old or the new file, never a partial one, and a
  crash before the move leaves the old file intact.  On object stores (S3,
  GCS) ``move`` is copy + delete; the copy replaces the target object in one
  step, so readers still never see a partial file, but a crash can leave a
  ``.NAME.tmp-*`` object behind (harmless, ignored).
* :meth:`Store.append_line` appends one line to a log.  Object stores cannot
  append, so there the whole file is rewritten atomically (under the lock).
* :class:`Lock` serializes writers of one model.  Locally it is a file created
  with ``O_CREAT | O_EXCL`` (exclusive by the kernel).  pyarrow offers no
  create-if-absent on other filesystems, so there it is best effort: write a
  token, wait briefly, read it back; two writers racing inside that window can
  both believe they hold it.  Drive promotions from one place on such stores.
  A lock older than ``stale_after_s`` (its holder died) is broken.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import socket
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from raypipe.registry._errors import LockTimeoutError, RegistryCorruptError, RegistryError

log = logging.getLogger(__name__)

_CHUNK = 8 * 1024 * 1024


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def to_json(obj: Any, where: str) -> bytes:
    def default(value: Any) -> Any:
        # numpy scalars and arrays are what metrics usually arrive as.
        if hasattr(value, "tolist"):
            return value.tolist()
        if hasattr(value, "item"):
            return value.item()
        raise TypeError(type(value).__name__)

    try:
        return json.dumps(obj, default=default, sort_keys=True, allow_nan=True).encode()
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{where}: expected JSON-serializable values. Got a {exc} value.") from exc


class Store:
    """Paths and file operations under the registry root on one pyarrow filesystem."""

    def __init__(self, fs: pafs.FileSystem, root: str, display: str, scheme: str | None = None):
        self.fs = fs
        self.root = root.rstrip("/") or "/"
        self.display = display
        self.is_local = isinstance(fs, pafs.LocalFileSystem)
        # The scheme the user wrote ("gs", not pyarrow's type name "gcs").
        self.scheme = scheme or fs.type_name.removeprefix("py::")

    def path(self, *parts: str | int) -> str:
        return "/".join([self.root.rstrip("/"), *(str(p) for p in parts)])

    def uri(self, path: str) -> str:
        """A location for humans and for :meth:`ModelRegistry.download`'s callers."""
        if self.is_local:
            return path
        return f"{self.scheme}://{path.lstrip('/')}"

    # ---- reading

    def info(self, path: str) -> pafs.FileInfo:
        return self.fs.get_file_info(path)

    def exists(self, path: str) -> bool:
        return self.info(path).type != pafs.FileType.NotFound

    def is_dir(self, path: str) -> bool:
        return self.info(path).type == pafs.FileType.Directory

    def read_bytes(self, path: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(path) as stream:
                return stream.read()
        except FileNotFoundError:
            return None
        except OSError:
            # Some filesystems raise a plain OSError (ArrowIOError) for a missing file.
            if not self.exists(path):
                return None
            raise

    def read_json(self, path: str) -> Any:
        data = self.read_bytes(path)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise RegistryCorruptError(
                f"registry {self.display}: {path} is not valid JSON ({exc}). "
                f"Restore it from a backup or remove the broken entry."
            ) from exc

    def list_dir(self, path: str) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(path, allow_not_found=True, recursive=False)
        return sorted(self.fs.get_file_info(selector), key=lambda i: i.path)

    def list_files(self, path: str) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(path, allow_not_found=True, recursive=True)
        return sorted(
            (i for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File),
            key=lambda i: i.path,
        )

    # ---- writing

    def parent(self, path: str) -> str:
        return path.rsplit("/", 1)[0]

    def write_bytes(self, path: str, data: bytes) -> None:
        self.fs.create_dir(self.parent(path), recursive=True)
        with self.fs.open_output_stream(path) as stream:
            stream.write(data)

    def write_atomic(self, path: str, data: bytes) -> None:
        parent, name = path.rsplit("/", 1)
        tmp = f"{parent}/.{name}.tmp-{uuid.uuid4().hex}"
        self.write_bytes(tmp, data)
        try:
            self.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.delete_file(tmp)
            raise

    def replace(self, src: str, dst: str) -> None:
        """Move ``src`` over ``dst``: the commit point of :meth:`write_atomic`."""
        self.fs.move(src, dst)

    def append_line(self, path: str, line: bytes) -> None:
        """Append one line; callers hold the model's lock."""
        if not self.is_local:
            try:
                self.fs.create_dir(self.parent(path), recursive=True)
                with self.fs.open_append_stream(path) as stream:
                    stream.write(line)
                return
            except (NotImplementedError, pa.ArrowNotImplementedError):
                # Object stores cannot append: rewrite the whole log atomically.
                existing = self.read_bytes(path) or b""
                if existing and not existing.endswith(b"\n"):
                    existing += b"\n"
                self.write_atomic(path, existing + line)
                return
        os.makedirs(self.parent(path), exist_ok=True)
        # One write(2) on an O_APPEND descriptor: the line lands whole, at the end.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def upload_dir(self, local_dir: Path, dest: str) -> dict[str, dict[str, Any]]:
        """Copy every file under ``local_dir`` to ``dest``; return their sizes and sha256."""
        manifest: dict[str, dict[str, Any]] = {}
        files = sorted(p for p in local_dir.rglob("*") if p.is_file())
        for src in files:
            rel = src.relative_to(local_dir).as_posix()
            target = f"{dest}/{rel}"
            self.fs.create_dir(self.parent(target), recursive=True)
            digest = hashlib.sha256()
            size = 0
            with open(src, "rb") as fin, self.fs.open_output_stream(target) as fout:
                while chunk := fin.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    fout.write(chunk)
            manifest[rel] = {"size": size, "sha256": digest.hexdigest()}
        return manifest

    def download_dir(self, src: str, dest: Path, manifest: dict[str, dict[str, Any]]) -> None:
        """Copy the files of ``src`` into ``dest``, checking each against ``manifest``."""
        prefix = src.rstrip("/") + "/"
        for info in self.list_files(src):
            rel = info.path[len(prefix):] if info.path.startswith(prefix) else info.base_name
            if rel.split("/")[-1].startswith("."):
                continue  # temp files of an interrupted write
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with self.fs.open_input_stream(info.path) as fin, open(target, "wb") as fout:
                while chunk := fin.read(_CHUNK):
                    digest.update(chunk)
                    fout.write(chunk)
            expected = manifest.get(rel, {}).get("sha256")
            if expected is not None and expected != digest.hexdigest():
                raise RegistryCorruptError(
                    f"registry {self.display}: {info.path} has sha256 {digest.hexdigest()}, "
                    f"expected {expected} from version.json. The artifact was modified or "
                    f"truncated after registration; register the model again."
                )

    def delete_dir(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_dir(path)


# ------------------------------------------------------------------- locking


def _owner() -> dict[str, Any]:
    return {"token": uuid.uuid4().hex, "pid": os.getpid(), "host": socket.gethostname(), "ts": utc_now()}


class Lock:
    """An exclusive lock on one model of the registry (see the module docstring).

    Args:
        store: the registry store.
        path: the lock file.
        what: the locked thing, for messages (``"model 'adult'"``).
        timeout_s: how long to wait before :class:`LockTimeoutError`.
        stale_after_s: a lock older than this is presumed abandoned and broken.
    """

    def __init__(self, store: Store, path: str, what: str, timeout_s: float, stale_after_s: float):
        self.store = store
        self.path = path
        self.what = what
        self.timeout_s = timeout_s
        self.stale_after_s = stale_after_s
        self._owner: dict[str, Any] | None = None

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        owner = _owner()
        payload = json.dumps(owner).encode()
        deadline = time.monotonic() + self.timeout_s
        delay = 0.002
        self.store.fs.create_dir(self.store.parent(self.path), recursive=True)
        while True:
            got = self._try_local(payload) if self.store.is_local else self._try_remote(payload, owner["token"])
            if got:
                self._owner = owner
                return
            self._break_if_stale()
            if time.monotonic() >= deadline:
                raise self._timeout_error()
            # Jittered backoff: waiters must not wake in lockstep.
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.1)

    def release(self) -> None:
        owner, self._owner = self._owner, None
        if owner is None:
            return
        current = self._holder()
        if current is None or current.get("token") != owner["token"]:
            log.warning(
                "registry %s: the lock on %s was taken over while held (it went stale after %ss); "
                "a concurrent writer may have run at the same time.",
                self.store.display, self.what, self.stale_after_s,
            )
            return
        with contextlib.suppress(FileNotFoundError):
            if self.store.is_local:
                os.remove(self.path)
            else:
                self.store.fs.delete_file(self.path)

    # ---- local: the kernel arbitrates

    def _try_local(self, payload: bytes) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, payload)
        finally:
            os.close(fd)
        return True

    # ---- other filesystems: write, settle, read back

    def _try_remote(self, payload: bytes, token: str) -> bool:
        if self.store.exists(self.path):
            return False
        self.store.write_bytes(self.path, payload)
        time.sleep(0.05)  # let a racing writer's PUT land before we read back
        holder = self._holder()
        return holder is not None and holder.get("token") == token

    # ---- shared

    def _holder(self) -> dict[str, Any] | None:
        try:
            data = self.store.read_bytes(self.path)
        except OSError:
            return None
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return {}  # being written right now

    def _age_s(self) -> tuple[float, Any] | None:
        if self.store.is_local:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return None
            return time.time() - st.st_mtime, (st.st_ino, st.st_mtime_ns)
        info = self.store.info(self.path)
        if info.type == pafs.FileType.NotFound or info.mtime is None:
            return None
        return time.time() - info.mtime.timestamp(), info.mtime

    def _break_if_stale(self) -> None:
        age = self._age_s()
        if age is None or age[0] <= self.stale_after_s:
            return
        log.warning(
            "registry %s: breaking the lock on %s held by %s for %.0f s (stale after %s s).",
            self.store.display, self.what, self._holder(), age[0], self.stale_after_s,
        )
        if not self.store.is_local:
            with contextlib.suppress(FileNotFoundError):
                self.store.fs.delete_file(self.path)
            return
        # Rename first, then check it is still the stale file we judged: another
        # waiter may have broken it and taken a fresh lock in between.
        aside = f"{self.path}.stale-{uuid.uuid4().hex}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        st = os.stat(aside)
        if (st.st_ino, st.st_mtime_ns) != age[1]:
            # We took someone's fresh lock: put it back unless a new one exists already.
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        os.remove(aside)

    def _timeout_error(self) -> LockTimeoutError:
        holder = self._holder() or {}
        who = f"{holder.get('host', '?')} pid {holder.get('pid', '?')} since {holder.get('ts', '?')}"
        return LockTimeoutError(
            f"registry {self.store.display}: {self.what} is locked by {who}; waited {self.timeout_s} s "
            f"for {self.path}. If that process is gone, delete the lock file, or wait: it is "
            f"broken automatically after {self.stale_after_s} s."
        )
