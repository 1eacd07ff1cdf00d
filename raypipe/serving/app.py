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
from fastapi.responses import FileResponse, HTMLResponse, Response
from ray import serve
from ray.util import metrics
from starlette.exceptions import HTTPException as StarletteHTTPException

from raypipe.bundle import ModelBundle
from raypipe.config import BatchingConfig, load_config
from raypipe.monitor.actor import monitor_name, start_monitor
from raypipe.monitor.log import FEEDBACK, PREDICTIONS, LogWriter, feedback_rows, prediction_rows
from raypipe.monitor.page import prefers_html, render_monitor_html
from raypipe.registry import ModelRegistry, RegistryError
from raypipe.serving.contract import openapi_document
from raypipe.serving.request import (
    InputSchema,
    LabelSchema,
    RequestError,
    authorized,
    error_body,
    feedback_items,
    load_api_key_hashes,
    new_prediction_ids,
    parse_json,
    prediction_body,
    valid_prediction_id,
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
    # Unknown routes and wrong methods answer in the SPEC's error format too; a 405
    # keeps Starlette's ``Allow`` header (RFC 9110 requires it).
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _json_response(error_body(kind, f"{request.method} {request.url.path}: {exc.detail}"), exc.status_code,
                          dict(exc.headers or {}))


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    details = [{"field": ".".join(map(str, e.get("loc", ()))), "expected": e.get("msg", ""), "got": str(e.get("input"))[:80]}
               for e in exc.errors()]
    return _json_response(error_body("schema_violation", "the request does not match the API.", details), 422)


@app.exception_handler(Exception)
async def _server_fault(request: Request, exc: Exception) -> Response:
    # A bug, never the client's data: JSON in the SPEC's format, the replica keeps serving.
    log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc, exc_info=exc)
    return _json_response(error_body("internal_error", f"{request.method} {request.url.path}: {type(exc).__name__}"), 500)


def _unauthorized() -> RequestError:
    return RequestError(401, "unauthorized", "a valid API key is required: send 'Authorization: Bearer <key>'.")


@dataclass(frozen=True)
class Loaded:
    """One model version as a replica holds it."""

    name: str
    version: int
    bundle: Any
    inputs: InputSchema
    labels: LabelSchema
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
    return Loaded(name, version.version, bundle, InputSchema(bundle.schema), LabelSchema.of(bundle), info)


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
        self.id_key = settings.id_key
        self.read_timeout_s = cfg.request_timeout_s
        self._refresh_side_models()
        # A batch can never hold more requests than a replica takes at once (Serve warns).
        self._predict_batch.set_max_batch_size(min(cfg.batching.max_batch_size, cfg.max_ongoing_requests))
        self._predict_batch.set_batch_wait_timeout_s(cfg.batching.wait_timeout_ms / 1000.0)
        # /predict requests inside the handler now: one alone skips the batch queue (_predict).
        self._in_flight = 0
        self._direct_when_alone = cfg.batching.wait_timeout_ms == 0
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
        # Swagger UI from the endpoint itself (the swagger-ui-bundle package): /docs works offline.
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"raypipe: {self.name}",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png")

    @app.get("/docs/assets/{name}", include_in_schema=False)
    async def docs_asset(self, name: str) -> Response:
        path = _SWAGGER_ASSETS.get(name)
        if path is None:
            return _json_response(error_body("not_found", f"GET /docs/assets/{name}: no such asset."), 404)
        return FileResponse(path)

    @app.get("/monitor")
    async def monitor(self, request: Request) -> Response:
        denied = self._deny(request)
        if denied:
            return denied
        body: dict[str, Any] = {"model": self.current.ref, "shadow": self._shadow_summary()}
        if self.monitor_actor is None:
            body["monitoring"] = False
        else:
            try:
                body.update(await self.monitor_actor.report.remote())
            except ray.exceptions.RayError as exc:  # restarting: ask again shortly
                return _json_response(error_body("unavailable", f"the monitor does not answer ({type(exc).__name__}); retry."),
                                      503, {"Retry-After": "2"})
            body["monitoring"] = True
        if prefers_html(request.headers.get("accept")):  # a browser: the monitoring page
            return HTMLResponse(render_monitor_html(body))
        return _json_response(body)

    @app.post("/predict")
    async def predict(self, request: Request) -> Response:
        started = time.perf_counter()
        model = self.current
        status = 200
        self._in_flight += 1
        try:
            if not authorized(request.headers.get("authorization"), self.hashes):
                raise _unauthorized()
            payload = parse_json(await self._body(request))
            if self.challenger is not None and random.random() < self.canary:
                model = self.challenger
            table = model.inputs.table(payload, self.max_instances)
            out = await self._predict(model, table)
            if isinstance(out, Exception):  # this request's own rows failed, predicted alone
                raise RequestError(422, "unprocessable_values", f"the rows could not be transformed for the model: "
                                   f"{type(out).__name__}: {str(out)[:300]}", [{"field": "$", "expected": "values the model's "
                                   "features accept", "got": f"{table.num_rows} row(s) that fail its transform"}])
            ids = new_prediction_ids(table.num_rows, self.id_key)
            row_ids = table.column(model.inputs.id_column).to_pylist() if model.inputs.id_column in table.column_names else None
            response = _json_response(prediction_body(out, model.ref, ids, row_ids))
            self._log(model, table, out, ids)
            if self.shadow is not None and self.shadow.version != model.version:
                self._shadow(self.shadow, table, out)
        except RequestError as exc:
            status = exc.status
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            response = _json_response(exc.body(), exc.status, headers)
        except Exception as exc:  # a bug, not bad input: answer 500 (JSON) and keep serving
            status = 500
            log.exception("predict failed")
            response = _json_response(error_body("internal_error", f"POST /predict: {type(exc).__name__}"), 500)
        finally:
            self._in_flight -= 1
        tags = {"model": self.name, "version": str(model.version), "status": str(status)}
        self._requests.inc(tags=tags)
        self._latency.observe((time.perf_counter() - started) * 1000.0, tags={"model": self.name})
        return response

    @app.post("/feedback")
    async def feedback(self, request: Request) -> Response:
        """Labels for logged predictions. Each item is checked on its own: an id this
        deployment never issued (HMAC tag) or a label outside the model's classes (or
        not a finite number, regression) is rejected and named; the rest are stored."""
        try:
            if not authorized(request.headers.get("authorization"), self.hashes):
                raise _unauthorized()
            items, prefix = feedback_items(parse_json(await self._body(request)), self.max_instances)
            if self.fb_log is None:
                raise RequestError(409, "monitoring_disabled", f"feedback for {len(items)} prediction(s) cannot be stored: "
                                   "monitoring is not enabled for this endpoint. Hint: set monitor.enabled: true.")
            labels = self.current.labels
            good, rejected = [], []
            for i, item in enumerate(items):
                where = f"items[{i}]" if prefix == "items" else "$"
                if not valid_prediction_id(item["prediction_id"], self.id_key):
                    rejected.append({"field": f"{where}.prediction_id", "expected": "an id this endpoint issued",
                                     "got": _short(item["prediction_id"]), "reason": "unknown_prediction"})
                    continue
                expected = labels.check(item["label"])
                if expected is not None:
                    rejected.append({"field": f"{where}.label", "expected": expected, "got": _short(item["label"]),
                                     "reason": "invalid_label"})
                    continue
                good.append(item)
            if not good:
                unknown = all(r["reason"] == "unknown_prediction" for r in rejected)
                raise RequestError(404 if unknown else 422, "unknown_prediction" if unknown else "invalid_label",
                                   f"none of the {len(items)} feedback item(s) was accepted.", rejected[:100])
        except RequestError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return _json_response(exc.body(), exc.status, headers)
        self.fb_log.append(feedback_rows(good))
        # The SPEC's {"accepted": n}; "rejected" only when an item was refused.
        return _json_response({"accepted": len(good), **({"rejected": rejected[:100]} if rejected else {})})

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
        chunks: list[bytes] = []
        try:
            async with asyncio.timeout(self.read_timeout_s):
                size = 0
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise RequestError(413, "too_large", f"the body exceeds {self.max_bytes} bytes.")
                    chunks.append(chunk)
        except TimeoutError:
            # A body that never completes must not hold a slot of the replica.
            raise RequestError(408, "request_timeout", f"the body did not arrive within {self.read_timeout_s:g} s "
                               f"({sum(map(len, chunks))} of {declared or 'unknown'} bytes). Hint: serve.request_timeout_s.") from None
        return b"".join(chunks)

    async def _predict(self, model: Loaded, table: pa.Table) -> Any:
        """One request's prediction, or its exception (see :meth:`_predict_items`).

        A request alone in the replica is predicted here and now, without ``@serve.batch``:
        with no batch wait (``wait_timeout_ms: 0``) its batch would hold it alone anyway, and
        the queue, the future, the wake-up of the batching task and its metrics cost the
        replica CPU on every request (benchmarks/serve_cpu.py). Alone means no other
        ``/predict`` in this handler after one turn of the event loop: requests the loop
        already holds reach their handler in that turn, as they would reach the batch queue
        before its task wakes, so under load requests still merge, wait in the replica
        (where the autoscaler counts them) and the prediction call stays synchronous.
        """
        if self._direct_when_alone and self._in_flight == 1:
            await asyncio.sleep(0)
            if self._in_flight == 1:
                return self._predict_items([(model, table)])[0]
        return await self._predict_batch((model, table))

    # The config's defaults; each replica sets its own config's values in __init__.
    @serve.batch(max_batch_size=_BATCHING.max_batch_size, batch_wait_timeout_s=_BATCHING.wait_timeout_ms / 1000.0)
    async def _predict_batch(self, items: list[tuple[Loaded, pa.Table]]) -> list[Any]:
        """Predict several requests' rows in one call per model version (:meth:`_predict_items`)."""
        return self._predict_items(items)

    @staticmethod
    def _predict_items(items: list[tuple[Loaded, pa.Table]]) -> list[Any]:
        """Predict several requests' rows in one call per model version.

        Requests are isolated: when the merged call fails, each request of the group
        is predicted alone, and only the one that fails gets its exception back (as its
        result: the caller answers 4xx); no error text carries another request's rows.
        """
        results: list[Any] = [None] * len(items)
        groups: dict[int, list[int]] = {}
        for i, (model, _) in enumerate(items):
            groups.setdefault(id(model), []).append(i)
        for idx in groups.values():
            model = items[idx[0]][0]
            tables = [items[i][1] for i in idx]
            try:
                out = model.bundle.predict(tables[0] if len(tables) == 1 else pa.concat_tables(tables))
            except Exception as exc:
                if len(idx) == 1:
                    results[idx[0]] = exc
                    continue
                for i, t in zip(idx, tables):
                    try:
                        results[i] = model.bundle.predict(t)
                    except Exception as alone:
                        results[i] = alone
                continue
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
        if self._openapi_cache is None:
            model = self.current
            self._openapi_cache = openapi_document(
                name=self.name, version=model.version, task=model.bundle.task, inputs=model.inputs, labels=model.labels,
                max_instances=self.max_instances, auth=bool(self.hashes), monitoring=self.fb_log is not None,
            )
        return self._openapi_cache


def _short(value: Any) -> Any:
    return value if isinstance(value, (int, float, bool)) or value is None else str(value)[:80]


def _swagger_assets() -> dict[str, str]:
    import swagger_ui_bundle

    root = swagger_ui_bundle.swagger_ui_path
    return {name: str(root / name) for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")}


_SWAGGER_ASSETS = _swagger_assets()


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
