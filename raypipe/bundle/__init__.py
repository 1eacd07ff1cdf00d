"""The model bundle: one artifact for batch and online prediction.

:class:`ModelBundle` (booster, feature pipeline, schema, profile, metrics, lineage) and
:func:`input_columns`, the request side of its schema (pure: no XGBoost, so request
validation and the monitor read it without loading a model).
"""

from raypipe.bundle.model import ModelBundle
from raypipe.bundle.schema import input_columns

__all__ = ["ModelBundle", "input_columns"]
