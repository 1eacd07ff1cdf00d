"""Model evaluation: metrics identical to scikit-learn's, in pure numpy (no Ray).

>>> from raypipe.evaluate import compute_metrics
>>> compute_metrics("binary_classification", [0, 1], [0.3, 0.8])["accuracy"]
1.0
"""

from raypipe.evaluate.metrics import (
    GREATER_IS_BETTER,
    METRIC_NAMES,
    MISSING_SLICE_KEY,
    TASKS,
    best_threshold,
    binary_metrics,
    compute_metrics,
    multiclass_metrics,
    pr_curve_points,
    regression_metrics,
    resolve_metric,
    roc_curve_points,
    slice_metrics,
)

__all__ = [
    "TASKS",
    "METRIC_NAMES",
    "GREATER_IS_BETTER",
    "MISSING_SLICE_KEY",
    "binary_metrics",
    "best_threshold",
    "multiclass_metrics",
    "regression_metrics",
    "roc_curve_points",
    "pr_curve_points",
    "compute_metrics",
    "slice_metrics",
    "resolve_metric",
]
