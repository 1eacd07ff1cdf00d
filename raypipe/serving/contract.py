"""The endpoint's OpenAPI document: the contract every answer of the endpoint keeps.

Built from the served model's schema (pure: no Ray, no FastAPI), so it changes when a
new version is swapped in. Every route lists every status it can answer, with the
response schema (errors in the SPEC's format), the bearer scheme on the routes that
need a key, and request schemas exact enough that a request they call valid is
accepted: non-empty lists, required fields, integer ranges a JSON number carries
exactly (``SAFE_INT``).
"""

from __future__ import annotations

from typing import Any

from raypipe.serving.request import PREDICTION_ID_PATTERN, InputSchema, LabelSchema

__all__ = ["openapi_document", "ERROR_SCHEMA"]

#: The SPEC's error body.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["type", "message", "details"],
        "properties": {
            "type": {"type": "string", "description": "What went wrong, e.g. schema_violation, unauthorized."},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {
                "type": "object",
                "required": ["field", "expected", "got"],
                "properties": {"field": {"type": "string", "description": "Where, e.g. instances[3].age."},
                               "expected": {"type": "string"}, "got": {}},
            }},
        },
    }},
}

_JSON = "application/json"
_ERRORS = {
    "400": "Malformed body: not JSON, not UTF-8, a lone surrogate, or a number too long to read.",
    "401": "A valid API key is required (Authorization: Bearer <key>).",
    "404": "Not found.",
    "408": "The body did not arrive within serve.request_timeout_s.",
    "409": "Monitoring is not enabled for this endpoint.",
    "413": "The body or the number of rows is larger than the endpoint takes.",
    "415": "The body is not Content-Type: application/json.",
    "422": "The request does not match the schema; every problem is listed in details.",
    "500": "A server fault (never the request's data).",
    "503": "No replica can take the request now; retry after Retry-After seconds.",
}


def _error(code: str, description: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description or _ERRORS[code],
                           "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if code == "401":
        out["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}}
    if code == "503":
        out["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    return out


def _ok(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _model_ref() -> dict[str, Any]:
    return {"type": "object", "required": ["name", "version"],
            "properties": {"name": {"type": "string"}, "version": {"type": "integer", "minimum": 1}}}


def openapi_document(*, name: str, version: int, task: str, inputs: InputSchema, labels: LabelSchema,
                     max_instances: int, auth: bool, monitoring: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document of an endpoint serving ``name`` version ``version``.

    Args:
        name, version, task: the served model.
        inputs: its request schema; labels: what ``/feedback`` takes.
        max_instances: ``serve.max_instances`` (rows per request, items per feedback).
        auth: whether API keys are configured (then 401 is a possible answer).
        monitoring: whether ``/feedback`` stores labels (else it answers 409).
    """
    instance = inputs.openapi()
    columns = list(instance["properties"])
    row = {"type": "array", "minItems": len(columns), "maxItems": len(columns),
           "prefixItems": [instance["properties"][c] for c in columns], "items": False}
    predict_body = {"oneOf": [
        {"type": "object", "required": ["instances"], "additionalProperties": False,
         "properties": {"instances": {"type": "array", "minItems": 1, "maxItems": max_instances, "items": instance}}},
        {"type": "object", "required": ["columns", "data"], "additionalProperties": False,
         "description": "Columnar form. The document lists every input column in the model's order; the endpoint "
                        "also takes them in any order, and leaves out optional ones.",
         "properties": {"columns": {"const": columns},
                        "data": {"type": "array", "minItems": 1, "maxItems": max_instances, "items": row}}},
    ]}
    if task == "regression":
        prediction: dict[str, Any] = {"type": "number"}
    else:
        prediction = {"enum": list(labels.classes or [])}
    predict_ok: dict[str, Any] = {
        "type": "object", "required": ["predictions", "prediction_ids", "model"],
        "properties": {
            "predictions": {"type": "array", "items": prediction},
            "prediction_ids": {"type": "array", "items": {"type": "string", "pattern": PREDICTION_ID_PATTERN}},
            "ids": {"type": "array", "description": "The id column's values, when the model has one."},
            "model": _model_ref(),
        },
    }
    if task == "binary_classification":
        predict_ok["required"].append("probabilities")
        predict_ok["properties"]["probabilities"] = {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}}
    elif task != "regression":
        predict_ok["required"].append("probabilities")
        predict_ok["properties"]["probabilities"] = {"type": "array", "items": {
            "type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}}}

    item = {"type": "object", "required": ["prediction_id", "label"], "additionalProperties": False,
            "properties": {"prediction_id": {"type": "string", "pattern": PREDICTION_ID_PATTERN,
                                             "description": "An id /predict answered."},
                           "label": labels.openapi()}}
    feedback_body = {"oneOf": [
        item,
        {"type": "object", "required": ["items"], "additionalProperties": False,
         "properties": {"items": {"type": "array", "minItems": 1, "maxItems": max_instances, "items": item}}},
    ]}
    feedback_ok = {"type": "object", "required": ["accepted"], "properties": {
        "accepted": {"type": "integer", "minimum": 1},
        "rejected": {"type": "array", "description": "The items refused, each named (unknown id, invalid label).",
                     "items": {"type": "object", "required": ["field", "expected", "got", "reason"],
                               "properties": {"field": {"type": "string"}, "expected": {"type": "string"}, "got": {},
                                              "reason": {"enum": ["unknown_prediction", "invalid_label"]}}}},
    }}
    secured = {"security": [{"bearer": []}]} if auth else {}
    denied = {"401": _error("401")} if auth else {}
    unavailable = {"503": _error("503")}
    body_errors = {code: _error(code) for code in ("400", "408", "413", "415", "422")}

    def post(summary: str, body: dict[str, Any], ok: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        return {"post": {"summary": summary, **secured,
                         "requestBody": {"required": True, "content": {_JSON: {"schema": body}}},
                         "responses": {"200": ok, **denied, **body_errors, **extra, **unavailable}}}

    def get(summary: str, ok: dict[str, Any], secure: bool) -> dict[str, Any]:
        return {"get": {"summary": summary, **(secured if secure else {}),
                        "responses": {"200": ok, **(denied if secure else {}), **unavailable}}}

    feedback_extra = {"404": _error("404", "None of the items names a prediction this endpoint issued.")}
    if not monitoring:
        feedback_extra["409"] = _error("409")
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": f"raypipe: {name}", "version": str(version),
                 "description": f"Predictions of {name} version {version} (task {task})."},
        "paths": {
            "/predict": post("Predict", predict_body, _ok(predict_ok, "One prediction per row, in order."), {}),
            "/feedback": post("Label predictions", feedback_body, _ok(feedback_ok, "The items stored."), feedback_extra),
            "/healthz": get("Liveness", _ok({"type": "object", "required": ["status"],
                                             "properties": {"status": {"const": "ok"}}}, "The replica answers."), False),
            "/readyz": get("Readiness", _ok({"type": "object", "required": ["ready", "model"],
                                             "properties": {"ready": {"const": True}, "model": _model_ref()}},
                                            "A model is loaded."), False),
            "/model": get("The served model", _ok({"type": "object", "required": ["name", "version", "task", "schema"],
                                                   "properties": {"name": {"type": "string"}, "version": {"type": "integer"},
                                                                  "task": {"type": "string"}, "schema": {"type": "object"}}},
                                                  "Name, version, metrics, schema, lineage."), True),
            "/monitor": get("Monitoring report", _ok({"type": "object", "required": ["model", "monitoring"],
                                                      "properties": {"model": _model_ref(), "monitoring": {"type": "boolean"}}},
                                                     "Drift, quality and live performance; the monitoring page "
                                                     "(text/html) when Accept prefers HTML."), True),
        },
        "components": {"schemas": {"Error": ERROR_SCHEMA}},
    }
    # A browser asking for HTML gets the monitoring page (raypipe.monitor.page) instead.
    doc["paths"]["/monitor"]["get"]["responses"]["200"]["content"]["text/html"] = {"schema": {"type": "string"}}
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer",
                                                           "description": "An API key of serve.auth."}}
    return doc
