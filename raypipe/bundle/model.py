"""ModelBundle: everything needed to turn raw rows into predictions, in one folder.

A bundle holds the XGBoost booster (UBJ, never pickle), the fitted feature
pipeline (JSON), the input schema, the training reference profile (for drift),
metrics, params and the lineage manifest. :meth:`ModelBundle.predict` is the one
prediction path: Ray Data batch inference, evaluation and the HTTP endpoint all
call it, so training and serving cannot disagree.

Files::

    model.ubj  features.json  schema.json  profile.json  metrics.json  params.json  lineage.json

Example::

    bundle = ModelBundle.load("raypipe-registry/adult-income/versions/1")
    out = bundle.predict(table)   # {"prediction": ..., "probability": ...}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["ModelBundle"]

_FILES = ("model.ubj", "features.json", "schema.json", "profile.json", "metrics.json", "params.json", "lineage.json")


@dataclass
class ModelBundle:
    """A trained model with its feature pipeline, schema and provenance.

    Args:
        booster: the trained ``xgboost.Booster``.
        features: the fitted ``FeaturePipeline``.
        schema: the input schema as a JSON-able dict (``task``, ``label``, ``columns``:
            each input column's declared spec).
        threshold: decision threshold of binary classification.
        profile: the reference profile of the training data (drift monitoring).
        metrics, params, lineage: JSON-able records.
    """

    booster: Any
    features: Any
    schema: dict[str, Any]
    threshold: float = 0.5
    profile: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        """``binary_classification``, ``multiclass`` or ``regression``."""
        return self.schema["task"]

    def predict(self, table: pa.Table) -> dict[str, np.ndarray]:
        """Predict for a table of input rows (typed as the schema declares).

        Returns ``{"prediction": ...}`` plus, for classification, ``"probability"``
        (binary: P(positive), shape (n,); multiclass: shape (n, k)). Binary and
        multiclass predictions are label values (e.g. ``">50K"``), regression
        predictions floats.
        """
        x = self.features.transform(table)
        matrix = _to_matrix(x)
        # inplace_predict skips DMatrix construction; categorical codes are plain
        # floats, their types come from the booster's feature_types.
        raw = self.booster.inplace_predict(matrix, validate_features=False)
        task = self.task
        if task == "regression":
            return {"prediction": np.asarray(raw, dtype=np.float64)}
        classes = np.asarray(self.features.label_encoder.classes, dtype=object)
        if task == "binary_classification":
            proba = np.asarray(raw, dtype=np.float64)
            return {"prediction": classes[(proba >= self.threshold).astype(np.int64)], "probability": proba}
        proba = np.asarray(raw, dtype=np.float64).reshape(len(x), -1)
        return {"prediction": classes[proba.argmax(axis=1)], "probability": proba}

    def predict_scores(self, table: pa.Table) -> np.ndarray:
        """Raw model output for metrics: P(positive), class probabilities or values."""
        out = self.predict(table)
        return out.get("probability", out["prediction"])

    def to_files(self) -> dict[str, bytes]:
        """The bundle as ``{file name: bytes}`` (what :meth:`save` writes)."""
        files = {"model.ubj": bytes(self.booster.save_raw("ubj")), "features.json": self.features.to_json().encode()}
        for name, body in (
            ("schema.json", dict(self.schema, threshold=self.threshold)),
            ("profile.json", self.profile),
            ("metrics.json", self.metrics),
            ("params.json", self.params),
            ("lineage.json", self.lineage),
        ):
            files[name] = json.dumps(body, indent=2, default=_json_default).encode()
        return files

    @classmethod
    def from_files(cls, files: dict[str, bytes], where: str = "model bundle") -> ModelBundle:
        """Rebuild a bundle from :meth:`to_files` output.

        Raises:
            StageError: a file is missing, or ``model.ubj`` is not a readable model.
        """
        import xgboost as xgb

        from raypipe.errors import StageError
        from raypipe.features import FeaturePipeline

        missing = [n for n in _FILES if n not in files]
        if missing:
            raise StageError(f"{where}: missing {', '.join(missing)}; not a complete model bundle.")
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(files["model.ubj"]))
        except xgb.core.XGBoostError as exc:
            # XGBoost's parser error is a C++ stack dump; one line names the file instead.
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StageError(
                f"{where}/model.ubj: not a readable XGBoost model ({len(files['model.ubj'])} bytes; {first[:200]}). "
                "The file is truncated or damaged; restore it or train again."
            ) from None
        read = lambda n: json.loads(files[n].decode())  # noqa: E731
        schema = read("schema.json")
        return cls(
            booster=booster,
            features=FeaturePipeline.from_json(files["features.json"].decode()),
            schema=schema,
            threshold=float(schema.get("threshold", 0.5)),
            profile=read("profile.json"),
            metrics=read("metrics.json"),
            params=read("params.json"),
            lineage=read("lineage.json"),
        )

    def save(self, path: str | Path) -> Path:
        """Write the bundle into folder ``path`` (created)."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in self.to_files().items():
            (folder / name).write_bytes(data)
        return folder

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        """Read a bundle folder written by :meth:`save`."""
        folder = Path(path)
        files = {n: (folder / n).read_bytes() for n in _FILES if (folder / n).exists()}
        return cls.from_files(files, where=f"model bundle {folder}")


def _to_matrix(table: pa.Table) -> np.ndarray:
    if table.num_columns == 0:
        return np.empty((table.num_rows, 0), dtype=np.float32)
    cols = [c.to_numpy(zero_copy_only=False) for c in table.columns]
    return np.ascontiguousarray(np.column_stack(cols), dtype=np.float32)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
