"""The closed loop on small real data: serve a 2011 bike model, send 2012 traffic,
see drift, an automatic retrain, its promotion and the endpoint answering with it;
served == logged, also across a monitor restart."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
import requests

from raypipe import Pipeline
from raypipe.config import load_config
from raypipe.registry import ModelRegistry

from _net import free_port, wait_for

ROOT = Path(__file__).resolve().parents[3]
INPUTS = ["instant", "dteday", "season", "yr", "mnth", "hr", "holiday", "weekday", "workingday",
          "weathersit", "temp", "atemp", "hum", "windspeed"]


SERVED = [0]  # rows answered by the endpoint in this module: predictions served == rows logged


def _predict(session, url: str, rows: list[dict]) -> dict:
    r = session.post(url + "/predict", json={"instances": [{k: v for k, v in row.items() if k != "cnt"} for row in rows]}, timeout=30)
    assert r.status_code == 200, r.text
    SERVED[0] += len(rows)
    return r.json()


@pytest.fixture(scope="module")
def loop(tmp_path_factory, ray_cluster):
    from ray import serve

    from raypipe import serve as serve_model  # the closed loop: the monitor can retrain

    base = tmp_path_factory.mktemp("loop")
    hours = pacsv.read_csv(ROOT / "data/bike-sharing/hour.csv", convert_options=pacsv.ConvertOptions(
        column_types={"dteday": pa.string()}))
    pacsv.write_csv(hours.filter(pc.equal(hours.column("yr"), 0)), base / "hour-2011.csv")
    overrides = [
        f"data.source.paths=['{base}/hour-2011.csv']", "data.split.valid_from=2011-11-01", "data.split.test_from=2011-12-01",
        f"registry.uri={base}/registry", f"output.uri={base}/runs", f"monitor.log_uri={base}/logs",
        "model.num_boost_round=40", "model.training.num_workers=1", "evaluate.cv_folds=null", "evaluate.gates.max={}",
        f"serve.http.port={free_port()}", "serve.reload_interval_s=0.5", "serve.replica_cpus=0.1",
        "serve.autoscaling.max_replicas=1", "monitor.window_rows=200", "monitor.flush_s=0.5", "monitor.poll_s=0.5",
        "monitor.drift.consecutive_windows=1", "retrain.on_drift=true", "retrain.cooldown_s=0", "retrain.data_window=120d",
        "retrain.cooldown_rows=400",  # the retrain comes at the second window (400 rows), and only once
    ]
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        first = Pipeline.from_yaml("configs/bike-regression.yaml", overrides=overrides).run()
        cfg = load_config("configs/bike-regression.yaml", overrides=overrides)
    finally:
        os.chdir(cwd)
    assert first.model == {"name": "bike-demand", "version": 1} and first.promoted
    info = serve_model(cfg)
    rows_2012 = hours.filter(pc.equal(hours.column("yr"), 1)).select(INPUTS + ["cnt"]).slice(0, 600).to_pylist()
    yield cfg, info["url"], rows_2012, base
    from raypipe.monitor.actor import stop_monitor

    stop_monitor(cfg.model_name)  # no retrain may outlive the module on the shared cluster
    serve.shutdown()  # the next module starts Serve on its own port


def test_drift_triggers_retrain_promotion_and_live_swap(loop):
    cfg, url, rows, base = loop
    session = requests.Session()
    served, versions = 0, []
    for i in range(0, len(rows), 50):
        chunk = rows[i:i + 50]
        body = _predict(session, url, chunk)
        served += len(body["predictions"])
        versions.append(body["model"]["version"])
        fb = session.post(url + "/feedback", json={"items": [{"prediction_id": p, "label": row["cnt"]}
                                                              for p, row in zip(body["prediction_ids"], chunk)]}, timeout=30)
        assert fb.status_code == 200 and fb.json() == {"accepted": len(chunk)}
    assert served == 600 and set(versions) == {1}

    # yr is 1 in every 2012 row and 0 in all of 2011: the first window drifts.
    monitor = wait_for(lambda: (m := session.get(url + "/monitor", timeout=30).json())["retrain"]["count"] >= 1 and m, 600,
                       "the automatic retrain to finish", interval=0.5)
    assert monitor["logged_rows"] == served  # sample rate 1: every prediction is logged
    assert monitor["labelled_rows"] == served
    first_window = monitor["alerts"][0]
    assert first_window["kind"] == "drift" and "yr" in first_window["details"]["drifting"]
    history = monitor["retrain"]["history"][0]
    assert history["trigger"] == "drift" and history["outcome"] == "promoted", history
    assert 0 < history["production_rows"] <= served  # the labeled rows when the retrain started

    registry = ModelRegistry(cfg.registry.uri)
    assert registry.get("bike-demand", "champion").version == 2
    lineage = registry.get("bike-demand", 2)
    assert lineage.tags["trigger"] == "drift"
    kinds = [e.event for e in registry.events("bike-demand")]
    assert {"alert", "retrain_triggered", "retrain_finished", "promoted"} <= set(kinds)
    # The endpoint swaps to version 2 live.
    wait_for(lambda: _predict(session, url, rows[:1])["model"]["version"] == 2, 60, "version 2 to answer", interval=0.5)


def test_served_equals_logged_across_replica_and_monitor_restarts(loop):
    import ray
    from click.testing import CliRunner

    from raypipe.cli import cli
    from raypipe.monitor.actor import monitor_name
    from raypipe import serve as serve_model  # the closed loop: the monitor can retrain

    cfg, url, rows, _ = loop
    session = requests.Session()
    # A replica restart (a redeploy replaces the replicas): buffered log rows are flushed on the way out.
    _predict(session, url, rows[:30])
    serve_model(cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"reload_interval_s": 0.7})}))
    _predict(session, url, rows[30:60])
    logged = lambda: session.get(url + "/monitor", timeout=30).json()["logged_rows"]  # noqa: E731
    wait_for(lambda: logged() == SERVED[0], 60, f"{SERVED[0]} served rows to be logged", interval=0.5)

    # A killed monitor is restarted by Ray and rebuilds its counts from the log.
    ray.kill(ray.get_actor(monitor_name("bike-demand"), namespace="raypipe"), no_restart=False)
    wait_for(lambda: (r := session.get(url + "/monitor", timeout=30)).status_code == 200 and r.json()["logged_rows"] == SERVED[0],
             120, "the restarted monitor to re-read the log", interval=0.5)

    result = CliRunner().invoke(cli, ["monitor", "status", str(ROOT / "configs/bike-regression.yaml"), "--url", url])
    assert result.exit_code == 0, result.output
    assert f"logged rows {SERVED[0]:,}" in result.output
    assert "last window #" in result.output and "threshold" in result.output and "retraining: " in result.output
