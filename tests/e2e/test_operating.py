"""What an operator sees of a served model: `raypipe serve` prints the dashboard and the
metrics address; the metrics of SPEC's Metrics section are in Ray's Prometheus export (on
loopback, `ray_` prefixed) with the values of known traffic; the dashboard shows the Serve
application and the monitor actor (headless Chromium, when installed); the terminal
holds raypipe's lines and Ray's go to the log file.

One `raypipe run` and one `raypipe serve`, each starting its own Ray (dashboard on, as configured).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
import requests

from _net import free_port, raypipe_serve, refuses_without_ray_token, wait_for

pytestmark = pytest.mark.ops

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
INPUTS = ["instant", "dteday", "season", "yr", "mnth", "hr", "holiday", "weekday", "workingday",
          "weathersit", "temp", "atemp", "hum", "windspeed"]


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text format → {(name, labels): value}."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([^ ]+)", line)
        if not m or line.startswith("#"):
            continue
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def _value(samples, name: str, **labels) -> float | None:
    want = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and want <= set(ls)]
    return sum(found) if found else None


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("ops")
    hours = pacsv.read_csv(ROOT / "data/bike-sharing/hour.csv", convert_options=pacsv.ConvertOptions(
        column_types={"dteday": pa.string()}))
    pacsv.write_csv(hours.filter(pc.equal(hours.column("yr"), 0)), base / "hour-2011.csv")
    port = free_port()
    sets = [
        f"data.source.paths=['{base}/hour-2011.csv']", "data.split.valid_from=2011-11-01", "data.split.test_from=2011-12-01",
        f"registry.uri={base}/registry", f"output.uri={base}/runs", f"monitor.log_uri={base}/logs",
        "model.num_boost_round=30", "model.training.num_workers=1", "evaluate.cv_folds=null", "evaluate.gates.max={}",
        f"serve.http.port={port}", "serve.reload_interval_s=1", "serve.replica_cpus=0.1", "serve.autoscaling.max_replicas=1",
        "monitor.window_rows=100", "monitor.flush_s=0.5", "monitor.poll_s=0.5", "retrain.on_drift=false",
        "retrain.on_performance=null", "cluster.num_cpus=2",
        "cluster.dashboard=true",  # off by default for `raypipe run`: the operator asks for it
    ]
    args = [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "RAY_TMPDIR": str(Path("/tmp") / f"rp-ops-{os.getpid()}"), "RAYPIPE_LOG_DIR": str(base / "cli-logs")}
    env.pop("RAY_ADDRESS", None)
    exe = str(Path(sys.executable).with_name("raypipe"))
    run = subprocess.run([exe, "run", "configs/bike-regression.yaml", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    try:
        with raypipe_serve(exe, "configs/bike-regression.yaml", args, env, base, ROOT) as proc:
            yield {"url": f"http://127.0.0.1:{port}", "run": run, "pid": proc.pid, "serve_err": (base / "serve.err").read_text(),
                   "serve_out": (base / "serve.out").read_text(), "hours": hours, "base": base}
    finally:
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)


def test_run_terminal_holds_raypipes_lines_and_names_the_log_file(served):
    run = served["run"]
    lines = run.stderr.splitlines()
    assert [ln.split()[0] for ln in lines[:6]] == ["ingest", "split", "transform", "train", "evaluate", "register"]
    assert lines[6].startswith("Ray dashboard: http://127.0.0.1:")
    assert re.fullmatch(r"Prometheus metrics: http://127\.0\.0\.1:\d+/metrics", lines[7])
    log_line = lines[8]
    assert log_line.startswith("Ray's logs: ") and len(lines) == 9, run.stderr
    log_path = log_line.removeprefix("Ray's logs: ").split("  ")[0]
    assert "Started a local Ray instance" in Path(log_path).read_text()
    assert "\x1b[" not in run.stderr
    assert run.stdout.rstrip().splitlines()[-1].endswith("/report.html  (open it in a browser; report.json beside it)")


def test_every_spec_metric_reaches_prometheus_with_the_traffic_values(served):
    url = served["url"]
    err = served["serve_err"]
    metrics_url = re.search(r"Prometheus metrics: (\S+)", err).group(1)
    session = requests.Session()
    rows = served["hours"].filter(pc.equal(served["hours"].column("yr"), 1)).slice(0, 300).to_pylist()
    accepted = 0
    for i in range(30):
        batch = rows[i * 10:(i + 1) * 10]
        r = session.post(url + "/predict", json={"instances": [{k: row[k] for k in INPUTS} for row in batch]}, timeout=60)
        assert r.status_code == 200, r.text
        # Labels follow their predictions closely, as live traffic's do: a window the
        # monitor closes holds labeled rows, so it has a live metric.
        items = [{"prediction_id": p, "label": row["cnt"]} for p, row in zip(r.json()["prediction_ids"], batch)]
        fb = session.post(url + "/feedback", json={"items": items}, timeout=60)
        assert fb.status_code == 200, fb.text
        accepted += fb.json()["accepted"]
    assert accepted == 300
    for _ in range(2):
        assert session.post(url + "/predict", json={"instances": [{"hr": "noon"}]}, timeout=60).status_code == 422

    last = [""]

    def scraped():
        text = requests.get(metrics_url, timeout=10).text
        last[0] = "\n".join(ln for ln in text.splitlines() if "raypipe" in ln and not ln.startswith("#"))
        s = _samples(text)
        ready = (_value(s, "ray_raypipe_requests_total", status="200") == 30
                 and _value(s, "ray_raypipe_predictions_logged_total") == 300
                 and _value(s, "ray_raypipe_live_metric", metric="rmse") is not None
                 and _value(s, "ray_raypipe_feature_drift", feature="temp") is not None)
        return s if ready else None

    try:
        s = wait_for(scraped, 240, "the raypipe metrics in Ray's export")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; raypipe lines of the last scrape:\n{last[0] or '(none)'}") from None
    model = {"model": "bike-demand"}
    assert _value(s, "ray_raypipe_requests_total", status="200", version="1", **model) == 30
    assert _value(s, "ray_raypipe_requests_total", status="422", **model) == 2
    assert _value(s, "ray_raypipe_request_latency_ms_count", **model) == 32
    assert _value(s, "ray_raypipe_request_latency_ms_bucket", le="+Inf", **model) == 32
    assert _value(s, "ray_raypipe_model_version", **model) == 1
    assert _value(s, "ray_raypipe_drift_alert", **model) in (0.0, 1.0)
    for feature in ("temp", "hum", "hr", "season"):
        assert _value(s, "ray_raypipe_feature_drift", feature=feature, method="psi", **model) >= 0
    monitor = requests.get(url + "/monitor", timeout=30).json()
    live = monitor["last_window"]["live_metrics"]["rmse"]
    assert _value(s, "ray_raypipe_live_metric", metric="rmse", **model) == pytest.approx(live, rel=1e-6)

    # Gauges stay in the scrape while the endpoint is idle (Ray drops unrecorded ones).
    time.sleep(45)
    idle = _samples(requests.get(metrics_url, timeout=10).text)
    assert _value(idle, "ray_raypipe_model_version", **model) == 1
    assert _value(idle, "ray_raypipe_feature_drift", feature="temp", **model) is not None

    # The export listens on loopback only: no address of this machine's other interfaces answers.
    port = int(metrics_url.split(":")[2].split("/")[0])
    for address in _other_addresses():
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=3).close()


LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _other_addresses() -> list[str]:
    """This machine's IPv4 addresses that are not loopback (the network a neighbour reaches)."""
    import psutil

    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET and not a.address.startswith("127.")]


def test_nothing_of_the_endpoint_listens_beyond_loopback(served):
    # `raypipe serve` with serve.http.host 127.0.0.1 (the default) and the local Ray it
    # started: the driver, Ray's GCS, raylet, agents and workers, the Serve actors, HAProxy.
    # Ray binds its servers to the node's address, which raypipe keeps on loopback.
    import psutil

    root = psutil.Process(served["pid"])
    processes = [root, *root.children(recursive=True)]
    assert any(p.name() == "haproxy" for p in processes), "the fast path's HAProxy is not running"
    listening = []
    for proc in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            for conn in proc.net_connections("inet"):
                if conn.status == psutil.CONN_LISTEN or (conn.type == socket.SOCK_DGRAM and not conn.raddr):
                    listening.append((proc.name(), conn.laddr.ip, conn.laddr.port))
    beyond = [entry for entry in listening if entry[1] not in LOOPBACK]
    print(f"\n{len(listening)} listening sockets in {len(processes)} processes of raypipe serve; beyond loopback: {beyond}")
    assert len(listening) >= 10, listening  # GCS, raylet, agents, dashboard, metrics, HAProxy, replica ...
    # The one exception: Serve binds each replica's inter-deployment gRPC server to "[::]:0"
    # (ray/serve/_private/replica.py, not configurable); it refuses a call without the
    # cluster's token.
    assert [(name, ip) for name, ip, _ in beyond] == [("ray::ServeReplica:bike-demand:Endpoint", "::")], beyond
    assert refuses_without_ray_token(beyond[0][2])


def test_dashboard_shows_the_application_and_the_monitor_actor(served):
    err = served["serve_err"]
    dashboard = re.search(r"Ray dashboard: (\S+?);? sign in with the token in (\S+)", err)
    assert dashboard, err
    url, token_path = dashboard.group(1).rstrip(";"), dashboard.group(2)
    token = Path(token_path).read_text().strip()
    assert requests.get(url + "/api/serve/applications/", timeout=30).status_code == 401
    headers = {"Authorization": f"Bearer {token}"}
    apps = requests.get(url + "/api/serve/applications/", headers=headers, timeout=30).json()["applications"]
    assert list(apps) == ["bike-demand"] and apps["bike-demand"]["status"] == "RUNNING"
    actors = requests.get(url + "/api/v0/actors?limit=1000", headers=headers, timeout=30).json()["data"]["result"]["result"]
    assert "raypipe:monitor:bike-demand" in {a.get("name") for a in actors if a.get("state") == "ALIVE"}
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium): the page itself is not rendered")
    # The sign-in route a browser uses turns the token into the dashboard's cookie.
    assert requests.post(url + "/api/authenticate", headers=headers, timeout=30).cookies.get("ray-authentication-token") == token
    shots = served["base"]
    found = {}
    for page, name in (("#/serve", "bike-demand"), ("#/actors", "raypipe:monitor:bike-demand")):
        dom = _chromium(url + "/" + page, token, shots / f"dashboard-{page[2:]}.png")
        found[page] = name in dom
    assert found == {"#/serve": True, "#/actors": True}
    docs = ROOT / "docs"
    if os.environ.get("RAYPIPE_UPDATE_SCREENSHOTS"):
        docs.mkdir(exist_ok=True)
        for page in ("serve", "actors"):
            shutil.copy(shots / f"dashboard-{page}.png", docs / f"dashboard-{page}.png")


def _chromium(url: str, token: str, png: Path) -> str:
    """The rendered DOM of ``url`` in headless Chromium, signed in with ``token``: a
    loopback proxy adds the ``Authorization`` header the dashboard's sign-in dialog would
    have turned into its cookie (headless Chromium cannot type into the dialog)."""
    import http.server
    import threading
    import urllib.request

    origin = url.split("/#")[0].rstrip("/")

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            req = urllib.request.Request(origin + self.path, headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    body, status, ctype = r.read(), r.status, r.headers.get("Content-Type", "")
            except urllib.error.HTTPError as e:
                body, status, ctype = e.read(), e.code, e.headers.get("Content-Type", "")
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxied = f"http://127.0.0.1:{server.server_address[1]}/" + url.split("/", 3)[3]
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
              "--virtual-time-budget=20000", f"--user-data-dir={png.parent / 'chromium-profile'}"]
    try:
        dom = subprocess.run([*common, "--dump-dom", proxied], capture_output=True, text=True, timeout=180).stdout
        subprocess.run([*common, f"--screenshot={png}", proxied], capture_output=True, timeout=180)
    finally:
        server.shutdown()
    return dom
