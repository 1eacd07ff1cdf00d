"""Benchmark: train_xgboost (Ray Train) vs plain xgboost.train on the same data.

Not collected by pytest (no ``test_`` prefix); run by hand:

    python benchmarks/train_vs_xgboost.py [--rows 200000]

Prints one JSON line per variant. Both sides build a QuantileDMatrix and train
the same params for the same rounds (no early stopping), so the ratio is the
cost of Ray Train (process start-up, Ray Data ingest, collective, reports).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
import xgboost as xgb

import ray
import ray.data

from raypipe.train import TrainSpec, train_xgboost


def make_data(rows: int, features: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    w = rng.normal(size=features)
    y = ((X @ w + rng.normal(scale=2.0, size=rows)) > 0).astype(np.float32)
    cols = {f"f{i}": X[:, i] for i in range(features)}
    cols["y"] = y
    return cols


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=28)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--variants", default="plain,ray2,ray1,auto")
    parser.add_argument("--lazy", action="store_true", help="add a map_batches to the dataset")
    args = parser.parse_args()

    cols = make_data(args.rows, args.features)
    names = [f"f{i}" for i in range(args.features)]
    params = {"max_depth": 6, "eta": 0.1}

    for variant in args.variants.split(","):
        if variant == "plain":
            started = time.perf_counter()
            X = np.column_stack([cols[n] for n in names])
            dtrain = xgb.QuantileDMatrix(X, label=cols["y"], nthread=2)
            xgb.train(
                {**params, "objective": "binary:logistic", "eval_metric": ["auc", "logloss"],
                 "tree_method": "hist", "nthread": 2, "seed": 42},
                dtrain, num_boost_round=args.rounds, evals=[(dtrain, "train")], verbose_eval=False,
            )
            print(json.dumps({"variant": "plain xgboost.train nthread=2",
                              "wall_s": round(time.perf_counter() - started, 2)}), flush=True)
            continue
        if not ray.is_initialized():
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        table = pa.table(cols)
        step = -(-args.rows // 8)
        ds = ray.data.from_arrow([table.slice(i, step) for i in range(0, args.rows, step)])
        if args.lazy:
            ds = ds.map_batches(lambda b: b, batch_format="pyarrow", batch_size=None)
        num_workers = {"ray2": 2, "ray1": 1, "auto": "auto"}[variant]
        spec = TrainSpec(
            task="binary_classification", label="y", features=names,
            feature_types=["q"] * len(names), params=params, num_boost_round=args.rounds,
            early_stopping_rounds=None, num_workers=num_workers,
            storage_path=tempfile.mkdtemp(prefix="raypipe-bench-"),
        )
        started = time.perf_counter()
        result = train_xgboost(spec, ds, None, f"bench-{variant}")
        print(json.dumps({
            "variant": f"train_xgboost num_workers={num_workers}",
            "workers": result.num_workers,
            "wall_s": round(time.perf_counter() - started, 2),
            "fit_s": round(result.duration_s, 2),
            "nthread": result.params["nthread"],
            "worker_phases_s": {k: round(v, 2) for k, v in result.timings.items()},
            "health_check_interval_s": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2 (default)"),
            "train_logloss": round(result.metrics["train-logloss"], 5),
        }), flush=True)


if __name__ == "__main__":
    main()
