"""SQL sources (``type: sql``): SQLite, PostgreSQL and MySQL/MariaDB read as Ray read tasks.

One read task per range partition of ``partition.column`` (its MIN/MAX taken on the
driver when not given), each streaming its rows in blocks over its own connection
(sqlite3 / psycopg / pymysql). ``incremental`` reads only rows above the committed
watermark and up to the column's current maximum (see :mod:`raypipe.data.watermark`).
The SQL text itself (quoting, literals, ranges) is built by :mod:`raypipe.data._sql`.
The password never appears in messages: :func:`mask_url` and ``scrub`` hide it.
Example::

    ds = read_sql(cfg.data.source)   # what read_source does for ``type: sql``
"""

from __future__ import annotations

import functools
import os
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import ray
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from raypipe.data import _sql
from raypipe.data import provenance as prov
from raypipe.data import watermark as wmk
from raypipe.data._sql import rows_to_table
from raypipe.data.columns import ColumnMap
from raypipe.errors import ConfigError, DataError, SchemaError, did_you_mean

__all__ = ["SqlDatasource", "mask_url", "read_sql"]


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
    inc = source.incremental
    session = wmk.current_session()
    state_dir = inc.state_uri or (session.state_dir if session else None)
    path = wmk.state_file(state_dir, prov.source_name(source)) if state_dir else None
    previous = wmk.read_watermark(path, inc.column) if path else None
    return wmk.Watermark(prov.source_name(source), inc.column, inc.start if previous is None else previous, None, path)


def _sql_plan(source: Any, connect: _Connect, query: str | None, names: list[str], origin: str) -> list[str]:
    """The SELECT statements of a read: one per partition, each within the incremental window.

    One planning query on the driver takes what the config does not give: the
    partition column's MIN/MAX and the watermark column's MAX, both over the rows
    above the committed watermark.
    """
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
                wmk.encode_value(pending.current)
            except TypeError as exc:
                raise DataError(f"data.source.incremental.column: {origin}: {exc}.") from None
        # Rows above the maximum taken now arrive after the plan: the next run reads them.
        window.append(f"{wcol} <= {lit(pending.current)}" if pending.current is not None else "1 = 0")
        session = wmk.current_session()
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


def read_sql(source: Any) -> ray.data.Dataset:
    """Read a ``type: sql`` source (:class:`raypipe.config.SqlSource`) as range-partitioned read tasks.

    The statement is probed on the driver first (a bad URL, table or query fails
    before any task starts); an incremental source reads only the rows above its
    committed watermark and records the pending one in the open
    :func:`~raypipe.data.watermark.watermark_session`.
    """
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
