"""The safe expression language: allowed constructs against numpy, rejected ones by message."""

from __future__ import annotations

import numpy as np
import pytest

from raypipe.features.expression import FUNCTIONS, compile_expression, referenced_names

X = np.array([-2.0, -0.5, 0.0, 1.0, 4.0, np.nan])
Y = np.array([1.0, 2.0, 0.0, -3.0, 0.5, 2.0])
COLS = {"x": X, "y": Y}


def run(expr: str, cols=COLS) -> np.ndarray:
    return compile_expression(expr)(cols)


def same(got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_array_equal(got, np.asarray(want, dtype=np.float64))


@pytest.mark.parametrize(
    "expr, reference",
    [  # references are lambdas: numpy warnings stay inside the errstate below
        ("x + y", lambda: X + Y),
        ("x - y * 2", lambda: X - Y * 2),
        ("x ** 2", lambda: X**2),
        ("-x", lambda: -X),
        ("+x", lambda: X),
        ("x % 3", lambda: np.mod(X, 3)),
        ("x // 2", lambda: np.floor_divide(X, 2)),
        ("(x + 1) / 2", lambda: (X + 1) / 2),
        ("abs(x)", lambda: np.abs(X)),
        ("exp(y)", lambda: np.exp(Y)),
        ("log1p(y)", lambda: np.log1p(Y)),
        ("min(x, y)", lambda: np.minimum(X, Y)),
        ("max(x, y)", lambda: np.maximum(X, Y)),
        ("clip(x, -1, 1)", lambda: np.clip(X, -1, 1)),
        ("isnull(x)", lambda: np.isnan(X).astype(float)),
        ("fillna(x, 7)", lambda: np.where(np.isnan(X), 7.0, X)),
        ("1e-3 * x", lambda: 1e-3 * X),
    ],
)
def test_arithmetic_and_functions_match_numpy(expr, reference):
    with np.errstate(all="ignore"):
        want = np.asarray(reference(), dtype=np.float64)
    want = np.where(np.isinf(want), np.nan, want)
    same(run(expr), want)


def test_comparisons_give_one_zero_and_propagate_missing():
    same(run("x > 0"), [0, 0, 0, 1, 1, np.nan])
    same(run("x <= y"), [1, 1, 1, 0, 0, np.nan])
    same(run("x == 0"), [0, 0, 1, 0, 0, np.nan])
    same(run("x != 0"), [1, 1, 0, 1, 1, np.nan])
    same(run("-1 < x < 2"), [0, 1, 1, 1, 0, np.nan])  # chained, like Python


def test_boolean_operators_treat_nonzero_as_true():
    same(run("x > 0 and y > 0"), [0, 0, 0, 0, 1, np.nan])
    same(run("x > 0 or y > 0"), [1, 1, 0, 1, 1, np.nan])
    same(run("not x"), [0, 0, 1, 0, 0, np.nan])


def test_where_selects_and_keeps_missing_condition_missing():
    same(run("where(x > 0, x, y)"), [1.0, 2.0, 0.0, 1.0, 4.0, np.nan])
    same(run("where(y > 1, 10, 20)"), [20, 10, 20, 20, 20, 10])


def test_invalid_math_and_infinities_become_missing():
    # sqrt(-2), log(0), 1/0 and overflow: NaN (XGBoost rejects infinite values)
    got = run("sqrt(x) + log(x + 2) + 1 / x")
    assert np.isnan(got[:3]).all()
    assert np.isnan(run("exp(1000 * y)")[1])
    assert np.isnan(run("1 / (x - x)")).all()


def test_constant_expression_is_broadcast_to_rows():
    same(compile_expression("1 + 2")({"x": X}), np.full(6, 3.0))
    same(compile_expression("2 ** 3")({}, n_rows=2), [8.0, 8.0])


def test_referenced_names_in_order_without_functions():
    assert referenced_names("log(b) + a * b - where(c > 0, a, 1)") == ["b", "a", "c"]
    assert referenced_names("1 + 2") == []


def test_backticks_quote_names_that_are_not_identifiers():
    assert referenced_names("`capital-gain` - `color=red` + x") == ["capital-gain", "color=red", "x"]
    cols = {"capital-gain": np.array([5.0]), "color=red": np.array([1.0]), "x": np.array([0.5])}
    same(compile_expression("`capital-gain` - `color=red` + x")(cols), [4.5])


def test_function_names_may_also_be_column_names():
    same(compile_expression("log(log)")({"log": np.array([np.e])}), [1.0])


@pytest.mark.parametrize(
    "expr, message",
    [
        ("__import__('os')", "function '__import__'"),
        ("__import__('os').system('true')", "attribute access '.system'"),
        ("x.real", "attribute access '.real'"),
        ("x[0]", "subscript"),
        ("lambda: 1", "lambda"),
        ("'text'", "constant 'text' (str)"),
        ("x + 'a'", "constant 'a' (str)"),
        ("eval('1')", "function 'eval'"),
        ("open('/etc/passwd')", "function 'open'"),
        ("foo(x)", "function 'foo'"),
        ("x if y else 1", "conditional expression"),
        ("[x for x in y]", "list comprehension"),
        ("(x, y)", "tuple"),
        ("{1: 2}", "dict"),
        ("True", "constant True (bool)"),
        ("None", "constant None"),
        ("f'{x}'", "f-string"),
        ("(y := 1)", "assignment expression"),
        ("x @ y", "operator MatMult"),
        ("x & y", "operator BitAnd"),
        ("~x", "unary operator Invert"),
        ("x in y", "comparison In"),
        ("x is y", "comparison Is"),
        ("log(x, base=2)", "keyword argument in log()"),
        ("max(*x)", "starred argument"),
        ("(lambda: 1)()", "call of a computed function"),
        ("__builtins__", "name '__builtins__'"),
    ],
)
def test_rejected_constructs_are_named(expr, message):
    with pytest.raises(ValueError) as info:
        referenced_names(expr)
    assert message in str(info.value)
    assert "is not allowed" in str(info.value) or "takes" in str(info.value)
    with pytest.raises(ValueError):
        compile_expression(expr)


def test_error_gives_the_position():
    with pytest.raises(ValueError, match=r"at column 5 of 'x \+ y\.z'"):
        referenced_names("x + y.z")
    with pytest.raises(ValueError, match="line 2"):
        referenced_names("(x +\n y[0])")


def test_wrong_arity_and_syntax_errors():
    with pytest.raises(ValueError, match=r"where\(\) takes 3 argument\(s\), got 2"):
        referenced_names("where(x, y)")
    with pytest.raises(ValueError, match="invalid expression syntax"):
        referenced_names("x +")
    with pytest.raises(ValueError, match="expected a non-empty expression"):
        referenced_names("   ")
    with pytest.raises(ValueError, match="limit"):
        referenced_names("x+" * 2000 + "x")


def test_statements_do_not_parse():
    for text in ("import os", "x = 1", "del x", "x; y"):
        with pytest.raises(ValueError, match="invalid expression syntax"):
            referenced_names(text)


def test_missing_column_at_run_time_is_a_clear_key_error():
    with pytest.raises(KeyError, match="needs column"):
        compile_expression("a + b")({"a": X})


def test_function_whitelist_is_the_documented_one():
    assert set(FUNCTIONS) == {"log", "log1p", "exp", "sqrt", "abs", "min", "max", "where", "clip", "isnull", "fillna"}
