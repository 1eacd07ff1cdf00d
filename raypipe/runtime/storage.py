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

import pyarrow as pa
import pyarrow.fs as pafs

__all__ = ["absolute_uri", "is_local", "join_uri", "resolve"]


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
        return os.path.abspath(os.path.expanduser(uri.removeprefix("file://")))
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
