"""What every benchmark pair shares: settings, timing, data generators, the result row.

A pair module exposes ``run(ctx: Context) -> list[Figure]``; ``python -m benchmarks``
runs the pairs, prints the table and writes the JSON. Every figure is the median of
``ctx.repeats`` runs of each side, measured side by side in the same invocation.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa


@dataclasses.dataclass
class Context:
    """Settings of one suite invocation."""

    quick: bool
    repeats: int
    workdir: Path
    cpus: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    #: Rows of the ingest pair's table when not its default (``--ingest-rows``: how the ratio moves with size).
    ingest_rows: int | None = None

    def size(self, full: int, quick: int) -> int:
        """``quick`` rows under ``--quick``, else ``full``."""
        return quick if self.quick else full

    @property
    def warmup(self) -> int:
        """Untimed runs of each side before timing: 1, none under ``--quick`` (a smoke run)."""
        return 0 if self.quick else 1


@dataclasses.dataclass
class Figure:
    """One row of the table: raypipe against its baseline on the same work.

    ``ratio`` is always ``raypipe / baseline``; ``target`` says which way is good
    (``"<= 1.15"`` for times, ``">= 1.0"`` for throughputs, ``"< 50"`` for an absolute
    bound, where ``baseline`` is ``None``).
    """

    pair: str
    what: str
    unit: str
    raypipe: float
    baseline: float | None
    target: str
    samples: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.raypipe / self.baseline

    @property
    def met(self) -> bool:
        op, bound = self.target.split()
        value = self.raypipe if self.baseline is None else self.ratio
        return {"<=": value <= float(bound), ">=": value >= float(bound),
                "<": value < float(bound), ">": value > float(bound)}[op]

    @property
    def spread(self) -> dict[str, float]:
        """Per side, ``(max - min) / median`` of its samples (sides with 2+ samples)."""
        return {side: spread(values) for side, values in self.samples.items() if len(values) >= 2 and spread(values) is not None}

    @property
    def unstable(self) -> bool:
        """A side's samples spread more than :data:`UNSTABLE_SPREAD`: read the median with care."""
        return any(v > UNSTABLE_SPREAD for v in self.spread.values())

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ratio": self.ratio, "met": self.met, "spread": self.spread,
                "unstable": self.unstable}


#: A figure whose samples (on either side) spread more than this is flagged unstable.
UNSTABLE_SPREAD = 0.25


def spread(samples: list[float]) -> float | None:
    """``(max - min) / median``: 0.0 for identical samples, ``None`` when the median is 0."""
    if not samples:
        return None
    median = statistics.median(samples)
    return (max(samples) - min(samples)) / median if median else None


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall seconds of ``repeats`` calls of ``fn`` and every sample.

    ``warmup`` calls run first, untimed: the first call pays for worker processes,
    imports, page cache and the object store, which a steady state does not (a cold
    first sample was 3.6x the others in one run). Warm BOTH sides of a pair alike.
    """
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), samples


def higgs_like(rows: int, features: int = 28, seed: int = 0) -> pa.Table:
    """A HIGGS-shaped table: ``features`` float32 columns ``f0..`` and a 0/1 ``label``.

    The label is a noisy linear-plus-interaction function of the features, so trees
    have something to learn and early stopping is not hit in 100 rounds.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    w = rng.normal(size=features)
    score = X @ w + 0.5 * X[:, 0] * X[:, 1] + rng.normal(scale=2.0, size=rows)
    cols = {f"f{i}": X[:, i] for i in range(features)}
    cols["label"] = (score > 0).astype(np.float32)
    return pa.table(cols)


def higgs_matrix(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of a :func:`higgs_like` table: the feature columns stacked, the label."""
    features = [c for c in table.column_names if c != "label"]
    return np.column_stack([table.column(f).to_numpy() for f in features]), table.column("label").to_numpy()


def ray_dataset(table: pa.Table, blocks: int = 8):
    """``table`` as a materialized Ray dataset of ``blocks`` blocks (what a transform stage hands on)."""
    import ray.data

    step = -(-table.num_rows // blocks)
    return ray.data.from_arrow([table.slice(i, step) for i in range(0, table.num_rows, step)]).materialize()


ADULT_CATEGORIES = {
    "workclass": ["Private", "Self-emp-not-inc", "Local-gov", "State-gov", "Self-emp-inc", "Federal-gov", None],
    "education": ["HS-grad", "Some-college", "Bachelors", "Masters", "Assoc-voc", "11th", "Doctorate"],
    "marital_status": ["Married-civ-spouse", "Never-married", "Divorced", "Separated", "Widowed"],
    "occupation": ["Prof-specialty", "Craft-repair", "Exec-managerial", "Adm-clerical", "Sales", None],
    "sex": ["Female", "Male"],
}


def adult_like(rows: int, seed: int = 0) -> pa.Table:
    """An Adult-shaped mixed table: 6 ints, 5 categoricals (some null), a 0/1 ``income`` label."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {
        "age": rng.integers(17, 91, rows),
        "fnlwgt": rng.integers(12_000, 1_500_000, rows),
        "education_num": rng.integers(1, 17, rows),
        "capital_gain": np.where(rng.random(rows) < 0.08, rng.integers(0, 99_999, rows), 0),
        "capital_loss": np.where(rng.random(rows) < 0.05, rng.integers(0, 4_356, rows), 0),
        "hours_per_week": rng.integers(1, 100, rows),
    }
    for name, values in ADULT_CATEGORIES.items():
        cols[name] = pa.array(np.array(values, dtype=object)[rng.integers(0, len(values), rows)], pa.string())
    score = (cols["education_num"] - 10) * 0.4 + (cols["age"] - 38) * 0.05 + rng.normal(size=rows)
    cols["income"] = pa.array(np.where(score > 0.8, ">50K", "<=50K"), pa.string())
    return pa.table(cols)


def init_ray(cpus: int) -> None:
    """One local Ray cluster for the whole suite (random ports: Redis owns 6379), with the
    environment ``raypipe`` gives a local Ray it starts to serve (Serve's fast path on:
    ``serve.fast_path``'s default)."""
    import ray

    from raypipe.runtime.cluster import use_local_ray_env

    if not ray.is_initialized():
        use_local_ray_env(serve_fast_path=True)
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", configure_logging=True)
