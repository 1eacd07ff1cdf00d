"""The Ray Serve application: a FastAPI ingress around a registered model.

One deployment, ``Endpoint``, with the SPEC's routes. Each replica loads the model
bundle from the registry and answers ``/predict`` through
:meth:`~raypipe.bundle.ModelBundle.predict`, the code path of batch inference, with
requests merged by ``@serve.batch``. A watcher thread per replica re-reads the
followed alias (``champion`` by default) every ``serve.reload_interval_s`` and swaps
the new version in atomically: requests already validated finish on the version
they started with, and every response names the version that answered.

Deploy with :func:`raypipe.serving.serve_model` (``raypipe serve``) or, on a cluster,
``serve deploy`` of the file ``raypipe serve --export-config`` writes (it names
:func:`build`).
"""


import asyncio
import importlib
import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import ray
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from ray import serve
from ray.util import metrics
from starlette.exceptions import HTTPException as StarletteHTTPException

from raypipe.bundle import ModelBundle
from raypipe.config import BatchingConfig, load_config
from raypipe.monitor.actor import monitor_name, start_monitor
from raypipe.monitor.log import FEEDBACK, PREDICTIONS, LogWriter, feedback_rows, prediction_rows
from raypipe.registry import ModelRegistry, RegistryError
from raypipe.serving.request import (
    InputSchema,
    RequestError,
    authorized,
    error_body,
    load_api_key_hashes,
    new_prediction_ids,
    parse_json,
    prediction_body,
)
from raypipe.serving.settings import EndpointSettings, deployment_options, endpoint_settings

__all__ = ["Endpoint", "build", "app"]

log = logging.getLogger("raypipe.serve")

# The OpenAPI document and its docs page are routes of the replica (below): the
# request schema is the served model's, which changes when a new version is swapped in.
app = FastAPI(title="raypipe", description="Predictions from a raypipe model registry.",
              openapi_url=None, docs_url=None, redoc_url=None)
_JSON = "application/json"
_BATCHING = BatchingConfig()


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(content=data, status_code=status, media_type=_JSON, headers=headers)


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    # Unknown routes and wrong methods answer in the SPEC's error format too.
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _json_response(error_body(kind, f"{request.method} {request.url.path}: {exc.detail}"), exc.status_code)


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    details = [{"field": ".".join(map(str, e.get("loc", ()))), "expected": e.get("msg", ""), "got": str(e.get("input"))[:80]}
               for e in exc.errors()]
    return _json_response(error_body("schema_violation", "the request does not match the API.", details), 422)


def _unauthorized() -> RequestError:
    return RequestError(401, "unauthorized", "a valid API key is required: send 'Authorization: Bearer <key>'.")


@dataclass(frozen=True)
class Loaded:
    """One model version as a replica holds it."""

    name: str
    version: int
    bundle: Any
    inputs: InputSchema
    info: dict[str, Any]

    @property
    def ref(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version}


def load_version(registry: Any, name: str, ref: str | int) -> Loaded:
    """Load ``name@ref`` from the registry into a :class:`Loaded`."""
    version = registry.get(name, ref)
    bundle = ModelBundle.load(registry.local_path(name, version.version))
    info = {
        "name": name,
        "version": version.version,
        "status": version.status,
        "aliases": list(version.aliases),
        "created_at": version.created_at,
        "run_id": version.run_id,
        "task": bundle.task,
        "threshold": bundle.threshold if bundle.task == "binary_classification" else None,
        "metrics": bundle.metrics,
        "schema": bundle.schema,
        "lineage_id": bundle.lineage.get("run_id"),
        "config_hash": bundle.lineage.get("config_hash"),
    }
    return Loaded(name, version.version, bundle, InputSchema(bundle.schema), info)


class Endpoint:
    """The replica: routes of the SPEC's HTTP API (see the module docstring).

    Args:
        settings: from :func:`raypipe.serving.settings.endpoint_settings`.
    """

    def __init__(self, settings: EndpointSettings):
        self.settings = settings
        cfg = settings.serve
        self.registry = ModelRegistry(settings.registry_uri)
        self.name, self.ref = settings.model_name, settings.model
        self.follow = not self.ref.isdigit()
        self.max_bytes = cfg.max_request_bytes
        self.max_instances = cfg.max_instances
        self.canary = cfg.canary_fraction
        self.shadow_ref = cfg.shadow
        self.hashes = settings.api_key_hashes
        if self.hashes is None:  # deployed by `serve deploy`: read the keys here
            self.hashes = load_api_key_hashes(cfg.auth.api_keys_env, cfg.auth.api_keys_file)
        self.current: Loaded = load_version(self.registry, self.name, self.ref)
        self.challenger: Loaded | None = None
        self.shadow: Loaded | None = None
        self._refresh_side_models()
        self._predict_batch.set_max_batch_size(cfg.batching.max_batch_size)
        self._predict_batch.set_batch_wait_timeout_s(cfg.batching.wait_timeout_ms / 1000.0)
        self._requests = metrics.Counter(
            "raypipe_requests_total", "HTTP requests by model, version and status code.", tag_keys=("model", "version", "status")
        )
        self._latency = metrics.Histogram(
            "raypipe_request_latency_ms", "Request latency in milliseconds.",
            boundaries=[0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000], tag_keys=("model",),
        )
        self._version_gauge = metrics.Gauge("raypipe_model_version", "Version being served.", tag_keys=("model",))
        self._version_gauge.set(self.current.version, tags={"model": self.name})
        self.shadow_stats = {"requests": 0, "rows": 0, "disagreements": 0, "errors": 0}
        self._init_monitoring(settings.monitor)
        self._stop = threading.Event()
        self._interval = cfg.reload_interval_s
        threading.Thread(target=self._watch, name="raypipe-model-watch", daemon=True).start()
        self._openapi_cache: dict[str, Any] | None = None
        log.info("serving %s version %s (following %s)", self.name, self.current.version, self.ref if self.follow else "nothing")

    def _init_monitoring(self, mon: Any) -> None:
        self.pred_log = self.fb_log = self.monitor_actor = None
        self.sample_rate = mon.sample_rate
        self.pii_mode = mon.pii
        if not mon.enabled:
            return
        root = f"{mon.log_uri.rstrip('/')}/{self.name}"
        writer = uuid.uuid4().hex[:12]
        self.pred_log = LogWriter(root, PREDICTIONS, writer, mon.flush_rows, mon.flush_s)
        self.fb_log = LogWriter(root, FEEDBACK, writer, mon.flush_rows, mon.flush_s)
        self._logged = metrics.Counter("raypipe_predictions_logged_total", "Predictions written to the prediction log.",
                                       tag_keys=("model",))
        try:
            self.monitor_actor = ray.get_actor(monitor_name(self.name), namespace="raypipe")
        except ValueError:
            log.warning("no monitor actor %s: /monitor will say so", monitor_name(self.name))

    def _log(self, model: Loaded, table: pa.Table, out: dict[str, Any], ids: list[str]) -> None:
        if self.pred_log is None or self.sample_rate <= 0:
            return
        if self.sample_rate < 1:
            keep = np.random.random(table.num_rows) < self.sample_rate
            if not keep.any():
                return
            idx = np.flatnonzero(keep)
            table = table.take(pa.array(idx))
            out = {k: v[idx] for k, v in out.items()}
            ids = [ids[i] for i in idx]
        rows = prediction_rows(table, out, ids, model.version, model.inputs.pii, self.pii_mode)
        self.pred_log.append(rows)
        self._logged.inc(rows.num_rows, tags={"model": self.name})

    # ------------------------------------------------------------------ model swap

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._reload()
            except Exception as exc:  # a registry hiccup must not kill the watcher
                log.warning("model watch: %s: %s", type(exc).__name__, exc)

    def _reload(self) -> None:
        # Re-set on every check: Ray's export drops a gauge left unrecorded (the live version must stay scrapeable).
        self._version_gauge.set(self.current.version, tags={"model": self.name})
        if self.follow:
            version = self.registry.get(self.name, self.ref).version
            if version != self.current.version:
                loaded = load_version(self.registry, self.name, version)
                old, self.current = self.current.version, loaded  # one reference swap: atomic
                self._version_gauge.set(loaded.version, tags={"model": self.name})
                self._openapi_cache = None
                log.info("model %s: now serving version %s (was %s)", self.name, loaded.version, old)
        self._refresh_side_models()

    def _refresh_side_models(self) -> None:
        self.challenger = self._side(self.challenger, "challenger") if self.canary > 0 else None
        self.shadow = self._side(self.shadow, self.shadow_ref) if self.shadow_ref else None

    def _side(self, held: Loaded | None, ref: str) -> Loaded | None:
        try:
            version = self.registry.get(self.name, ref).version
        except RegistryError:
            return None  # no such alias (yet): all traffic goes to the champion
        if held is not None and held.version == version:
            return held
        return load_version(self.registry, self.name, version)

    def __del__(self) -> None:
        # Serve calls this on a graceful stop (redeploy, scale-down): buffered log rows are written.
        self._stop.set()
        for writer in (getattr(self, "pred_log", None), getattr(self, "fb_log", None)):
            if writer is not None:
                writer.close()

    # ------------------------------------------------------------------ routes

    @app.get("/healthz")
    async def healthz(self) -> Response:
        return _json_response({"status": "ok"})

    @app.get("/readyz")
    async def readyz(self) -> Response:
        return _json_response({"ready": True, "model": self.current.ref})

    @app.get("/model")
    async def model(self, request: Request) -> Response:
        denied = self._deny(request)
        if denied:
            return denied
        info = dict(self.current.info)
        info["following"] = self.ref if self.follow else None
        info["challenger"] = self.challenger.ref if self.challenger else None
        info["shadow"] = self.shadow.ref if self.shadow else None
        return _json_response(info)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(self) -> Response:
        return _json_response(self._openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(self) -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"raypipe: {self.name}")

    @app.get("/monitor")
    async def monitor(self, request: Request) -> Response:
        denied = self._deny(request)
        if denied:
            return denied
        body: dict[str, Any] = {"model": self.current.ref, "shadow": self._shadow_summary()}
        if self.monitor_actor is None:
            body["monitoring"] = False
        else:
            body.update(await self.monitor_actor.report.remote())
            body["monitoring"] = True
        return _json_response(body)

    @app.post("/predict")
    async def predict(self, request: Request) -> Response:
        started = time.perf_counter()
        model = self.current
        status = 200
        try:
            if not authorized(request.headers.get("authorization"), self.hashes):
                raise _unauthorized()
            payload = parse_json(await self._body(request))
            if self.challenger is not None and random.random() < self.canary:
                model = self.challenger
            table = model.inputs.table(payload, self.max_instances)
            out = await self._predict_batch((model, table))
            ids = new_prediction_ids(table.num_rows)
            row_ids = table.column(model.inputs.id_column).to_pylist() if model.inputs.id_column in table.column_names else None
            response = _json_response(prediction_body(out, model.ref, ids, row_ids))
            self._log(model, table, out, ids)
            if self.shadow is not None and self.shadow.version != model.version:
                self._shadow(self.shadow, table, out)
        except RequestError as exc:
            status = exc.status
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            response = _json_response(exc.body(), exc.status, headers)
        except Exception as exc:  # a bug, not bad input: answer 500 and keep serving
            status = 500
            log.exception("predict failed")
            response = _json_response(error_body("internal_error", f"{type(exc).__name__}: {exc}"), 500)
        tags = {"model": self.name, "version": str(model.version), "status": str(status)}
        self._requests.inc(tags=tags)
        self._latency.observe((time.perf_counter() - started) * 1000.0, tags={"model": self.name})
        return response

    @app.post("/feedback")
    async def feedback(self, request: Request) -> Response:
        try:
            if not authorized(request.headers.get("authorization"), self.hashes):
                raise _unauthorized()
            items = _feedback_items(parse_json(await self._body(request)), self.max_instances)
            if self.fb_log is None:
                raise RequestError(409, "monitoring_disabled", f"feedback for {len(items)} prediction(s) cannot be stored: "
                                   "monitoring is not enabled for this endpoint. Hint: set monitor.enabled: true.")
        except RequestError as exc:
            return _json_response(exc.body(), exc.status)
        self.fb_log.append(feedback_rows(items))
        return _json_response({"accepted": len(items)})

    # ------------------------------------------------------------------ helpers

    def _deny(self, request: Request) -> Response | None:
        if authorized(request.headers.get("authorization"), self.hashes):
            return None
        exc = _unauthorized()
        return _json_response(exc.body(), 401, {"WWW-Authenticate": "Bearer"})

    async def _body(self, request: Request) -> bytes:
        ctype = request.headers.get("content-type", "")
        if ctype.split(";", 1)[0].strip().lower() != _JSON:
            raise RequestError(415, "unsupported_media_type", f"expected Content-Type: application/json, got {ctype or 'none'!r}.")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise RequestError(413, "too_large", f"the body has {int(declared)} bytes; the most is {self.max_bytes}.")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_bytes:
                raise RequestError(413, "too_large", f"the body exceeds {self.max_bytes} bytes.")
            chunks.append(chunk)
        return b"".join(chunks)

    # The config's defaults; each replica sets its own config's values in __init__.
    @serve.batch(max_batch_size=_BATCHING.max_batch_size, batch_wait_timeout_s=_BATCHING.wait_timeout_ms / 1000.0)
    async def _predict_batch(self, items: list[tuple[Loaded, pa.Table]]) -> list[dict[str, Any]]:
        """Predict several requests' rows in one call per model version."""
        results: list[Any] = [None] * len(items)
        groups: dict[int, list[int]] = {}
        for i, (model, _) in enumerate(items):
            groups.setdefault(id(model), []).append(i)
        for idx in groups.values():
            model = items[idx[0]][0]
            tables = [items[i][1] for i in idx]
            out = model.bundle.predict(tables[0] if len(tables) == 1 else pa.concat_tables(tables))
            start = 0
            for i, t in zip(idx, tables):
                end = start + t.num_rows
                results[i] = {k: v[start:end] for k, v in out.items()}
                start = end
        return results

    def _shadow(self, shadow: Loaded, table: pa.Table, answered: dict[str, Any]) -> None:
        async def run() -> None:
            try:
                out = await asyncio.to_thread(shadow.bundle.predict, table)
                self.shadow_stats["requests"] += 1
                self.shadow_stats["rows"] += table.num_rows
                self.shadow_stats["disagreements"] += int((out["prediction"] != answered["prediction"]).sum())
            except Exception:  # the shadow never affects the answer
                self.shadow_stats["errors"] += 1
                log.exception("shadow prediction failed")

        asyncio.get_running_loop().create_task(run())

    def _shadow_summary(self) -> dict[str, Any] | None:
        if self.shadow is None:
            return None
        return {"model": self.shadow.ref, **self.shadow_stats}

    def _openapi(self) -> dict[str, Any]:
        if self._openapi_cache is not None:
            return self._openapi_cache
        schema = get_openapi(title=f"raypipe: {self.name}", version=str(self.current.version), routes=app.routes,
                             description=f"Predictions of {self.name} version {self.current.version} (task {self.current.bundle.task}).")
        instance = self.current.inputs.openapi()
        columns = list(instance["properties"])
        body = {
            "oneOf": [
                {"type": "object", "required": ["instances"], "additionalProperties": False,
                 "properties": {"instances": {"type": "array", "minItems": 1, "maxItems": self.max_instances, "items": instance}}},
                {"type": "object", "required": ["columns", "data"], "additionalProperties": False,
                 "properties": {"columns": {"type": "array", "items": {"type": "string", "enum": columns}},
                                "data": {"type": "array", "minItems": 1, "maxItems": self.max_instances,
                                         "items": {"type": "array"}}}},
            ]
        }
        schema["paths"]["/predict"]["post"]["requestBody"] = {"required": True, "content": {_JSON: {"schema": body}}}
        feedback = {"oneOf": [
            {"type": "object", "required": ["prediction_id", "label"], "properties": {"prediction_id": {"type": "string"}, "label": {}}},
            {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {
                "type": "object", "required": ["prediction_id", "label"],
                "properties": {"prediction_id": {"type": "string"}, "label": {}}}}}},
        ]}
        schema["paths"]["/feedback"]["post"]["requestBody"] = {"required": True, "content": {_JSON: {"schema": feedback}}}
        self._openapi_cache = schema
        return schema


def _feedback_items(payload: Any, max_items: int) -> list[dict[str, Any]]:
    """``{"prediction_id", "label"}`` or ``{"items": [...]}`` as a list; 422 otherwise."""
    items = payload.get("items") if isinstance(payload, dict) and set(payload) == {"items"} else [payload]
    if not isinstance(items, list) or not items:
        raise RequestError(422, "schema_violation", "items must be a non-empty list.",
                           [{"field": "items", "expected": "a non-empty list", "got": type(items).__name__}])
    if len(items) > max_items:
        raise RequestError(413, "too_large", f"{len(items)} feedback items in one request; the most is {max_items}.")
    details = []
    for i, item in enumerate(items):
        where = f"items[{i}]" if len(items) > 1 or "items" in (payload or {}) else "$"
        if not isinstance(item, dict) or set(item) - {"prediction_id", "label"}:
            details.append({"field": where, "expected": "an object with prediction_id and label", "got": str(item)[:80]})
        elif not isinstance(item.get("prediction_id"), str) or not item["prediction_id"]:
            details.append({"field": f"{where}.prediction_id", "expected": "a prediction id string", "got": str(item.get("prediction_id"))[:80]})
        elif item.get("label") is None or isinstance(item["label"], (dict, list)):
            details.append({"field": f"{where}.label", "expected": "a label value", "got": str(item.get("label"))[:80]})
    if details:
        raise RequestError(422, "schema_violation", "the feedback does not match {prediction_id, label}.", details[:100])
    return items


Endpoint = serve.deployment(name="Endpoint")(serve.ingress(app)(Endpoint))


#: What ``serve deploy`` deployments retrain with when the exported config names nothing
#: else: the closed loop's retrain, named by import path since retraining is the
#: pipeline, floors above serving (the same way Serve names this builder).
DEFAULT_RETRAIN = "raypipe.loop:retrain"


def build(args: dict[str, Any]) -> Any:
    """Application builder for ``serve deploy`` (``import_path: raypipe.serving.app:build``).

    ``args``: ``config`` (path of the pipeline config on the cluster), optional
    ``model`` (``NAME@REF`` or a reference), ``profile``, ``set`` (list of overrides) and
    ``retrain`` (import path of the monitor's retrain function, default
    :data:`DEFAULT_RETRAIN`).
    """
    cfg = load_config(args["config"], profile=args.get("profile"), overrides=list(args.get("set") or ()))
    settings = endpoint_settings(cfg, args.get("model"), with_keys=False)
    if cfg.monitor.enabled:
        start_monitor(cfg, _import_path(args.get("retrain") or DEFAULT_RETRAIN))
    return Endpoint.options(**deployment_options(cfg)).bind(settings)


def _import_path(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
