"""Promotion gates: every check listed with its numbers, direction-aware champion comparison."""

from __future__ import annotations

import pytest

from raypipe.config import GatesConfig
from raypipe.errors import ConfigError
from raypipe.evaluate.gates import check_gates
from raypipe.evaluate.report import render_html


def _gates(**kw) -> GatesConfig:
    return GatesConfig.model_validate(kw)


def test_first_model_passes_minimum_and_has_no_champion():
    r = check_gates({"roc_auc": 0.9}, None, _gates(min={"auc": 0.85}), "auc", "binary_classification")
    assert r.passed
    assert [(c["check"], c["metric"], c["value"], c.get("threshold"), c["passed"]) for c in r.reasons] == [
        ("min", "roc_auc", 0.9, 0.85, True),
        ("vs_champion", "roc_auc", 0.9, None, True),
    ]
    assert r.explain().startswith("gates passed: roc_auc 0.9 >= 0.85: passed; no champion yet")


def test_higher_is_better_metric_against_champion_with_tolerance():
    g = _gates(vs_champion={"min_delta": 0.01})
    assert check_gates({"roc_auc": 0.905}, {"roc_auc": 0.91}, g, "roc_auc", "binary_classification").passed
    r = check_gates({"roc_auc": 0.899}, {"roc_auc": 0.91}, g, "roc_auc", "binary_classification")
    assert not r.passed
    assert r.reasons[-1]["champion"] == 0.91 and r.reasons[-1]["min_delta"] == 0.01
    assert "vs champion 0.91 re-scored on the same data" in r.explain()


def test_lower_is_better_metric_and_max_bound():
    g = _gates(max={"rmse": 100})
    assert check_gates({"rmse": 80.0}, {"rmse": 81.0}, g, "rmse", "regression").passed
    r = check_gates({"rmse": 82.0}, {"rmse": 81.0}, g, "rmse", "regression")
    assert [c["passed"] for c in r.reasons] == [True, False]
    r = check_gates({"rmse": 120.0}, None, g, "rmse", "regression")
    assert r.explain() == "gates failed: rmse 120.0 <= 100.0: failed"


def test_missing_metric_value_fails_and_unknown_metric_is_config_error():
    assert not check_gates({"roc_auc": None}, None, _gates(min={"roc_auc": 0.5}), "roc_auc", "binary_classification").passed
    with pytest.raises(ConfigError, match="evaluate.gates.min.acurracy"):
        check_gates({}, None, _gates(min={"acurracy": 0.5}), "roc_auc", "binary_classification")


def test_champion_comparison_can_be_disabled():
    r = check_gates({"roc_auc": 0.5}, {"roc_auc": 0.9}, _gates(vs_champion={"enabled": False}), "roc_auc", "binary_classification")
    assert r.passed and r.reasons == []


def test_report_html_has_plots_and_escapes_text():
    html = render_html({
        "run_id": "r<1>", "status": "succeeded", "rows": {"ingested": 10},
        "metrics": {"test": {"roc_auc": 0.9, "confusion_matrix": [[5, 1], [2, 2]]}, "slices": {"sex": {"F": {"roc_auc": 0.8, "count": 4}}}},
        "evaluation": {"roc_curve": {"fpr": [0, 0.5, 1], "tpr": [0, 0.8, 1], "auc": 0.9}, "importance": {"age": 3.0, "sex": 1.0}, "classes": ["no", "yes"]},
        "durations_s": {"train": 1.0},
    })
    assert "r&lt;1&gt;" in html and "<polyline" in html and "Confusion matrix" in html and "Slices by sex" in html
    assert "Feature importance" in html
