"""The serving baseline: a bare FastAPI app around the same ModelBundle, one uvicorn worker.

    RAYPIPE_BENCH_BUNDLE=/path/to/registry/version python -m uvicorn benchmarks._bare_app:app --workers 1

What a user would write without raypipe: load the champion's bundle folder once, and on
``POST /predict`` with ``{"instances": [{feature: value}, ...]}`` (parsed by pydantic, no
other validation) build an Arrow table typed as the bundle's schema declares and answer
``ModelBundle.predict`` as ``{"predictions", "probabilities"}``. No Ray, no batching, no
auth, no prediction log, no metrics.
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
from fastapi import FastAPI
from pydantic import BaseModel

from raypipe.bundle import ModelBundle
from raypipe.data.validate import ARROW_TYPES

bundle = ModelBundle.load(os.environ["RAYPIPE_BENCH_BUNDLE"])
_skip = {bundle.schema.get("label"), bundle.schema.get("weight")}
schema = pa.schema([(name, ARROW_TYPES[spec["type"]]) for name, spec in bundle.schema["columns"].items()
                    if name not in _skip])
app = FastAPI()


class PredictRequest(BaseModel):
    instances: list[dict[str, Any]]


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
def predict(request: PredictRequest) -> dict[str, Any]:
    out = bundle.predict(pa.Table.from_pylist(request.instances, schema=schema))
    body = {"predictions": out["prediction"].tolist()}
    if "probability" in out:
        body["probabilities"] = out["probability"].tolist()
    return body
