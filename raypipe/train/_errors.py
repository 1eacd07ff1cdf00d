"""Training's own error (to move into :mod:`raypipe.errors` at integration)."""

from __future__ import annotations

from raypipe.errors import StageError


class TrainingError(StageError):
    """Ray Train / XGBoost training failed (workers crashed past
    ``max_failures``, XGBoost rejected the data or params, ...).

    Mistakes in the spec raise :class:`raypipe.errors.ConfigError`; missing or
    unusable columns raise :class:`raypipe.errors.SchemaError`/``DataError``.
    """
