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
* :class:`raypipe.registry._lock.Lock` serializes writers of one model (see
  that module for what it guarantees on each kind of filesystem).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from raypipe.registry._errors import RegistryCorruptError, RegistryError

_CHUNK = 8 * 1024 * 1024

# (path, size, mtime_ns, inode) -> sha256 of local artifacts already checked in this process.
_VERIFIED: dict[tuple[str, int, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of the local file ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(display: str, path: str, expected: str, actual: str) -> RegistryCorruptError:
    return RegistryCorruptError(
        f"registry {display}: {path} has sha256 {actual}, expected {expected} from version.json. "
        f"The artifact was modified or truncated after registration; restore it or register the model again."
    )


def _after_torn_line(fd: int) -> bytes:
    """``b"\\n"`` when the file open at ``fd`` is non-empty and does not end in a newline.

    A writer that died mid-append leaves a torn last line; the next line must
    start on a line of its own, or it is glued onto the torn one and lost with it.
    """
    size = os.fstat(fd).st_size
    if size == 0:
        return b""
    return b"" if os.pread(fd, 1, size - 1) == b"\n" else b"\n"


def utc_now() -> str:
    """The current UTC time, ISO 8601 with microseconds (event and record times)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def to_json(obj: Any, where: str) -> bytes:
    """``obj`` as sorted-key JSON bytes; numpy values become Python ones.

    Raises:
        RegistryError: a value JSON cannot hold (named with ``where``).
    """

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
                existing = self.read_bytes(path) or b""
                torn = b"\n" if existing and not existing.endswith(b"\n") else b""
                with self.fs.open_append_stream(path) as stream:
                    stream.write(torn + line)
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
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, _after_torn_line(fd) + line)
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

    def verify_local(self, folder: str | Path, manifest: dict[str, dict[str, Any]]) -> int:
        """Check every file of ``manifest`` under the local ``folder`` against its sha256.

        A file whose size, mtime and inode are unchanged since its last check in
        this process is not hashed again (versions are immutable; a rewrite
        changes the mtime).

        Returns:
            The number of files checked.

        Raises:
            RegistryCorruptError: a file is missing or its digest differs, naming
                the file, the expected and the actual digest.
        """
        for rel, entry in sorted(manifest.items()):
            path = Path(folder) / rel
            expected = entry.get("sha256")
            try:
                st = path.stat()
            except FileNotFoundError:
                raise RegistryCorruptError(
                    f"registry {self.display}: {path} is missing; version.json lists it with sha256 {expected}. "
                    f"The version was damaged after registration; register the model again."
                ) from None
            key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
            actual = _VERIFIED.get(key)
            if actual is None:
                actual = file_sha256(path)
            if expected is not None and actual != expected:
                _VERIFIED.pop(key, None)
                raise _mismatch(self.display, str(path), expected, actual)
            _VERIFIED[key] = actual
        return len(manifest)

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
                raise _mismatch(self.display, info.path, expected, digest.hexdigest())

    def delete_dir(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_dir(path)
