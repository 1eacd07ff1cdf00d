"""Child process of ``pair_memory``: one training run on a folder of Parquet files.

    python -m benchmarks._train_child PARQUET_DIR ROUNDS CPUS raypipe|plain STORAGE

``raypipe``: its own local Ray (``num_cpus=CPUS``), ``ray.data.read_parquet`` and
``train_xgboost`` (workers and threads as raypipe plans them, no validation set).
``plain``: ``pyarrow.parquet.read_table`` -> numpy -> ``QuantileDMatrix`` ->
``xgboost.train`` in this one process with ``nthread=CPUS``. Both train the params
raypipe builds (hist, binary:logistic, train metrics every round) for ROUNDS rounds.
The parent samples the memory of this process and of everything it starts.
"""

from __future__ import annotations

import sys

import pyarrow.parquet as pq

from raypipe.train import TrainSpec


def main(argv: list[str]) -> None:
    parquet, rounds, cpus, side, storage = argv
    rounds, cpus = int(rounds), int(cpus)
    features = [c for c in pq.ParquetDataset(parquet).schema.names if c != "label"]
    spec = TrainSpec(
        task="binary_classification", label="label", features=features,
        feature_types=["q"] * len(features), params={}, num_boost_round=rounds,
        early_stopping_rounds=None, storage_path=storage,
    )
    if side == "plain":
        import numpy as np
        import xgboost as xgb

        from raypipe.train._params import build_params

        table = pq.read_table(parquet)
        X = np.column_stack([table[f].to_numpy() for f in features])
        y = table["label"].to_numpy()
        del table
        dtrain = xgb.QuantileDMatrix(X, label=y, nthread=cpus)
        xgb.train(build_params(spec, nthread=cpus, use_gpu=False), dtrain, num_boost_round=rounds,
                  evals=[(dtrain, "train")], verbose_eval=False)
        return

    import ray
    import ray.data

    from raypipe.train import train_xgboost

    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    train_xgboost(spec, ray.data.read_parquet(parquet), None, "memory-bench")


if __name__ == "__main__":
    main(sys.argv[1:])
