"""The human-readable run report: one self-contained HTML file beside report.json.

Plots are inline SVG drawn here (a handful of polylines and rectangles), so the
report opens in any browser, offline, and needs no plotting dependency.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["render_html"]

_W, _H, _PAD = 380, 260, 36
_LEFT = 58  # room for y-axis labels such as 0.0588 or 12,345


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "✔ yes" if value else "✘ no"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return _esc(value)


def _num(v: float) -> str:
    """An axis label: short, never cut (``0.0588``, ``1.2e+04``)."""
    return f"{v:.4g}"


def _frame(title: str, x0: float, x1: float, y0: float, y1: float, xlabel: str, ylabel: str, inner: str) -> str:
    return (
        f'<figure><figcaption>{_esc(title)}</figcaption><svg width="{_W}" height="{_H}" role="img" aria-label="{_esc(title)}">'
        f'<rect x="{_LEFT}" y="{_PAD}" width="{_W - _LEFT - _PAD}" height="{_H - 2 * _PAD}" fill="none" stroke="#999"/>{inner}'
        f'<text x="{(_W + _LEFT - _PAD) / 2}" y="{_H - 6}" text-anchor="middle" font-size="11">{_esc(xlabel)}</text>'
        f'<text x="12" y="{_H / 2}" font-size="11" transform="rotate(-90 12 {_H / 2})" text-anchor="middle">{_esc(ylabel)}</text>'
        f'<text x="{_LEFT}" y="{_H - _PAD + 14}" font-size="10">{_num(x0)}</text><text x="{_W - _PAD}" y="{_H - _PAD + 14}" font-size="10" text-anchor="end">{_num(x1)}</text>'
        f'<text x="{_LEFT - 4}" y="{_H - _PAD}" font-size="10" text-anchor="end">{_num(y0)}</text><text x="{_LEFT - 4}" y="{_PAD + 8}" font-size="10" text-anchor="end">{_num(y1)}</text>'
        "</svg></figure>"
    )


def _scales(x0: float, x1: float, y0: float, y1: float):
    sx = lambda x: _LEFT + (x - x0) / ((x1 - x0) or 1) * (_W - _LEFT - _PAD)  # noqa: E731
    sy = lambda y: _H - _PAD - (y - y0) / ((y1 - y0) or 1) * (_H - 2 * _PAD)  # noqa: E731
    return sx, sy


def _line_chart(title: str, xs: list[float], ys: list[float], xlabel: str, ylabel: str, diagonal: bool = False,
                baseline: float | None = None) -> str:
    """A polyline; ``diagonal`` draws y = x on the unit square (ROC's no-skill line),
    ``baseline`` a horizontal no-skill line at that y (PR: the positive rate)."""
    pts = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if diagonal or baseline is not None:
        x0, x1, y0, y1 = 0.0, 1.0, 0.0, 1.0
    sx, sy = _scales(x0, x1, y0, y1)
    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
    extra = ""
    if diagonal:
        extra = f'<line x1="{sx(0):.1f}" y1="{sy(0):.1f}" x2="{sx(1):.1f}" y2="{sy(1):.1f}" stroke="#bbb" stroke-dasharray="4"/>'
    if baseline is not None:
        extra = (f'<line class="baseline" x1="{sx(0):.1f}" y1="{sy(baseline):.1f}" x2="{sx(1):.1f}" y2="{sy(baseline):.1f}" '
                 f'stroke="#bbb" stroke-dasharray="4"/><text x="{sx(1) - 4:.1f}" y="{sy(baseline) - 4:.1f}" font-size="10" '
                 f'text-anchor="end" fill="#888">no skill: {_num(baseline)}</text>')
    inner = extra + f'<polyline points="{path}" fill="none" stroke="#1f77b4" stroke-width="2"/>'
    return _frame(title, x0, x1, y0, y1, xlabel, ylabel, inner)


def _scatter(title: str, xs: list[float], ys: list[float], xlabel: str, ylabel: str, line: str) -> str:
    """Points, with ``line`` = "diagonal" (y = x: predicted vs actual) or "zero" (y = 0: residuals)."""
    if not xs:
        return ""
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if line == "diagonal":
        x0 = y0 = min(x0, y0)
        x1 = y1 = max(x1, y1)
    sx, sy = _scales(x0, x1, y0, y1)
    ref = (f'<line x1="{sx(x0):.1f}" y1="{sy(x0):.1f}" x2="{sx(x1):.1f}" y2="{sy(x1):.1f}" stroke="#d62728" stroke-dasharray="4"/>'
           if line == "diagonal" else
           f'<line x1="{sx(x0):.1f}" y1="{sy(0):.1f}" x2="{sx(x1):.1f}" y2="{sy(0):.1f}" stroke="#d62728" stroke-dasharray="4"/>'
           if y0 <= 0 <= y1 else "")
    dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="1.6" fill="#1f77b4" fill-opacity="0.45"/>' for x, y in zip(xs, ys))
    return _frame(title, x0, x1, y0, y1, xlabel, ylabel, dots + ref)


def _bar_chart(title: str, items: list[tuple[str, float]]) -> str:
    if not items:
        return ""
    top = max(v for _, v in items) or 1.0
    row, label_w, width = 18, 170, 520
    bars = "".join(
        f'<text x="{label_w - 6}" y="{i * row + 13}" font-size="11" text-anchor="end">{_esc(name)}</text>'
        f'<rect x="{label_w}" y="{i * row + 3}" width="{(width - label_w - 60) * v / top:.1f}" height="{row - 6}" fill="#1f77b4"/>'
        f'<text x="{label_w + (width - label_w - 60) * v / top + 4:.1f}" y="{i * row + 13}" font-size="10">{v:.4g}</text>'
        for i, (name, v) in enumerate(items)
    )
    return f'<figure><figcaption>{_esc(title)}</figcaption><svg width="{width}" height="{len(items) * row + 6}">{bars}</svg></figure>'


def _confusion(matrix: list[list[int]], labels: list[str]) -> str:
    if not matrix:
        return ""
    peak = max(max(r) for r in matrix) or 1
    head = "".join(f"<th>pred {_esc(lbl)}</th>" for lbl in labels)
    body = "".join(
        f"<tr><th>true {_esc(labels[i])}</th>"
        + "".join(f'<td style="background:rgba(31,119,180,{0.1 + 0.8 * v / peak:.2f})">{v:,}</td>' for v in row)
        + "</tr>"
        for i, row in enumerate(matrix)
    )
    return f"<h3>Confusion matrix</h3><table class=cm><tr><th></th>{head}</tr>{body}</table>"


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p>none</p>"
    columns = columns or list(rows[0])
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: dict[str, Any]) -> str:
    """Render a run report dict (the content of report.json) as a standalone page."""
    parts: list[str] = []
    status = report.get("status", "?")
    parts.append(f"<h1>raypipe run {_esc(report.get('run_id', ''))}</h1><p>status: <b>{_esc(status)}</b></p>")
    if report.get("error"):
        parts.append(f"<p class=err>{_esc(report['error'].get('message'))}</p>")
    model = report.get("model") or {}
    if model:
        parts.append(f"<p>model <b>{_esc(model.get('name'))}</b> version <b>{_esc(model.get('version'))}</b>; promoted: <b>{_fmt(bool(report.get('promoted')))}</b></p>")
    parts.append("<h2>Rows</h2>" + _table([report.get("rows", {})]))
    by_rule = (report.get("quarantine") or {}).get("by_rule") or {}
    if by_rule:
        parts.append("<h3>Quarantined by rule</h3>" + _table([{"rule": k, "rows": v} for k, v in by_rule.items()]))
    gate = report.get("gate")
    if gate:
        parts.append(f"<h2>Gate: {'passed' if gate.get('passed') else 'rejected'}</h2>")
        parts.append(_table([{k: r.get(k) for k in ("check", "metric", "value", "threshold", "champion", "passed")} for r in gate.get("reasons", [])]))
    test = (report.get("metrics") or {}).get("test") or {}
    scalars = {k: v for k, v in test.items() if isinstance(v, (int, float)) or v is None}
    if scalars:
        parts.append("<h2>Test metrics</h2>" + _table([scalars]))
    ev = report.get("evaluation") or {}
    plots = []
    roc = ev.get("roc_curve")
    if roc:
        plots.append(_line_chart(f"ROC curve (AUC {roc.get('auc', 0):.4f})", roc["fpr"], roc["tpr"], "false positive rate", "true positive rate", diagonal=True))
    pr = ev.get("pr_curve")
    if pr:
        plots.append(_line_chart(f"Precision-recall (AP {pr.get('average_precision', 0):.4f})", pr["recall"], pr["precision"], "recall",
                                 "precision", baseline=pr.get("positive_rate")))
    sample = ev.get("regression_sample") or {}
    if sample.get("actual"):
        actual, predicted = sample["actual"], sample["predicted"]
        plots.append(_scatter("Predicted vs actual (test)", actual, predicted, "actual", "predicted", "diagonal"))
        plots.append(_scatter("Residuals (test)", predicted, [a - p for a, p in zip(actual, predicted)], "predicted",
                              "actual − predicted", "zero"))
    history = ev.get("history") or {}
    rounds = history.get("round") or []
    for key, values in history.items():
        if key != "round" and key.startswith("valid"):
            plots.append(_line_chart(f"training: {key}", rounds, values, "boosting round", key))
    if plots:
        parts.append("<h2>Curves</h2><div class=row>" + "".join(plots) + "</div>")
    if test.get("confusion_matrix"):
        parts.append(_confusion(test["confusion_matrix"], [str(c) for c in ev.get("classes", [])] or ["0", "1"]))
    importance = ev.get("importance") or {}
    if importance:
        top = sorted(importance.items(), key=lambda kv: -kv[1])[:25]
        parts.append("<h2>Feature importance (gain)</h2>" + _bar_chart("gain", top))
    slices = (report.get("metrics") or {}).get("slices") or {}
    for column, values in slices.items():
        rows = [{"value": v, **{k: m.get(k) for k in m if not isinstance(m.get(k), (list, dict))}} for v, m in values.items()]
        parts.append(f"<h2>Slices by {_esc(column)}</h2>" + _table(rows))
    cv = ev.get("cross_validation") or {}
    if cv:
        parts.append(f"<h2>Cross-validation ({cv['k']} folds, {cv['concurrency']} at once)</h2>")
        parts.append(_table([{"metric": k, "mean": m["mean"], "std": m["std"]} for k, m in cv["metrics"].items()]))
        parts.append(_table([{"fold": f["fold"], "best_iteration": f["best_iteration"], **f["metrics"]} for f in cv["folds"]]))
    trials = ev.get("trials") or []
    if trials:
        parts.append("<h2>Tuning trials</h2>" + _table(trials))
    durations = report.get("durations_s") or {}
    parts.append("<h2>Seconds per stage</h2>" + _table([durations]))
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}figure{display:inline-block;margin:.5em}"
        ".row{display:flex;flex-wrap:wrap}.err{color:#b00}"
    )
    return f"<!doctype html><html><head><meta charset=utf-8><title>raypipe {_esc(report.get('run_id', ''))}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"
