"""The human-readable run report: one self-contained HTML file beside report.json.

Plots are inline SVG (:mod:`raypipe.evaluate.charts`, shared with the monitoring page), so
the report opens in any browser, offline, and needs no plotting dependency.
"""

from __future__ import annotations

from typing import Any

from raypipe.evaluate.charts import axis_number, bar_chart, esc, fmt, line_chart, page, scatter, table

__all__ = ["render_html"]


def _confusion(matrix: list[list[int]], labels: list[str]) -> str:
    if not matrix:
        return ""
    peak = max(max(r) for r in matrix) or 1
    head = "".join(f"<th>pred {esc(lbl)}</th>" for lbl in labels)
    body = "".join(
        f"<tr><th>true {esc(labels[i])}</th>"
        + "".join(f'<td style="background:rgba(31,119,180,{0.1 + 0.8 * v / peak:.2f})">{v:,}</td>' for v in row)
        + "</tr>"
        for i, row in enumerate(matrix)
    )
    return f"<h3>Confusion matrix</h3><table class=cm><tr><th></th>{head}</tr>{body}</table>"


def render_html(report: dict[str, Any]) -> str:
    """Render a run report dict (the content of report.json) as a standalone page."""
    parts: list[str] = []
    status = report.get("status", "?")
    parts.append(f"<h1>raypipe run {esc(report.get('run_id', ''))}</h1><p>status: <b>{esc(status)}</b></p>")
    if report.get("error"):
        parts.append(f"<p class=err>{esc(report['error'].get('message'))}</p>")
    model = report.get("model") or {}
    if model:
        parts.append(f"<p>model <b>{esc(model.get('name'))}</b> version <b>{esc(model.get('version'))}</b>; promoted: <b>{fmt(bool(report.get('promoted')))}</b></p>")
    parts.append("<h2>Rows</h2>" + table([report.get("rows", {})]))
    by_rule = (report.get("quarantine") or {}).get("by_rule") or {}
    if by_rule:
        parts.append("<h3>Quarantined by rule</h3>" + table([{"rule": k, "rows": v} for k, v in by_rule.items()]))
    gate = report.get("gate")
    if gate:
        parts.append(f"<h2>Gate: {'passed' if gate.get('passed') else 'rejected'}</h2>")
        parts.append(table([{k: r.get(k) for k in ("check", "metric", "value", "threshold", "champion", "passed")} for r in gate.get("reasons", [])]))
    test = (report.get("metrics") or {}).get("test") or {}
    scalars = {k: v for k, v in test.items() if isinstance(v, (int, float)) or v is None}
    if scalars:
        parts.append("<h2>Test metrics</h2>" + table([scalars]))
    ev = report.get("evaluation") or {}
    plots = []
    roc = ev.get("roc_curve")
    if roc:
        plots.append(line_chart(f"ROC curve (AUC {roc.get('auc', 0):.4f})", [("ROC", roc["fpr"], roc["tpr"])], "false positive rate",
                                 "true positive rate", diagonal=True))
    pr = ev.get("pr_curve")
    if pr:
        rate = pr.get("positive_rate")
        plots.append(line_chart(f"Precision-recall (AP {pr.get('average_precision', 0):.4f})", [("PR", pr["recall"], pr["precision"])],
                                "recall", "precision", unit_square=True,
                                hlines=[] if rate is None else [(rate, f"no skill: {axis_number(rate)}", "baseline")]))
    sample = ev.get("regression_sample") or {}
    if sample.get("actual"):
        actual, predicted = sample["actual"], sample["predicted"]
        plots.append(scatter("Predicted vs actual (test)", actual, predicted, "actual", "predicted", "diagonal"))
        plots.append(scatter("Residuals (test)", predicted, [a - p for a, p in zip(actual, predicted)], "predicted",
                              "actual − predicted", "zero"))
    history = ev.get("history") or {}
    rounds = history.get("round") or []
    for key, values in history.items():
        if key != "round" and key.startswith("valid"):
            plots.append(line_chart(f"training: {key}", [(key, rounds, values)], "boosting round", key))
    if plots:
        parts.append("<h2>Curves</h2><div class=row>" + "".join(plots) + "</div>")
    if test.get("confusion_matrix"):
        parts.append(_confusion(test["confusion_matrix"], [str(c) for c in ev.get("classes", [])] or ["0", "1"]))
    importance = ev.get("importance") or {}
    if importance:
        top = sorted(importance.items(), key=lambda kv: -kv[1])[:25]
        parts.append("<h2>Feature importance (gain)</h2>" + bar_chart("gain", top))
    slices = (report.get("metrics") or {}).get("slices") or {}
    for column, values in slices.items():
        rows = [{"value": v, **{k: m.get(k) for k in m if not isinstance(m.get(k), (list, dict))}} for v, m in values.items()]
        parts.append(f"<h2>Slices by {esc(column)}</h2>" + table(rows))
    cv = ev.get("cross_validation") or {}
    if cv:
        parts.append(f"<h2>Cross-validation ({cv['k']} folds, {cv['concurrency']} at once)</h2>")
        parts.append(table([{"metric": k, "mean": m["mean"], "std": m["std"]} for k, m in cv["metrics"].items()]))
        parts.append(table([{"fold": f["fold"], "best_iteration": f["best_iteration"], **f["metrics"]} for f in cv["folds"]]))
    trials = ev.get("trials") or []
    if trials:
        parts.append("<h2>Tuning trials</h2>" + table(trials))
    durations = report.get("durations_s") or {}
    parts.append("<h2>Seconds per stage</h2>" + table([durations]))
    return page(f"raypipe {report.get('run_id', '')}", parts)
