"""The lock that serializes the writers of one model.

Locally it is a file created with ``O_CREAT | O_EXCL``: the kernel makes it
exclusive.  pyarrow offers no create-if-absent on other filesystems, so there
it is best effort: write a token, wait briefly, read it back; two writers
racing inside that window can both believe they hold it.  Drive promotions
from one place on such stores.  A lock older than ``stale_after_s`` (its
holder died) is broken; so is, at once, a lock whose holder ran on this host
and whose process is gone (``kill -9`` of a run mid-promotion).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import time
import uuid
from typing import Any

import pyarrow.fs as pafs

from raypipe.registry._errors import LockTimeoutError
from raypipe.registry._store import Store, utc_now

log = logging.getLogger(__name__)


def _owner() -> dict[str, Any]:
    return {"token": uuid.uuid4().hex, "pid": os.getpid(), "host": socket.gethostname(), "ts": utc_now()}


def process_gone(pid: Any, host: Any) -> bool:
    """Whether process ``pid`` ran on this host and no longer exists.

    Only a process on the same host can be checked (``False`` for any other); pid reuse
    can only make a dead process look alive, never the other way round.
    """
    if host != socket.gethostname() or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return False


def _holder_is_dead(holder: dict[str, Any] | None) -> bool:
    """Whether the lock's holder ran on this host and its process no longer exists."""
    return bool(holder) and process_gone(holder.get("pid"), holder.get("host"))


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
        if age is None:
            return
        holder = self._holder()
        dead = _holder_is_dead(holder)
        if not dead and age[0] <= self.stale_after_s:
            return
        why = "its process is gone" if dead else f"stale after {self.stale_after_s} s"
        log.warning(
            "registry %s: breaking the lock on %s held by %s for %.0f s (%s).",
            self.store.display, self.what, holder, age[0], why,
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
