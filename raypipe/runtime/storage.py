"""One way to resolve a URI: local paths, ``file://``, ``~`` and every remote scheme.

Every module that reads or writes a registry, a log, a landing zone, a checkpoint or a
report resolves its location here, so ``~/reg``, ``./reg``, ``file:///abs/reg`` and
``s3://bucket/reg`` mean the same thing everywhere:

- a plain path or ``file://`` URI is a local folder: ``~`` is expanded and a relative path
  is taken from the working directory of the process that resolves it (the driver, where
  ``raypipe`` runs; pass :func:`absolute_uri` values to Ray workers);
- a URI pyarrow knows (``s3://``, ``gs://``, ``hdfs://``, ``abfs://``) opens with
  ``pyarrow.fs.FileSystem.from_uri``;
- any other scheme goes through fsspec when it is installed (``memory://``, ``az://``, …).

Example::

    fs, path = resolve("~/raypipe-registry")   # (LocalFileSystem, "/home/me/raypipe-registry")
"""

from __future__ import annotations

import os
import time

import pyarrow as pa
import pyarrow.fs as pafs

__all__ = ["absolute_uri", "is_local", "join_uri", "resolve", "working_dir"]

#: The working directory this process last saw (see :func:`working_dir`).
_last_working_dir: str | None = None

#: How long :func:`working_dir` waits for a replaced working directory to come back.
_REAPPEAR_S = 30.0


def working_dir() -> str:
    """This process's working directory, re-entered by its path when it was replaced.

    A driver started by ``ray job submit --working-dir`` runs in the job's unpacked
    package; when several raylets share one machine (``ray start`` twice, or
    ``ray.cluster_utils.Cluster``), each node's runtime-env agent deletes and unpacks
    that same folder again as the job starts (Ray's ``download_and_unpack_package``
    with ``overwrite``), so the driver's directory is deleted under it and
    ``os.getcwd()`` fails with a bare "[Errno 2] No such file or directory". The same
    path holds the same files again a moment later: this goes back into it.

    Raises:
        FileNotFoundError: the directory is gone and did not come back; the message
            names it.
    """
    global _last_working_dir
    try:
        _last_working_dir = os.getcwd()
        return _last_working_dir
    except FileNotFoundError:
        if _last_working_dir is None:
            raise FileNotFoundError(
                "the working directory of this process was deleted (os.getcwd() failed) before raypipe saw it. "
                "Hint: run from an existing directory, or use absolute paths."
            ) from None
    deadline = time.monotonic() + _REAPPEAR_S
    while not os.path.isdir(_last_working_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        os.chdir(_last_working_dir)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"the working directory {_last_working_dir} was deleted while raypipe ran and did not come back "
            f"within {_REAPPEAR_S:g} s; relative paths cannot be resolved. Hint: use absolute paths or URIs."
        ) from None
    return _last_working_dir


def is_local(uri: str) -> bool:
    """True for a plain path or a ``file://`` URI."""
    return "://" not in uri or uri.startswith("file://")


def absolute_uri(uri: str) -> str:
    """``uri`` as a location any process can use: a local one as an absolute path (``~``
    expanded, ``file://`` dropped), a remote one unchanged.

    >>> absolute_uri("file:///tmp/x")
    '/tmp/x'
    """
    if is_local(uri):
        path = os.path.expanduser(uri.removeprefix("file://"))
        return os.path.normpath(os.path.join(working_dir(), path))
    return uri


def join_uri(base: str, *parts: str) -> str:
    """``base`` and ``parts`` joined with ``/`` (local or remote alike)."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def resolve(uri: str, what: str = "location") -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path within it of ``uri``.

    Args:
        uri: a local path, ``file://`` URI or remote URI.
        what: what the location is for, named in the error (``registry.uri``).

    Raises:
        ValueError: the URI names no filesystem pyarrow or fsspec can open; the message
            names ``what``, the URI and the schemes that work.
    """
    if is_local(uri):
        return pafs.LocalFileSystem(), absolute_uri(uri)
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path.rstrip("/") or path
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError) as exc:
        first = exc
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError:
        fsspec = None
    if fsspec is not None:
        try:
            fs, path = url_to_fs(uri)
            return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path.rstrip("/") or path
        except (ImportError, ValueError, OSError) as exc:
            first = exc
    raise ValueError(
        f"{what}: cannot open {uri!r} ({first}). Expected a local path, file://, or a URI "
        "pyarrow or fsspec understands (s3://, gs://, hdfs://, abfs://)."
    ) from first
