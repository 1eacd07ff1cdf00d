"""Integration tests of raypipe.train.tune_xgboost on the shared local cluster (2 CPUs).

The Tune experiments (ASHA over 4 trials, FIFO over a 2-point grid) run once per
module and every assertion reads their results. ASHA runs twice: with one worker
per trial (each trial trains in its own Tune actor) and with two (each trial
drives a Ray Train run, ~25-50 s here, mostly start-up).
"""

from __future__ import annotations

import importlib.util
import os
import time

import numpy as np
import pyarrow as pa
import pytest
import xgboost as xgb
from sklearn.metrics import log_loss, roc_auc_score

import ray
import ray.data

from raypipe.config import TuneConfig
from raypipe.errors import ConfigError, DataError, SchemaError
from raypipe.train import TrainSpec, TuneResult, tune_xgboost
from raypipe.train.tune import EARLY_STOPPED, ERROR, TERMINATED

pytestmark = pytest.mark.ray

# Ray Train's controller polls its workers every 2 s by default and each
# report waits for a poll. Set before the session's ray.init when this module
# is collected first; tune_xgboost forwards it to the trials either way.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")

FEATURES = [f"f{i}" for i in range(8)]
GOOD_ETA, BAD_ETA = 0.3, 0.0005


def _frame(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
    signal = 1.5 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2] * x[:, 3]
    y = (signal + rng.normal(size=n) > 0).astype(np.float32)
    cols = {name: x[:, i] for i, name in enumerate(FEATURES)}
    cols["y"] = y
    return cols


def _dataset(cols: dict[str, np.ndarray], blocks: int = 4) -> ray.data.Dataset:
    table = pa.table(cols)
    edges = np.linspace(0, table.num_rows, blocks + 1).astype(int)
    ds = ray.data.from_arrow([table.slice(a, b - a) for a, b in zip(edges[:-1], edges[1:])])
    # A lazy transform, as the feature pipeline hands over: tune_xgboost must
    # execute it once (materialize), not once per trial.
    return ds.map_batches(lambda t: t, batch_format="pyarrow")


def _spec(storage: str, **overrides) -> TrainSpec:
    base = dict(
        task="binary_classification",
        label="y",
        features=FEATURES,
        feature_types=["q"] * len(FEATURES),
        params={"max_depth": 3, "min_child_weight": 2},
        num_boost_round=40,
        early_stopping_rounds=10,
        report_every=5,
        checkpoint_every=50,
        storage_path=storage,
    )
    base.update(overrides)
    return TrainSpec(**base)


def _predict(result: TuneResult, cols: dict[str, np.ndarray]) -> np.ndarray:
    X = np.column_stack([cols[f] for f in FEATURES])
    return result.best.booster.predict(xgb.DMatrix(X, feature_names=FEATURES))


def _live_placement_groups() -> set[str]:
    return {
        pg_id
        for pg_id, info in ray.util.placement_group_table().items()
        if info["state"] != "REMOVED"
    }


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("tune-storage"))


@pytest.fixture(scope="module")
def data(ray_cluster):
    train_cols, valid_cols = _frame(5000, 1), _frame(1500, 2)
    return train_cols, valid_cols, _dataset(train_cols), _dataset(valid_cols)


@pytest.fixture(scope="module", params=[1, 2], ids=["trial-trains", "ray-train-run"])
def asha(request, ray_cluster, storage, data):
    """ASHA over 4 trials, 2 at a time: a 2-point grid on eta (one hopeless
    value) crossed with num_samples=2 random draws of the other dimensions.
    Returns ``(cfg, result, leaked placement groups, workers per trial)``."""
    workers = request.param
    _, _, train, valid = data
    cfg = TuneConfig(
        enabled=True,
        num_samples=2,
        max_concurrent_trials=2,
        scheduler="asha",
        search="random",
        search_space={
            "eta": {"type": "grid", "values": [GOOD_ETA, BAD_ETA]},
            "max_depth": {"type": "randint", "low": 2, "high": 6},
            "subsample": {"type": "uniform", "low": 0.7, "high": 1.0},
            "lambda": {"type": "loguniform", "low": 0.1, "high": 10.0},
            "min_child_weight": {"type": "choice", "values": [1, 4]},
        },
    )
    before = _live_placement_groups()
    started = time.perf_counter()
    result = tune_xgboost(_spec(storage, num_workers=workers), cfg, train, valid, f"asha-{workers}")
    print(f"\n[timing] asha, 4 trials x {workers} worker(s): {time.perf_counter() - started:.1f}s wall")
    for row in result.trials:
        print(f"[trial] {row}")
    # Removal is asynchronous; a leaked group stays forever.
    deadline = time.monotonic() + 15
    while (leaked := _live_placement_groups() - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    return cfg, result, leaked, workers


@pytest.fixture(scope="module")
def fifo(ray_cluster, storage, data):
    _, _, train, valid = data
    cfg = TuneConfig(
        enabled=True,
        num_samples=1,
        max_concurrent_trials=2,
        scheduler="fifo",
        search_space={"max_depth": {"type": "grid", "values": [2, 4]}},
    )
    started = time.perf_counter()
    result = tune_xgboost(_spec(storage, num_boost_round=20), cfg, train, valid, "fifo")
    print(f"\n[timing] fifo grid, 2 trials: {time.perf_counter() - started:.1f}s wall")
    return cfg, result


# -------------------------------------------------------------------- ASHA


def test_asha_runs_every_trial_and_picks_the_best_finished_one(asha):
    cfg, result, _, _ = asha
    assert result.metric == "valid-logloss" and result.mode == "min"
    assert len(result.trials) == 4
    assert len({r["trial_id"] for r in result.trials}) == 4
    assert {r["status"] for r in result.trials} <= {TERMINATED, EARLY_STOPPED, ERROR}
    assert not [r for r in result.trials if r["status"] == ERROR]
    assert result.concurrency == 2

    best_row = next(r for r in result.trials if r["params"] == result.best_params)
    assert best_row["status"] == TERMINATED
    finished = [r for r in result.trials if r["status"] == TERMINATED]
    assert best_row["metric"] == min(r["metric"] for r in finished)
    assert best_row["metric"] == min(r["metric"] for r in result.trials)
    assert result.best.metrics["valid-logloss"] == best_row["metric"]
    assert result.best.checkpoint_path == best_row["checkpoint_path"]
    assert best_row["checkpoint_path"].endswith("_final")


def test_asha_best_params_lie_in_the_search_space(asha):
    _, result, _, _ = asha
    for row in result.trials:
        p = row["params"]
        assert set(p) == {"eta", "max_depth", "subsample", "lambda", "min_child_weight"}
        assert p["eta"] in (GOOD_ETA, BAD_ETA)
        assert isinstance(p["max_depth"], int) and 2 <= p["max_depth"] < 6
        assert 0.7 <= p["subsample"] <= 1.0
        assert 0.1 <= p["lambda"] <= 10.0
        assert p["min_child_weight"] in (1, 4)
    assert result.best_params["eta"] == GOOD_ETA
    # The booster was trained with the tuned values merged over spec.params.
    assert result.best.params["max_depth"] == result.best_params["max_depth"]
    assert result.best.params["eta"] == GOOD_ETA
    assert result.best.params["min_child_weight"] == result.best_params["min_child_weight"]


def test_asha_stops_the_hopeless_trials_early(asha):
    _, result, _, _ = asha
    stopped = [r for r in result.trials if r["status"] == EARLY_STOPPED]
    assert stopped, "ASHA stopped no trial"
    best_rounds = next(r for r in result.trials if r["params"] == result.best_params)["rounds"]
    for row in stopped:
        assert row["checkpoint_path"] is None
        assert 0 < row["rounds"] < best_rounds
    # eta=0.0005 barely moves the logloss: it never beats a good trial at a rung.
    bad = [r for r in result.trials if r["params"]["eta"] == BAD_ETA]
    assert any(r["status"] == EARLY_STOPPED for r in bad)


def test_asha_best_booster_is_the_trials_final_model(asha, data):
    _, result, _, workers = asha
    _, valid_cols, _, _ = data
    p = _predict(result, valid_cols)
    auc = roc_auc_score(valid_cols["y"], p)
    assert auc > 0.85
    # The booster IS the trial's early-stopped model: same metrics as XGBoost
    # reported for it on the valid set (float32 sums, so to 1e-5). XGBoost's AUC
    # over several workers' shards is an approximation; its logloss is exact.
    if workers == 1:
        assert auc == pytest.approx(result.best.metrics["valid-auc"], abs=1e-5)
    assert log_loss(valid_cols["y"], p) == pytest.approx(result.best.metrics["valid-logloss"], abs=1e-5)
    assert result.best.booster.num_boosted_rounds() == result.best.best_iteration + 1
    assert result.best.rows == {"train": 5000, "valid": 1500}
    assert result.best.history["round"][0] == 5
    assert result.best.num_workers == workers


def test_asha_frees_every_placement_group(asha):
    # A stopped trial's Ray Train run must shut its worker group down: a
    # leaked placement group would hold its CPUs until the driver exits.
    _, _, leaked, _ = asha
    assert leaked == set()


def test_asha_storage_layout(asha, storage):
    _, result, _, workers = asha
    assert result.experiment_path == os.path.join(storage, f"asha-{workers}")
    for row in result.trials:
        assert os.path.isdir(os.path.join(storage, f"asha-{workers}", "train", row["trial_id"]))


# -------------------------------------------------------------------- FIFO


def test_fifo_grid_runs_each_point_to_its_end(fifo, data):
    _, result = fifo
    _, valid_cols, _, _ = data
    assert len(result.trials) == 2
    assert sorted(r["params"]["max_depth"] for r in result.trials) == [2, 4]
    assert all(r["status"] == TERMINATED for r in result.trials)
    assert result.best_params == min(result.trials, key=lambda r: r["metric"])["params"]
    assert log_loss(valid_cols["y"], _predict(result, valid_cols)) == pytest.approx(
        result.best.metrics["valid-logloss"], abs=1e-5
    )
    assert result.best.params["min_child_weight"] == 2  # from spec.params, not tuned


# ----------------------------------------------------------- config errors


def test_optuna_search_needs_optuna(ray_cluster, storage, data, fifo):
    _, _, train, valid = data
    cfg = TuneConfig(
        enabled=True,
        num_samples=2,
        search="optuna",
        scheduler="asha",
        search_space={"eta": {"type": "loguniform", "low": 0.05, "high": 0.5}},
    )
    if importlib.util.find_spec("optuna") is None:
        with pytest.raises(ConfigError, match=r"tune\.search: .*pip install 'raypipe\[optuna\]'"):
            tune_xgboost(_spec(storage), cfg, train, valid, "optuna")
    else:
        result = tune_xgboost(_spec(storage, num_boost_round=10), cfg, train, valid, "optuna")
        assert len(result.trials) == 2
        assert 0.05 <= result.best_params["eta"] <= 0.5


@pytest.mark.parametrize(
    ("space", "extra", "match"),
    [
        ({"nthread": {"type": "choice", "values": [1, 2]}}, {}, r"tune\.search_space\.nthread: .*raypipe sets this"),
        ({"max_depth": {"type": "randint", "low": 2.5, "high": 6}}, {}, r"tune\.search_space\.max_depth: randint expected integer bounds"),
        ({"eta": {"type": "loguniform", "low": 0, "high": 1}}, {}, r"tune\.search_space\.eta: loguniform expected 0 < low"),
        ({"objective": {"type": "choice", "values": ["reg:squarederror"]}}, {}, r"tune\.search_space\.objective: .*binary:"),
        ({}, {}, r"tune\.search_space: expected at least one"),
        ({"eta": {"type": "grid", "values": [0.1, 0.3]}}, {"search": "optuna"}, r"tune\.(search|search_space\.eta): "),
    ],
)
def test_config_errors_before_any_trial(ray_cluster, storage, data, space, extra, match):
    _, _, train, valid = data
    cfg = TuneConfig(enabled=True, search_space=space, **extra)
    with pytest.raises(ConfigError, match=match):
        tune_xgboost(_spec(storage), cfg, train, valid, "never")
    assert not os.path.exists(os.path.join(storage, "never"))


def test_other_input_errors(ray_cluster, storage, data, asha):
    _, _, train, valid = data
    workers = asha[3]
    cfg = TuneConfig(enabled=True, search_space={"eta": {"type": "uniform", "low": 0.1, "high": 0.3}})
    with pytest.raises(ConfigError, match=rf"tune: run directory .*asha-{workers}: expected a new run"):
        tune_xgboost(_spec(storage), cfg, train, valid, f"asha-{workers}")
    with pytest.raises(ConfigError, match=r"tune: metric: expected one of \['valid-auc', 'valid-logloss'\] .*got 'valid-loglos'\. Did you mean 'valid-logloss'\?"):
        tune_xgboost(_spec(storage), cfg, train, valid, "bad-metric", metric="valid-loglos")
    with pytest.raises(ConfigError, match=r"tune: expected a validation set"):
        tune_xgboost(_spec(storage), cfg, train, None, "no-valid")
    with pytest.raises(SchemaError, match=r"train dataset: expected columns \['nope'\]"):
        tune_xgboost(_spec(storage, label="nope"), cfg, train, valid, "bad-label")


def test_every_trial_failing_raises_the_trials_own_error(ray_cluster, storage):
    # One trial whose workers reject the labels: the user gets that DataError
    # (not Ray's wrapped traceback), as from train_xgboost.
    cols = _frame(1000, 3)
    cols["y"] = np.zeros_like(cols["y"])
    ds = _dataset(cols, blocks=1)
    cfg = TuneConfig(enabled=True, num_samples=1, search_space={"eta": {"type": "uniform", "low": 0.1, "high": 0.3}})
    spec = _spec(storage, params={"scale_pos_weight": "auto"}, num_boost_round=10)
    with pytest.raises(DataError, match=r"model\.params\.scale_pos_weight: 'auto' needs both classes .*got 0 positive of 1000 rows"):
        tune_xgboost(spec, cfg, ds, ds, "all-fail")


def test_a_reused_trial_actor_trains_on_the_matrices_it_kept(ray_cluster, storage, data):
    """4 trials of the same params, up to 2 at a time: the trials after the first of each
    actor train on the kept QuantileDMatrix pair (no read, no build) and give the very
    model a freshly built pair gives."""
    import json

    from raypipe.train._tune_trial import RESULT_FILENAME

    _, _, train, valid = data
    cfg = TuneConfig(enabled=True, num_samples=4, max_concurrent_trials=2, scheduler="fifo", search="random",
                     search_space={"max_depth": {"type": "choice", "values": [3]}})
    result = tune_xgboost(_spec(storage), cfg, train, valid, "kept-matrices")
    assert [r["status"] for r in result.trials] == [TERMINATED] * 4
    summaries = [
        json.loads(open(os.path.join(storage, "kept-matrices", "train", r["trial_id"], RESULT_FILENAME)).read())
        for r in result.trials
    ]
    built = [s for s in summaries if s["timings"]["build_dmatrix"] > 0]
    kept = [s for s in summaries if s["timings"]["read_shards"] == s["timings"]["build_dmatrix"] == 0.0]
    # Each trial actor builds once (up to 2 run at once; under load Tune may run every
    # trial in one actor, or start a new actor instead of reusing one).
    assert built and kept and len(built) + len(kept) == 4, [s["timings"] for s in summaries]
    assert {s["rows"]["train"] for s in summaries} == {5000}
    assert len({r["metric"] for r in result.trials}) == 1, result.trials
    assert len({json.dumps(s["history"], sort_keys=True) for s in summaries}) == 1
