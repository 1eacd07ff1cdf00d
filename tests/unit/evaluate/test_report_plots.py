"""Run report plots: the PR baseline is the positive rate, axis labels fit, the gate table
reads as words, regression reports plot predicted vs actual and residuals."""

from __future__ import annotations

import re

from raypipe.evaluate.report import render_html


def _report(**evaluation):
    return {"run_id": "r1", "status": "succeeded", "rows": {"ingested": 10}, "promoted": True, "model": {"name": "m", "version": 1},
            "gate": {"passed": True, "reasons": [{"check": "min", "metric": "auc", "value": 0.9, "threshold": 0.85,
                                                  "champion": None, "passed": True}]},
            "evaluation": evaluation}


def test_pr_baseline_is_the_positive_rate_not_the_diagonal():
    page = render_html(_report(pr_curve={"recall": [0, 0.5, 1], "precision": [1, 0.8, 0.0588], "average_precision": 0.7,
                                         "positive_rate": 0.25}))
    line = re.search(r'<line class="baseline" x1="([\d.]+)" y1="([\d.]+)" x2="([\d.]+)" y2="([\d.]+)"', page)
    assert line and line.group(2) == line.group(4)  # horizontal
    # y = 0.25 on a 0..1 axis drawn from 224 (y=0) to 36 (y=1): 224 - 0.25 * 188 = 177.0
    assert float(line.group(2)) == 177.0
    assert "no skill: 0.25" in page


def test_y_axis_labels_have_room_and_gate_table_has_no_python_literals():
    page = render_html(_report(pr_curve={"recall": [0, 1], "precision": [1, 0.0588], "average_precision": 0.5,
                                         "positive_rate": 0.0588}))
    labels = re.findall(r'<text x="([\d.]+)" y="[\d.]+" font-size="10" text-anchor="end">0\.0588', page)
    assert labels == [] or all(float(x) >= 40 for x in labels)
    gate = page[page.index("<h2>Gate"):page.index("</table>", page.index("<h2>Gate"))]
    assert "None" not in gate and "True" not in gate and "False" not in gate
    assert "<td>–</td>" in gate and "<td>✔ yes</td>" in gate
    assert "promoted: <b>✔ yes</b>" in page


def test_regression_report_plots_predicted_vs_actual_and_residuals():
    page = render_html(_report(regression_sample={"actual": [1.0, 2.0, 3.0], "predicted": [1.5, 2.0, 2.0]}))
    assert 'aria-label="Predicted vs actual (test)"' in page and 'aria-label="Residuals (test)"' in page
    assert page.count("<circle ") == 6
