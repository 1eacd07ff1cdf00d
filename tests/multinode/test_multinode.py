"""raypipe on a three-node Ray cluster (head + 2 workers, 1 CPU each, one machine).

What one node cannot show: Ray Data's read/validate tasks land on several nodes and the
counts stay exact; a 2-worker training places one worker per node (SPREAD) with
non-empty shards balanced to one row, and gives the same model bytes as PACK;
``num_workers: auto`` sizes from the cluster (plan and run report); a worker node removed
mid-training resumes from its checkpoint with the same rows; Serve replicas on two nodes
answer; the monitor actor restarts on another node; ``ray job submit --working-dir .``
with relative data paths.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import yaml

from _net import free_port

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


def _config(tmp_path, paths, **sections):
    """The tier's pipeline config over ``paths``; ``sections`` replace top-level keys."""
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
        **sections,
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


# ---------------------------------------------------------------- node loss, auto, serve, monitor, jobs


def _node_of_actor(handle) -> str:
    import ray

    return ray.get(handle.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()))


def test_removing_a_worker_node_mid_training_resumes_from_its_checkpoint(multinode, tmp_path, monkeypatch):
    """A worker's node goes away at round 6: Ray Train restarts the group (max_failures)
    from the round-4 checkpoint on the nodes left (plus a replacement), with the rows of
    an uninterrupted run."""
    import threading
    import time

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from raypipe.train import TrainSpec, train_xgboost
    from raypipe.train.xgboost_trainer import FAULT_ENV

    cluster, head, _ = multinode
    train = ray.data.from_arrow(_frame(1001, 1))
    valid = ray.data.from_arrow(_frame(301, 2))
    spec = TrainSpec(task="binary_classification", label="y", features=FEATURES, feature_types=["q"] * 3,
                     params={"max_depth": 3}, num_boost_round=12, early_stopping_rounds=None, num_workers=2,
                     cpus_per_worker=1, checkpoint_every=4, max_failures=1, storage_path=str(tmp_path / "train"))
    # The head's CPU is held until the group's placement group is created, so both
    # workers start on worker nodes (the head cannot be removed); then it is freed for
    # the Ray Data tasks that cut the shards (without a free CPU they never run).
    @ray.remote(num_cpus=1)
    class HeadCPU:
        def ready(self) -> bool:
            return True

    blocker = HeadCPU.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head.node_id, soft=False)).remote()
    ray.get(blocker.ready.remote())
    marker = tmp_path / "held"
    monkeypatch.setenv(FAULT_ENV, f"6:{marker}:0:hold=240")
    out: dict = {}

    def fit():
        try:
            out["result"] = train_xgboost(spec, train, valid, "node-loss")
        except BaseException as exc:  # handed to the test thread
            out["error"] = exc

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and thread.is_alive() and not any(
            pg["state"] == "CREATED" and len(pg["bundles"]) == 2 for pg in ray.util.placement_group_table().values()):
        time.sleep(0.2)
    ray.kill(blocker)
    while not marker.exists() and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), f"rank 0 never reached round 6: {out}"
    lost = marker.read_text().split()[1]
    assert lost != head.node_id
    (victim,) = [n for n in cluster.worker_nodes if n.node_id == lost]
    cluster.add_node(num_cpus=1, object_store_memory=200 * 1024 * 1024)  # the replacement
    cluster.remove_node(victim, allow_graceful=False)
    thread.join(timeout=300)
    assert not thread.is_alive(), "training did not finish after the node was removed"
    assert "error" not in out, out.get("error")
    result = out["result"]
    assert result.resumed_from_round == 4  # the last checkpoint persisted before the node went
    # Nothing lost or counted twice: the rows of the run that lost no node (the spread test).
    assert result.rows == {"train": 1001, "valid": 301}
    assert [(w["train"], w["valid"]) for w in result.worker_rows] == [(500, 150), (501, 151)]
    assert lost not in {w["node"] for w in result.worker_rows}
    assert result.booster.num_boosted_rounds() == 12


@pytest.fixture(scope="module")
def served_run(multinode, tmp_path_factory):
    """One pipeline run with ``num_workers: auto`` on the 3-node cluster: its config
    (registry, monitor log) and result, shared by the auto, Serve and monitor tests."""
    from raypipe.pipeline import Pipeline

    tmp = tmp_path_factory.mktemp("served")
    cfg = _config(
        tmp, _csvs(tmp, files=2, rows=1000),
        model={"task": "binary_classification", "params": {"max_depth": 3}, "num_boost_round": 10,
               "early_stopping_rounds": None, "training": {"num_workers": "auto"}},
        registry={"uri": str(tmp / "registry")},
        monitor={"log_uri": str(tmp / "logs"), "flush_s": 0.5},
        serve={"http": {"host": "127.0.0.1", "port": free_port()}, "replica_cpus": 1,
               "autoscaling": {"min_replicas": 2, "max_replicas": 2}},
    )
    result = Pipeline(cfg).run()
    return cfg, result


def test_num_workers_auto_run_reports_the_cluster_sized_group(served_run):
    import json

    cfg, result = served_run
    assert result.status == "succeeded", result.message
    assert result.rows["ingested"] == 2000 and result.rows["quarantined"] == 3 and result.rows["valid"] == 1997
    report = json.loads(open(result.report).read())
    evaluation = report["evaluation"]
    # 3 nodes of 1 CPU, 1 kept for Ray Data: 2 Ray Train workers, each with a non-empty shard.
    assert evaluation["num_workers"] == 2
    shards = evaluation["worker_rows"]
    assert len(shards) == 2 and all(w["train"] > 0 for w in shards)
    assert sum(w["train"] for w in shards) == result.rows["train"]
    assert sorted(w["train"] for w in shards) == [result.rows["train"] // 2, result.rows["train"] - result.rows["train"] // 2]


def _post(url: str, body: dict) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_serve_replicas_on_two_nodes_answer(multinode, served_run):
    """2 replicas of 1 CPU each on nodes of 1 CPU: Serve places them on two nodes, and
    both answer (each replica writes the prediction log under its own writer id)."""
    import glob
    import os
    from concurrent.futures import ThreadPoolExecutor

    from ray import serve
    from ray.util.state import list_actors

    from raypipe.monitor.actor import stop_monitor
    from raypipe.serving import serve_model

    cluster, _, _ = multinode
    cfg, result = served_run
    assert result.promoted
    # One HTTP proxy (on the head): the nodes share this machine's loopback, so a proxy
    # per node (Serve's default) would have them all bind the same port.
    serve.start(proxy_location="HeadOnly", http_options={"host": cfg.serve.http.host, "port": cfg.serve.http.port})
    try:
        info = serve_model(cfg)
        replicas = [a for a in list_actors(address=cluster.dashboard_url, filters=[("state", "=", "ALIVE")], limit=1000)
                    if a.class_name.startswith("ServeReplica:")]
        assert len(replicas) == 2 and len({a.node_id for a in replicas}) == 2, [(a.class_name, a.node_id) for a in replicas]
        body = {"instances": [{"id": 5, "f0": 3, "f1": 0.25, "f2": 4}]}
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: _post(f"{info['url']}/predict", body), range(64)))
        assert [status for status, _ in answers] == [200] * 64
        assert len({json_body["predictions"][0] for _, json_body in answers}) == 1  # one model, one answer
        log_dir = os.path.join(cfg.monitor.log_uri, cfg.model_name)
        writers = {os.path.basename(p).split("-")[0] for p in glob.glob(f"{log_dir}/**/*", recursive=True)
                   if os.path.isfile(p) and os.path.getsize(p) > 0}
        assert len(writers) == 2, f"replicas that logged a prediction: {sorted(writers)}"
    finally:
        serve.shutdown()
        stop_monitor(cfg.model_name)


def test_monitor_actor_restarts_on_another_node_when_its_node_is_removed(multinode, served_run):
    import ray

    from raypipe.monitor.actor import monitor_name, start_monitor, stop_monitor

    cluster, head, _ = multinode
    cfg, _ = served_run
    # A 0-CPU actor lands on a random node (Ray's GCS picks one for an actor without
    # resources); start it again until it is on a node the test can remove.
    for _ in range(20):
        monitor = start_monitor(cfg)
        node = _node_of_actor(monitor)
        if node != head.node_id:
            break
        stop_monitor(cfg.model_name)
    assert node != head.node_id
    # What the Serve test logged (0 when it did not run): the actor holds no state the log does not.
    import time

    from raypipe.monitor.log import PREDICTIONS, read_all

    table = read_all(f"{cfg.monitor.log_uri}/{cfg.model_name}", PREDICTIONS)
    logged = table.num_rows if table is not None else 0

    def counted(deadline_s: float = 120) -> int:
        deadline = time.monotonic() + deadline_s
        while (rows := ray.get(monitor.counts.remote(), timeout=120)["logged_rows"]) != logged and time.monotonic() < deadline:
            time.sleep(0.5)
        return rows

    assert counted() == logged
    (victim,) = [n for n in cluster.worker_nodes if n.node_id == node]
    cluster.remove_node(victim, allow_graceful=False)
    try:
        # The actor process outlives its raylet for a moment (it may still answer); once the
        # GCS has declared the node dead, the actor restarts elsewhere (max_restarts=-1), and
        # the same handle answers from the new one (max_task_retries=-1).
        deadline = time.monotonic() + 180
        while (moved_to := _node_of_actor(monitor)) == node and time.monotonic() < deadline:
            time.sleep(0.5)
        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert moved_to != node and node not in alive and moved_to in alive
        assert counted() == logged  # the restarted actor re-read the whole log
        assert _node_of_actor(ray.get_actor(monitor_name(cfg.model_name), namespace="raypipe")) == moved_to
    finally:
        stop_monitor(cfg.model_name)
        cluster.add_node(num_cpus=1, object_store_memory=200 * 1024 * 1024)
        cluster.wait_for_nodes()



def test_ray_job_submit_with_relative_paths_runs_on_the_cluster(multinode, tmp_path):
    """`ray job submit --working-dir .` of `raypipe run` whose data paths are relative to
    the submitting directory: the job's driver and its read tasks on every node find them."""
    import json
    import os
    import subprocess
    import sys

    cluster, _, _ = multinode
    job = tmp_path / "job"
    (job / "data").mkdir(parents=True)
    _config(tmp_path, _csvs(job / "data", files=3, rows=500))
    raw = yaml.safe_load((tmp_path / "mn.yaml").read_text())
    raw["name"] = "mn-job"
    raw["data"]["source"]["paths"] = [f"data/part{f}.csv" for f in range(3)]
    raw["model"] = {"task": "binary_classification", "num_boost_round": 5, "early_stopping_rounds": None,
                    "training": {"num_workers": 1}}
    raw["registry"] = {"uri": str(tmp_path / "registry")}
    (job / "job.yaml").write_text(yaml.safe_dump(raw))
    bin_dir = os.path.dirname(sys.executable)
    done = subprocess.run(
        [os.path.join(bin_dir, "ray"), "job", "submit", "--address", cluster.dashboard_url, "--working-dir", ".",
         "--", os.path.join(bin_dir, "raypipe"), "run", "job.yaml", "--json"],
        cwd=job, capture_output=True, text=True, timeout=420,
    )
    out = done.stdout
    assert done.returncode == 0 and '{"run_id"' in out, f"rc={done.returncode}\n{out[-3000:]}\n{done.stderr[-2000:]}"
    result, _ = json.JSONDecoder().raw_decode(out[out.index('{"run_id"'):])
    assert result["status"] == "succeeded"
    # 1,500 rows in 3 files, 3 of them (ids 7, 250, 999) broken: the one-node counts.
    assert (result["rows"]["ingested"], result["rows"]["valid"], result["rows"]["quarantined"]) == (1500, 1497, 3)
    assert sum(result["rows"][k] for k in ("train", "valid_split", "test")) == 1497
