"""tune: ``tune_xgboost`` (Ray Tune; each one-worker trial trains in its trial actor) vs the same trials in plain XGBoost.

raypipe: the wall time of one ``tune_xgboost`` call on ``higgs_like`` rows (80/20
train/valid Ray datasets of 8 blocks each): random search over max_depth/eta/subsample
(seeded), FIFO scheduler and no early stopping, so every trial boosts the same rounds;
the trials run ``concurrency`` at a time, as many as raypipe picks on this cluster
(``TuneConfig`` default, capped by the CPUs after Ray Data's reserve).

Baseline: the very params of those trials (read back from ``TuneResult.trials``, merged
over the params raypipe trained with: objective, metrics, seed, ``nthread`` = the CPUs
one trial gets) trained one after another with ``xgboost.train`` in this process on the
same rows as numpy -> ``QuantileDMatrix`` (the valid rows evaluated every round, as
XGBoost evaluates them in the raypipe workers). Baseline time = sum of those trial times / concurrency: the ideal
parallel wall time without Ray.

How to read it: the ratio is what Ray Tune costs on top of XGBoost itself; the note's
per-trial overhead (raypipe wall x concurrency / trials - mean plain trial) is the fixed
price of one trial (trial actor, reading the shared blocks, reports, checkpoint). The raypipe side runs once: one search is minutes of
Ray Train runs, and its trials are the repeat; the plain per-trial times are the samples.
"""

from __future__ import annotations

import json
import statistics
import time

import xgboost as xgb

from benchmarks._common import Context, Figure, higgs_like, higgs_matrix, ray_dataset
from raypipe.config import TuneConfig
from raypipe.train import TrainSpec, tune_xgboost
from raypipe.train._tune_trial import RESULT_FILENAME

SEARCH_SPACE = {
    "max_depth": {"type": "randint", "low": 3, "high": 9},
    "eta": {"type": "loguniform", "low": 0.02, "high": 0.3},
    "subsample": {"type": "uniform", "low": 0.6, "high": 1.0},
}


def _trial_phases(ctx: Context, result) -> str:
    """Mean seconds per trial: Tune's wall (trial start to end, on the driver), the
    training run in the trial actor, and the loop's phases (reading the shards,
    building the matrices: 0 when a reused actor kept them, boosting with reports)."""
    walls, runs, phases = [], [], {}
    for t in result.trials:
        path = ctx.workdir / "tune" / "tune-bench" / "train" / t["trial_id"] / RESULT_FILENAME
        summary = json.loads(path.read_text())
        walls.append(t["duration_s"])
        runs.append(summary["duration_s"])
        for k, v in summary["timings"].items():
            phases.setdefault(k, []).append(v)
    mean = statistics.mean
    parts = [f"Tune trial {mean(walls):.2f} s", f"run in the actor {mean(runs):.2f} s"]
    parts += [f"{k} {mean(v):.2f} s" for k, v in phases.items()]
    return ", ".join(parts)


def run(ctx: Context) -> list[Figure]:
    rows, trials, rounds = ctx.size(200_000, 20_000), ctx.size(16, 4), ctx.size(50, 10)
    table = higgs_like(rows)
    cut = int(rows * 0.8)
    train, valid = table.slice(0, cut), table.slice(cut)
    features = [c for c in table.column_names if c != "label"]
    spec = TrainSpec(
        task="binary_classification", label="label", features=features,
        feature_types=["q"] * len(features), params={}, num_boost_round=rounds,
        early_stopping_rounds=None, storage_path=str(ctx.workdir / "tune"),
    )
    cfg = TuneConfig(enabled=True, num_samples=trials, scheduler="fifo", search="random",
                     search_space=SEARCH_SPACE)

    started = time.perf_counter()
    result = tune_xgboost(spec, cfg, ray_dataset(train), ray_dataset(valid), "tune-bench")
    wall = time.perf_counter() - started
    done = [t for t in result.trials if t["status"] == "terminated" and t["rounds"] == rounds]
    if len(done) != trials:
        raise RuntimeError(f"expected {trials} trials of {rounds} rounds, got {result.trials}")

    # Plain XGBoost: the same trials, params and threads, one after another.
    base_params = result.best.params  # objective, eval_metric, tree_method, nthread, seed, device
    nthread = int(base_params["nthread"])
    X, y = higgs_matrix(train)
    Xv, yv = higgs_matrix(valid)
    plain = []
    for t in result.trials:
        began = time.perf_counter()
        dtrain = xgb.QuantileDMatrix(X, label=y, nthread=nthread)
        dvalid = xgb.QuantileDMatrix(Xv, label=yv, ref=dtrain, nthread=nthread)
        xgb.train({**base_params, **t["params"]}, dtrain, num_boost_round=rounds,
                  evals=[(dvalid, "valid")], verbose_eval=False)
        plain.append(time.perf_counter() - began)

    conc = result.concurrency
    baseline = sum(plain) / conc
    overhead = wall * conc / trials - statistics.mean(plain)
    phases = _trial_phases(ctx, result)
    note = (f"{trials} trials x {rounds} rounds, {conc} at a time, nthread {nthread} each, "
            f"{cut:,}/{rows - cut:,} train/valid rows x {len(features)} features; "
            f"per-trial overhead {overhead:.1f} s (raypipe wall x {conc} / {trials} - mean plain "
            f"trial {statistics.mean(plain):.2f} s); where a raypipe trial's seconds go (mean of "
            f"{trials}): {phases}; raypipe side run once")
    return [Figure(
        pair="tune", what=f"tune {trials} trials", unit="s", raypipe=wall, baseline=baseline,
        target="<= 1.2", note=note,
        samples={"raypipe_s": [wall], "plain_trial_s": plain,
                 "raypipe_trial_s": [t["duration_s"] for t in result.trials]},
    )]
