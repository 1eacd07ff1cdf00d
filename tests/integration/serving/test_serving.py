"""The HTTP endpoint on Ray Serve, over real loopback HTTP, against a registry trained here."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raypipe import Pipeline
from raypipe.config import load_config
from raypipe.registry import ModelRegistry

from _net import free_port, refuses_without_ray_token, wait_for

ROOT = Path(__file__).resolve().parents[3]
KEY = "test-key-0123456789"
COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
           "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country", "income"]
INTS = {"age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"}


@pytest.fixture(scope="module")
def served(tmp_path_factory, ray_cluster):
    """Quickstart (test profile) trained into a fresh registry, a copy registered as version 2
    (not promoted), and the endpoint deployed with API keys and fast autoscaling."""
    from ray import serve

    from raypipe.serving import serve_model

    base = tmp_path_factory.mktemp("serving")
    os.environ["RAYPIPE_TEST_KEYS"] = f"{KEY},other-key"
    overrides = [
        f"registry.uri={base}/registry", f"output.uri={base}/runs", "model.training.num_workers=1",
        f"serve.http.port={free_port()}", "serve.auth.api_keys_env=RAYPIPE_TEST_KEYS",
        "serve.reload_interval_s=0.5", "serve.replica_cpus=0.1", "serve.max_ongoing_requests=8",
        "serve.autoscaling.min_replicas=1", "serve.autoscaling.max_replicas=3", f"monitor.log_uri={base}/logs",
        "serve.autoscaling.target_ongoing_requests=1", "serve.autoscaling.upscale_delay_s=1",
        "serve.autoscaling.downscale_delay_s=3", "serve.max_instances=500", "serve.request_timeout_s=2",
    ]
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        Pipeline.from_yaml("configs/quickstart.yaml", profile="test", overrides=overrides).run()
        cfg = load_config("configs/quickstart.yaml", profile="test", overrides=overrides)
    finally:
        os.chdir(cwd)
    registry = ModelRegistry(f"{base}/registry")
    v1 = registry.local_path("adult-income", 1)
    copy = base / "v2"
    shutil.copytree(v1, copy, ignore=shutil.ignore_patterns("version.json"))
    registry.register("adult-income", copy, metrics={"roc_auc": 0.9}, run_id="copy-of-v1")
    info = serve_model(cfg)
    yield cfg, registry, info["url"], base
    from raypipe.monitor.actor import stop_monitor

    stop_monitor(cfg.model_name)  # no retrain may outlive the module on the shared cluster
    serve.shutdown()  # the next module starts Serve on its own port


def _post(url: str, body, key: str | None = KEY, **kw) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(url + "/predict", data=data, headers=headers, timeout=30, **kw)


def _adult_rows(n: int) -> list[dict]:
    """The first n rows of adult.test as an application would send them: typed, '?' as null."""
    table = pacsv.read_csv(ROOT / "data/adult/adult.test", read_options=pacsv.ReadOptions(column_names=COLUMNS))
    rows = []
    for rec in table.slice(0, n).to_pylist():
        row = {}
        for k, v in rec.items():
            if k == "income":
                continue
            v = v.strip() if isinstance(v, str) else v
            row[k] = None if v == "?" else (int(v) if k in INTS else v)
        rows.append(row)
    return rows


def test_http_predictions_equal_batch_predict(served, tmp_path):
    cfg, _, url, _ = served
    rows = _adult_rows(300)
    # Row-wise for the first half, columnar for the second: both are the same rows.
    first = _post(url, {"instances": rows[:150]})
    names = list(rows[0])
    second = _post(url, {"columns": names, "data": [[r[c] for c in names] for r in rows[150:]]})
    assert first.status_code == 200 and second.status_code == 200, (first.text, second.text)
    http = first.json()["probabilities"] + second.json()["probabilities"]
    assert first.json()["model"] == {"name": "adult-income", "version": 1}
    assert len(set(first.json()["prediction_ids"] + second.json()["prediction_ids"])) == 300

    # The same rows through `raypipe predict` (the file in adult.test's own format).
    src = (ROOT / "data/adult/adult.test").read_text().splitlines()[:300]
    (tmp_path / "rows.csv").write_text("\n".join(src) + "\n")
    from raypipe.inference import batch_predict

    result = batch_predict(cfg, str(tmp_path / "rows.csv"), str(tmp_path / "out.parquet"))
    assert result["rows"] == {"input": 300, "predicted": 300, "quarantined": 0}
    out = pq.read_table(tmp_path / "out.parquet").sort_by("source_line")
    assert out.column("source_line").to_pylist() == list(range(1, 301))
    assert np.array_equal(np.asarray(http), out.column("probability").to_numpy())  # bit for bit
    assert first.json()["predictions"] == out.column("prediction").to_pylist()[:150]


def test_auth_and_error_format(served):
    _, _, url, _ = served
    row = _adult_rows(1)
    assert _post(url, {"instances": row}, key=None).status_code == 401
    r = _post(url, {"instances": row}, key="wrong")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["type"] == "unauthorized"
    assert _post(url, {"instances": row}, key="other-key").status_code == 200
    r = requests.post(url + "/predict", data="age=3", headers={"Authorization": f"Bearer {KEY}", "Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["error"]["type"] == "unsupported_media_type"
    assert _post(url, b'{"instances": [').status_code == 400
    assert _post(url, b"x" * 1_000_001).status_code == 413
    assert _post(url, {"instances": row * 501}).status_code == 413
    r = _post(url, {"instances": [dict(row[0], age=7, sex="Robot")]})
    assert r.status_code == 422
    assert {d["field"]: d["expected"] for d in r.json()["error"]["details"]} == {
        "instances[0].age": ">= 17", "instances[0].sex": "one of ['Female', 'Male']"}
    r = requests.get(url + "/nope", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    assert requests.get(url + "/predict", timeout=10).status_code == 405
    assert requests.get(url + "/healthz", timeout=10).json() == {"status": "ok"}
    assert requests.get(url + "/readyz", timeout=10).status_code == 200
    assert requests.get(url + "/model", timeout=10).status_code == 401
    model = requests.get(url + "/model", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json()
    assert model["version"] == 1 and model["task"] == "binary_classification" and model["lineage_id"]
    spec = requests.get(url + "/openapi.json", timeout=10).json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    instance = body["oneOf"][0]["properties"]["instances"]["items"]
    assert instance["properties"]["age"] == {"type": "integer", "minimum": 17, "maximum": 100}
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer", "description": "An API key of serve.auth."}
    for code in ("200", "400", "401", "408", "413", "415", "422", "503"):
        assert code in spec["paths"]["/predict"]["post"]["responses"], code
    assert "income" not in instance["properties"] and "workclass" not in instance["required"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
fields = st.sampled_from(COLUMNS + ["", "AGE", "__proto__"])
payloads = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"instances": st.lists(st.dictionaries(fields, json_values, max_size=15) | json_values, max_size=4)})
    .map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"columns": st.lists(fields, max_size=15), "data": st.lists(st.lists(json_values, max_size=15), max_size=3)})
    .map(lambda v: json.dumps(v).encode()),
)


def test_hostile_payloads_never_5xx(served):
    _, _, url, _ = served
    session = requests.Session()
    session.headers.update({"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    statuses: dict[int, int] = {}

    @settings(max_examples=2000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(body=payloads)
    def send(body):
        r = session.post(url + "/predict", data=body, timeout=30)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, r.text
        if r.status_code != 200:
            assert r.json()["error"]["type"]

    send()
    assert sum(statuses.values()) >= 2000 and statuses.get(422, 0) > 0 and statuses.get(400, 0) > 0
    ok = _post(url, {"instances": _adult_rows(3)})
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 3


class _Load:
    """Clients posting one Adult row in a loop; records every status and answering version."""

    def __init__(self, url: str, clients: int):
        self.url, self.stop = url, threading.Event()
        self.results: list[tuple[float, int, int | None]] = []
        self.row = _adult_rows(1)
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self):
        session = requests.Session()
        while not self.stop.is_set():
            try:
                r = session.post(self.url + "/predict", json={"instances": self.row},
                                 headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
                version = r.json()["model"]["version"] if r.status_code == 200 else None
                self.results.append((time.monotonic(), r.status_code, version))
            except requests.RequestException:
                self.results.append((time.monotonic(), -1, None))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_promotion_and_rollback_swap_live_without_failed_requests(served):
    _, registry, url, _ = served
    with _Load(url, clients=2) as load:
        wait_for(lambda: len(load.results) > 20, 60, "load to start", interval=0.2)
        registry.promote("adult-income", 2, reason="test: promote while serving")
        wait_for(lambda: load.results and load.results[-1][2] == 2, 60, "version 2 to answer", interval=0.2)
        registry.rollback("adult-income", reason="test: roll back while serving")
        wait_for(lambda: load.results and load.results[-1][2] == 1, 60, "version 1 to answer again", interval=0.2)
        time.sleep(1)
    statuses = {s for _, s, _ in load.results}
    versions = [v for _, _, v in load.results]
    assert statuses == {200}, f"failed requests: {[r for r in load.results if r[1] != 200][:5]}"
    assert 2 in versions and versions[-1] == 1
    print(f"\n[timing] {len(load.results)} requests during promote + rollback, none failed")


def test_autoscaling_up_under_load_and_down_after(served):
    from ray import serve

    cfg, _, url, _ = served

    def running() -> int:
        states = serve.status().applications[cfg.name].deployments["Endpoint"].replica_states
        return sum(n for state, n in states.items() if str(getattr(state, "value", state)) == "RUNNING")

    assert running() == 1
    with _Load(url, clients=6):
        wait_for(lambda: running() >= 2, 90, "a second replica under load", interval=0.2)
        peak = running()
    wait_for(lambda: running() == 1, 90, "scale-down to 1 replica after the load", interval=0.2)
    print(f"\n[timing] replicas 1 -> {peak} -> 1")


def test_canary_and_shadow(served):
    """Redeploy with half the traffic to the challenger and version 2 in shadow."""
    from raypipe.serving import serve_model

    cfg, registry, url, _ = served
    registry.set_alias("adult-income", "challenger", 2)
    serve_cfg = cfg.serve.model_copy(update={"canary_fraction": 0.5, "shadow": "2"})
    serve_model(cfg.model_copy(update={"serve": serve_cfg}))
    versions = [_post(url, {"instances": _adult_rows(2)}).json()["model"]["version"] for _ in range(40)]
    assert set(versions) == {1, 2}, versions  # P(one version only) = 2 * 0.5**40
    headers = {"Authorization": f"Bearer {KEY}"}
    wait_for(lambda: requests.get(url + "/monitor", headers=headers, timeout=10).json()["shadow"]["requests"] > 0, 30,
             "shadow predictions", interval=0.2)
    model = requests.get(url + "/model", headers=headers, timeout=10).json()
    assert model["challenger"] == {"name": "adult-income", "version": 2}
    assert model["shadow"] == {"name": "adult-income", "version": 2}
    shadow = requests.get(url + "/monitor", headers=headers, timeout=10).json()["shadow"]
    # Version 2 is a copy of version 1: the shadow never disagrees.
    assert shadow["errors"] == 0 and shadow["disagreements"] == 0 and shadow["rows"] == 2 * shadow["requests"]


def test_export_serve_config(served, tmp_path):
    import yaml
    from click.testing import CliRunner

    from raypipe.cli import cli

    cfg, _, _, base = served
    out = tmp_path / "serve.yaml"
    result = CliRunner().invoke(cli, ["serve", str(ROOT / "configs/quickstart.yaml"), "--export-config", str(out),
                                      "--set", f"registry.uri={base}/registry"])
    assert result.exit_code == 0, result.output
    body = yaml.safe_load(out.read_text())
    app = body["applications"][0]
    assert app["import_path"] == "raypipe.serving.app:build" and app["route_prefix"] == "/"
    assert app["args"]["set"] == [f"registry.uri={base}/registry"]
    assert app["deployments"][0]["autoscaling_config"]["max_replicas"] == 4
    # The builder resolves the same application serve deploy would run.
    from raypipe.serving.app import build

    built = build(app["args"] | {"config": str(ROOT / "configs/quickstart.yaml")})
    assert type(built).__name__ == "Application"


def test_predict_cli_writes_csv_and_quarantines_bad_rows(served, tmp_path):
    import pyarrow.csv as csv
    from click.testing import CliRunner

    from raypipe.cli import cli

    _, _, _, base = served
    lines = (ROOT / "data/adult/adult.test").read_text().splitlines()[:20]
    lines[3] = lines[3].replace(lines[3].split(",")[0], "300", 1)  # age 300 breaks max: 100
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, [
        "predict", str(ROOT / "configs/quickstart.yaml"), "--input", str(tmp_path / "in.csv"),
        "--output", str(tmp_path / "out.csv"), "--model", "adult-income@1", "--set", f"registry.uri={base}/registry",
    ])
    assert result.exit_code == 0, result.output
    assert "19 of 20 rows predicted" in result.output and "1 rows broke" in result.output
    # One file with one header (a folder of parts only when asked for), never appended to.
    assert (tmp_path / "out.csv").is_file()
    out = csv.read_csv(tmp_path / "out.csv")
    assert out.num_rows == 19 and 4 not in out.column("source_line").to_pylist()
    assert set(out.column_names) >= {"source_line", "prediction", "probability"}
    quarantine = pq.read_table(tmp_path / "out.csv.quarantine")
    assert quarantine.column("__rp_rule").to_pylist() == ["max"] and quarantine.column("__rp_line").to_pylist() == [4]


# ----------------------------------------------------------------- issue 13: the contract, live


def test_schemathesis_all_checks_against_the_live_endpoint(served, tmp_path):
    """schemathesis (every check, every phase it runs without links) finds no failure."""
    import subprocess
    import sys

    _, _, url, _ = served
    # 413 (too many rows or items for serve.max_instances) is a rejection as much as 422;
    # schemathesis's default list for negative data lacks it.
    (tmp_path / "schemathesis.toml").write_text(
        '[checks.negative_data_rejection]\nexpected-statuses = '
        '["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]\n')
    st = Path(sys.executable).parent / "schemathesis"
    done = subprocess.run(
        [str(st), "run", f"{url}/openapi.json", "--checks", "all", "-H", f"Authorization: Bearer {KEY}",
         "--max-examples", os.environ.get("RAYPIPE_SCHEMATHESIS_EXAMPLES", "25"), "--seed", "13",
         "--request-timeout", "30", "--generation-database", "none", "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    (tmp_path / "schemathesis.txt").write_text(done.stdout)
    # Long request bodies (curl lines) are cut: the failure names and the summary stay readable.
    summary = "\n".join(line[:240] for line in done.stdout.splitlines()[-120:])
    print("\n[schemathesis]", summary)
    assert done.returncode == 0, summary + done.stderr[-2000:]


def test_regressions_of_issue_13(served):
    """Each failure the issue lists, pinned: a 4xx naming the field, JSON, never a 5xx."""
    _, _, url, _ = served
    row = _adult_rows(1)[0]
    cases = [
        ("/predict", json.dumps({"instances": [dict(row, capital_loss=9234544920900004)]}).encode(), 422, "instances[0].capital_loss"),
        ("/predict", json.dumps({"instances": [dict(row, education="X")]}).encode().replace(b'"X"', b'"\\ud800"'), 400,
         "$.instances[0].education"),
        ("/predict", b'{"instances": [{"age": ' + b"9" * 5000 + b"}]}", 400, "$"),
        ("/predict", json.dumps({"columns": [], "data": [[]]}).encode(), 422, None),
        ("/feedback", b"true", 422, "$"),
        ("/feedback", b"1", 422, "$"),
        ("/feedback", b'{"items": []}', 422, "items"),
        ("/feedback", json.dumps({"prediction_id": "x", "label": ">50K"}).encode(), 404, "$.prediction_id"),
    ]
    for path, body, status, field in cases:
        r = requests.post(url + path, data=body, headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
                          timeout=30)
        assert r.status_code == status, (path, body[:80], r.status_code, r.text)
        err = r.json()["error"]
        if field is not None:
            assert field in [d["field"] for d in err["details"]], (body[:80], err)
    r = requests.delete(url + "/predict", timeout=10)
    assert r.status_code == 405 and r.headers["allow"] == "POST" and r.json()["error"]["type"] == "method_not_allowed"
    # /docs without internet: the page names only the endpoint's own assets, which it serves.
    page = requests.get(url + "/docs", timeout=10).text
    assert "cdn" not in page.lower() and "/docs/assets/swagger-ui-bundle.js" in page
    js = requests.get(url + "/docs/assets/swagger-ui-bundle.js", timeout=10)
    assert js.status_code == 200 and len(js.content) > 100_000


def test_feedback_is_checked_per_item(served):
    _, _, url, _ = served
    ids = _post(url, {"instances": _adult_rows(2)}).json()["prediction_ids"]
    body = {"items": [{"prediction_id": ids[0], "label": ">50K"}, {"prediction_id": ids[1], "label": "maybe"},
                      {"prediction_id": ids[0][:-1] + ("0" if ids[0][-1] != "0" else "1"), "label": "<=50K"}]}
    r = requests.post(url + "/feedback", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    assert [(x["field"], x["reason"]) for x in r.json()["rejected"]] == [
        ("items[1].label", "invalid_label"), ("items[2].prediction_id", "unknown_prediction")]
    r = requests.post(url + "/feedback", data=b'{"prediction_id": "%s", "label": 1e400}' % ids[1].encode(),
                      headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "$.label"


def test_incomplete_body_gets_408_and_frees_the_slot(served):
    _, _, url, _ = served
    host, port = url.removeprefix("http://").split(":")
    socks = []
    for _ in range(10):  # more than max_ongoing_requests (8) of the one replica
        s = socket.create_connection((host, int(port)), timeout=30)
        s.sendall(f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                  f"Authorization: Bearer {KEY}\r\nContent-Length: 1000\r\n\r\n{{\"instances\"".encode())
        socks.append(s)
    answers = []
    for s in socks:
        answers.append(s.recv(4096).split(b"\r\n", 1)[0])
        s.close()
    assert set(answers) == {b"HTTP/1.1 408 Request Timeout"}, answers
    assert _post(url, {"instances": _adult_rows(1)}).status_code == 200


def test_poison_clients_never_fail_valid_ones(served):
    """Valid and poison clients at once: every valid request answers 200 with its own
    predictions; every poison one a 4xx naming only its own field."""
    _, _, url, _ = served
    rows = _adult_rows(8)
    expected = _post(url, {"instances": rows}).json()["probabilities"]
    stop, valid, poison = threading.Event(), [], []

    def client(i: int):
        session = requests.Session()
        while not stop.is_set():
            r = session.post(url + "/predict", json={"instances": [rows[i]]}, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
            valid.append(r.status_code == 200 and r.json()["probabilities"] == [expected[i]])

    def bad(value):
        session = requests.Session()
        while not stop.is_set():
            r = session.post(url + "/predict", json={"instances": [dict(rows[0], capital_loss=value)]},
                             headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
            poison.append((r.status_code, [d["field"] for d in r.json()["error"]["details"]] if r.status_code >= 400 else None))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    threads += [threading.Thread(target=bad, args=(v,)) for v in (9234544920900004, -(2**60))]
    for t in threads:
        t.start()
    time.sleep(8)
    stop.set()
    for t in threads:
        t.join(60)
    print(f"\n[poison] valid {len(valid)} requests, {valid.count(False)} failed; poison {len(poison)} requests")
    assert len(valid) > 50 and valid.count(False) == 0
    assert poison and set(map(str, poison)) == {str((422, ["instances[0].capital_loss"]))}


def _title(process) -> str:
    import psutil

    try:
        return " ".join(process.cmdline()).strip()
    except psutil.Error:
        return ""


def test_fast_path_listens_on_loopback_only(served):
    # serve.http.host is 127.0.0.1 (the default), the fast path on (the default): every socket
    # the endpoint's processes (HAProxy, the HAProxyManager and fallback proxy actors, the
    # replicas) listen on is on loopback, or is a Ray gRPC server that demands the cluster's token.
    import socket as socketlib

    import psutil

    cfg, _, url, _ = served
    port = cfg.serve.http.port
    stats, metrics = (int(os.environ[f"RAY_SERVE_HAPROXY_{name}_PORT"]) for name in ("STATS", "METRICS"))
    # The shared cluster is this process's local Ray: its actors are our descendants, named
    # by their process titles (it runs without the dashboard the state API needs).
    titles = ("ray::HAProxyManager", "ray::ProxyActor", f"ray::ServeReplica:{cfg.name}:Endpoint")
    processes = [p for p in psutil.Process().children(recursive=True) if _title(p) in titles]
    assert {_title(p) for p in processes} == set(titles)

    def snapshot() -> tuple[list, set, list] | None:
        # An HAProxy that Serve has just reloaded (replicas changed) exits while it is read:
        # read again (measured once in CI: psutil.NoSuchProcess of an haproxy child).
        try:
            haproxies = [child for p in processes for child in p.children() if child.name() == "haproxy"]
            hap_sockets = {(c.laddr.ip, c.laddr.port) for h in haproxies for c in h.net_connections("inet")
                           if c.status == psutil.CONN_LISTEN}
            beyond = []
            for proc in processes + haproxies:
                for conn in proc.net_connections("inet"):
                    listening = conn.status == psutil.CONN_LISTEN or (conn.type == socketlib.SOCK_DGRAM and not conn.raddr)
                    if listening and conn.laddr.ip not in ("127.0.0.1", "::1"):
                        beyond.append((proc.name(), conn.type.name, conn.laddr.ip, conn.laddr.port))
        except psutil.NoSuchProcess:
            return None
        return haproxies, hap_sockets, beyond

    haproxies, hap_sockets, beyond_loopback = wait_for(snapshot, 30, "one reading of every endpoint process", interval=0.5)
    assert haproxies, "no haproxy process under Serve's HAProxyManager"
    assert hap_sockets == {("127.0.0.1", port), ("127.0.0.1", stats), ("127.0.0.1", metrics)}
    assert requests.get(f"http://127.0.0.1:{stats}/stats", timeout=10).status_code == 200
    assert "haproxy_process" in requests.get(f"http://127.0.0.1:{metrics}/metrics", timeout=10).text
    assert beyond_loopback, "expected Ray's own gRPC servers on every interface"
    assert all(kind == "SOCK_STREAM" and name != "haproxy" for name, kind, _, _ in beyond_loopback), beyond_loopback
    refusing = {entry: refuses_without_ray_token(entry[3]) for entry in beyond_loopback}
    assert all(refusing.values()), refusing
