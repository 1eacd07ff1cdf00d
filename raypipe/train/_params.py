"""XGBoost parameters from a TrainSpec (pure: no Ray)."""

from __future__ import annotations

from typing import Any

from raypipe.train.spec import TrainSpec

# Per task: objective and eval metrics. Early stopping watches the LAST metric
# (XGBoost's convention), so the proper scoring rule goes last.
_TASK_DEFAULTS: dict[str, tuple[str, list[str]]] = {
    "binary_classification": ("binary:logistic", ["auc", "logloss"]),
    "multiclass": ("multi:softprob", ["merror", "mlogloss"]),
    "regression": ("reg:squarederror", ["rmse"]),
}

# Metrics where larger is better (mirrors xgboost.callback.EarlyStopping).
_MAXIMIZE_PREFIXES = ("auc", "aucpr", "pre", "map", "ndcg")


def eval_metrics(params: dict[str, Any]) -> list[str]:
    """The eval metrics of fully built params, as a list."""
    metric = params["eval_metric"]
    return [metric] if isinstance(metric, str) else list(metric)


def maximize(metric: str) -> bool:
    """Whether a larger value of an XGBoost metric is better."""
    return metric != "mape" and metric.startswith(_MAXIMIZE_PREFIXES)


def build_params(
    spec: TrainSpec,
    *,
    nthread: int,
    use_gpu: bool,
) -> dict[str, Any]:
    """Return the XGBoost params the workers train with.

    User params win over raypipe's defaults except for the keys raypipe owns
    (``nthread``, ``device``, ``seed``, ``num_class``), which
    :func:`raypipe.train.spec.check_spec` forbids in user params.
    ``num_class`` (when ``spec.num_class`` is None) and
    ``scale_pos_weight: "auto"`` need the labels: the workers fill them in.
    """
    objective, metrics = _TASK_DEFAULTS[spec.task]
    params: dict[str, Any] = {
        "objective": objective,
        "eval_metric": list(metrics),
        "tree_method": "hist",
    }
    params.update(spec.params)
    if isinstance(params["eval_metric"], tuple):
        params["eval_metric"] = list(params["eval_metric"])
    if spec.task == "multiclass" and spec.num_class is not None:
        params["num_class"] = int(spec.num_class)
    if params.get("scale_pos_weight") == "auto":
        del params["scale_pos_weight"]
    params["nthread"] = int(nthread)
    params["seed"] = int(spec.seed)
    params["device"] = "cuda" if use_gpu else "cpu"
    return params
