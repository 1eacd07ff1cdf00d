"""raypipe on a three-node Ray cluster (head + 2 workers, 1 CPU each, one machine).

What one node cannot show: Ray Data's read/validate tasks land on several nodes and the
counts stay exact; a 2-worker training places one worker per node (SPREAD) with
non-empty shards balanced to one row, and gives the same model bytes as PACK;
``num_workers: auto`` sizes from the cluster.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import yaml

pytestmark = pytest.mark.multinode

FEATURES = ["f0", "f1", "f2"]


def _csvs(tmp_path, files: int, rows: int) -> list[str]:
    paths = []
    for f in range(files):
        lines = ["id,f0,f1,f2,y"]
        for i in range(rows):
            k = f * rows + i
            f0 = "oops" if k in (7, 250, 999) else str(k % 13)  # 3 rows break type int
            lines.append(f"{k},{f0},{(k * 3) % 7 / 7},{(k * 5) % 11},{k % 2}")
        path = tmp_path / f"part{f}.csv"
        path.write_text("\n".join(lines) + "\n")
        paths.append(str(path))
    return paths


def _config(tmp_path, paths):
    from raypipe.config import load_config

    raw = {
        "version": 1,
        "name": "mn",
        "data": {
            "source": {"type": "csv", "paths": paths},
            "schema": {"label": "y", "id": "id", "columns": {
                "id": {"type": "int"}, "f0": {"type": "int"}, "f1": {"type": "float"}, "f2": {"type": "int"},
                "y": {"type": "int"}}},
            "validation": {"max_invalid_fraction": 0.5},
            "split": {"method": "random", "test_fraction": 0.2, "valid_fraction": 0.1, "seed": 4},
        },
        "model": {"task": "binary_classification"},
        "output": {"uri": str(tmp_path / "runs")},
    }
    (tmp_path / "mn.yaml").write_text(yaml.safe_dump(raw))
    return load_config(str(tmp_path / "mn.yaml"))


def test_num_workers_auto_sizes_from_the_cluster(multinode):
    from raypipe.train import TrainSpec
    from raypipe.train._resources import plan_workers

    spec = TrainSpec(task="binary_classification", label="y", features=FEATURES, feature_types=["q"] * 3,
                     params={}, num_workers="auto")
    plan = plan_workers(spec)
    # 3 CPUs on 3 nodes, 1 kept for Ray Data: two Ray Train workers of 1 CPU.
    assert (plan.num_workers, plan.cpus_per_worker, plan.local) == (2, 1.0, False)


def test_ingest_runs_on_several_nodes_with_exact_counts(multinode, tmp_path):
    import ray

    from raypipe.data.ingest import ingest, split
    from raypipe.data.split import SPLIT_NAMES, assign_random

    # Blocks of ~0.5 MB: large enough for the object store (small ones are inlined in the
    # driver's memory and have no node), so each block's node is where its task ran.
    cfg = _config(tmp_path, _csvs(tmp_path, files=6, rows=20_000))
    result = ingest(cfg, quarantine_uri=str(tmp_path / "q"))
    assert result.counts["ingested"] == 120_000 and result.counts["quarantined"] == 3 and result.counts["valid"] == 119_997
    assert result.counts["by_rule"] == {"type": 3}
    ds = result.dataset.materialize()
    refs = [ref for bundle in ds.iter_internal_ref_bundles() for ref in bundle.block_refs]
    nodes = {n for loc in ray.experimental.get_object_locations(refs).values() for n in loc["node_ids"]}
    assert len(nodes) >= 2, f"every validated block on one node: {nodes}"
    # The split is a hash of the row: the same counts as one table split on the driver.
    parts = split(cfg, ds)
    table = pa.concat_tables(ray.get(ds.to_arrow_refs()))
    codes = assign_random(table.select(list(cfg.data.schema_.columns)), test_fraction=0.2, valid_fraction=0.1, seed=4,
                          key_columns=list(cfg.data.schema_.columns))
    expected = {name: int((codes == code).sum()) for code, name in SPLIT_NAMES.items()}
    assert parts.counts == expected and sum(expected.values()) == 119_997


def _frame(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = ((1.5 * x[:, 0] - x[:, 1] + rng.normal(size=n)) > 0).astype(np.float32)
    return pa.table({"f0": x[:, 0], "f1": x[:, 1], "f2": x[:, 2], "y": y})


def test_two_workers_spread_one_per_node_with_balanced_shards(multinode, tmp_path):
    import ray

    from raypipe.train import TrainSpec, train_xgboost

    train = ray.data.from_arrow(_frame(1001, 1))  # ONE block: block-wise sharding left a worker empty
    valid = ray.data.from_arrow(_frame(301, 2))
    spec = TrainSpec(task="binary_classification", label="y", features=FEATURES, feature_types=["q"] * 3,
                     params={"max_depth": 3}, num_boost_round=8, early_stopping_rounds=None, num_workers=2,
                     cpus_per_worker=1, storage_path=str(tmp_path / "train"))
    spread = train_xgboost(spec, train, valid, "spread")
    rows = [(w["train"], w["valid"]) for w in spread.worker_rows]
    assert rows == [(500, 150), (501, 151)]
    nodes = [w["node"] for w in spread.worker_rows]
    assert len(set(nodes)) == 2, f"both workers on one node: {nodes}"
    # Placement changes where, not what: PACK trains the same shards into the same bytes.
    from dataclasses import replace

    packed = train_xgboost(replace(spec, placement_strategy="PACK"), train, valid, "pack")
    assert bytes(packed.booster.save_raw("ubj")) == bytes(spread.booster.save_raw("ubj"))
    assert packed.metrics == pytest.approx(spread.metrics, abs=1e-9)
