"""The monitoring page: drift per feature over the windows, the live metric against its
bounds, data-quality rates, alerts and retraining with gate decisions, as inline SVG."""

from __future__ import annotations

import copy
import re

import pytest

from raypipe.monitor.page import prefers_html, render_monitor_html


def _window(w: int) -> dict:
    return {"window": w, "rows": 200, "labelled": 200, "champion": 1 if w < 4 else 2, "drifting": ["yr"] if w < 4 else [],
            "drift": {"yr": 3.5 if w < 4 else 0.01, "temp": 0.05 * w, "hr": 0.02},
            "null_rate": {"yr": 0.0, "temp": 0.01 * w, "hr": 0.0},
            "out_of_range_rate": {"yr": 1.0 if w < 4 else 0.0, "temp": 0.0, "hr": None},
            "unseen_rate": {"yr": None, "temp": None, "hr": 0.0}, "prediction_drift": 0.3,
            "live_metrics": {"rmse": 150.0 - 10 * w, "mae": 90.0}}


def _feature(score, null_rate, oor):
    return {"score": score, "drifting": False, "null_rate": null_rate, "reference_null_rate": 0.0, "out_of_range_rate": oor,
            "unseen_rate": None, "threshold": 0.2}


BODY = {
    "model": {"name": "bike-demand", "version": 2}, "monitoring": True, "logged_rows": 1200, "labelled_rows": 1150, "windows": 6,
    "window_rows": 200, "drift": {"method": "psi", "threshold": 0.2, "consecutive_windows": 0, "alert_after": 2},
    "last_window": {"window": 6, "rows": 200, "labelled": 200, "live_metrics": {"rmse": 90.0, "mae": 90.0},
                    "features": {"yr": _feature(0.01, 0.0, 0.0), "temp": _feature(0.3, 0.06, 0.0), "hr": _feature(0.02, 0.0, None)}},
    "history": [_window(w) for w in range(1, 7)],
    "performance": {"metric": "rmse", "min": None, "max": 120.0},
    "alerts": [{"kind": "drift", "message": "1 feature(s) drifting for 1 window(s): yr", "time": 1764720000.0, "details": {}},
               {"kind": "performance", "message": "live rmse 140 outside [None, 120.0]", "time": 1764720060.0, "details": {}}],
    "retrain": {"running": False, "count": 2, "current": None, "rows_since_last": 100, "history": [
        {"trigger": "drift", "outcome": "promoted", "window": 3, "model": {"name": "bike-demand", "version": 2},
         "production_rows": 600, "error": None, "finished_at": 1764720100.0,
         "gate": {"passed": True, "reasons": [{"passed": True, "message": "rmse 80.1 <= champion 120.3: passed"}]}},
        {"trigger": "performance", "outcome": "rejected", "window": 5, "model": {"name": "bike-demand", "version": 3},
         "production_rows": 1000, "error": None, "finished_at": 1764720200.0,
         "gate": {"passed": False, "reasons": [{"passed": False, "message": "rmse 95.0 <= champion 90.0: failed"}]}},
    ]},
}

# Charts are 380 wide (a legend from x 384), the plot spans x 58..344 and y 224 (low) .. 36 (high).
_X = lambda w: 58 + (w - 1) / 5 * 286  # noqa: E731 - windows 1..6


def _figure(page: str, title: str) -> str:
    start = page.index(f'aria-label="{title}"')
    return page[start:page.index("</svg>", start)]


def test_drift_heatmap_has_a_cell_per_feature_and_window_outlined_over_the_threshold():
    page = render_monitor_html(BODY)
    heat = _figure(page, "psi per feature and window")
    assert re.findall(r'font-size="11" text-anchor="end">(\w+)</text>', heat) == ["yr", "temp", "hr"]
    tips = re.findall(r"<title>([^<]+)</title>", heat)
    assert len(tips) == 18 and tips[0] == "yr, window 1: 3.5" and tips[6 + 5] == "temp, window 6: 0.3"
    # Over 0.2: yr in windows 1-3, temp in windows 5 (0.25) and 6 (0.3).
    assert heat.count('stroke="#600"') == 5
    assert "red ≥ 0.4, outlined &gt; 0.2" in heat


def test_drift_lines_are_the_most_drifting_features_with_threshold_and_retrain_markers():
    page = render_monitor_html(BODY)
    lines = _figure(page, "psi of the 3 most drifting features")
    assert re.findall(r"<polyline[^>]*><title>(\w+)</title>", lines) == ["yr", "temp", "hr"]
    # y from 0.01 to 3.5: the threshold 0.2 at 224 - (0.19 / 3.49) * 188
    threshold = re.search(r'<line class="threshold" x1="58.0" y1="([\d.]+)"', lines)
    assert threshold and float(threshold.group(1)) == pytest.approx(224 - 0.19 / 3.49 * 188, abs=0.05)
    markers = re.findall(r'<line class="marker" x1="([\d.]+)"[^>]*><title>([^<]+)</title>', lines)
    assert markers == [(f"{_X(3):.1f}", "v2 promoted"), (f"{_X(5):.1f}", "v3 rejected")]
    assert "drift state: <b class=ok>ok</b> (0 drifting window(s) in a row; an alert after 2)" in page


def test_live_metric_is_plotted_against_its_bound():
    page = render_monitor_html(BODY)
    live = _figure(page, "live rmse per window")
    points = re.search(r'<polyline points="([^"]+)"', live).group(1).split()
    assert len(points) == 6 and points[0] == "58.0,36.0" and points[-1] == "344.0,224.0"  # 140 at the top, 90 at the bottom
    bound = re.search(r'<line class="bound" x1="58.0" y1="([\d.]+)"[^>]*/><text[^>]*>max 120</text>', live)
    assert bound and float(bound.group(1)) == pytest.approx(224 - 30 / 50 * 188, abs=0.05)
    assert "rmse: retraining when it is outside [–, 120]" in page
    assert 'aria-label="champion version per window"' in page


def test_data_quality_rates_per_window_and_last_window_table():
    page = render_monitor_html(BODY)
    quality = _figure(page, "rates per window, the highest over the features")
    assert re.findall(r'<text x="398" y="[\d.]+" font-size="11">([\w ]+)</text>', quality) == ["null", "out of range", "unseen category"]
    oor = re.findall(r'<polyline points="([^"]+)"', quality)[1].split()
    assert [p.split(",")[1] for p in oor] == ["36.0"] * 3 + ["224.0"] * 3  # 1.0 then 0.0
    assert "<h3>Last window (#6, 200 rows)</h3>" in page
    assert "<tr><td>temp</td><td>0.0600</td><td>0.0000</td><td>0.0000</td><td>–</td><td>0.3000</td><td>✘ no</td></tr>" in page


def test_alerts_newest_first_and_retraining_with_each_gate_decision():
    page = render_monitor_html(BODY)
    assert "<h2>Alerts (2 most recent)</h2>" in page
    alerts = page[page.index("<h2>Alerts"):page.index("<h2>Retraining")]
    assert alerts.index("2025-12-03 00:01:00 UTC") < alerts.index("2025-12-03 00:00:00 UTC")
    assert re.findall(r'text-anchor="end">(\w+)</text>', _figure(page, "alerts by kind")) == ["drift", "performance"]
    retrain = page[page.index("<h2>Retraining (2 done, idle)</h2>"):]
    rows = re.findall(r"<tr><td>(\d)</td><td>(\w+)</td><td>(\d)</td><td>(\d)</td><td>([\d,]+)</td><td class=(\w+)>(\w+)</td>", retrain)
    assert rows == [("1", "drift", "3", "2", "600", "ok", "promoted"), ("2", "performance", "5", "3", "1,000", "err", "rejected")]
    assert "<b class=ok>passed</b><ul style='text-align:left;margin:0'><li>✔ rmse 80.1 &lt;= champion 120.3: passed</li></ul>" in retrain
    assert "<b class=err>rejected</b><ul style='text-align:left;margin:0'><li>✘ rmse 95.0 &lt;= champion 90.0: failed</li></ul>" in retrain


def test_page_is_self_contained_and_escapes_names():
    body = copy.deepcopy(BODY)
    body["model"]["name"] = "m<1>"
    for window in body["history"]:
        window["drift"]["a<b"] = 0.5
    page = render_monitor_html(body)
    assert "<title>raypipe monitor: m&lt;1&gt; version 2</title>" in page and "a&lt;b" in page and "a<b" not in page
    assert "<script" not in page and "http://" not in page and "https://" not in page and "<link" not in page


def test_without_history_the_last_window_is_a_bar_chart_and_monitoring_off_says_so():
    body = {k: v for k, v in BODY.items() if k != "history"}
    page = render_monitor_html(body)
    bars = _figure(page, "psi per feature, window #6")
    assert re.findall(r'text-anchor="end">(\w+)</text>', bars) == ["yr", "temp", "hr"]
    assert "no labeled window yet" not in page and "<td>90.0000</td>" in page
    off = render_monitor_html({"model": {"name": "m", "version": 1}, "monitoring": False})
    assert "monitoring is off for this endpoint" in off and "<svg" not in off


@pytest.mark.parametrize(("accept", "html"), [
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),  # a browser
    ("text/html", True), ("application/json", False), ("*/*", False), (None, False), ("", False),
    ("application/json, text/html", False), ("text/html;q=0.5, application/json", False), ("text/*, */*;q=0.1", True),
    ("text/html;q=oops", False),
])
def test_html_only_when_accept_prefers_it(accept, html):
    assert prefers_html(accept) is html
