"""Pair ``predict``: batch prediction throughput (rows/s) of a registered model.

Setup (untimed): a model is trained and promoted by a full ``Pipeline(cfg).run()`` on
200,000 Adult-like rows, 50 boosting rounds (10,000 rows, 10 rounds under ``--quick``),
with the config of :mod:`benchmarks.pair_ingest`. That run's fixed costs (Ray Train start,
evaluation: ~30-60 s on a busy 2-core machine) dominate the pair's wall time under ``--quick``. The rows to score, 5,000,000 (100,000 under
``--quick``) new Adult-like rows without the label, are written as one Parquet file.

Measured (rows / wall seconds, median of ``ctx.repeats``):

* raypipe: ``raypipe.inference.batch_predict``, what ``raypipe predict`` runs: load the
  champion bundle, then one streaming pass: read tasks (one per row group of the input
  file) validate their rows against its schema (quarantining breakers) and predict them
  in the same task, the driver writing one Parquet file (``source_file``,
  ``source_line``, ``prediction``, ``probability``) as blocks arrive.
* baseline: one process. ``pyarrow.parquet.read_table``, the bundle's own feature
  transform (``bundle.features.transform``, the same pure code raypipe runs),
  ``booster.inplace_predict`` with ``nthread`` = all cores, the same prediction labels,
  ``pyarrow.parquet.write_table``. No validation: the issue's baseline is plain
  ``inplace_predict``, so the ratio includes the price of raypipe's checks.

Both sides must give the same probabilities (to 1e-6) on the first 1,000 rows (raypipe's
rows matched by ``source_line``). Ratio = raypipe / baseline rows/s; target ``>= 0.8``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks._common import Context, Figure, adult_like, median_time
from benchmarks.pair_ingest import LABEL, adult_config

CHECKED_ROWS = 1_000


def train_model(ctx: Context):
    """Train and promote a champion; return the config that names it."""
    from raypipe.pipeline import Pipeline

    path = ctx.workdir / "predict-train.parquet"
    pq.write_table(adult_like(ctx.size(200_000, 10_000)), path)
    cfg = adult_config("bench-predict", {"type": "parquet", "paths": [str(path)]}, ctx.workdir,
                       model={"num_boost_round": ctx.size(50, 10), "early_stopping_rounds": None,
                              "params": {"max_depth": 6, "eta": 0.1, "tree_method": "hist"}})
    result = Pipeline(cfg).run()
    assert result.promoted, f"the benchmark model was not promoted: {result.gate}"
    return cfg


def load_champion(cfg):
    from raypipe.bundle import ModelBundle
    from raypipe.registry import ModelRegistry

    registry = ModelRegistry(cfg.registry.uri)
    version = registry.get(cfg.model_name, "champion")
    return ModelBundle.load(registry.local_path(version.model, version.version))


def run_raypipe(cfg, source: Path, output: Path) -> dict:
    from raypipe.inference import batch_predict

    return batch_predict(cfg, str(source), str(output))


def run_baseline(cfg, source: Path, output: Path, threads: int) -> None:
    """Load the champion, read, transform, ``inplace_predict``, write: one process."""
    bundle = load_champion(cfg)
    bundle.booster.set_param({"nthread": threads})
    table = pq.read_table(source)
    features = bundle.features.transform(table)
    matrix = np.column_stack([c.to_numpy() for c in features.columns])  # float32, C-contiguous
    proba = bundle.booster.inplace_predict(matrix, validate_features=False)
    classes = np.asarray(bundle.features.label_encoder.classes, dtype=object)
    prediction = classes[(proba >= bundle.threshold).astype(np.int64)]
    pq.write_table(pa.table({"prediction": pa.array(prediction, pa.string()), "probability": proba.astype(np.float64)}), output)


def _first_rows(ours: Path, theirs: Path) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of the first :data:`CHECKED_ROWS` input rows from both outputs."""
    table = pq.read_table(ours, columns=["source_line", "probability"])
    head = table.filter(pa.compute.less_equal(table["source_line"], CHECKED_ROWS)).sort_by("source_line")
    assert head["source_line"].to_pylist() == list(range(1, CHECKED_ROWS + 1)), "raypipe lost or duplicated rows"
    base = pq.read_table(theirs, columns=["probability"]).slice(0, CHECKED_ROWS)
    return head["probability"].to_numpy(), base["probability"].to_numpy()


def run(ctx: Context) -> list[Figure]:
    cfg = train_model(ctx)
    rows = ctx.size(5_000_000, 100_000)
    source = ctx.workdir / "predict-input.parquet"
    pq.write_table(adult_like(rows, seed=7).drop_columns([LABEL]), source)

    runs = iter(range(1_000))
    outs: dict[str, Path] = {}

    def raypipe_once() -> None:
        outs["raypipe"] = ctx.workdir / f"predictions-{next(runs)}.parquet"
        result = run_raypipe(cfg, source, outs["raypipe"])
        assert result["rows"] == {"input": rows, "predicted": rows, "quarantined": 0}, result["rows"]

    def baseline_once() -> None:
        outs["baseline"] = ctx.workdir / f"baseline-{next(runs)}.parquet"
        run_baseline(cfg, source, outs["baseline"], ctx.cpus)

    ray_s, ray_samples = median_time(raypipe_once, ctx.repeats, warmup=ctx.warmup)
    base_s, base_samples = median_time(baseline_once, ctx.repeats, warmup=ctx.warmup)
    ours, theirs = _first_rows(outs["raypipe"], outs["baseline"])
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    rate = lambda samples: [rows / s for s in samples]  # noqa: E731
    return [Figure(
        pair="predict", what="batch predict", unit="rows/s", raypipe=rows / ray_s, baseline=rows / base_s,
        target=">= 0.8", samples={"raypipe": rate(ray_samples), "baseline": rate(base_samples)},
        note=(f"{rows:,} rows ({source.stat().st_size / 1e6:.0f} MB Parquet), {ctx.cpus} cores; "
              f"seconds raypipe {ray_s:.1f}, baseline {base_s:.1f}; raypipe also validates every row"),
    )]
