"""What a Tune experiment searches and how: the search space, the metric, the searcher, the scheduler.

Built on the driver from the typed ``tune`` section (:class:`raypipe.config.TuneConfig`)
and the single-run :class:`~raypipe.train.spec.TrainSpec`, before any trial runs, so a
mistake in the search space is a :class:`~raypipe.errors.ConfigError` naming its key.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import replace
from typing import Any

import ray.tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from raypipe.config import SearchDim, TuneConfig
from raypipe.errors import ConfigError, did_you_mean
from raypipe.train._params import build_params, eval_metrics, maximize
from raypipe.train.spec import TrainSpec, check_spec

_ASHA_REDUCTION_FACTOR = 3


def search_space(spec: TrainSpec, tune_cfg: TuneConfig) -> dict[str, Any]:
    """Tune's ``param_space`` of ``tune_cfg.search_space``: one Tune domain per XGBoost parameter.

    Each dimension's extreme values are checked against the spec rules first
    (:func:`~raypipe.train.spec.check_spec`), so a trial never starts with a
    value the spec would refuse.

    Raises:
        ConfigError: an empty search space, a malformed dimension or a refused value.
    """
    if not tune_cfg.search_space:
        raise ConfigError(
            "tune.search_space: expected at least one XGBoost parameter to search, got "
            "none. Hint: e.g. search_space: {max_depth: {type: randint, low: 3, high: 9}}."
        )
    space: dict[str, Any] = {}
    for key, dim in tune_cfg.search_space.items():
        where = f"tune.search_space.{key}"
        space[key] = _domain(where, dim)
        for value in _corners(dim):
            try:
                check_spec(replace(spec, params={**spec.params, key: value}))
            except ConfigError as exc:
                raise ConfigError(f"{where}: value {value!r} is invalid: {exc}") from exc
    return space


def _domain(where: str, dim: SearchDim):
    if dim.type == "choice":
        return ray.tune.choice(list(dim.values))
    if dim.type == "grid":
        return ray.tune.grid_search(list(dim.values))
    low, high = float(dim.low), float(dim.high)
    if dim.type == "randint":
        if low != int(low) or high != int(high):
            raise ConfigError(
                f"{where}: randint expected integer bounds, got low={dim.low!r} "
                f"high={dim.high!r}. Hint: use type: uniform for real values."
            )
        if int(high) - int(low) < 1:
            raise ConfigError(f"{where}: randint expected high > low, got low={low:g} high={high:g}.")
        return ray.tune.randint(int(low), int(high))
    if dim.type == "loguniform":
        if low <= 0:
            raise ConfigError(
                f"{where}: loguniform expected 0 < low < high, got low={dim.low!r}. "
                "Hint: use type: uniform to include 0."
            )
        return ray.tune.loguniform(low, high)
    return ray.tune.uniform(low, high)


def _corners(dim: SearchDim) -> list[Any]:
    """Values of ``dim`` worth checking against the spec rules up front."""
    if dim.type in ("choice", "grid"):
        return list(dim.values)
    if dim.type == "randint":
        return [int(dim.low), int(dim.high) - 1]
    return [float(dim.low), float(dim.high)]


def metric_and_mode(spec: TrainSpec, metric: str | None) -> tuple[str, str]:
    """The tuned metric (default: the early-stopping metric on the validation set) and its mode.

    Raises:
        ConfigError: a metric that is not one of the eval metrics on the validation set.
    """
    metrics = eval_metrics(build_params(spec, nthread=1, use_gpu=False))
    if metric is None:
        metric = f"valid-{metrics[-1]}"
    choices = [f"valid-{m}" for m in metrics]
    if metric not in choices:
        raise ConfigError(
            f"tune: metric: expected one of {choices} (the eval metrics on the validation "
            f"set), got {metric!r}.{did_you_mean(metric, choices)}"
        )
    return metric, "max" if maximize(metric.removeprefix("valid-")) else "min"


def searcher(
    tune_cfg: TuneConfig, spec: TrainSpec, metric: str, mode: str, concurrency: int
) -> tuple[Any, int | None]:
    """The search algorithm and the ``max_concurrent_trials`` to give Tune.

    Tune applies ``max_concurrent_trials`` only to a ``Searcher`` (wrapping it
    in a ``ConcurrencyLimiter``) and ignores it, with a warning, for a
    ``BasicVariantGenerator`` instance: that one limits itself.
    """
    if tune_cfg.search == "random":
        return BasicVariantGenerator(random_state=spec.seed, max_concurrent=concurrency), None
    if importlib.util.find_spec("optuna") is None:
        raise ConfigError(
            "tune.search: expected an installed search library for 'optuna', got "
            "'optuna' without the optuna package. Hint: pip install 'raypipe[optuna]', "
            "or use search: random."
        )
    grid = [k for k, d in tune_cfg.search_space.items() if d.type == "grid"]
    if grid:
        raise ConfigError(
            f"tune.search_space.{grid[0]}: type 'grid' cannot be searched by optuna, got "
            f"search: optuna. Hint: use type: choice, or search: random."
        )
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(metric=metric, mode=mode, seed=spec.seed), concurrency


def scheduler(tune_cfg: TuneConfig, spec: TrainSpec):
    """The trial scheduler: FIFO, or ASHA with rungs on reported rounds."""
    if tune_cfg.scheduler == "fifo":
        return FIFOScheduler()
    every = spec.report_every
    rf = _ASHA_REDUCTION_FACTOR
    # Rungs at grace * rf**k rounds; grace a multiple of report_every so that
    # every rung falls on a reported round, and about 1/rf**2 of the budget so
    # that a full run passes three rungs.
    grace = every * max(1, math.ceil(spec.num_boost_round / rf**2 / every))
    grace = min(grace, spec.num_boost_round)
    return ASHAScheduler(
        time_attr="round",
        max_t=spec.num_boost_round,
        grace_period=grace,
        reduction_factor=rf,
        # A trial past the last rung trains to its end (and to its own early
        # stopping) instead of being stopped when it reaches max_t.
        stop_last_trials=False,
    )
