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

import hashlib
import hmac
import json
import os
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


def parse_json(body: bytes) -> Any:
    """Parse a JSON body; 400 with the position of the first error."""
    try:
        return json.loads(body, parse_constant=_non_finite)
    except UnicodeDecodeError as exc:
        raise RequestError(400, "malformed_request", f"the body is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    except json.JSONDecodeError as exc:
        raise RequestError(400, "malformed_request", f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.") from None
    except RecursionError:
        raise RequestError(400, "malformed_request", "the body is nested too deeply.") from None


_EXPECTED = {"int": "an integer", "float": "a number", "string": "a string", "category": "a string",
             "bool": "a boolean", "datetime": "an ISO 8601 date-time"}


class InputSchema:
    """The request side of a model's input schema (from the bundle's ``schema.json``).

    The label and weight columns are not inputs; the id column is optional.
    """

    def __init__(self, bundle_schema: dict[str, Any]):
        self.columns: dict[str, ColumnSpec] = input_columns(bundle_schema)
        self.id_column = bundle_schema.get("id")
        self.pii = [name for name, spec in self.columns.items() if spec.pii]
        self._names = list(self.columns)
        self._known = set(self._names)
        self._validator = BatchValidator(SchemaConfig(columns=self.columns, extra_columns="drop"), "request")

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
            if spec.min is not None:
                prop["minimum"] = spec.min
            if spec.max is not None:
                prop["maximum"] = spec.max
            if spec.allowed is not None:
                prop["enum"] = list(spec.allowed)
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
                every offending field as ``instances[i].column``.
        """
        columns, where = self._columns(payload, max_instances)
        n = len(next(iter(columns.values()))) if columns else 0
        arrays, problems = [], []
        for name in self._names:
            arr, bad = _array(columns.get(name), n)
            for i in bad:
                problems.append({"field": where(i, name), "expected": _EXPECTED[self.columns[name].type], "got": _kind(columns[name][i])})
            arrays.append(arr)
        if problems:
            raise RequestError(422, "schema_violation", f"{len(problems)} value(s) have the wrong type.", problems[:100])
        table = pa.Table.from_arrays([*arrays, pa.array(np.arange(n, dtype=np.int64))], names=[*self._names, prov.LINE])
        valid, bad_rows = self._validator(table)
        if bad_rows.num_rows:
            raise RequestError(422, "schema_violation", f"{bad_rows.num_rows} of {n} row(s) break the model's input schema.",
                               self._details(bad_rows, where))
        return valid.drop_columns([prov.LINE]) if prov.LINE in valid.column_names else valid

    def _columns(self, payload: Any, max_instances: int) -> tuple[dict[str, list], Any]:
        if not isinstance(payload, dict):
            raise RequestError(422, "schema_violation", 'expected a JSON object {"instances": [...]} or {"columns": [...], "data": [[...]]}.',
                               [{"field": "$", "expected": "an object", "got": _kind(payload)}])
        keys = set(payload)
        if "instances" in payload and keys == {"instances"}:
            rows = payload["instances"]
            if not isinstance(rows, list):
                raise RequestError(422, "schema_violation", "instances must be a list of objects.",
                                   [{"field": "instances", "expected": "a list", "got": _kind(rows)}])
            self._check_count(len(rows), max_instances)
            details = []
            unknown: dict[str, int] = {}
            for i, row in enumerate(rows):
                if not isinstance(row, dict):
                    details.append({"field": f"instances[{i}]", "expected": "an object", "got": _kind(row)})
                elif not row.keys() <= self._known:
                    for key in row.keys() - self._known:
                        unknown.setdefault(key, i)
            details += [self._unknown(f"instances[{i}].{k}", k) for k, i in unknown.items()]
            if details:
                raise RequestError(422, "schema_violation", "the instances do not match the model's input schema.", details[:100])
            columns = {name: [row.get(name) for row in rows] for name in self._names}
            return columns, lambda i, name: f"instances[{i}].{name}"
        if keys == {"columns", "data"}:
            names, data = payload["columns"], payload["data"]
            if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
                raise RequestError(422, "schema_violation", "columns must be a list of column names.",
                                   [{"field": "columns", "expected": "a list of strings", "got": _kind(names)}])
            if not isinstance(data, list):
                raise RequestError(422, "schema_violation", "data must be a list of rows.",
                                   [{"field": "data", "expected": "a list of lists", "got": _kind(data)}])
            self._check_count(len(data), max_instances)
            details = [self._unknown(f"columns[{j}]", c) for j, c in enumerate(names) if c not in self._known]
            if len(set(names)) != len(names):
                details.append({"field": "columns", "expected": "distinct names", "got": "a repeated name"})
            for i, row in enumerate(data):
                if not isinstance(row, list) or len(row) != len(names):
                    details.append({"field": f"data[{i}]", "expected": f"a list of {len(names)} values", "got": _kind(row)})
            if details:
                raise RequestError(422, "schema_violation", "the columns and data do not match the model's input schema.", details[:100])
            position = {c: j for j, c in enumerate(names)}
            columns = {
                name: ([row[position[name]] for row in data] if name in position else [None] * len(data)) for name in self._names
            }
            return columns, lambda i, name: f"data[{i}][{position[name]}]" if name in position else f"data[{i}].{name}"
        raise RequestError(
            422, "schema_violation", 'expected {"instances": [...]} or {"columns": [...], "data": [[...]]}.',
            [{"field": "$", "expected": "keys instances, or columns and data", "got": ", ".join(sorted(map(str, keys))) or "no keys"}],
        )

    @staticmethod
    def _check_count(n: int, max_instances: int) -> None:
        if n > max_instances:
            raise RequestError(413, "too_large", f"{n} rows in one request; the most is {max_instances}. Hint: split the request.")
        if n == 0:
            raise RequestError(422, "schema_violation", "no rows to predict.", [{"field": "$", "expected": "at least one row", "got": "0 rows"}])

    def _unknown(self, where: str, key: str) -> dict[str, Any]:
        hint = did_you_mean(key, self._names).strip()
        return {"field": where, "expected": "a feature of the model" + (f" ({hint})" if hint else ""), "got": f"unknown field {key!r}"}

    def _details(self, bad: pa.Table, where: Any) -> list[dict[str, Any]]:
        # Every rule each row breaks (``__rp_rules`` reads "min(age); allowed(sex)"), not just the first.
        out = []
        records = bad.select([prov.LINE, "__rp_rules", *self._names]).to_pylist()
        for rec in records:
            for item in rec["__rp_rules"].split("; "):
                rule, _, column = item.rstrip(")").partition("(")
                spec = self.columns[column]
                expected = {
                    "type": _EXPECTED[spec.type],
                    "not_null": "a value (the field is required)",
                    "min": f">= {spec.min:g}" if spec.min is not None else "",
                    "max": f"<= {spec.max:g}" if spec.max is not None else "",
                    "allowed": f"one of {spec.allowed}",
                    "regex": f"a string matching {spec.regex!r}",
                }.get(rule, rule)
                out.append({"field": where(rec[prov.LINE], column), "expected": expected, "got": rec[column], "rule": rule})
                if len(out) == 100:
                    return out
        return out


def _array(values: list | None, n: int) -> tuple[pa.Array, list[int]]:
    """An Arrow array of JSON scalars, and the rows holding objects or lists.

    Mixed scalar types (``39`` and ``"39"``) become strings for the validator to
    convert with the rules of ingest.
    """
    if values is None:
        return pa.nulls(n, pa.string()), []
    try:
        arr = pa.array(values, from_pandas=False)
        if not pa.types.is_nested(arr.type) and not pa.types.is_boolean(arr.type):
            return arr, []
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
        pass
    bad = [i for i, v in enumerate(values) if isinstance(v, (dict, list))]
    text = [None if v is None or isinstance(v, (dict, list)) else _text(v) for v in values]
    return pa.array(text, pa.string()), bad


def _text(v: Any) -> str:
    # JSON true/false as the validator's bool words, not Python's True/False.
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


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


def new_prediction_ids(n: int) -> list[str]:
    """Unique ids for ``n`` predictions: one random request id, then the row number."""
    base = uuid.uuid4().hex
    return [f"{base}-{i}" for i in range(n)]


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
