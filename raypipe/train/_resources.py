"""How many training workers, with how many CPUs each, on the current cluster.

Why a reserve for Ray Data: Ray Train V2 reserves the workers' resources in a
placement group; Ray Data then schedules its read/map tasks (1 CPU each by
default) on whatever CPUs are left. If the workers take every CPU, a lazy
dataset (anything with a ``map_batches``, e.g. the feature pipeline) can never
produce a block and the run hangs in ``get_dataset_shard`` (ray-project/ray
#41603, #44687). XGBoost reads its whole shard BEFORE boosting, so the data
and boosting phases do not overlap in time: the reserve costs little.

The rule for ``num_workers: auto``:

* One node (and no ``cpus_per_worker``): ONE worker with all the node's CPUs
  (``nthread`` = CPUs), trained in one Ray task (:mod:`raypipe.train._local`).
  On one machine XGBoost's threads share one histogram; N workers build N
  partial ones and all-reduce them per tree level, and a Ray Train worker group
  costs seconds to start. Measured on the 2-core CI machine (``python -m
  benchmarks --only train``): 2 Ray Train workers x 1 thread took 1.32x plain
  ``xgboost.train`` on 5M rows and 14.6 s more on 2k rows. The task needs no
  Ray Data reserve: its datasets are materialized before it starts.

Several nodes (Ray Train workers, measured on a 2-CPU machine, see the report
of tests/integration/train):

* ``reserve`` = 1 CPU (Ray Data tasks need a whole CPU each by default), or
  10% of the cluster's CPUs when that is more.
* ``cpus_per_worker`` (when not given) = 2 if the cluster has >= 8 CPUs, else 1.
* ``num_workers`` = floor((CPUs - reserve) / cpus_per_worker), at least 1.
* Small clusters (fewer than 2 workers that way, at least 2 CPUs, no
  ``cpus_per_worker`` given): 2 workers sharing the CPUs after the reserve,
  e.g. 2 x 0.5 CPU on a 2-CPU box, each with ``nthread=1``. Boosting then
  uses both cores while Ray Data still owns 1 CPU during ingest.
  Measured here: 2 workers x 1 CPU (no reserve) hangs forever in
  ``get_dataset_shard`` as soon as the dataset has a ``map_batches``.

An explicit ``num_workers: 1`` trains in one Ray task as well, with every CPU
(of the largest node) by default. With an explicit ``num_workers`` of 2 or
more the CPUs per worker default to ``(CPUs - reserve) / num_workers``
(fractional allowed), so the same reserve holds. Runs planned together
(``concurrent_runs``: folds, trials) divide those CPUs among them. XGBoost's
``nthread`` is the worker's CPUs rounded, at least 1.

A worker's CPUs must also fit on one node: we check against the largest node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ray

from raypipe.errors import ConfigError
from raypipe.train.spec import TrainSpec


@dataclass(frozen=True)
class WorkerPlan:
    """Resources of one training run."""

    num_workers: int
    cpus_per_worker: float
    nthread: int
    use_gpu: bool

    @property
    def local(self) -> bool:
        """One CPU worker: trained in one Ray task, not a Ray Train worker group."""
        return self.num_workers == 1 and not self.use_gpu

    def resources_per_worker(self) -> dict[str, float]:
        res: dict[str, float] = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            res["GPU"] = 1.0
        return res


def cpu_fraction(cpus: float) -> float:
    """``cpus`` rounded down to a reservable amount: whole CPUs when >= 1, else
    tenths (at least 0.1), which pack into Ray's resource bundles.

    >>> cpu_fraction(2.7), cpu_fraction(0.55), cpu_fraction(0.01)
    (2.0, 0.5, 0.1)
    """
    if cpus >= 1:
        return float(math.floor(cpus))
    return max(math.floor(cpus * 10) / 10, 0.1)


def data_reserve(total_cpus: float) -> float:
    """CPUs left to Ray Data while training workers are alive: 1, or 10% of
    ``total_cpus`` when that is more (see the module docstring).

    >>> data_reserve(4), data_reserve(32)
    (1.0, 3.2)
    """
    return max(1.0, 0.1 * total_cpus)


def plan_workers(spec: TrainSpec, *, concurrent_runs: int = 1) -> WorkerPlan:
    """Decide workers and CPUs for ``spec`` on the connected Ray cluster.

    Args:
        spec: The training spec.
        concurrent_runs: Runs that will share the cluster at once (folds of a
            cross-validation); the CPUs left after the data reserve are divided
            among them.

    Raises:
        ConfigError: ``use_gpu`` without GPUs, more workers than fit, or a
            worker larger than any node.
    """
    totals = ray.cluster_resources()
    cpus = float(totals.get("CPU", 0.0))
    gpus = float(totals.get("GPU", 0.0))
    nodes = [float(n["Resources"].get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")]
    largest_node = max(nodes, default=cpus)

    if spec.use_gpu:
        if gpus < 1:
            raise ConfigError(
                "model.training.use_gpu: expected a Ray cluster with GPUs, got 0 GPUs "
                f"(ray.cluster_resources() has CPU={cpus:g} and no 'GPU'). Hint: set "
                "model.training.use_gpu: false, or connect to a cluster with GPU nodes "
                "(cluster.address / RAY_ADDRESS)."
            )
        per_run_gpus = int(gpus) // concurrent_runs
        workers = per_run_gpus if spec.num_workers == "auto" else int(spec.num_workers)
        if workers < 1 or workers > per_run_gpus:
            raise ConfigError(
                f"model.training.num_workers: expected at most {per_run_gpus} GPU "
                f"worker(s) (one GPU each), got {spec.num_workers!r} on a cluster with "
                f"{gpus:g} GPUs. Hint: use num_workers: auto."
            )
    budget = max(cpus - data_reserve(cpus), 0.0) / concurrent_runs
    # One worker trains in one task on materialized data: no Ray Data reserve
    # (module docstring), every CPU of the largest node.
    one_task = cpu_fraction(min(cpus, largest_node) / concurrent_runs)

    if spec.use_gpu:
        per = float(spec.cpus_per_worker or max(1, math.floor(budget / workers)))
    elif spec.num_workers == "auto":
        if len(nodes) <= 1 and spec.cpus_per_worker is None:
            workers, per = 1, one_task
        elif spec.cpus_per_worker is not None:
            per = float(spec.cpus_per_worker)
            workers = max(1, math.floor(budget / per))
        else:
            per = 2.0 if cpus >= 8 else 1.0
            workers = max(1, math.floor(budget / per))
            if workers < 2 and cpus >= 2:
                workers = 2
                per = cpu_fraction(budget / workers)
    else:
        workers = int(spec.num_workers)
        if spec.cpus_per_worker is not None:
            per = float(spec.cpus_per_worker)
        elif workers == 1:
            per = one_task
        else:
            # Fractional CPUs keep the Ray Data reserve on small clusters.
            per = cpu_fraction(budget / workers)

    needed = workers * per * concurrent_runs
    if per > largest_node:
        raise ConfigError(
            f"model.training.cpus_per_worker: expected at most {largest_node:g} CPUs "
            f"(the largest node), got {per:g}. Hint: lower cpus_per_worker."
        )
    if needed > cpus:
        raise ConfigError(
            f"model.training.num_workers: expected workers x cpus_per_worker <= "
            f"{cpus:g} cluster CPUs, got {workers} x {per:g}"
            + (f" x {concurrent_runs} concurrent runs" if concurrent_runs > 1 else "")
            + ". Hint: use num_workers: auto, or lower cpus_per_worker."
        )
    return WorkerPlan(
        num_workers=workers,
        cpus_per_worker=per,
        nthread=max(1, round(per)),
        use_gpu=spec.use_gpu,
    )
