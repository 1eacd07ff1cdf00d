"""Sources: read a configured ``data.source`` into a ``ray.data.Dataset``, chosen by ``type``.

Every reader runs in parallel inside Ray Data (files are parsed in read tasks, never
on the driver) and every dataset it returns carries the reader columns of
:mod:`raypipe.data.provenance`: ``__rp_file``, ``__rp_line``, ``__rp_error`` and
``__rp_raw``. Rows a reader cannot parse (a ragged CSV line, a log line the pattern
does not match, a broken JSON line) are kept as error rows for validation to
quarantine, never skipped.

=========  ===============================================================================
type       how
=========  ===============================================================================
csv        :class:`CsvDatasource` (pyarrow streaming CSV, all columns as strings,
           ``invalid_row_handler`` captures ragged lines with their line numbers)
parquet    :class:`ParquetRowsDatasource` (pyarrow ``ParquetFile.iter_batches``, row numbers)
json/jsonl :class:`JsonDatasource` (pyarrow JSON Lines; top-level arrays; bad lines kept)
text       :class:`TextDatasource` (lines, then vectorized ``extract_regex``)
sql        :class:`SqlDatasource` over sqlite3 / psycopg / pymysql: one read task per
           range partition of ``partition.column``, rows streamed in blocks;
           ``incremental`` reads only rows above the committed watermark (see
           :mod:`raypipe.data.watermark`); the password never appears in messages
api        :class:`ApiDatasource`: JSON pages with retries, backoff and a rate limit
           (:mod:`raypipe.data._api`); numbered pages with a known total are read by
           parallel tasks
union      the sources' datasets stacked; validation aligns their columns by name
=========  ===============================================================================

Paths may be files, folders or globs, local or any pyarrow/fsspec URI. Example::

    ds = read_source(cfg.data.source)
    ds.schema()  # age: string, ..., __rp_file: string, __rp_line: int64, ...

New source types register a reader with :func:`register_source`. A ``SchemaError``
raised while a dataset executes arrives as ``RayTaskError(SchemaError)``; run the
work inside :func:`unwrap_task_errors` to get the plain error back.
"""

from __future__ import annotations

import fnmatch
import functools
import glob
import os
import re
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import ray
from ray.data.datasource import Datasource, FileBasedDatasource

from raypipe.data import provenance as prov
from raypipe.data._formats import (
    ColumnMap,
    CsvFormat,
    read_csv_stream,
    read_json_buffer,
    read_parquet_file,
    read_text_stream,
)
from raypipe.errors import ConfigError, DataError, RaypipeError, SchemaError, StageError, did_you_mean

__all__ = [
    "read_source",
    "register_source",
    "source_types",
    "resolve_paths",
    "source_name",
    "CsvDatasource",
    "ParquetRowsDatasource",
    "JsonDatasource",
    "TextDatasource",
    "SqlDatasource",
    "ApiDatasource",
    "mask_url",
    "original_task_errors",
    "unwrap_task_errors",
]

SourceReader = Callable[[Any], "ray.data.Dataset"]
_READERS: dict[str, SourceReader] = {}


def register_source(*types: str) -> Callable[[SourceReader], SourceReader]:
    """Register a function ``(source_config) -> ray.data.Dataset`` for these ``type`` names.

    The dataset must carry the reader columns (see :mod:`raypipe.data.provenance`).
    """

    def decorate(fn: SourceReader) -> SourceReader:
        for name in types:
            _READERS[name] = fn
        return fn

    return decorate


def source_types() -> list[str]:
    """The registered source ``type`` names."""
    return sorted(_READERS)


def source_name(source: Any) -> str:
    """The name of a source in metrics and quarantine records: ``name``, else its type."""
    return source.name or source.type


def read_source(source: Any) -> ray.data.Dataset:
    """Read a ``data.source`` config model into a lazy ``ray.data.Dataset``.

    Args:
        source: a :class:`raypipe.config.CsvSource`, ``ParquetSource``, ``JsonSource``,
            ``TextSource``, ``SqlSource``, ``ApiSource`` or ``UnionSource`` (or any
            model whose ``type`` was registered). An incremental SQL source read
            inside a :func:`raypipe.data.watermark.watermark_session` records its
            pending watermark there.

    Returns:
        The rows, with ``rename`` then ``columns`` applied, plus the reader columns.
        Nothing is read until the dataset executes.

    Raises:
        ConfigError: the source type is unknown.
        DataError: a path matches no file, a database or API cannot be reached, a
            table, column or query fails, an API answers with an error (checked on
            the driver before any task runs where possible).
        SchemaError: a selected column is missing (raised when the data is read).
    """
    reader = _READERS.get(source.type)
    if reader is None:
        raise ConfigError(
            f"data.source.type: unknown source type '{source.type}'.{did_you_mean(source.type, _READERS)}"
            f" Expected one of: {', '.join(source_types())}."
        )
    with original_task_errors():
        return reader(source)


@contextmanager
def original_task_errors() -> Iterator[None]:
    """Datasets created inside raise a task's own exception (a ``RayTaskError(SchemaError)``).

    By default Ray Data replaces an exception raised in a UDF with ``UserCodeException``,
    losing its class; a dataset copies the ``DataContext`` when it is created, so the
    setting sticks to the datasets built here and leaves the caller's context as it was.
    """
    ctx = ray.data.DataContext.get_current()
    before = ctx.raise_original_map_exception
    ctx.raise_original_map_exception = True
    try:
        yield
    finally:
        ctx.raise_original_map_exception = before


def _user_error(exc: BaseException) -> RaypipeError | None:
    """The raypipe error a Ray task raised, unwrapped from Ray's task error."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if isinstance(e, RaypipeError) and not isinstance(cause, RaypipeError):
            return e
        stack.extend([cause, e.__cause__, e.__context__])
    return None


@contextmanager
def unwrap_task_errors(stage: str) -> Iterator[None]:
    """Run Ray Data work so that a raypipe error raised in a task surfaces as itself.

    A ``SchemaError`` raised in a read task reaches the driver as
    ``RayTaskError(SchemaError)``, whose message is a remote traceback; inside this
    block it is re-raised as a plain ``SchemaError`` with the original message. Any
    other failure becomes a :class:`StageError` naming ``stage``. Datasets copy the
    ``DataContext`` when created, so create and execute them inside the block::

        with unwrap_task_errors("predict"):
            read_source(cfg.data.source).write_parquet(out)
    """
    try:
        with original_task_errors():
            yield
    except Exception as exc:
        if isinstance(exc, RaypipeError) and type(exc).__module__.startswith("raypipe"):
            raise  # raised on the driver: already clean
        found = _user_error(exc)
        if found is not None:
            # A fresh instance: no Ray wrapper class, no notes about UDF retries.
            cls = next(c for c in type(found).__mro__ if c.__module__.startswith("raypipe"))
            message = str(found.args[0]) if found.args else str(found)
            raise cls(message.split("\nFailed to apply UDF transform", 1)[0]) from None
        first = str(getattr(exc, "cause", None) or exc).strip().splitlines()
        raise StageError(f"{stage}: Ray Data failed ({first[-1] if first else type(exc).__name__}).") from exc


# --------------------------------------------------------------------------- paths

_GLOB = re.compile(r"[*?\[]")


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def resolve_paths(paths: list[str], where: str = "data.source.paths") -> list[str]:
    """Expand globs and make local paths absolute (read tasks may run elsewhere).

    Files and folders pass through (Ray lists folders); a glob is expanded here,
    locally with :mod:`glob` and remotely with the pyarrow filesystem of the URI
    (or fsspec when pyarrow does not know the scheme).

    Raises:
        DataError: a local path does not exist, or a glob matches nothing.
    """
    out: list[str] = []
    for i, path in enumerate(paths):
        if _is_local(path):
            local = os.path.abspath(os.path.expanduser(path.removeprefix("file://")))
            if _GLOB.search(path):
                found = sorted(p for p in glob.glob(local, recursive=True) if os.path.isfile(p))
                if not found:
                    raise DataError(f"{where}[{i}]: '{path}' matches no files (relative paths are from {os.getcwd()}).")
                out.extend(found)
            elif not os.path.exists(local):
                raise DataError(
                    f"{where}[{i}]: '{path}' does not exist (relative paths are from {os.getcwd()}). "
                    "Hint: check the path, or run from the project folder."
                )
            else:
                out.append(local)
        elif _GLOB.search(path):
            found = _glob_uri(path)
            if not found:
                raise DataError(f"{where}[{i}]: '{path}' matches no files.")
            out.extend(found)
        else:
            out.append(path)
    return out


def _glob_uri(uri: str) -> list[str]:
    scheme = urllib.parse.urlsplit(uri).scheme
    try:
        from pyarrow import fs as pafs

        filesystem, path = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, ValueError, OSError):
        import fsspec

        filesystem = fsspec.open(uri).fs  # raises for unknown schemes, with fsspec's message
        return sorted(f"{scheme}://{p}" if "://" not in p else p for p in filesystem.glob(uri))
    parts = path.split("/")
    fixed = next(i for i, part in enumerate(parts) if _GLOB.search(part))
    base = "/".join(parts[:fixed]) or "/"
    infos = filesystem.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    found = sorted(i.path for i in infos if i.type == pafs.FileType.File and fnmatch.fnmatchcase(i.path, path))
    if scheme in ("", "file"):
        return found
    # S3/GCS paths come back as bucket/key: put the scheme back.
    prefix = f"{scheme}://"
    return [p if p.startswith(prefix) else prefix + p.lstrip("/") for p in found]


# --------------------------------------------------------------------------- datasources


class CsvDatasource(FileBasedDatasource):
    """Ray's file datasource for delimited text, parsed by :func:`raypipe.data._formats.read_csv_stream`.

    Ray's own ``CSVDatasource`` infers types (a word in a numeric column fails the
    whole read) and either fails or silently drops ragged lines; this one reads
    strings and turns ragged lines into error rows with their line numbers.
    """

    def __init__(self, paths: list[str], fmt: CsvFormat, **kwargs: Any):
        super().__init__(paths, **kwargs)
        self._fmt = fmt

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        yield from read_csv_stream(f, path, self._fmt)


class TextDatasource(FileBasedDatasource):
    """Lines of text parsed by a named-group regex, with line numbers (see :func:`parse_lines`).

    Ray's ``read_text`` does not keep line numbers, which quarantine records need,
    so lines are split and matched here, in the read task, vectorized.
    """

    def __init__(self, paths: list[str], pattern: str, encoding: str = "utf-8", **kwargs: Any):
        super().__init__(paths, **kwargs)
        self._pattern = pattern
        self._encoding = encoding

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        yield from read_text_stream(f, path, self._pattern, self._encoding)


class JsonDatasource(FileBasedDatasource):
    """JSON Lines, JSON arrays and single objects, with line/element numbers and bad lines kept."""

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        yield from read_json_buffer(f.read(), path)


class ParquetRowsDatasource(FileBasedDatasource):
    """Parquet files read batch by batch with 1-based row numbers per file.

    Unlike ``ray.data.read_parquet`` it knows each row's position in its file (for
    quarantine records) and never lets a data column named ``path`` hide the file.
    Hive partition folders (``year=2024/``) still become columns.
    """

    def __init__(self, paths: list[str], columns: list[str] | None = None, **kwargs: Any):
        super().__init__(paths, **kwargs)
        self._columns = columns

    def _open_input_source(self, filesystem: Any, path: str, **open_args: Any) -> pa.NativeFile:
        return filesystem.open_input_file(path)  # Parquet needs random access

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        yield from read_parquet_file(f, path, self._columns)


def _datasource(cls: type, source: Any, **kwargs: Any) -> Any:
    paths = resolve_paths(list(source.paths))
    try:
        return cls(paths, **kwargs)
    except (OSError, ValueError) as exc:
        raise DataError(f"data.source.paths: cannot list {', '.join(source.paths)} ({exc}).") from exc


class _ApplyColumns:
    """map_batches UDF: a source's rename/columns (fused into the read task by Ray)."""

    def __init__(self, colmap: ColumnMap):
        self.colmap = colmap

    def __call__(self, table: pa.Table) -> pa.Table:
        return self.colmap.apply(table)


def _finish(ds: ray.data.Dataset, source: Any) -> ray.data.Dataset:
    colmap = ColumnMap.of(source)
    if not colmap.rename and colmap.columns is None:
        return ds
    return ds.map_batches(_ApplyColumns(colmap), batch_format="pyarrow", batch_size=None, zero_copy_batch=True)


@register_source("csv")
def _read_csv(source: Any) -> ray.data.Dataset:
    return _finish(ray.data.read_datasource(_datasource(CsvDatasource, source, fmt=CsvFormat.of(source))), source)


@register_source("text")
def _read_text(source: Any) -> ray.data.Dataset:
    datasource = _datasource(TextDatasource, source, pattern=source.pattern, encoding=source.encoding)
    return _finish(ray.data.read_datasource(datasource), source)


@register_source("json", "jsonl")
def _read_json(source: Any) -> ray.data.Dataset:
    return _finish(ray.data.read_datasource(_datasource(JsonDatasource, source)), source)


@register_source("parquet")
def _read_parquet(source: Any) -> ray.data.Dataset:
    from ray.data.datasource import Partitioning

    wanted = ColumnMap.of(source).source_columns()
    datasource = _datasource(ParquetRowsDatasource, source, columns=wanted, partitioning=Partitioning("hive"))
    return _finish(ray.data.read_datasource(datasource), source)


@register_source("union")
def _read_union(source: Any) -> ray.data.Dataset:
    parts = [read_source(s) for s in source.sources]
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    return _finish(ds, source)


# --------------------------------------------------------------------------- SQL


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe for messages and logs)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable database URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _scrub(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "***").replace(urllib.parse.quote(secret, safe=""), "***")
    return text


class _Connect:
    """A picklable DB-API connection factory; its repr never shows the password."""

    def __init__(self, kind: str, masked: str, params: dict[str, Any], secret: str | None):
        self.kind = kind
        self.masked = masked
        self._params = params
        self._secret = secret

    def __repr__(self) -> str:
        return f"_Connect({self.masked})"

    def __call__(self) -> Any:
        if self.kind == "sqlite":
            import sqlite3

            uri = "file:" + urllib.parse.quote(self._params["path"]) + "?mode=ro"
            return sqlite3.connect(uri, uri=True)
        if self.kind == "postgresql":
            try:
                import psycopg
            except ImportError as exc:
                raise DataError(
                    f"data.source.url: {self.masked}: PostgreSQL needs psycopg. Hint: pip install 'raypipe[postgres]'."
                ) from exc
            return psycopg.connect(**self._params)
        try:
            import pymysql
        except ImportError as exc:
            raise DataError(f"data.source.url: {self.masked}: MySQL needs pymysql. Hint: pip install 'raypipe[mysql]'.") from exc
        return pymysql.connect(**self._params)

    def streaming_cursor(self, conn: Any) -> Any:
        """A cursor that fetches from the server as it is read, not the whole result at execute."""
        if self.kind == "postgresql":
            return conn.cursor(name=f"raypipe_{os.getpid()}_{id(conn)}")
        if self.kind == "mysql":
            import pymysql.cursors

            return conn.cursor(pymysql.cursors.SSCursor)
        return conn.cursor()

    def scrub(self, text: object) -> str:
        """``text`` (a driver's error or its message) with the password masked."""
        return _scrub(str(text).strip(), self._secret)


def _connector(url: str, password_env: str | None = None) -> _Connect:
    masked = mask_url(url)
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower().split("+", 1)[0]
    if scheme == "sqlite":
        if not url.lower().startswith("sqlite:///"):
            raise DataError(f"data.source.url: '{masked}': expected sqlite:///relative/path.db or sqlite:////absolute/path.db.")
        path = os.path.abspath(urllib.parse.unquote(url[len("sqlite:///") :].split("?", 1)[0]))
        if not os.path.isfile(path):
            raise DataError(
                f"data.source.url: '{masked}': the SQLite file {path} does not exist "
                f"(relative paths are from {os.getcwd()})."
            )
        return _Connect("sqlite", masked, {"path": path}, None)
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    if password_env is not None:
        password = os.environ.get(password_env)
        if password is None:
            raise ConfigError(
                f"data.source.password_env: environment variable {password_env} is not set. "
                f"Hint: export {password_env}=... (the password of {masked})."
            )
    query = dict(urllib.parse.parse_qsl(parts.query))
    if scheme in ("postgresql", "postgres"):
        params: dict[str, Any] = {
            "host": parts.hostname or "localhost",
            "port": parts.port or 5432,
            "user": urllib.parse.unquote(parts.username) if parts.username else os.environ.get("PGUSER", "postgres"),
            "dbname": parts.path.lstrip("/") or os.environ.get("PGDATABASE", "postgres"),
            "connect_timeout": int(query.pop("connect_timeout", 10)),
            **query,
        }
        password = password if password is not None else os.environ.get("PGPASSWORD")
        if password is not None:
            params["password"] = password
        return _Connect("postgresql", masked, params, password)
    if scheme in ("mysql", "mariadb"):
        params = {
            "host": parts.hostname or "localhost",
            "port": parts.port or 3306,
            "user": urllib.parse.unquote(parts.username) if parts.username else os.environ.get("MYSQL_USER", "root"),
            "database": parts.path.lstrip("/") or None,
            "connect_timeout": int(query.pop("connect_timeout", 10)),
            "charset": query.pop("charset", "utf8mb4"),
        }
        password = password if password is not None else os.environ.get("MYSQL_PWD")
        if password is not None:
            params["password"] = password
        return _Connect("mysql", masked, params, password)
    raise DataError(
        f"data.source.url: '{masked}': unsupported database scheme '{parts.scheme}'. "
        "Expected sqlite:///path.db, postgresql://user@host/db or mysql://user@host/db."
    )


@contextmanager
def _cursor(connect: _Connect, streaming: bool = False) -> Iterator[Any]:
    """A cursor on a fresh connection, closed after; a failed connection is a clear DataError."""
    try:
        conn = connect()
    except DataError:
        raise
    except Exception as exc:  # each driver has its own exception tree
        raise DataError(
            f"data.source.url: cannot connect to {connect.masked} ({connect.scrub(exc)}). "
            "Hint: is the server running and reachable from every Ray node? Check host, port, user and "
            "the password in the environment."
        ) from None
    try:
        yield connect.streaming_cursor(conn) if streaming else conn.cursor()
    finally:
        try:
            conn.close()
        except Exception:
            pass


def _probe(connect: _Connect, sql: str, table: str | None) -> list[str]:
    """Run the statement with LIMIT 0 on the driver: clear errors before any task starts."""
    with _cursor(connect) as cursor:
        try:
            probe = f"SELECT * FROM {table} LIMIT 0" if table else f"SELECT * FROM ({sql}) AS _rp_probe LIMIT 0"
            cursor.execute(probe)
            names = [d[0] for d in cursor.description or []]
        except Exception as exc:
            message = connect.scrub(exc)
            if table:
                raise DataError(
                    f"data.source.table: cannot read table '{table}' from {connect.masked} ({message}). "
                    "Hint: check the table name and the user's privileges."
                ) from None
            raise DataError(f"data.source.query: the query failed on {connect.masked} ({message}). Hint: run it in a SQL client.") from None
    return names


def _fetch_one(connect: _Connect, sql: str, where: str) -> tuple:
    """The first row of a planning query (bounds, watermark) run on the driver."""
    with _cursor(connect) as cursor:
        try:
            cursor.execute(sql)
            return tuple(cursor.fetchone() or ())
        except Exception as exc:
            raise DataError(f"{where}: the query {sql!r} failed on {connect.masked} ({connect.scrub(exc)}).") from None


def _read_query(connect: _Connect, sql: str, fetch_rows: int) -> Iterator[pa.Table]:
    """One SQL read task: stream the rows of ``sql`` in blocks of ``fetch_rows``."""
    from raypipe.data._sql import rows_to_table

    with _cursor(connect, streaming=True) as cursor:
        try:
            cursor.execute(sql)
            names = [d[0] for d in cursor.description]
            while rows := cursor.fetchmany(fetch_rows):
                yield rows_to_table(names, rows)
        except Exception as exc:
            raise DataError(f"data.source: reading {connect.masked} failed ({connect.scrub(exc)}; query: {sql}).") from None


class SqlDatasource(Datasource):
    """A SQL read as Ray read tasks: one per query (the partitions of a range-partitioned read).

    Each task opens its own connection and streams its rows in blocks of
    ``fetch_rows`` (server-side cursors on PostgreSQL and MySQL), so no partition
    has to fit in memory at once. Ray's ``read_sql`` shards by
    ``MOD(ABS(MD5(key)), n)`` instead, which PostgreSQL rejects (``MD5`` returns
    text) and which makes every task scan the whole table; ranges of one column
    let the database use its index.

    Args:
        connect: the connection factory (see :func:`_connector`).
        queries: the SELECT statements; their rows together are the dataset.
        fetch_rows: rows per fetch and per block.
    """

    def __init__(self, connect: _Connect, queries: list[str], fetch_rows: int = 100_000):
        self._connect = connect
        self._queries = list(queries)
        self._fetch_rows = fetch_rows

    def get_name(self) -> str:
        return "SQL"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None) -> list[Any]:
        from ray.data.block import BlockMetadata
        from ray.data.datasource import ReadTask

        meta = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
        return [
            ReadTask(functools.partial(_read_query, self._connect, sql, self._fetch_rows), meta, per_task_row_limit=per_task_row_limit)
            for sql in self._queries
        ]


class _SqlProvenance:
    """map_batches UDF: reader columns for SQL rows (no file line: row order is the database's)."""

    def __init__(self, origin: str, colmap: ColumnMap):
        self.origin = origin
        self.colmap = colmap

    def __call__(self, table: pa.Table) -> pa.Table:
        return self.colmap.apply(prov.with_provenance(table, self.origin, None), self.origin)


def _db_column(names: list[str], wanted: str, where: str, origin: str) -> str:
    """The database's spelling of a configured column (PostgreSQL folds unquoted names to lower case)."""
    if wanted in names:
        return wanted
    folded = [n for n in names if n.lower() == wanted.lower()]
    if len(folded) == 1:
        return folded[0]
    raise DataError(
        f"{where}: {origin} has no column '{wanted}' (its columns: {', '.join(names)}).{did_you_mean(wanted, names)}"
    )


def _pending_watermark(source: Any) -> Any:
    """The watermark an incremental read starts above: the committed one, else ``start``.

    Inside a :func:`raypipe.data.watermark.watermark_session` the state folder
    defaults to the session's; without a state file (no ``state_uri``, no session)
    the read starts at ``start`` and nothing is recorded for commit.
    """
    from raypipe.data import watermark as wmk

    inc = source.incremental
    session = wmk.current_session()
    state_dir = inc.state_uri or (session.state_dir if session else None)
    path = wmk.state_file(state_dir, source_name(source)) if state_dir else None
    previous = wmk.read_watermark(path, inc.column) if path else None
    return wmk.Watermark(source_name(source), inc.column, inc.start if previous is None else previous, None, path)


def _sql_plan(source: Any, connect: _Connect, query: str | None, names: list[str], origin: str) -> list[str]:
    """The SELECT statements of a read: one per partition, each within the incremental window.

    One planning query on the driver takes what the config does not give: the
    partition column's MIN/MAX and the watermark column's MAX, both over the rows
    above the committed watermark.
    """
    from raypipe.data import _sql
    from raypipe.data.watermark import current_session, encode_value

    kind, table, inc, part = connect.kind, source.table, source.incremental, source.partition
    lit = functools.partial(_sql.sql_literal, kind=kind)
    window: list[str | None] = []
    stats: list[str] = []
    if inc is not None:
        wcol = _sql.quote_identifier(_db_column(names, inc.column, "data.source.incremental.column", origin), kind)
        pending = _pending_watermark(source)
        if pending.previous is not None:
            window.append(f"{wcol} > {lit(pending.previous)}")
    if part is not None:
        pcol = _sql.quote_identifier(_db_column(names, part.column, "data.source.partition.column", origin), kind)
        stats += [f"MIN({pcol})"] if part.lower is None else []
        stats += [f"MAX({pcol})"] if part.upper is None else []
    if inc is not None:
        stats.append(f"MAX({wcol})")
    row = list(_fetch_one(connect, _sql.select(table, query, window, ", ".join(stats)), "data.source")) if stats else []
    if inc is not None:
        pending.current = row.pop()
        if pending.current is not None:
            try:
                encode_value(pending.current)
            except TypeError as exc:
                raise DataError(f"data.source.incremental.column: {origin}: {exc}.") from None
        # Rows above the maximum taken now arrive after the plan: the next run reads them.
        window.append(f"{wcol} <= {lit(pending.current)}" if pending.current is not None else "1 = 0")
        session = current_session()
        if session is not None and pending.path is not None:
            session.add(pending)
    conditions: list[str | None] = [None]
    if part is not None:
        lower = part.lower if part.lower is not None else row.pop(0)
        upper = part.upper if part.upper is not None else row.pop(0)
        try:
            cuts = _sql.split_range(lower, upper, part.num_partitions)
        except TypeError as exc:
            raise DataError(
                f"data.source.partition.column: {origin}: {exc}. Hint: partition by a numeric, date or timestamp column."
            ) from None
        conditions = _sql.range_conditions(pcol, cuts, kind)
    return [_sql.select(table, query, [*window, cond]) for cond in conditions]


@register_source("sql")
def _read_sql(source: Any) -> ray.data.Dataset:
    connect = _connector(source.url, source.password_env)
    query = source.query.strip().rstrip(";").strip() if source.query else None
    sql = f"SELECT * FROM {source.table}" if source.table else query
    names = _probe(connect, sql, source.table)
    colmap = ColumnMap.of(source)
    renamed = [colmap.rename.get(n, n) for n in names]
    origin = connect.masked + (f"#{source.table}" if source.table else "")
    for col in colmap.columns or []:
        if col not in renamed:
            raise SchemaError(
                f"data.source: {origin}: column '{col}' is missing (query columns: {', '.join(renamed)}).{did_you_mean(col, renamed)}"
            )
    queries = _sql_plan(source, connect, query, names, origin)
    # One block stream per query: without this Ray splits each task's output into
    # hundreds of tiny blocks (it cannot estimate the size) and stops fusing the
    # provenance step into the read.
    ds = ray.data.read_datasource(SqlDatasource(connect, queries), override_num_blocks=len(queries))
    return ds.map_batches(_SqlProvenance(origin, colmap), batch_format="pyarrow", batch_size=None, zero_copy_batch=True)


# --------------------------------------------------------------------------- HTTP APIs


def _api_pages(source: Any, client: Any, first: Any, numbers: range | None) -> Iterator[pa.Table]:
    """One API read task: ``first`` (already fetched) if given, then the pages numbered
    ``numbers``, or with ``numbers`` None the pages after ``first``, one by one."""
    from raypipe.data import _api
    from raypipe.data._formats import read_records

    if first is not None:
        yield from read_records(first.records, first.url)
    if numbers is None:
        pages = _api.following_pages(client, source, first)
    else:
        pages = _api.numbered_pages(client, source, numbers)
    for page in pages:
        yield from read_records(page.records, page.url)


class ApiDatasource(Datasource):
    """A JSON API read as Ray read tasks (see :mod:`raypipe.data._api` for requests and pagination).

    The first page is requested when the datasource is made, on the driver: a bad
    URL, token or ``records_path`` fails before any task starts, and the first
    response tells how many pages there are. Page-numbered pages with a known
    total are addressable: they are split into ``concurrency`` contiguous runs, one
    read task each, sharing ``rate_limit_per_s`` equally. Other pagination follows
    the API from one response to the next in a single task.

    Args:
        source: the :class:`raypipe.config.ApiSource`.
        token: its token (from :func:`raypipe.data._api.resolve_token`), or None.
    """

    def __init__(self, source: Any, token: str | None = None):
        from raypipe.data import _api

        self._source = source
        self._token = token
        self._first = _api.first_page(_api.ApiClient(source, token), source)
        self._pages = _api.page_count(source, self._first)

    @property
    def num_tasks(self) -> int:
        """How many read tasks :meth:`get_read_tasks` makes."""
        if self._pages is None:
            return 1
        return 1 + min(self._source.concurrency, self._pages - 1)

    def get_name(self) -> str:
        return "API"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None) -> list[Any]:
        from ray.data.block import BlockMetadata
        from ray.data.datasource import ReadTask

        from raypipe.data import _api

        src, first = self._source, self._first
        meta = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)

        def task(client: Any, page: Any, numbers: range | None) -> Any:
            return ReadTask(functools.partial(_api_pages, src, client, page, numbers), meta, per_task_row_limit=per_task_row_limit)

        if self._pages is None:
            return [task(_api.ApiClient(src, self._token), first, None)]
        start = src.pagination.start_page
        rest = range(start + 1, start + self._pages)
        runs = min(src.concurrency, len(rest))
        # The first page is already here: one task hands it over without a request.
        tasks = [task(None, first, range(0))]
        share = src.rate_limit_per_s / runs if src.rate_limit_per_s and runs else None
        for i in range(runs):
            lo, hi = rest.start + len(rest) * i // runs, rest.start + len(rest) * (i + 1) // runs
            tasks.append(task(_api.ApiClient(src, self._token, rate_per_s=share), None, range(lo, hi)))
        return tasks


@register_source("api")
def _read_api(source: Any) -> ray.data.Dataset:
    from raypipe.data._api import resolve_token

    datasource = ApiDatasource(source, resolve_token(source))
    # As for SQL: one block stream per read task, not hundreds of split blocks.
    return _finish(ray.data.read_datasource(datasource, override_num_blocks=datasource.num_tasks), source)


@register_source("stream")
def _read_stream(source: Any) -> ray.data.Dataset:
    # What `raypipe ingest-stream` has landed (raypipe.streams.source).
    from raypipe.streams.source import read_landing_zone

    return read_landing_zone(source)
