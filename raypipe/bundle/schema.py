"""The input side of a bundle's ``schema.json``: which columns a caller sends.

Pure (pydantic config models only), so the HTTP request validator, batch prediction and
the monitor share one reading of the schema without importing XGBoost.
"""

from __future__ import annotations

from typing import Any

from raypipe.config import ColumnSpec

__all__ = ["input_columns"]


def input_columns(bundle_schema: dict[str, Any]) -> dict[str, ColumnSpec]:
    """The input columns of a bundle schema, in order, each as its :class:`ColumnSpec`.

    The label and weight columns are not inputs; the id column is optional (nullable)
    since a caller may leave it out.
    """
    skip = {bundle_schema.get("label"), bundle_schema.get("weight")}
    row_id = bundle_schema.get("id")
    columns: dict[str, ColumnSpec] = {}
    for name, raw in bundle_schema.get("columns", {}).items():
        if name in skip:
            continue
        spec = ColumnSpec.model_validate(raw)
        if name == row_id:
            spec = spec.model_copy(update={"nullable": True})
        columns[name] = spec
    return columns
