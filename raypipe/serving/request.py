"""HTTP request handling that does not need Ray: body parsing, validation, errors, auth.

Pure (pyarrow, numpy and the standard library), so the Ray Serve replica and the
bare FastAPI baseline of the benchmarks run the same code. A request body becomes
an Arrow table typed by the model's input schema through
:class:`~raypipe.data.validate.BatchValidator`, the validator that checks rows at
ingest, so a value accepted in training is accepted online and vice versa.

Errors follow the SPEC: ``{"error": {"type", "message", "details": [{"field",
"expected", "got"}]}}`` with 400 (malformed), 401 (auth), 413 (too large),
415 (content type), 422 (schema).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from raypipe.bundle.schema import input_columns
from raypipe.config import ColumnSpec, SchemaConfig
from raypipe.data import provenance as prov
from raypipe.data.validate import BatchValidator
from raypipe.errors import did_you_mean

__all__ = [
    "RequestError",
    "InputSchema",
    "parse_json",
    "error_body",
    "hash_key",
    "load_api_key_hashes",
    "authorized",
    "prediction_body",
    "new_prediction_ids",
    "valid_prediction_id",
    "PREDICTION_ID_PATTERN",
    "LabelSchema",
    "feedback_items",
    "SAFE_INT",
]


@dataclass
class RequestError(Exception):
    """A request the endpoint refuses, with its HTTP status and SPEC error body."""

    status: int
    type: str
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.status} {self.type}: {self.message}"

    def body(self) -> bytes:
        """The JSON error body."""
        return error_body(self.type, self.message, self.details)


def error_body(type_: str, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    """``{"error": {"type", "message", "details"}}`` as JSON bytes."""
    return json.dumps({"error": {"type": type_, "message": message, "details": details or []}}).encode()


def _non_finite(token: str) -> None:
    # JSON has no NaN or Infinity; Python's json accepts the tokens. They mean "no
    # value" here, so the column's nullability decides (422 where it is required).
    return None


#: Largest integer magnitude a JSON number carries exactly everywhere (a double's 53-bit
#: mantissa; JavaScript's ``Number.MAX_SAFE_INTEGER``). Int columns accept no more: past
#: it a client's value may already be rounded, and the feature transform (float64) fails.
SAFE_INT = 2**53 - 1


def parse_json(body: bytes) -> Any:
    """Parse a JSON body; 400 with the position (or the field) of the first error.

    Refuses what JSON's grammar admits but no Unicode text or machine number holds:
    lone UTF-16 surrogates (``"\\ud800"``) and integers longer than Python converts
    (4,300 digits).
    """
    try:
        payload = json.loads(body, parse_constant=_non_finite)
    except UnicodeDecodeError as exc:
        raise RequestError(400, "malformed_request", f"the body is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    except json.JSONDecodeError as exc:
        raise RequestError(400, "malformed_request", f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.") from None
    except RecursionError:
        raise RequestError(400, "malformed_request", "the body is nested too deeply.") from None
    except ValueError as exc:  # int('9' * 5000): Python's integer-string conversion limit
        raise RequestError(400, "malformed_request", f"the body holds a number too long to read: {str(exc)[:120]}",
                           [{"field": "$", "expected": "numbers of at most 4300 digits", "got": "a longer number"}]) from None
    # Only an escape can make a lone surrogate (raw surrogate bytes are not UTF-8): the
    # walk runs only for bodies holding "\\ud8".."\\udf" escapes.
    if b"\\u" in body and re.search(rb"\\u[dD][89a-fA-F]", body):
        where = _surrogate(payload, "$")
        if where is not None:
            raise RequestError(400, "malformed_request", f"{where}: the text holds a lone UTF-16 surrogate, which is no Unicode character.",
                               [{"field": where, "expected": "valid Unicode text", "got": "a lone surrogate escape"}])
    return payload


def _surrogate(value: Any, where: str) -> str | None:
    """Path of the first string (or key) holding a lone surrogate, else None."""
    if isinstance(value, str):
        return where if _SURROGATE.search(value) else None
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _surrogate(v, f"{where}[{i}]")
            if found:
                return found
    elif isinstance(value, dict):
        for k, v in value.items():
            if _SURROGATE.search(k):
                return f"{where}.<key>"
            found = _surrogate(v, f"{where}.{k}")
            if found:
                return found
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


_EXPECTED = {"int": "an integer", "float": "a number", "string": "a string", "category": "a string",
             "bool": "a boolean", "datetime": "an ISO 8601 date-time"}


class InputSchema:
    """The request side of a model's input schema (from the bundle's ``schema.json``).

    The label and weight columns are not inputs; the id column is optional.
    """

    def __init__(self, bundle_schema: dict[str, Any]):
        # Int columns are bounded by what a JSON number carries exactly (SAFE_INT): the
        # bound is checked here, at validation, and the OpenAPI schema says it.
        self.columns: dict[str, ColumnSpec] = {name: _safe_bounds(spec) for name, spec in input_columns(bundle_schema).items()}
        self.id_column = bundle_schema.get("id")
        self.pii = [name for name, spec in self.columns.items() if spec.pii]
        self._names = list(self.columns)
        self._known = set(self._names)
        self._validator = BatchValidator(SchemaConfig(columns=self.columns, extra_columns="drop"), "request")
        # Per column, the validator's rules in plain Python, for requests that break none
        # (see table()); None where a column needs the validator (conversion, regex).
        self._rules = {name: _python_rules(spec) for name, spec in self.columns.items()}
        self._plain = all(rule is not None for rule in self._rules.values())

    def openapi(self) -> dict[str, Any]:
        """JSON Schema of one instance: each feature typed, required unless nullable."""
        props: dict[str, Any] = {}
        for name, spec in self.columns.items():
            prop: dict[str, Any] = {
                "int": {"type": "integer"},
                "float": {"type": "number"},
                "bool": {"type": "boolean"},
                "datetime": {"type": "string", "format": "date-time"},
            }.get(spec.type, {"type": "string"})
            cast = int if spec.type == "int" else float
            if spec.min is not None:
                prop["minimum"] = cast(math.ceil(spec.min) if spec.type == "int" else spec.min)
            if spec.max is not None:
                prop["maximum"] = cast(math.floor(spec.max) if spec.type == "int" else spec.max)
            if spec.allowed is not None:
                prop = {"enum": list(spec.allowed)}
                if _numbers_as_text(spec):  # "1" may come as 1
                    prop["enum"] += [int(a) for a in spec.allowed if re.fullmatch(r"-?(0|[1-9][0-9]*)", a)]
            elif _numbers_as_text(spec):
                prop = {"type": ["string", "integer"]}
            if spec.regex is not None:
                prop["pattern"] = spec.regex
            if spec.description:
                prop["description"] = spec.description
            if spec.nullable:
                prop = {"anyOf": [prop, {"type": "null"}]}
            props[name] = prop
        required = [n for n, s in self.columns.items() if not s.nullable]
        return {"type": "object", "properties": props, "required": required, "additionalProperties": False}

    # ------------------------------------------------------------------ parsing

    def table(self, payload: Any, max_instances: int) -> pa.Table:
        """Typed, validated rows of a ``/predict`` body (parsed JSON).

        Raises:
            RequestError: 413 (too many rows) or 422 (shape or values), listing
                every problem of the request at once (unknown fields, wrong types,
                broken rules), each as ``instances[i].column``.
        """
        columns, where, problems, skip = self._columns(payload, max_instances)
        n = len(next(iter(columns.values()))) if columns else 0
        arrays = []
        plain = self._plain and not problems
        for name in self._names:
            type_ = self.columns[name].type
            arr, bad, clean = _array(columns.get(name), n, type_, _numbers_as_text(self.columns[name]))
            for i in bad:
                if i not in skip:
                    expected = _EXPECTED_JSON[type_] if _numbers_as_text(self.columns[name]) or type_ not in ("string", "category") else "a string"
                    problems.append({"field": where(i, name), "expected": expected, "got": _kind(columns[name][i])})
            plain = plain and not bad and self._rules[name](clean)
            arrays.append(arr)
        if plain:
            # Every value already has its column's Arrow type (the validator's conversion
            # would return it as is) and breaks none of its rules: the validator would
            # return exactly this table, at 0.2-0.3 ms of Arrow calls per request.
            return pa.Table.from_arrays(arrays, names=self._names)
        table = pa.Table.from_arrays([*arrays, pa.array(np.arange(n, dtype=np.int64))], names=[*self._names, prov.LINE])
        valid, bad_rows = self._validator(table)
        if bad_rows.num_rows:
            problems += self._details(bad_rows, where, skip, {(d["field"]) for d in problems})
        if problems:
            raise RequestError(422, "schema_violation", f"{len(problems)} problem(s): the request does not match the model's input schema.",
                               problems[:100])
        return valid.drop_columns([prov.LINE]) if prov.LINE in valid.column_names else valid

    def _columns(self, payload: Any, max_instances: int) -> tuple[dict[str, list], Any, list[dict[str, Any]], set[int]]:
        """The body as lists per column, the field namer, the shape problems, and the
        rows that are no row at all (their values are not checked further)."""
        if not isinstance(payload, dict):
            raise RequestError(422, "schema_violation", 'expected a JSON object {"instances": [...]} or {"columns": [...], "data": [[...]]}.',
                               [{"field": "$", "expected": "an object", "got": _kind(payload)}])
        keys = set(payload)
        details: list[dict[str, Any]] = []
        skip: set[int] = set()
        if "instances" in payload and keys == {"instances"}:
            rows = payload["instances"]
            if not isinstance(rows, list):
                raise RequestError(422, "schema_violation", "instances must be a list of objects.",
                                   [{"field": "instances", "expected": "a list", "got": _kind(rows)}])
            self._check_count(len(rows), max_instances, "instances")
            unknown: dict[str, int] = {}
            for i, row in enumerate(rows):
                if not isinstance(row, dict):
                    details.append({"field": f"instances[{i}]", "expected": "an object", "got": _kind(row)})
                    skip.add(i)
                elif not row.keys() <= self._known:
                    for key in row.keys() - self._known:
                        unknown.setdefault(key, i)
            details += [self._unknown(f"instances[{i}].{k}", k) for k, i in unknown.items()]
            columns = {name: [row.get(name) if isinstance(row, dict) else None for row in rows] for name in self._names}
            return columns, lambda i, name: f"instances[{i}].{name}", details, skip
        if keys == {"columns", "data"}:
            names, data = payload["columns"], payload["data"]
            if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
                details.append({"field": "columns", "expected": "a list of column names", "got": _kind(names)})
            if not isinstance(data, list):
                details.append({"field": "data", "expected": "a list of rows", "got": _kind(data)})
            if details:
                raise RequestError(422, "schema_violation", "columns must be a list of names and data a list of rows.", details)
            self._check_count(len(data), max_instances, "data")
            details = [self._unknown(f"columns[{j}]", c) for j, c in enumerate(names) if c not in self._known]
            if len(set(names)) != len(names):
                details.append({"field": "columns", "expected": "distinct names", "got": "a repeated name"})
            for i, row in enumerate(data):
                if not isinstance(row, list) or len(row) != len(names):
                    details.append({"field": f"data[{i}]", "expected": f"a list of {len(names)} values", "got": _kind(row)})
                    skip.add(i)
            position = {c: j for j, c in enumerate(names) if c in self._known}
            columns = {
                name: ([None if i in skip else row[position[name]] for i, row in enumerate(data)] if name in position else [None] * len(data))
                for name in self._names
            }
            return columns, lambda i, name: f"data[{i}][{position[name]}]" if name in position else f"data[{i}].{name}", details, skip
        raise RequestError(
            422, "schema_violation", 'expected {"instances": [...]} or {"columns": [...], "data": [[...]]}.',
            [{"field": "$", "expected": "keys instances, or columns and data", "got": ", ".join(sorted(map(str, keys))) or "no keys"}],
        )

    @staticmethod
    def _check_count(n: int, max_instances: int, where: str) -> None:
        if n > max_instances:
            raise RequestError(413, "too_large", f"{n} rows in one request; the most is {max_instances}. Hint: split the request.",
                               [{"field": where, "expected": f"at most {max_instances} rows", "got": f"{n} rows"}])
        if n == 0:
            raise RequestError(422, "schema_violation", "no rows to predict.", [{"field": where, "expected": "at least one row", "got": "0 rows"}])

    def _unknown(self, where: str, key: str) -> dict[str, Any]:
        hint = did_you_mean(key, self._names).strip()
        return {"field": where, "expected": "a feature of the model" + (f" ({hint})" if hint else ""), "got": f"unknown field {key!r}"}

    def _details(self, bad: pa.Table, where: Any, skip: set[int], reported: set[str]) -> list[dict[str, Any]]:
        # Every rule each row breaks (``__rp_rules`` reads "min(age); allowed(sex)"), not just
        # the first; rows that are no row, and fields already reported, are left out.
        out = []
        records = bad.select([prov.LINE, "__rp_rules", *self._names]).to_pylist()
        for rec in records:
            if rec[prov.LINE] in skip:
                continue
            for item in rec["__rp_rules"].split("; "):
                rule, _, column = item.rstrip(")").partition("(")
                field_ = where(rec[prov.LINE], column)
                if field_ in reported:
                    continue
                spec = self.columns[column]
                expected = {
                    "type": _EXPECTED[spec.type],
                    "not_null": "a value (the field is required)",
                    "min": f">= {_number(spec.min, spec.type)}",
                    "max": f"<= {_number(spec.max, spec.type)}",
                    "allowed": f"one of {spec.allowed}",
                    "regex": f"a string matching {spec.regex!r}",
                }.get(rule, rule)
                out.append({"field": field_, "expected": expected, "got": rec[column], "rule": rule})
                if len(out) == 100:
                    return out
        return out


def _number(bound: float | None, type_: str) -> str:
    if bound is None:
        return ""
    return str(int(bound)) if type_ == "int" and float(bound).is_integer() else f"{bound:g}"


def _safe_bounds(spec: ColumnSpec) -> ColumnSpec:
    """``spec`` with an int column's min/max narrowed to ±:data:`SAFE_INT`."""
    if spec.type != "int":
        return spec
    low = -SAFE_INT if spec.min is None else max(spec.min, -SAFE_INT)
    high = SAFE_INT if spec.max is None else min(spec.max, SAFE_INT)
    return spec.model_copy(update={"min": float(low), "max": float(high)})


_EXPECTED_JSON = {**_EXPECTED, "int": f"an integer between -{SAFE_INT} and {SAFE_INT}", "float": "a finite number",
                  "datetime": "an ISO 8601 date-time string", "string": "a string (or an integer)",
                  "category": "a string (or an integer)"}


def _numbers_as_text(spec: ColumnSpec) -> bool:
    """Whether a string/category column also takes JSON integers (as their decimal
    text: a code such as weathersit ``1`` for ``"1"``). Not with a regex, which JSON
    Schema applies to strings only: the document and the endpoint would disagree."""
    return spec.type in ("string", "category") and spec.regex is None


def _array(values: list | None, n: int, type_: str, int_text: bool = False) -> tuple[pa.Array, list[int], list | None]:
    """An Arrow array of one column's JSON values, the rows whose JSON type is wrong, and
    the values as the array holds them (``None`` for a column absent from the request).

    JSON is typed, so the value's JSON type must be the column's, exactly as the
    OpenAPI document says: an int column takes integers (``39.0`` is the integer 39),
    a float column numbers, bool booleans, datetime strings, string and category
    strings (and integers, with ``int_text``). Wrong types are nulls here, reported
    by the caller.
    """
    if values is None:
        return pa.nulls(n, _ARROW_IN[type_]), [], None
    ok, bad = (_as_str_or_int if int_text else _CHECK[type_]), []
    clean: list[Any] = []
    for i, v in enumerate(values):
        if v is None:
            clean.append(None)
            continue
        try:
            c = ok(v)
        except (TypeError, ValueError, OverflowError):
            c = _BAD
        if c is _BAD:
            bad.append(i)
            clean.append(None)
        else:
            clean.append(c)
    return pa.array(clean, _ARROW_IN[type_]), bad, clean


_BAD = object()


def _python_rules(spec: ColumnSpec) -> Any:
    """``check(values) -> bool``: whether a column's values (as :func:`_array` holds them,
    ``None`` for an absent column) break none of the validator's rules (``_Column.checks``
    of raypipe.data.validate), for the columns whose request array is already what the
    validator converts it to: int (int64), float (float64), string and category (string),
    without a regex. ``None`` for the others (bool and datetime are converted from text;
    regex runs as RE2 there); the validator checks those requests.

    Bounds compare exactly: Python compares an int with a float bound exactly, as the
    validator compares integers with the bound's ceiling or floor.
    """
    numeric = spec.type in ("int", "float")
    if spec.type not in ("int", "float", "string", "category") or spec.regex is not None:
        return None
    if not numeric and (spec.min is not None or spec.max is not None):
        return None
    if numeric and spec.allowed is not None:
        return None
    lo, hi, nullable = spec.min, spec.max, spec.nullable
    allowed = frozenset(spec.allowed) if spec.allowed is not None else None

    def check(values: list | None) -> bool:
        if values is None:
            return nullable
        if not nullable and None in values:
            return False
        if lo is not None and any(v is not None and v < lo for v in values):
            return False
        if hi is not None and any(v is not None and v > hi for v in values):
            return False
        return allowed is None or all(v is None or v in allowed for v in values)

    return check


def _as_int(v: Any) -> Any:
    if isinstance(v, bool):
        return _BAD
    if isinstance(v, int):
        return v if -(2**63) <= v < 2**63 else (SAFE_INT + 1 if v > 0 else -SAFE_INT - 1)  # out of range: the bound rule names it
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return _as_int(int(v))
    return _BAD


def _as_float(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return _BAD
    f = float(v)
    return f if math.isfinite(f) else _BAD


def _as_str(v: Any) -> Any:
    return v if isinstance(v, str) else _BAD


def _as_str_or_int(v: Any) -> Any:
    if isinstance(v, str):
        return v
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else _BAD


def _as_bool(v: Any) -> Any:
    # The validator reads bool columns from their text, as ingest does.
    return ("true" if v else "false") if isinstance(v, bool) else _BAD


_CHECK = {"int": _as_int, "float": _as_float, "bool": _as_bool, "string": _as_str, "category": _as_str, "datetime": _as_str}
_ARROW_IN = {"int": pa.int64(), "float": pa.float64(), "bool": pa.string(), "string": pa.string(), "category": pa.string(),
             "datetime": pa.string()}


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string" if len(v) > 40 else f"the string {v!r}"
    if isinstance(v, list):
        return f"a list of {len(v)}"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


# --------------------------------------------------------------------------- responses


def prediction_body(out: dict[str, np.ndarray], model: dict[str, Any], ids: list[str], row_ids: list | None = None) -> dict[str, Any]:
    """The ``/predict`` response for one request's slice of the model output."""
    pred = out["prediction"]
    body: dict[str, Any] = {"predictions": pred.tolist()}
    if "probability" in out:
        body["probabilities"] = out["probability"].tolist()
    body["prediction_ids"] = ids
    if row_ids is not None:
        body["ids"] = row_ids
    body["model"] = model
    return body


#: A prediction id: 32 hex digits of the request, the row number, and 16 hex digits of
#: HMAC-SHA256 of both under the deployment's id key. Any replica verifies any replica's
#: ids without shared memory; a forged or mistyped id is refused at ``/feedback``.
PREDICTION_ID_PATTERN = r"^[0-9a-f]{32}-(0|[1-9][0-9]{0,8})-[0-9a-f]{16}$"
_ID = re.compile(PREDICTION_ID_PATTERN)


def _tag(keyed: hmac.HMAC, body: str) -> str:
    # A copy of the keyed HMAC (its key already hashed in) gives the same digest as
    # hmac.new(key, body, sha256) in 1.2 instead of 3.1 us: a 100-row request tags 100 ids.
    h = keyed.copy()
    h.update(body.encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def new_prediction_ids(n: int, key: bytes) -> list[str]:
    """Unique ids for ``n`` predictions, each tagged with an HMAC under ``key``."""
    base, keyed = uuid.uuid4().hex, _keyed(key)
    ids = []
    for i in range(n):
        body = f"{base}-{i}"
        ids.append(f"{body}-{_tag(keyed, body)}")
    return ids


def valid_prediction_id(pid: str, key: bytes) -> bool:
    """Whether ``pid`` is an id :func:`new_prediction_ids` issued under ``key``."""
    if not _ID.match(pid):
        return False
    body, _, tag = pid.rpartition("-")
    return hmac.compare_digest(tag, _tag(_keyed(key), body))


class LabelSchema:
    """What ``/feedback`` accepts as a label: one of the model's classes (classification,
    compared as JSON values) or a finite number (regression)."""

    def __init__(self, task: str, classes: list[Any] | None):
        self.task = task
        self.classes = classes

    @classmethod
    def of(cls, bundle: Any) -> LabelSchema:
        """The label rules of a :class:`~raypipe.bundle.ModelBundle`."""
        if bundle.task == "regression":
            return cls("regression", None)
        return cls(bundle.task, [c.item() if hasattr(c, "item") else c for c in bundle.features.label_encoder.classes])

    def openapi(self) -> dict[str, Any]:
        """JSON Schema of one label."""
        if self.classes is None:
            return {"type": "number", "description": "The observed value (finite)."}
        return {"enum": list(self.classes), "description": "The observed class."}

    def check(self, label: Any) -> str | None:
        """None when ``label`` is acceptable, else what was expected."""
        if self.classes is None:
            ok = isinstance(label, (int, float)) and not isinstance(label, bool)
            try:
                ok = ok and math.isfinite(float(label))
            except OverflowError:
                ok = False
            return None if ok else "a finite number"
        # bool == int in Python (True == 1): compare the JSON types too.
        if any(label == c and isinstance(label, bool) == isinstance(c, bool) for c in self.classes):
            return None
        return f"one of {self.classes}"


def feedback_items(payload: Any, max_items: int) -> tuple[list[dict[str, Any]], str]:
    """``{"prediction_id", "label"}`` or ``{"items": [...]}`` as a list, and the prefix
    naming its items (``$`` or ``items``); 422 (or 413) for the wrong shape, every
    problem listed."""
    if isinstance(payload, dict) and "items" in payload:
        items, prefix = payload["items"], "items"
        extra = sorted(set(payload) - {"items"})
        if extra:
            raise RequestError(422, "schema_violation", "a batch of feedback is {\"items\": [...]} alone.",
                               [{"field": k, "expected": "no other key than items", "got": "an unknown key"} for k in extra[:100]])
        if not isinstance(items, list) or not items:
            raise RequestError(422, "schema_violation", "items must be a non-empty list.",
                               [{"field": "items", "expected": "a non-empty list of {prediction_id, label}", "got": _kind(items)}])
        if len(items) > max_items:
            raise RequestError(413, "too_large", f"{len(items)} feedback items in one request; the most is {max_items}.",
                               [{"field": "items", "expected": f"at most {max_items} items", "got": f"{len(items)} items"}])
    else:
        items, prefix = [payload], "$"
    details = []
    for i, item in enumerate(items):
        where = f"items[{i}]" if prefix == "items" else "$"
        if not isinstance(item, dict):
            details.append({"field": where, "expected": "an object {prediction_id, label}", "got": _kind(item)})
            continue
        for key in sorted(set(item) - {"prediction_id", "label"}):
            details.append({"field": f"{where}.{key}", "expected": "only prediction_id and label", "got": "an unknown key"})
        if not isinstance(item.get("prediction_id"), str) or not item["prediction_id"]:
            details.append({"field": f"{where}.prediction_id", "expected": "a prediction id string", "got": _kind(item.get("prediction_id"))})
        if "label" not in item or item["label"] is None or isinstance(item["label"], (dict, list)):
            details.append({"field": f"{where}.label", "expected": "a label value", "got": _kind(item.get("label"))})
    if details:
        raise RequestError(422, "schema_violation", "the feedback does not match {prediction_id, label}.", details[:100])
    return items, prefix


# --------------------------------------------------------------------------- auth


def hash_key(key: str) -> str:
    """sha256 hex of an API key: replicas hold hashes, never the keys."""
    return hashlib.sha256(key.strip().encode()).hexdigest()


def load_api_key_hashes(env: str | None, path: str | None) -> list[str]:
    """Hashes of the API keys in environment variable ``env`` (comma-separated) and
    in file ``path`` (one per line, ``#`` comments). Empty: no auth configured.

    Raises:
        ValueError: ``env`` is named but unset or empty, or ``path`` is unreadable
            (an endpoint configured for auth must never start open).
    """
    keys: list[str] = []
    if env:
        value = os.environ.get(env, "")
        if not value.strip():
            raise ValueError(f"serve.auth.api_keys_env: the environment variable {env} is unset or empty; expected comma-separated API keys.")
        keys += [k.strip() for k in value.split(",") if k.strip()]
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                lines = [ln.strip() for ln in f]
        except OSError as exc:
            raise ValueError(f"serve.auth.api_keys_file: cannot read {path} ({exc.strerror}).") from None
        found = [ln for ln in lines if ln and not ln.startswith("#")]
        if not found:
            raise ValueError(f"serve.auth.api_keys_file: {path} holds no API key (one per line).")
        keys += found
    return [hash_key(k) for k in keys]


def authorized(header: str | None, hashes: list[str]) -> bool:
    """Whether ``Authorization: Bearer <key>`` carries one of the keys.

    Every stored hash is compared, in constant time, whatever matches first.
    """
    if not hashes:
        return True
    if not header or not header[:7].lower() == "bearer ":
        return False
    presented = hash_key(header[7:])
    ok = False
    for h in hashes:
        ok |= hmac.compare_digest(presented, h)
    return ok
