"""The monitoring page after the bike-sharing replay, as an operator opens it: `raypipe run`
(2011), `raypipe serve`, `raypipe replay` of the first four weeks of 2012 (one retraining),
then GET /monitor in headless Chromium (a browser's Accept asks for HTML) and `raypipe
monitor report`, each checked for its plots.

`RAYPIPE_UPDATE_SCREENSHOTS=1` refreshes docs/monitor-page.png and docs/run-report.png.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from _net import free_port, raypipe_serve, wait_for

pytestmark = pytest.mark.ops

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CONFIG = "configs/bike-sharing.yaml"
WEEKS = 4  # windows of 168 hourly rows; the first retraining is due after 504 rows (cooldown_rows)


def _chromium(target: str, png: Path) -> str:
    """``target``'s DOM as headless Chromium parsed it; a screenshot of it in ``png``."""
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1150,2400",
              f"--user-data-dir={png.parent / 'chromium-profile'}"]
    dom = subprocess.run([*common, "--dump-dom", target], capture_output=True, text=True, timeout=180).stdout
    subprocess.run([*common, f"--screenshot={png}", target], capture_output=True, timeout=180)
    return dom


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    base = tmp_path_factory.mktemp("monitor-page")
    port = free_port()
    sets = [f"registry.uri={base}/registry", f"output.uri={base}/runs", f"monitor.log_uri={base}/logs",
            "model.num_boost_round=30", "model.training.num_workers=1", f"serve.http.port={port}", "serve.reload_interval_s=1",
            "serve.replica_cpus=0.1", "monitor.flush_s=0.5", "monitor.poll_s=0.5", "cluster.num_cpus=2"]
    args = [a for s in sets for a in ("--set", s)] + ["--no-dashboard"]
    env = {**os.environ, "RAY_TMPDIR": f"/tmp/rp-mp-{os.getpid()}", "RAYPIPE_LOG_DIR": str(base / "cli-logs")}
    env.pop("RAY_ADDRESS", None)
    exe = str(Path(sys.executable).with_name("raypipe"))
    url = f"http://127.0.0.1:{port}"
    try:
        run = subprocess.run([exe, "run", CONFIG, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stderr[-3000:]
        report = re.search(r"(\S+/report\.html)", run.stdout)
        assert report, run.stdout
        with raypipe_serve(exe, CONFIG, args, env, base, ROOT):
            replay = subprocess.run([exe, "replay", CONFIG, "--input", "data/bike-sharing/hour-2012.csv", "--batch-hours", "24",
                                     "--limit", str(WEEKS * 168), "--url", url, "--json"], cwd=ROOT, env=env, capture_output=True,
                                    text=True, timeout=1200)
            assert replay.returncode == 0, replay.stderr[-3000:]
            # The replay ends when its last rows are answered: the monitor closes the last window
            # and the retraining it started finishes a little later.
            monitor = wait_for(lambda: (m := requests.get(url + "/monitor", timeout=30).json())["windows"] == WEEKS
                               and m["retrain"]["count"] == 1 and not m["retrain"]["running"] and m, 600,
                               f"{WEEKS} windows and one finished retraining")
            yield {"url": url, "base": base, "monitor": monitor, "report": Path(report.group(1)), "env": env, "exe": exe}
    finally:
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)


def test_monitor_json_holds_the_windows_and_the_gate_decision(replayed):
    monitor = replayed["monitor"]
    assert [h["window"] for h in monitor["history"]] == [1, 2, 3, 4]
    # Labels follow their predictions: a window holds those that arrived before it closed.
    assert [h["rows"] for h in monitor["history"]] == [168] * 4 and all(0 < h["labelled"] <= 168 for h in monitor["history"])
    # yr is 1 in every 2012 row and 0 in all of 2011: every window drifts on it.
    assert all("yr" in h["drifting"] for h in monitor["history"])
    assert monitor["performance"] == {"metric": "rmse", "min": None, "max": 100.0}
    retrain = monitor["retrain"]["history"][0]
    assert retrain["outcome"] in ("promoted", "rejected") and retrain["model"]["version"] == 2
    assert retrain["gate"]["passed"] is (retrain["outcome"] == "promoted") and retrain["gate"]["reasons"]
    assert retrain["window"] == 3  # 504 rows: the first window past cooldown_rows


def test_browser_gets_the_monitoring_page_with_its_plots(replayed):
    url, base, monitor = replayed["url"], replayed["base"], replayed["monitor"]
    page = requests.get(url + "/monitor", headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert requests.get(url + "/monitor", timeout=30).headers["content-type"] == "application/json"
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium): the page is not rendered")
    dom = _chromium(url + "/monitor", base / "monitor-page.png")  # Chromium's own Accept header
    (base / "monitor-dom.html").write_text(dom)
    assert "<h1>raypipe monitor: bike-sharing version " in dom
    labels = re.findall(r'<svg [^>]*role="img" aria-label="([^"]+)"', dom)
    scored = {f for h in monitor["history"] for f, score in h["drift"].items() if score is not None}
    assert labels[:2] == ["psi per feature and window", f"psi of the {min(8, len(scored))} most drifting features"]
    assert {"live rmse per window", "champion version per window", "rates per window, the highest over the features"} <= set(labels)
    heat = dom[dom.index('aria-label="psi per feature and window"'):]
    heat = heat[:heat.index("</svg>")]
    features = list(monitor["history"][0]["drift"])
    assert re.findall(r'font-size="11" text-anchor="end">(\w+)</text>', heat) == features
    assert heat.count("<rect ") == len(features) * 4  # a cell per feature and window
    version = monitor["retrain"]["history"][0]["model"]["version"]
    outcome = monitor["retrain"]["history"][0]["outcome"]
    assert dom.count(f"<title>v{version} {outcome}</title>") == 3  # marked on the drift, live metric and version plots
    assert re.search(r'<line class="bound" [^>]*>(</line>)?<text [^>]*>max 100</text>', dom)  # Chromium closes <line>
    gate = "passed" if outcome == "promoted" else "rejected"
    assert re.search(rf'<td>1</td><td>\w+</td><td>3</td><td>{version}</td><td>[\d,]+</td><td class="\w+">{outcome}</td>'
                     rf'<td><b class="\w+">{gate}</b><ul', dom)  # as Chromium serialises it: attributes quoted
    assert (base / "monitor-page.png").stat().st_size > 20_000
    if os.environ.get("RAYPIPE_UPDATE_SCREENSHOTS"):
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copy(base / "monitor-page.png", ROOT / "docs/monitor-page.png")


def test_monitor_report_writes_the_same_page_and_the_run_report_renders(replayed):
    url, base = replayed["url"], replayed["base"]
    out = base / "monitor.html"
    report = subprocess.run([replayed["exe"], "monitor", "report", CONFIG, "--url", url, "-o", str(out)], cwd=ROOT,
                            env=replayed["env"], capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert report.stdout.startswith(f"wrote {out}: bike-sharing version ") and ", 4 windows" in report.stdout
    page = out.read_text()
    served = requests.get(url + "/monitor", headers={"Accept": "text/html"}, timeout=30).text
    assert page == served  # same data (no traffic since the replay), same renderer
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium): the run report is not rendered")
    dom = _chromium(replayed["report"].as_uri(), base / "run-report.png")
    labels = re.findall(r'<svg [^>]*role="img" aria-label="([^"]+)"', dom)
    assert {"Predicted vs actual (test)", "Residuals (test)", "gain"} <= set(labels), labels
    if os.environ.get("RAYPIPE_UPDATE_SCREENSHOTS"):
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copy(base / "run-report.png", ROOT / "docs/run-report.png")
