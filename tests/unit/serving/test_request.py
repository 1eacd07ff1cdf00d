"""Request parsing and validation of the endpoint, without Ray or HTTP."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from raypipe.serving.request import (
    SAFE_INT,
    InputSchema,
    LabelSchema,
    RequestError,
    authorized,
    feedback_items,
    hash_key,
    load_api_key_hashes,
    new_prediction_ids,
    parse_json,
    valid_prediction_id,
)

SCHEMA = {
    "task": "binary_classification",
    "label": "income",
    "weight": None,
    "id": "row_id",
    "columns": {
        "row_id": {"type": "int"},
        "age": {"type": "int", "min": 17, "max": 100},
        "hours": {"type": "float", "nullable": True},
        "sex": {"type": "category", "allowed": ["Female", "Male"]},
        "workclass": {"type": "category", "nullable": True},
        "married": {"type": "bool", "nullable": True},
        "income": {"type": "category", "allowed": ["<=50K", ">50K"]},
    },
}


@pytest.fixture(scope="module")
def inputs() -> InputSchema:
    return InputSchema(SCHEMA)


def _error(inputs: InputSchema, payload, max_instances: int = 100) -> RequestError:
    with pytest.raises(RequestError) as info:
        inputs.table(payload, max_instances)
    return info.value


def test_rows_and_columns_give_the_same_typed_table(inputs):
    rows = [
        {"age": 39, "hours": 40.5, "sex": "Male", "workclass": "Private", "married": True},
        {"age": 52.0, "sex": "Female", "workclass": None},  # optional fields may be absent or null; 52.0 is the integer 52
    ]
    a = inputs.table({"instances": rows}, 100)
    b = inputs.table({"columns": ["sex", "age", "hours", "workclass", "married"],
                      "data": [["Male", 39, 40.5, "Private", True], ["Female", 52, None, None, None]]}, 100)
    assert a.equals(b)
    assert a.column_names == ["row_id", "age", "hours", "sex", "workclass", "married"]
    assert a.column("age").to_pylist() == [39, 52]
    assert a.column("hours").to_pylist() == [40.5, None]
    assert a.column("married").to_pylist() == [True, None]
    assert a.column("row_id").null_count == 2  # the id column is optional online


def test_label_is_not_an_input(inputs):
    err = _error(inputs, {"instances": [{"age": 39, "sex": "Male", "income": ">50K"}]})
    assert err.status == 422
    assert err.details[0]["field"] == "instances[0].income" and "unknown field" in err.details[0]["got"]


def test_schema_violations_name_field_expected_and_got(inputs):
    err = _error(inputs, {"instances": [
        {"age": 39, "sex": "Male"},
        {"age": 7, "sex": "Male"},
        {"age": 39, "sex": "Other"},
        {"sex": "Male"},
        {"age": "old", "sex": "Male"},
        {"age": 39, "sex": "Male", "hours": {"a": 1}},
    ]})
    assert err.status == 422 and err.type == "schema_violation"
    got = {d["field"]: (d["expected"], d["got"]) for d in err.details}
    assert got["instances[5].hours"] == ("a finite number", "an object")
    err = _error(inputs, {"instances": [
        {"age": 7, "sex": "Male"}, {"age": 39, "sex": "Other"}, {"sex": "Male"}, {"age": "old", "sex": "Male"},
    ]})
    got = {d["field"]: (d["expected"], d["got"]) for d in err.details}
    assert got == {
        "instances[0].age": (">= 17", "7"),
        "instances[1].sex": ("one of ['Female', 'Male']", "Other"),
        "instances[2].age": ("a value (the field is required)", None),
        "instances[3].age": (f"an integer between -{SAFE_INT} and {SAFE_INT}", "the string 'old'"),
    }


def test_typo_gets_did_you_mean(inputs):
    err = _error(inputs, {"instances": [{"age": 39, "sex": "Male", "hour": 3}]})
    assert err.details == [{"field": "instances[0].hour", "expected": "a feature of the model (Did you mean 'hours'?)",
                            "got": "unknown field 'hour'"}]


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ([], 422, "$"),
        ({"instances": {}}, 422, "instances"),
        ({"instances": []}, 422, "instances"),
        ({"instances": [1]}, 422, "instances[0]"),
        ({"instances": [{"age": 39, "sex": "Male"}] * 101}, 413, None),
        ({"columns": ["age"], "data": [[1, 2]]}, 422, "data[0]"),
        ({"columns": ["age", "age"], "data": [[1, 2]]}, 422, "columns"),
        ({"columns": "age", "data": []}, 422, "columns"),
        ({"instances": [], "extra": 1}, 422, "$"),
    ],
)
def test_bad_shapes(inputs, payload, status, field):
    err = _error(inputs, payload)
    assert err.status == status
    if field is not None:
        assert err.details[0]["field"] == field
    assert json.loads(err.body())["error"]["type"] in ("schema_violation", "too_large")


def test_non_finite_numbers_are_missing_values(inputs):
    table = inputs.table(parse_json(b'{"instances": [{"age": 40, "sex": "Male", "hours": NaN}]}'), 10)
    assert table.column("hours").to_pylist() == [None]
    err = _error(inputs, parse_json(b'{"instances": [{"age": Infinity, "sex": "Male"}]}'))
    assert err.details[0]["field"] == "instances[0].age" and err.details[0]["rule"] == "not_null"


@pytest.mark.parametrize("body", [b"", b"{", b'{"a": 1,}', b"\xff\xfe", b"[" * 100_000])
def test_malformed_json_is_400(body):
    with pytest.raises(RequestError) as info:
        parse_json(body)
    assert info.value.status == 400 and info.value.type == "malformed_request"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(["age", "hours", "sex", "workclass", "married", "row_id", "income", "x", ""])
instances = st.lists(st.dictionaries(field_names, json_values, max_size=7) | json_values, max_size=5)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.one_of(
    json_values,
    st.fixed_dictionaries({"instances": instances}),
    st.fixed_dictionaries({"columns": st.lists(field_names | json_values, max_size=4), "data": st.lists(json_values | st.lists(json_values, max_size=5), max_size=4)}),
))
# Found by CI: an int past 2**53 met the float bound of age's max rule (ArrowInvalid, a 500).
@example(payload={"instances": [{"age": 9007199254740994.0}]})
@example(payload={"instances": [{"age": 9007199254744099}]})
def test_any_payload_gives_a_table_or_a_request_error(inputs, payload):
    try:
        table = inputs.table(payload, 100)
    except RequestError as exc:
        assert exc.status in (413, 422)
        assert json.loads(exc.body())["error"]["message"]
    else:
        assert table.num_rows >= 1 and table.column_names[0] == "row_id"


def test_api_keys(monkeypatch, tmp_path):
    monkeypatch.setenv("KEYS", "alpha, beta")
    (tmp_path / "keys").write_text("# rotated monthly\ngamma\n")
    hashes = load_api_key_hashes("KEYS", str(tmp_path / "keys"))
    assert hashes == [hash_key("alpha"), hash_key("beta"), hash_key("gamma")]
    assert authorized("Bearer beta", hashes) and authorized("bearer gamma", hashes)
    assert not authorized("Bearer delta", hashes) and not authorized(None, hashes) and not authorized("beta", hashes)
    assert authorized(None, [])  # no keys configured: open
    monkeypatch.delenv("KEYS")
    with pytest.raises(ValueError, match="KEYS is unset"):
        load_api_key_hashes("KEYS", None)


# ----------------------------------------------------------------- issue 13 regressions


def test_int_beyond_2_53_is_a_422_naming_the_field(inputs):
    # Was: passed validation, failed the feature transform -> 500 for every request batched with it.
    err = _error(inputs, {"instances": [{"age": 39, "sex": "Male", "row_id": 9234544920900004}]})
    assert err.status == 422
    assert [(d["field"], d["expected"]) for d in err.details] == [("instances[0].row_id", f"<= {SAFE_INT}")]
    err = _error(inputs, {"instances": [{"age": 39, "sex": "Male", "row_id": -(2**70)}]})
    assert [(d["field"], d["expected"]) for d in err.details] == [("instances[0].row_id", f">= -{SAFE_INT}")]
    assert inputs.table({"instances": [{"age": 39, "sex": "Male", "row_id": SAFE_INT}]}, 10).column("row_id").to_pylist() == [SAFE_INT]
    prop = inputs.openapi()["properties"]["row_id"]
    assert prop == {"anyOf": [{"type": "integer", "minimum": -SAFE_INT, "maximum": SAFE_INT}, {"type": "null"}]}


def test_lone_surrogate_and_huge_integer_are_400():
    err = _raises(lambda: parse_json(b'{"instances": [{"education": "\\ud800"}]}'))
    assert err.status == 400 and err.details[0]["field"] == "$.instances[0].education"
    assert parse_json('{"a": "\\ud83d\\ude00"}'.encode()) == {"a": "\U0001f600"}  # a pair is one character
    err = _raises(lambda: parse_json(b'{"a": ' + b"9" * 5000 + b"}"))
    assert err.status == 400 and err.type == "malformed_request"


def test_every_problem_is_listed_at_once(inputs):
    err = _error(inputs, {"instances": [{"age": 7, "sex": "Robot", "bogus": 1}, 5]})
    assert sorted(d["field"] for d in err.details) == ["instances[0].age", "instances[0].bogus", "instances[0].sex", "instances[1]"]


@pytest.mark.parametrize("body", [True, 1, "x", None, [], {"items": []}, {"items": True}, {"items": [1]}, {"prediction_id": 3}])
def test_feedback_shapes_are_422_never_a_crash(body):
    err = _raises(lambda: feedback_items(body, 10))
    assert err.status == 422 and err.details[0]["field"]


def test_prediction_ids_verify_only_under_their_key():
    ids = new_prediction_ids(3, b"k" * 32)
    assert len(set(ids)) == 3 and all(valid_prediction_id(i, b"k" * 32) for i in ids)
    assert not valid_prediction_id(ids[0], b"x" * 32)
    forged = ids[0].rsplit("-", 2)[0] + "-7-" + ids[0].rsplit("-", 1)[1]
    assert not valid_prediction_id(forged, b"k" * 32) and not valid_prediction_id("abc", b"k" * 32)


def test_labels_follow_the_label_type():
    classes = LabelSchema("binary_classification", ["<=50K", ">50K"])
    assert classes.check(">50K") is None and classes.check("maybe") == "one of ['<=50K', '>50K']"
    numbers = LabelSchema("regression", None)
    assert numbers.check(3.5) is None and numbers.check(float("inf")) == "a finite number"
    assert numbers.check(True) == "a finite number" and numbers.check("3") == "a finite number"
    ints = LabelSchema("binary_classification", [0, 1])
    assert ints.check(1) is None and ints.check(True) == "one of [0, 1]"


def _raises(fn) -> RequestError:
    with pytest.raises(RequestError) as info:
        fn()
    return info.value


def test_category_codes_may_come_as_json_integers():
    # Bike's weathersit is a category of "1".."4"; clients send 1. The document says so too.
    inputs = InputSchema({"task": "regression", "label": "y", "columns": {
        "w": {"type": "category", "allowed": ["1", "2"]}, "y": {"type": "float"}}})
    assert inputs.table({"instances": [{"w": 1}, {"w": "2"}]}, 10).column("w").to_pylist() == ["1", "2"]
    assert inputs.openapi()["properties"]["w"] == {"enum": ["1", "2", 1, 2]}
    assert _error(inputs, {"instances": [{"w": 3}, {"w": True}]}).details == [
        {"field": "instances[1].w", "expected": "a string (or an integer)", "got": "a boolean"},
        {"field": "instances[0].w", "expected": "one of ['1', '2']", "got": "3", "rule": "allowed"}]


# --------------------------------------------------------------------------- plain-rule path

PLAIN = {
    "task": "binary_classification", "label": "income", "weight": None, "id": None,
    "columns": {
        "age": {"type": "int", "min": 17, "max": 100},
        "fnlwgt": {"type": "int", "min": 0.5},
        "hours": {"type": "float", "nullable": True, "min": 0.5, "max": 99.5},
        "sex": {"type": "category", "allowed": ["Female", "Male"]},
        "workclass": {"type": "category", "nullable": True},
        "code": {"type": "string", "nullable": True, "allowed": ["1", "2"]},
        "income": {"type": "category", "allowed": ["<=50K", ">50K"]},
    },
}


def _both(payload):
    """``table()`` with the plain-rule path and with the validator alone: (table or error) each."""
    out = []
    for plain in (True, False):
        inputs = InputSchema(PLAIN)
        assert inputs._plain  # every column of PLAIN has plain rules
        inputs._plain = plain
        try:
            out.append(inputs.table(payload, 100))
        except RequestError as exc:
            out.append((exc.status, exc.type, exc.details))
    return out


def test_plain_rules_give_the_validators_table():
    rows = [{"age": 17, "fnlwgt": 1, "hours": 0.5, "sex": "Male", "workclass": None, "code": 2},
            {"age": 100.0, "fnlwgt": SAFE_INT, "sex": "Female", "workclass": "Private", "code": "1"}]
    fast, slow = _both({"instances": rows})
    assert fast.equals(slow) and fast.schema.equals(slow.schema, check_metadata=True)
    assert fast.column("age").to_pylist() == [17, 100] and fast.column("code").to_pylist() == ["2", "1"]


@pytest.mark.parametrize("row", [
    {"age": 16}, {"age": 101}, {"fnlwgt": 0}, {"hours": 0.4999}, {"hours": 99.6}, {"sex": "male"}, {"sex": None},
    {"code": "3"}, {"code": 3}, {"age": None}, {"age": SAFE_INT + 1}, {"age": True}, {"age": 39.5},
])
def test_a_broken_rule_gets_the_validators_error(row):
    fast, slow = _both({"instances": [{"age": 39, "fnlwgt": 5, "sex": "Male", **row}]})
    assert isinstance(fast, tuple) and fast == slow and fast[0] == 422


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.fixed_dictionaries({}, optional={
    "age": st.one_of(st.none(), st.integers(0, 200), st.floats(allow_nan=False), st.booleans()),
    "fnlwgt": st.one_of(st.none(), st.integers(-2, 2**64)),
    "hours": st.one_of(st.none(), st.floats(-1, 200)),
    "sex": st.one_of(st.none(), st.sampled_from(["Female", "Male", "x", ""])),
    "workclass": st.one_of(st.none(), st.text(max_size=3)),
    "code": st.one_of(st.none(), st.sampled_from(["1", "2", "3"]), st.integers(0, 3)),
}), min_size=1, max_size=5))
def test_plain_rules_agree_with_the_validator(rows):
    fast, slow = _both({"instances": rows})
    if isinstance(fast, tuple):
        assert fast == slow
    else:
        assert fast.equals(slow)
