"""Integration tests of raypipe.train on a local Ray cluster (num_cpus=2).

Every ``train_xgboost`` call is a full Ray Train run (controller, worker
actors, Ray Data split coordinators): tens of seconds on a 2-CPU machine, so
the runs are shared between tests through module-scoped fixtures.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import xgboost as xgb
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error, roc_auc_score

import ray
import ray.data

from raypipe.errors import ConfigError, DataError, SchemaError, StageError
from raypipe.train import TrainingError, TrainResult, TrainSpec, train_xgboost
from raypipe.train.cross_validation import fold_of
from raypipe.train.spec import check_spec
from raypipe.train._resources import plan_workers
from raypipe.train.xgboost_trainer import FAULT_ENV, _run

pytestmark = pytest.mark.ray

FEATURES = [f"f{i}" for i in range(5)] + ["cat"]
FEATURE_TYPES = ["q"] * 5 + ["c"]


# ----------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU Ray cluster: reuses the session's if one is running."""
    # Ray Train's controller polls workers every 2 s by default, and a worker's
    # ray.train.report blocks until its previous report was polled: 0.5 s keeps
    # these tests quick. Ray Train propagates the variable from the driver to
    # its controller when a run starts.
    old = os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S")
    os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = "0.5"
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started_here:
        ray.shutdown()
    if old is None:
        os.environ.pop("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", None)
    else:
        os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = old


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("train-storage"))


def _frame(task: str, n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    cat = rng.integers(0, 4, size=n)
    signal = 1.5 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2] * x[:, 3] + np.array([0.0, 1.0, -1.0, 0.5])[cat]
    if task == "binary_classification":
        y = (signal + rng.normal(scale=1.0, size=n) > 0).astype(np.float32)
    elif task == "multiclass":
        y = np.digitize(signal + rng.normal(scale=0.5, size=n), [-0.7, 0.7]).astype(np.float32)
    else:
        y = (signal + rng.normal(scale=0.3, size=n)).astype(np.float32)
    cols = {f"f{i}": x[:, i] for i in range(5)}
    cols["cat"] = cat.astype(np.float32)
    cols["y"] = y
    return cols


def _dataset(cols: dict[str, np.ndarray], blocks: int = 4) -> ray.data.Dataset:
    table = pa.table(cols)
    n = table.num_rows
    edges = np.linspace(0, n, blocks + 1).astype(int)
    return ray.data.from_arrow([table.slice(a, b - a) for a, b in zip(edges[:-1], edges[1:])])


def _matrix(cols: dict[str, np.ndarray]) -> xgb.DMatrix:
    X = np.column_stack([cols[f] for f in FEATURES])
    return xgb.DMatrix(X, feature_names=FEATURES, feature_types=FEATURE_TYPES, enable_categorical=True)


def _spec(task: str, storage: str, **overrides) -> TrainSpec:
    base = dict(
        task=task,
        label="y",
        features=FEATURES,
        feature_types=FEATURE_TYPES,
        params={"max_depth": 4, "eta": 0.3},
        num_boost_round=200,
        early_stopping_rounds=5,
        num_workers=2,
        report_every=10,
        checkpoint_every=20,
        storage_path=storage,
    )
    base.update(overrides)
    return TrainSpec(**base)


def _timed(spec, train, valid, name) -> TrainResult:
    started = time.perf_counter()
    result = train_xgboost(spec, train, valid, name)
    print(f"\n[timing] {name}: {time.perf_counter() - started:.1f}s wall")
    return result


@pytest.fixture(scope="module")
def binary(ray_cluster, storage):
    train_cols, valid_cols = _frame("binary_classification", 6000, 1), _frame("binary_classification", 2000, 2)
    spec = _spec("binary_classification", storage)
    first = _timed(spec, _dataset(train_cols), _dataset(valid_cols), "binary-a")
    second = _timed(spec, _dataset(train_cols), _dataset(valid_cols), "binary-b")
    return spec, valid_cols, first, second


# ------------------------------------------------------------ no Ray needed


def test_spec_errors_name_the_field_and_suggest():
    spec = _spec("binary_classifcation", "/tmp")
    with pytest.raises(ConfigError, match=r"model\.task: .*Did you mean 'binary_classification'\?"):
        check_spec(spec)
    with pytest.raises(ConfigError, match=r"model\.params\.nthread: .*cpus_per_worker"):
        check_spec(_spec("regression", "/tmp", params={"nthread": 8}))
    with pytest.raises(ConfigError, match=r"model\.feature_types: expected one type per feature \(6\), got 1"):
        check_spec(_spec("regression", "/tmp", feature_types=["q"]))
    with pytest.raises(ConfigError, match=r"model\.params\.objective: .*binary:"):
        check_spec(_spec("binary_classification", "/tmp", params={"objective": "reg:squarederror"}))


def test_spec_from_config_has_one_default_per_setting():
    import dataclasses

    from raypipe.config import ModelConfig, TrainingConfig, parse_config

    # Defaults: the config's, never a second literal (max_failures once drifted to 0 here).
    defaults = {f.name: f.default for f in dataclasses.fields(TrainSpec)}
    for name in ("num_workers", "use_gpu", "cpus_per_worker", "report_every", "checkpoint_every", "max_failures"):
        assert defaults[name] == TrainingConfig.model_fields[name].default, name
    for name in ("num_boost_round", "early_stopping_rounds"):
        assert defaults[name] == ModelConfig.model_fields[name].default, name
    assert defaults["max_failures"] == 1

    raw = {
        "name": "t",
        "data": {"source": {"type": "csv", "paths": ["x.csv"]}, "schema": {"label": "y", "weight": "w"},
                 "split": {"seed": 7}},
        "model": {"task": "multiclass", "params": {"max_depth": 3}, "num_boost_round": 40, "early_stopping_rounds": 5,
                  "training": {"num_workers": 2, "cpus_per_worker": 0.5, "report_every": 4, "checkpoint_every": 8,
                               "max_failures": 3}},
    }
    cfg = parse_config(raw)
    kwargs = dict(features=["a", "b"], feature_types=["q", "c"], num_class=3, storage_path="/runs/r/train")
    spec = TrainSpec.from_config(cfg, has_valid=True, **kwargs)
    assert spec == TrainSpec(
        task="multiclass", label="y", features=["a", "b"], feature_types=["q", "c"], params={"max_depth": 3},
        num_boost_round=40, early_stopping_rounds=5, num_workers=2, use_gpu=False, cpus_per_worker=0.5,
        report_every=4, checkpoint_every=8, max_failures=3, weight="w", num_class=3, seed=7,
        storage_path="/runs/r/train",
    )
    check_spec(spec)
    assert TrainSpec.from_config(cfg, has_valid=False, **kwargs).early_stopping_rounds is None
    # model.seed, when set, seeds the model apart from the split.
    raw["model"]["seed"] = 11
    assert TrainSpec.from_config(parse_config(raw), has_valid=True, **kwargs).seed == 11


def test_public_names():
    import raypipe.train

    public = {n for n in dir(raypipe.train) if not n.startswith("_")}
    modules = {"spec", "cross_validation", "xgboost_trainer", "tune"}
    assert set(raypipe.train.__all__) == public - modules
    assert issubclass(TrainingError, StageError)


def test_fold_assignment_is_deterministic_and_balanced():
    values = np.random.default_rng(0).normal(size=30000).astype(np.float32)
    a = fold_of([values], k=5, seed=7)
    assert np.array_equal(a, fold_of([values], k=5, seed=7))
    # Depends on the row's values only, not on batching.
    assert np.array_equal(a[:100], fold_of([values[:100]], k=5, seed=7))
    assert not np.array_equal(a, fold_of([values], k=5, seed=8))
    counts = np.bincount(a, minlength=5)
    assert counts.min() > 5600 and counts.max() < 6400


@pytest.mark.parametrize(
    ("cpus", "nodes", "gpus", "num_workers", "cpus_per_worker", "expected"),
    [
        # One node: one worker with every CPU (a Ray task, no worker group).
        (2, 1, 0, "auto", None, (1, 2.0, 2, True)),
        (16, 1, 0, "auto", None, (1, 16.0, 16, True)),
        # Several nodes: Ray Train workers, Ray Data keeps its reserve.
        (2, 2, 0, "auto", None, (2, 0.5, 1, False)),  # 1 CPU left to Ray Data
        (4, 2, 0, "auto", None, (3, 1.0, 1, False)),
        (16, 2, 0, "auto", None, (7, 2.0, 2, False)),  # reserve 1.6 CPUs
        (2, 1, 0, 2, None, (2, 0.5, 1, False)),
        (2, 1, 0, 1, None, (1, 2.0, 2, True)),
        (16, 2, 0, 1, None, (1, 8.0, 8, True)),  # the largest node
        (8, 1, 0, "auto", 3, (2, 3.0, 3, False)),
        (16, 1, 2, "auto", None, (2, 7.0, 7, False)),
    ],
)
def test_worker_plan(monkeypatch, cpus, nodes, gpus, num_workers, cpus_per_worker, expected):
    from raypipe.train import _resources

    monkeypatch.setattr(_resources.ray, "cluster_resources", lambda: {"CPU": cpus, "GPU": gpus})
    monkeypatch.setattr(_resources.ray, "nodes",
                        lambda: [{"Alive": True, "Resources": {"CPU": cpus / nodes}}] * nodes)
    spec = _spec("regression", "/tmp", num_workers=num_workers, cpus_per_worker=cpus_per_worker,
                 use_gpu=gpus > 0)
    plan = _resources.plan_workers(spec)
    assert (plan.num_workers, plan.cpus_per_worker, plan.nthread, plan.local) == expected


def test_worker_plan_rejects_more_cpus_than_the_cluster(monkeypatch):
    from raypipe.train import _resources

    monkeypatch.setattr(_resources.ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(_resources.ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}])
    spec = _spec("regression", "/tmp", num_workers=3, cpus_per_worker=1)
    with pytest.raises(ConfigError, match=r"model\.training\.num_workers: expected workers x "
                                          r"cpus_per_worker <= 2 cluster CPUs, got 3 x 1"):
        _resources.plan_workers(spec)


# -------------------------------------------------------------- Ray Train


def test_binary_learns_and_metrics_match_sklearn(binary):
    spec, valid_cols, result, _ = binary
    assert result.num_workers == 2
    assert result.rows == {"train": 6000, "valid": 2000}
    # Split by rows: each worker's shard in the result, none empty, balanced.
    assert _rows_only(result.worker_rows) == [{"train": 3000, "valid": 1000}, {"train": 3000, "valid": 1000}]
    assert all(w["node"] == ray.get_runtime_context().get_node_id() for w in result.worker_rows)  # one node here
    proba = result.booster.predict(_matrix(valid_cols))
    assert roc_auc_score(valid_cols["y"], proba) > 0.85
    # valid-logloss is all-reduced across the two shards: the exact full-set value.
    assert result.metrics["valid-logloss"] == pytest.approx(
        log_loss(valid_cols["y"], proba.astype(np.float64)), abs=1e-5
    )
    assert result.checkpoint_path and Path(result.checkpoint_path, "model.ubj").exists()


def test_early_stopping_stops_before_num_boost_round(binary):
    spec, _, result, _ = binary
    rounds_run = result.best_iteration + 1 + spec.early_stopping_rounds
    assert rounds_run < spec.num_boost_round
    # The returned booster is truncated to the best iteration.
    assert result.booster.num_boosted_rounds() == result.best_iteration + 1
    assert Path(result.checkpoint_path).name == f"checkpoint_{result.best_iteration + 1:06d}_final"


def test_metrics_reported_every_report_every_rounds(binary):
    spec, _, result, _ = binary
    rounds_run = result.best_iteration + 1 + spec.early_stopping_rounds
    expected = list(range(spec.report_every, rounds_run + 1, spec.report_every))
    assert result.history["round"] == expected
    assert len(result.history["valid-logloss"]) == len(expected)
    assert set(result.history) == {
        "round", "train-auc", "train-logloss", "valid-auc", "valid-logloss"
    }


def test_same_data_spec_and_workers_give_identical_model_bytes(binary):
    _, _, first, second = binary
    assert first.booster.save_raw("ubj") == second.booster.save_raw("ubj")
    assert first.checkpoint_path != second.checkpoint_path


def test_regression(ray_cluster, storage):
    train_cols, valid_cols = _frame("regression", 6000, 3), _frame("regression", 2000, 4)
    spec = _spec("regression", storage)
    result = _timed(spec, _dataset(train_cols), _dataset(valid_cols), "regression")
    pred = result.booster.predict(_matrix(valid_cols))
    rmse = mean_squared_error(valid_cols["y"], pred) ** 0.5
    assert result.metrics["valid-rmse"] == pytest.approx(rmse, rel=1e-5)
    assert rmse < 0.5 * float(np.std(valid_cols["y"]))


def test_multiclass_counts_classes(ray_cluster, storage):
    train_cols, valid_cols = _frame("multiclass", 6000, 5), _frame("multiclass", 2000, 6)
    spec = _spec("multiclass", storage, num_workers=1, early_stopping_rounds=None,
                 num_boost_round=30, report_every=15, checkpoint_every=15)
    result = _timed(spec, _dataset(train_cols), _dataset(valid_cols), "multiclass")
    proba = result.booster.predict(_matrix(valid_cols))
    assert proba.shape == (2000, 3)  # num_class counted from the labels
    assert result.params["num_class"] == 3 and result.params["objective"] == "multi:softprob"
    assert result.booster.num_boosted_rounds() == 30
    assert result.history["round"] == [15, 30]
    assert result.metrics["valid-mlogloss"] == pytest.approx(
        log_loss(valid_cols["y"], proba.astype(np.float64), labels=[0, 1, 2]), abs=1e-5
    )
    assert accuracy_score(valid_cols["y"], proba.argmax(axis=1)) > 0.75


def test_use_gpu_on_cpu_cluster_fails_before_training(ray_cluster, storage):
    spec = _spec("regression", storage, use_gpu=True, early_stopping_rounds=None)
    with pytest.raises(ConfigError, match=r"model\.training\.use_gpu: expected a Ray cluster with GPUs, got 0"):
        train_xgboost(spec, _dataset(_frame("regression", 100, 0)), None, "gpu-run")
    assert not Path(storage, "gpu-run").exists()


def test_missing_column_is_a_schema_error(ray_cluster, storage):
    cols = _frame("regression", 100, 0)
    del cols["f3"]
    with pytest.raises(SchemaError, match=r"train dataset: expected columns \['f3'\]"):
        train_xgboost(_spec("regression", storage), _dataset(cols), _dataset(cols), "schema-run")


def test_worker_killed_mid_run_resumes_from_checkpoint(ray_cluster, storage, tmp_path, monkeypatch):
    marker = tmp_path / "killed"
    # Rank 1 kills its own process (os._exit) once at round 25; the last
    # checkpoint before that is round 20.
    monkeypatch.setenv(FAULT_ENV, f"25:{marker}:1")
    train_cols, valid_cols = _frame("binary_classification", 4000, 7), _frame("binary_classification", 1000, 8)
    spec = _spec("binary_classification", storage, num_boost_round=40, early_stopping_rounds=None,
                 checkpoint_every=10, max_failures=1,
                 params={"max_depth": 4, "eta": 0.3, "scale_pos_weight": "auto"})
    result = _timed(spec, _dataset(train_cols), _dataset(valid_cols), "killed")
    assert marker.read_text() == "killed at round 25\n"
    assert result.resumed_from_round == 20
    assert result.booster.num_boosted_rounds() == 40
    assert result.history["round"] == [10, 20, 30, 40]
    positives = float(train_cols["y"].sum())
    assert result.params["scale_pos_weight"] == pytest.approx((4000 - positives) / positives, rel=1e-12)
    proba = result.booster.predict(_matrix(valid_cols))
    assert roc_auc_score(valid_cols["y"], proba) > 0.85


def test_worker_killed_without_retries_raises_training_error(ray_cluster, storage, tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, f"5:{tmp_path / 'killed'}:0")
    cols = _frame("regression", 1000, 9)
    spec = _spec("regression", storage, num_workers=1, num_boost_round=10,
                 early_stopping_rounds=None, max_failures=0)
    with pytest.raises(TrainingError, match=r"train\[no-retry\]: expected XGBoost training on 1 worker"):
        train_xgboost(spec, _dataset(cols), _dataset(cols), "no-retry")


# ------------------------------------------------------- one worker, one task


def test_one_worker_task_gives_the_ray_train_model(ray_cluster, storage):
    """The one-task path runs the very loop of a 1-worker Ray Train run: same bytes."""
    train_cols, valid_cols = _frame("binary_classification", 3000, 11), _frame("binary_classification", 1000, 12)
    spec = _spec("binary_classification", storage, num_workers=1, num_boost_round=30, early_stopping_rounds=None)
    plan = plan_workers(spec)
    assert plan.local
    task = _run(spec, _dataset(train_cols), _dataset(valid_cols), "one-task", plan)
    # A callback list (as Ray Tune passes) keeps the Ray Train worker group.
    group = _run(spec, _dataset(train_cols), _dataset(valid_cols), "one-worker-group", plan, callbacks=[])
    assert task.booster.save_raw("ubj") == group.booster.save_raw("ubj")
    assert task.metrics == group.metrics and task.history == group.history
    assert task.rows == {"train": 3000, "valid": 1000} and task.num_workers == 1
    assert sorted(p.name for p in Path(storage, "one-task").iterdir()) == [
        "checkpoint_000020", "checkpoint_000030_final"]  # every 20 rounds and the end; 2 kept
    assert task.checkpoint_path.endswith("one-task/checkpoint_000030_final")


def test_one_worker_task_killed_resumes_from_checkpoint(ray_cluster, storage, tmp_path, monkeypatch):
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, f"25:{marker}:0")  # the task's process exits at round 25
    train_cols, valid_cols = _frame("binary_classification", 4000, 7), _frame("binary_classification", 1000, 8)
    spec = _spec("binary_classification", storage, num_workers=1, num_boost_round=40,
                 early_stopping_rounds=None, checkpoint_every=10, max_failures=1)
    result = _timed(spec, _dataset(train_cols), _dataset(valid_cols), "task-killed")
    assert marker.read_text() == "killed at round 25\n"
    assert result.resumed_from_round == 20
    assert result.booster.num_boosted_rounds() == 40
    assert result.history["round"] == [10, 20, 30, 40]
    monkeypatch.delenv(FAULT_ENV)
    clean = _timed(spec, _dataset(train_cols), _dataset(valid_cols), "task-not-killed")
    assert result.booster.save_raw("ubj") == clean.booster.save_raw("ubj")


def test_one_worker_task_data_error_is_raised_as_is(ray_cluster, storage):
    cols = _frame("binary_classification", 500, 13)
    cols["y"] = np.zeros(500, dtype=np.float32)
    spec = _spec("binary_classification", storage, num_workers=1, num_boost_round=5, early_stopping_rounds=None,
                 params={"scale_pos_weight": "auto"})
    with pytest.raises(DataError, match=r"scale_pos_weight: 'auto' needs both classes .* got 0 positive of 500"):
        train_xgboost(spec, _dataset(cols), None, "one-class")


def test_split_by_rows_cuts_at_rows_not_blocks(ray_cluster):
    from raypipe.train.xgboost_trainer import split_by_rows

    # Blocks of 5, 1 and 1 rows: a block-wise split gave one worker 5 rows and the other 2.
    ds = ray.data.from_arrow([pa.table({"a": list(range(5))}), pa.table({"a": [5]}), pa.table({"a": [6]})])
    parts = split_by_rows(ds, 2)
    assert [p.take_all() for p in parts] == [[{"a": 0}, {"a": 1}, {"a": 2}], [{"a": i} for i in range(3, 7)]]
    one_block = ray.data.from_arrow(pa.table({"a": list(range(10))}))
    assert [p.count() for p in split_by_rows(one_block, 3)] == [3, 3, 4]


def test_one_block_dataset_gives_every_worker_rows(ray_cluster, storage):
    """One block used to go whole to one worker ("Empty dataset at worker: 1")."""
    train_cols, valid_cols = _frame("binary_classification", 501, 5), _frame("binary_classification", 99, 6)
    spec = _spec("binary_classification", storage, num_boost_round=5, early_stopping_rounds=None)
    result = train_xgboost(spec, _dataset(train_cols, blocks=1), _dataset(valid_cols, blocks=1), "one-block")
    assert _rows_only(result.worker_rows) == [{"train": 250, "valid": 49}, {"train": 251, "valid": 50}]
    assert result.rows == {"train": 501, "valid": 99}


def _rows_only(worker_rows: list[dict]) -> list[dict]:
    return [{"train": w["train"], "valid": w["valid"]} for w in worker_rows]
