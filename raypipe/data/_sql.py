"""The SQL text behind raypipe's parallel and incremental reads: pure Python, no Ray.

A partitioned read splits the range of one column into ``num_partitions`` queries
that together cover every row exactly once, whatever the bounds: the first also
takes the rows below its upper bound and the rows where the column is null, the
last takes everything from its lower bound up (as Spark's JDBC reader does). An
incremental read adds ``watermark > previous AND watermark <= current``, where
``current`` is the ``MAX`` taken when the read is planned, so rows inserted while
the read runs wait for the next run instead of being skipped.

Values are written into the SQL as literals (numbers, quoted dates and strings)
rather than bound as parameters: each driver has its own placeholder style, and a
``%`` in a user's query would need escaping for some of them.

Example::

    cuts = split_range(1, 1_000_000, 4)                   # [250001, 500001, 750001]
    conds = range_conditions('"id"', cuts, "postgresql")  # 4 WHERE clauses
    queries = [select("t", None, [c]) for c in conds]
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

__all__ = ["quote_identifier", "sql_literal", "split_range", "range_conditions", "select", "rows_to_table"]


def quote_identifier(name: str, kind: str) -> str:
    """A column name quoted for the database (exact case): backticks for MySQL, else double quotes."""
    if kind == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: Any, kind: str) -> str:
    """``value`` as a SQL literal of the database ``kind`` (``sqlite``, ``postgresql``, ``mysql``).

    Raises:
        TypeError: a type that has no portable literal (bytes, lists, ...).
        ValueError: a float that is not finite.
    """
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no SQL literal")
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value!r} has no SQL literal")
        return str(value)
    if isinstance(value, datetime):
        text = value.isoformat(sep=" ")
    elif isinstance(value, (date, time)):
        text = value.isoformat()
    elif isinstance(value, str):
        text = value
    else:
        raise TypeError(f"no SQL literal for a {type(value).__name__} value ({value!r})")
    if kind == "mysql":
        # MySQL also reads backslash escapes inside quotes (unless NO_BACKSLASH_ESCAPES).
        text = text.replace("\\", "\\\\")
    return "'" + text.replace("'", "''") + "'"


def _as_datetime(value: Any) -> tuple[datetime, str] | None:
    """A timestamp written as text (SQLite keeps them so), parsed, with the separator it used."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed, "T" if "T" in value else " "


def _common(lo: Any, hi: Any) -> tuple[Any, Any, str]:
    """Both bounds as one kind: ``int``, ``float``, ``decimal``, ``datetime``, ``date`` or ``text``."""
    kinds = {type(lo), type(hi)}
    if kinds <= {int}:
        return lo, hi, "int"
    if kinds <= {int, Decimal}:
        return Decimal(lo), Decimal(hi), "decimal"
    if kinds <= {int, float, Decimal}:
        return float(lo), float(hi), "float"
    if kinds <= {date}:
        return lo, hi, "date"
    if all(isinstance(v, (date, str)) for v in (lo, hi)):
        parsed = [v if isinstance(v, datetime) else datetime.combine(v, time()) if isinstance(v, date) else _as_datetime(v) for v in (lo, hi)]
        if isinstance(lo, str) and isinstance(hi, str):
            if all(isinstance(p, tuple) for p in parsed):
                return parsed[0][0], parsed[1][0], "text" + parsed[0][1]
        elif not any(p is None for p in parsed):
            a, b = (p[0] if isinstance(p, tuple) else p for p in parsed)
            if (a.tzinfo is None) == (b.tzinfo is None):
                return a, b, "datetime"
    raise TypeError(
        f"cannot split the range {lo!r} .. {hi!r}: expected numbers, dates or timestamps of one kind "
        f"(got {type(lo).__name__} and {type(hi).__name__})"
    )


def split_range(lo: Any, hi: Any, n: int) -> list[Any]:
    """The inner boundaries that cut ``[lo, hi]`` into ``n`` ranges of about equal width.

    Returns ``n - 1`` strictly increasing values (fewer when the range holds fewer
    distinct integers or days than ``n``), of the bounds' kind; timestamps stored
    as text come back as text in the same format.

    Raises:
        TypeError: the bounds are not numbers, dates or timestamps of one kind.
    """
    if n <= 1 or lo is None or hi is None:
        return []
    lo, hi, kind = _common(lo, hi)
    if not lo < hi:
        return []
    if kind == "int":
        width = hi - lo + 1
        cuts: list[Any] = [lo + width * i // n for i in range(1, n)]
    elif kind == "date":
        days = (hi - lo).days + 1
        cuts = [lo + timedelta(days=days * i // n) for i in range(1, n)]
    elif kind in ("float", "decimal"):
        cuts = [lo + (hi - lo) * i / n for i in range(1, n)]
    else:
        span = hi - lo
        cuts = [lo + span * i / n for i in range(1, n)]
    out: list[Any] = []
    for cut in cuts:
        if lo < cut and (not out or cut > out[-1]):
            out.append(cut)
    if kind.startswith("text"):
        return [c.isoformat(sep=kind[4]) for c in out]
    return out


def range_conditions(column: str, cuts: Sequence[Any], kind: str) -> list[str | None]:
    """One WHERE condition per partition; together they hold every row exactly once.

    Args:
        column: the quoted column (see :func:`quote_identifier`).
        cuts: inner boundaries from :func:`split_range`; none gives one partition
            without a condition (``None``).
        kind: the database kind, for literals.
    """
    if not cuts:
        return [None]
    lits = [sql_literal(c, kind) for c in cuts]
    conds: list[str | None] = [f"{column} < {lits[0]} OR {column} IS NULL"]
    conds += [f"{column} >= {a} AND {column} < {b}" for a, b in zip(lits, lits[1:])]
    conds.append(f"{column} >= {lits[-1]}")
    return conds


def select(table: str | None, query: str | None, conditions: Sequence[str | None], columns: str = "*") -> str:
    """``SELECT columns`` from a table or a query, with the conditions ANDed.

    A table is filtered directly (so its indexes serve the ranges); a query is
    wrapped as a derived table.
    """
    frm = table if table else f"({query}) AS _rp_src"
    where = " AND ".join(f"({c})" for c in conditions if c)
    return f"SELECT {columns} FROM {frm}" + (f" WHERE {where}" if where else "")


def _as_text(values: Sequence[Any]) -> pa.Array:
    def text(v: Any) -> str | None:
        if v is None:
            return None
        if isinstance(v, (bytes, bytearray, memoryview)):
            return bytes(v).decode(errors="replace")
        if isinstance(v, (dict, list)):
            return json.dumps(v, default=str)
        return str(v)

    return pa.array([text(v) for v in values], pa.string())


def rows_to_table(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> pa.Table:
    """DB-API rows as an Arrow table, one column per name.

    A column whose values Arrow cannot hold in one type (SQLite lets a cell hold
    anything: ``36`` next to ``'forty'``; or values Arrow does not know, such as
    UUIDs) comes back as text, so validation quarantines the odd value instead of
    the whole read failing.
    """
    if not rows:
        return pa.table({n: pa.array([], pa.null()) for n in names})
    arrays = []
    for i in range(len(names)):
        values = [row[i] for row in rows]  # lists convert about twice as fast as zip(*rows) tuples
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, OverflowError):
            arrays.append(_as_text(values))
    return pa.Table.from_arrays(arrays, names=list(names))
