"""Pair ``train``: the training stage on Ray Train against ``xgboost.train`` in one process.

raypipe: ``train_xgboost`` (the pipeline's train stage) on a Ray dataset held in the object
store, ``num_workers: auto`` on all the cluster's CPUs, from the call to the model back on
the driver (start-up, shard reads, QuantileDMatrix, boosting, reports, checkpoints). On one
node ``auto`` is one worker with every CPU, trained in one Ray task; the extra figure
"Ray Train, 2 workers" (full runs only) is the same 1M rows with ``num_workers: 2``: a Ray
Train worker group of 2 x 1 thread, what a multi-node cluster runs.
Baseline: ``xgboost.train`` in this process from the same Arrow table (to numpy,
``QuantileDMatrix``), ``nthread`` = every core. Both: HIGGS-like rows x 28, ``hist``,
depth 6, 100 rounds, the same validation rows evaluated every round, no early stopping.
The fixed overhead is the difference on a tiny table, where boosting costs almost nothing.
"""

from __future__ import annotations

import itertools
import tempfile

import pyarrow as pa
import xgboost as xgb

from benchmarks._common import Context, Figure, higgs_like, higgs_matrix, median_time, ray_dataset

ROUNDS = 100
PARAMS = {"max_depth": 6, "eta": 0.1, "max_bin": 256}
_runs = itertools.count()


def _plain(train: pa.Table, valid: pa.Table, nthread: int, rounds: int) -> xgb.Booster:
    def matrix(t: pa.Table, ref=None) -> xgb.QuantileDMatrix:
        X, y = higgs_matrix(t)
        return xgb.QuantileDMatrix(X, label=y, ref=ref, nthread=nthread, max_bin=PARAMS["max_bin"])

    dtrain = matrix(train)
    dvalid = matrix(valid, ref=dtrain)
    params = {**PARAMS, "objective": "binary:logistic", "eval_metric": ["auc", "logloss"],
              "tree_method": "hist", "nthread": nthread, "seed": 42}
    return xgb.train(params, dtrain, rounds, evals=[(dvalid, "valid")], verbose_eval=False)


def _raypipe(train_ds, valid_ds, features: list[str], rounds: int, storage: str, workers: int | str = "auto"):
    from raypipe.train import TrainSpec, train_xgboost

    spec = TrainSpec(task="binary_classification", label="label", features=features,
                     feature_types=["q"] * len(features), params=PARAMS, num_boost_round=rounds,
                     early_stopping_rounds=None, num_workers=workers, storage_path=storage)
    return train_xgboost(spec, train_ds, valid_ds, f"bench-train-{next(_runs)}")


def _side_by_side(ctx: Context, rows: int, rounds: int, storage: str,
                  workers: int | str = "auto") -> tuple[list[float], list[float], dict]:
    table = higgs_like(rows + max(rows // 10, 1000), seed=1)
    train, valid = table.slice(0, rows), table.slice(rows)
    features = [c for c in table.column_names if c != "label"]
    train_ds, valid_ds = ray_dataset(train, 8), ray_dataset(valid, 2)
    ours, base, info = [], [], {}
    for _ in range(ctx.repeats):  # alternate, so drift on the machine hits both sides alike
        seconds, _ = median_time(
            lambda: info.update(result=_raypipe(train_ds, valid_ds, features, rounds, storage, workers)), 1)
        ours.append(seconds)
        seconds, _ = median_time(lambda: info.update(booster=_plain(train, valid, ctx.cpus, rounds)), 1)
        base.append(seconds)
    result = info["result"]
    X, y = higgs_matrix(valid)
    plain_logloss = float(info["booster"].eval(xgb.DMatrix(X, label=y)).split("logloss:")[1])
    info = {"workers": result.num_workers, "nthread": result.params["nthread"],
            "worker_phases_s": {k: round(v, 2) for k, v in result.timings.items()},
            "valid_logloss": (result.metrics.get("valid-logloss"), plain_logloss)}
    return ours, base, info


def run(ctx: Context) -> list[Figure]:
    import statistics

    figures = []
    with tempfile.TemporaryDirectory(dir=ctx.workdir) as storage:
        ours, base, info = _side_by_side(ctx, 2_000, 10 if ctx.quick else ROUNDS, storage)
        overhead = [o - b for o, b in zip(ours, base)]
        figures.append(Figure("train", "fixed overhead, 2k rows", "s", statistics.median(overhead), None, "<= 5",
                              {"raypipe": ours, "baseline": base},
                              f"{info['workers']} workers x nthread {info['nthread']}; phases {info['worker_phases_s']}"))
        sizes = [50_000] if ctx.quick else [1_000_000, 5_000_000]
        for rows in sizes:
            ours, base, info = _side_by_side(ctx, rows, 10 if ctx.quick else ROUNDS, storage)
            figures.append(Figure(
                "train", f"{rows / 1e6:g}M rows x 28, {10 if ctx.quick else ROUNDS} rounds", "s",
                statistics.median(ours), statistics.median(base), "<= 1.15" if rows >= 5_000_000 else "<= 1.3",
                {"raypipe": ours, "baseline": base},
                f"{info['workers']} workers x nthread {info['nthread']} vs 1 process nthread {ctx.cpus}; "
                f"worker phases {info['worker_phases_s']}; valid logloss raypipe/plain {info['valid_logloss']}"))
        if not ctx.quick:
            ours, base, info = _side_by_side(ctx, 1_000_000, ROUNDS, storage, workers=2)
            figures.append(Figure(
                "train", "1M rows x 28, 100 rounds, Ray Train 2 workers", "s", statistics.median(ours),
                statistics.median(base), "<= 1.3", {"raypipe": ours, "baseline": base},
                f"num_workers: 2 ({info['workers']} workers x nthread {info['nthread']}, a Ray Train worker "
                f"group) vs 1 process nthread {ctx.cpus}; worker phases {info['worker_phases_s']}"))
    return figures
