"""The shipped Grafana dashboard plots every metric of SPEC's Metrics section, under the
names Ray's Prometheus export gives them (``ray_`` prefix)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC_METRICS = ["raypipe_requests_total", "raypipe_request_latency_ms", "raypipe_predictions_logged_total",
                "raypipe_feature_drift", "raypipe_drift_alert", "raypipe_live_metric", "raypipe_model_version",
                "raypipe_retrains_total", "raypipe_rows_ingested_total", "raypipe_rows_quarantined_total"]


def test_every_spec_metric_has_a_panel_with_rays_prefix():
    dash = json.loads((ROOT / "deploy/grafana/raypipe_dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    missing = [m for m in SPEC_METRICS if f"ray_{m}" not in exprs]
    assert missing == []
    assert "raypipe_" not in exprs.replace("ray_raypipe_", "")  # no unprefixed name that Ray never exports
    assert dash["uid"] == "raypipe" and {v["name"] for v in dash["templating"]["list"]} == {"datasource", "model"}
