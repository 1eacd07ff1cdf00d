"""A small, safe expression language for derived feature columns.

Expressions are parsed with :mod:`ast` and compiled into a tree of numpy
closures; Python's ``eval`` is never called, so an expression can only do what
the whitelist below allows, whatever text a config holds.

Allowed:

* numbers (``3``, ``0.5``, ``1e-3``) and column names (``age``); a column whose
  name is not a Python identifier is written in backticks: ```capital-gain```;
* ``+ - * / // % **`` and unary ``-`` / ``+``;
* comparisons ``< <= > >= == !=`` (chains like ``0 < x < 1`` too) giving 1.0 / 0.0;
* ``and``, ``or``, ``not`` (non-zero is true) giving 1.0 / 0.0;
* functions: ``log``, ``log1p``, ``exp``, ``sqrt``, ``abs``, ``min(a, b)``,
  ``max(a, b)`` (elementwise), ``where(cond, a, b)``, ``clip(x, lo, hi)``,
  ``isnull(x)``, ``fillna(x, v)``.

Missing values are NaN and propagate: any operation with a NaN operand gives
NaN (comparisons and ``and``/``or``/``not`` too), except ``isnull`` and
``fillna``. Results that are infinite (``1 / 0``, ``log(0)``) become NaN,
because XGBoost rejects infinite feature values.

Anything else (attribute access, subscripts, strings, lambdas, calls to other
names, keyword arguments, ...) is a :class:`ValueError` naming the construct
and its position.

Example:
    >>> import numpy as np
    >>> fn = compile_expression("where(x > 1, log(x), 0)")
    >>> fn({"x": np.array([0.5, np.e])}).tolist()
    [0.0, 1.0]
    >>> referenced_names("capital_gain - capital_loss")
    ['capital_gain', 'capital_loss']
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["FUNCTIONS", "referenced_names", "compile_expression"]

#: Whitelisted functions and their number of arguments.
FUNCTIONS: dict[str, int] = {
    "log": 1,
    "log1p": 1,
    "exp": 1,
    "sqrt": 1,
    "abs": 1,
    "min": 2,
    "max": 2,
    "where": 3,
    "clip": 3,
    "isnull": 1,
    "fillna": 2,
}

# Long inputs only make the parser recurse deeper; no useful feature needs more.
_MAX_LENGTH = 2000
_BACKTICK = re.compile(r"`([^`]+)`")

_Compiled = Callable[[Mapping[str, np.ndarray]], "np.ndarray | float"]

_BINOPS: dict[type, Callable] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.FloorDiv: np.floor_divide,
    ast.Mod: np.mod,
    ast.Pow: np.power,
}
_CMPOPS: dict[type, Callable] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}

# Names of AST nodes users may write by mistake, for readable errors.
_CONSTRUCTS: dict[type, str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscript",
    ast.Lambda: "lambda",
    ast.IfExp: "conditional expression (use where(cond, a, b))",
    ast.ListComp: "list comprehension",
    ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension",
    ast.GeneratorExp: "generator expression",
    ast.List: "list",
    ast.Tuple: "tuple",
    ast.Set: "set",
    ast.Dict: "dict",
    ast.JoinedStr: "f-string",
    ast.Starred: "starred argument",
    ast.NamedExpr: "assignment expression",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.Slice: "slice",
}


def _position(node: ast.AST) -> str:
    line = getattr(node, "lineno", 1)
    col = getattr(node, "col_offset", 0) + 1
    return f"line {line}, column {col}" if line != 1 else f"column {col}"


def _reject(what: str, node: ast.AST, expr: str) -> ValueError:
    return ValueError(f"{what} is not allowed in an expression (at {_position(node)} of {expr!r})")


def _parse(expr: str) -> tuple[ast.Expression, dict[str, str]]:
    """Parse ``expr``; backticked names are swapped for placeholder identifiers."""
    if not isinstance(expr, str) or not expr.strip():
        raise ValueError(f"expected a non-empty expression string, got {expr!r}")
    if len(expr) > _MAX_LENGTH:
        raise ValueError(f"expression is {len(expr)} characters long; the limit is {_MAX_LENGTH}")
    quoted: dict[str, str] = {}

    def swap(match: re.Match) -> str:
        name = match.group(1)
        for placeholder, original in quoted.items():
            if original == name:
                return placeholder
        placeholder = f"_rp_quoted_{len(quoted)}_"
        quoted[placeholder] = name
        return placeholder

    text = _BACKTICK.sub(swap, expr)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        where = f"column {exc.offset}" if exc.offset else "the end"
        raise ValueError(f"invalid expression syntax at {where} of {expr!r}: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ValueError(f"expression is nested too deeply: {expr[:60]!r}...") from None
    return tree, quoted


def _check(node: ast.AST, expr: str, names: list[str], quoted: Mapping[str, str]) -> None:
    """Walk the tree, collecting column names and rejecting anything not whitelisted."""
    if isinstance(node, ast.Expression):
        _check(node.body, expr, names, quoted)
    elif isinstance(node, ast.Constant):
        # bool is an int subclass, but True/False read as Python, not as data.
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise _reject(f"constant {node.value!r} ({type(node.value).__name__})", node, expr)
    elif isinstance(node, ast.Name):
        name = quoted.get(node.id, node.id)
        if name.startswith("__"):
            raise _reject(f"name {name!r}", node, expr)
        if name not in names:
            names.append(name)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise _reject(f"operator {type(node.op).__name__}", node, expr)
        _check(node.left, expr, names, quoted)
        _check(node.right, expr, names, quoted)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            raise _reject(f"unary operator {type(node.op).__name__}", node, expr)
        _check(node.operand, expr, names, quoted)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _CMPOPS:
                raise _reject(f"comparison {type(op).__name__}", node, expr)
        for child in (node.left, *node.comparators):
            _check(child, expr, names, quoted)
    elif isinstance(node, ast.BoolOp):
        for child in node.values:
            _check(child, expr, names, quoted)
    elif isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute):
            raise _reject(f"attribute access '.{node.func.attr}'", node, expr)
        if not isinstance(node.func, ast.Name):
            raise _reject("call of a computed function", node, expr)
        fname = node.func.id
        if fname not in FUNCTIONS:
            raise _reject(
                f"function {fname!r} (allowed: {', '.join(sorted(FUNCTIONS))})", node, expr
            )
        if node.keywords:
            raise _reject(f"keyword argument in {fname}()", node, expr)
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise _reject(f"starred argument in {fname}()", arg, expr)
        if len(node.args) != FUNCTIONS[fname]:
            raise ValueError(
                f"{fname}() takes {FUNCTIONS[fname]} argument(s), got {len(node.args)} "
                f"(at {_position(node)} of {expr!r})"
            )
        for arg in node.args:
            _check(arg, expr, names, quoted)
    elif isinstance(node, ast.Attribute):
        raise _reject(f"attribute access '.{node.attr}'", node, expr)
    else:
        what = _CONSTRUCTS.get(type(node), f"{type(node).__name__} construct")
        raise _reject(what, node, expr)


def referenced_names(expr: str) -> list[str]:
    """Column names an expression reads, in order of first appearance.

    Raises:
        ValueError: the expression does not parse or uses a construct outside
            the whitelist; the message names the construct and its position.

    Example:
        >>> referenced_names("where(`hours-per-week` > 40, 1, age)")
        ['hours-per-week', 'age']
    """
    tree, quoted = _parse(expr)
    names: list[str] = []
    _check(tree, expr, names, quoted)
    return names


def _truth(x):
    # NaN is neither true nor false: it stays missing.
    return np.where(np.isnan(x), np.nan, (x != 0).astype(np.float64))


def _as_float(x):
    return np.asarray(x, dtype=np.float64)


def _function(name: str, args: list[_Compiled]) -> _Compiled:
    if name == "log":
        (a,) = args
        return lambda c: np.log(_as_float(a(c)))
    if name == "log1p":
        (a,) = args
        return lambda c: np.log1p(_as_float(a(c)))
    if name == "exp":
        (a,) = args
        return lambda c: np.exp(_as_float(a(c)))
    if name == "sqrt":
        (a,) = args
        return lambda c: np.sqrt(_as_float(a(c)))
    if name == "abs":
        (a,) = args
        return lambda c: np.abs(_as_float(a(c)))
    if name == "min":
        a, b = args
        return lambda c: np.minimum(_as_float(a(c)), _as_float(b(c)))
    if name == "max":
        a, b = args
        return lambda c: np.maximum(_as_float(a(c)), _as_float(b(c)))
    if name == "where":
        cond, a, b = args

        def where(c):
            t = _truth(_as_float(cond(c)))
            return np.where(np.isnan(t), np.nan, np.where(t == 1.0, _as_float(a(c)), _as_float(b(c))))

        return where
    if name == "clip":
        x, lo, hi = args
        return lambda c: np.clip(_as_float(x(c)), _as_float(lo(c)), _as_float(hi(c)))
    if name == "isnull":
        (a,) = args
        return lambda c: np.isnan(_as_float(a(c))).astype(np.float64)
    if name == "fillna":
        a, v = args

        def fillna(c):
            x = _as_float(a(c))
            return np.where(np.isnan(x), _as_float(v(c)), x)

        return fillna
    raise AssertionError(name)  # _check guarantees a whitelisted name


def _compile(node: ast.AST, quoted: Mapping[str, str]) -> _Compiled:
    if isinstance(node, ast.Expression):
        return _compile(node.body, quoted)
    if isinstance(node, ast.Constant):
        value = float(node.value)
        return lambda c: value
    if isinstance(node, ast.Name):
        name = quoted.get(node.id, node.id)
        return lambda c: c[name]
    if isinstance(node, ast.BinOp):
        fn = _BINOPS[type(node.op)]
        left, right = _compile(node.left, quoted), _compile(node.right, quoted)
        return lambda c: fn(_as_float(left(c)), _as_float(right(c)))
    if isinstance(node, ast.UnaryOp):
        operand = _compile(node.operand, quoted)
        if isinstance(node.op, ast.USub):
            return lambda c: np.negative(_as_float(operand(c)))
        if isinstance(node.op, ast.UAdd):
            return lambda c: _as_float(operand(c))

        def negate(c):
            t = _truth(_as_float(operand(c)))
            return np.where(np.isnan(t), np.nan, 1.0 - t)

        return negate
    if isinstance(node, ast.Compare):
        parts = [_compile(n, quoted) for n in (node.left, *node.comparators)]
        ops = [_CMPOPS[type(op)] for op in node.ops]

        def compare(c):
            values = [_as_float(p(c)) for p in parts]
            result = None
            for i, op in enumerate(ops):
                a, b = values[i], values[i + 1]
                r = np.where(np.isnan(a) | np.isnan(b), np.nan, op(a, b).astype(np.float64))
                result = r if result is None else _and(result, r)
            return result

        return compare
    if isinstance(node, ast.BoolOp):
        values = [_compile(v, quoted) for v in node.values]
        combine = _and if isinstance(node.op, ast.And) else _or

        def boolop(c):
            result = _truth(_as_float(values[0](c)))
            for v in values[1:]:
                result = combine(result, _truth(_as_float(v(c))))
            return result

        return boolop
    if isinstance(node, ast.Call):
        return _function(node.func.id, [_compile(a, quoted) for a in node.args])
    raise AssertionError(type(node))  # _check rejected everything else


def _and(a, b):
    return np.where(np.isnan(a) | np.isnan(b), np.nan, ((a == 1.0) & (b == 1.0)).astype(np.float64))


def _or(a, b):
    return np.where(np.isnan(a) | np.isnan(b), np.nan, ((a == 1.0) | (b == 1.0)).astype(np.float64))


def compile_expression(expr: str) -> Callable[..., np.ndarray]:
    """Compile ``expr`` into ``fn(columns, n_rows=None) -> float64 array``.

    ``columns`` maps each referenced name to a float64 numpy array (NaN for
    missing). The result has one value per row; ``n_rows`` sizes the result of
    an expression that reads no column (``"1 + 2"``).

    Raises:
        ValueError: as :func:`referenced_names`.

    Example:
        >>> import numpy as np
        >>> compile_expression("a / b")({"a": np.array([1.0, 1.0]), "b": np.array([2.0, 0.0])}).tolist()
        [0.5, nan]
    """
    tree, quoted = _parse(expr)
    names: list[str] = []
    _check(tree, expr, names, quoted)
    body = _compile(tree, quoted)

    def evaluate(columns: Mapping[str, np.ndarray], n_rows: int | None = None) -> np.ndarray:
        missing = [n for n in names if n not in columns]
        if missing:
            raise KeyError(f"expression {expr!r} needs column(s) {missing}, which the input lacks")
        if n_rows is None:
            n_rows = len(columns[names[0]]) if names else (len(next(iter(columns.values()))) if columns else 1)
        with np.errstate(all="ignore"):
            out = np.asarray(body(columns), dtype=np.float64)
        if out.ndim == 0:
            out = np.full(n_rows, float(out))
        else:
            out = np.array(out, dtype=np.float64, copy=True)
        out[np.isinf(out)] = np.nan
        return out

    evaluate.names = names  # type: ignore[attr-defined]
    evaluate.expr = expr  # type: ignore[attr-defined]
    return evaluate
