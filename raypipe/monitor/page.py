"""The monitoring page: the monitor's report (``GET /monitor``) as one self-contained
HTML document, plotted with the run report's charts (:mod:`raypipe.evaluate.charts`).

It shows drift per feature over the windows (a heatmap and the features that crossed the
threshold), the live metric against the bounds of ``retrain.on_performance``, the
data-quality rates, the alerts, and the retraining history with each gate's decision;
retrainings are marked on the plots at the window that triggered them. Served by
``GET /monitor`` to a browser (``Accept: text/html``) and written by ``raypipe monitor
report``. Pure (no Ray): the page is a function of the report dict.

>>> html = render_monitor_html({"model": {"name": "m", "version": 1}, "monitoring": False})
>>> "monitoring is off" in html
True
"""

from __future__ import annotations

import time
from typing import Any

from raypipe.evaluate.charts import bar_chart, esc, fmt, heatmap, line_chart, page, table

__all__ = ["render_monitor_html", "prefers_html"]

_DRIFT_LINES = 8  # features drawn as lines (the heatmap shows them all)
_QUALITY = (("null_rate", "null"), ("out_of_range_rate", "out of range"), ("unseen_rate", "unseen category"))


def _utc(ts: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if isinstance(ts, (int, float)) else "–"


def _bound(value: Any) -> str:
    return "–" if value is None else f"{value:g}"


def _highest(values: dict[str, Any] | None) -> float | None:
    numbers = [v for v in (values or {}).values() if isinstance(v, (int, float))]
    return max(numbers) if numbers else None


def _retrain_marks(body: dict[str, Any]) -> list[tuple[float, str]]:
    """A marker per finished retraining, at the window that triggered it."""
    marks = []
    for h in (body.get("retrain") or {}).get("history") or []:
        if isinstance(h.get("window"), (int, float)):
            version = (h.get("model") or {}).get("version")
            marks.append((h["window"], f"v{version} {h.get('outcome')}" if version else str(h.get("outcome"))))
    return marks


def _drift_section(body: dict[str, Any], history: list[dict[str, Any]], marks: list[tuple[float, str]]) -> str:
    drift = body.get("drift") or {}
    threshold = float(drift.get("threshold") or 0.0)
    method = drift.get("method") or "drift"
    last = body.get("last_window") or {}
    features = list((history[-1].get("drift") or {}) if history else (last.get("features") or {}))
    parts = [f"<h2>Drift per feature ({esc(method)}, threshold {threshold:g})</h2>"]
    if history:
        windows = [h["window"] for h in history]
        grid = [[(h.get("drift") or {}).get(f) for h in history] for f in features]
        parts.append(heatmap(f"{method} per feature and window", features, windows, grid, threshold, "window"))
        peaks = {f: max((v for v in row if v is not None), default=None) for f, row in zip(features, grid)}
        shown = sorted((f for f in features if peaks[f] is not None), key=lambda f: -peaks[f])[:_DRIFT_LINES]
        series = [(f, windows, [(h.get("drift") or {}).get(f) for h in history]) for f in shown]
        parts.append(line_chart(f"{method} of the {len(shown)} most drifting features", series, "window", method,
                                hlines=[(threshold, f"threshold {threshold:g}", "threshold")], vlines=marks))
    elif last.get("features"):
        scores = [(f, d["score"]) for f, d in last["features"].items() if d.get("score") is not None]
        parts.append(bar_chart(f"{method} per feature, window #{last.get('window')}", scores))
    else:
        parts.append("<p class=muted>no window closed yet</p>")
    consecutive, after = drift.get("consecutive_windows", 0), drift.get("alert_after", 1)
    state = "<b class=err>ALERTING</b>" if consecutive >= after else "<b class=ok>ok</b>"
    parts.append(f"<p>drift state: {state} ({consecutive} drifting window(s) in a row; an alert after {after})</p>")
    return "".join(parts)


def _performance_section(body: dict[str, Any], history: list[dict[str, Any]], marks: list[tuple[float, str]]) -> str:
    perf = body.get("performance") or {}
    last = (body.get("last_window") or {}).get("live_metrics") or {}
    metric = perf.get("metric")
    if not metric or not any(metric in (h.get("live_metrics") or {}) for h in history):
        known = [k for h in history for k, v in (h.get("live_metrics") or {}).items() if isinstance(v, (int, float))]
        metric = known[0] if known else next((k for k, v in last.items() if isinstance(v, (int, float))), None)
    parts = ["<h2>Live performance</h2>"]
    if metric is None:
        return "".join(parts) + "<p class=muted>no labeled window yet (labels come through POST /feedback)</p>"
    bounds = [(perf[k], f"{k} {perf[k]:g}", "bound") for k in ("min", "max")
              if perf.get("metric") == metric and isinstance(perf.get(k), (int, float))]
    if history:
        windows = [h["window"] for h in history]
        values = [(h.get("live_metrics") or {}).get(metric) for h in history]
        parts.append(line_chart(f"live {metric} per window", [(metric, windows, values)], "window", metric,
                                hlines=bounds, vlines=marks))
        parts.append(line_chart("champion version per window", [("version", windows, [h.get("champion") for h in history])],
                                "window", "version", vlines=marks))
    watched = (f"retraining when it is outside [{_bound(perf.get('min'))}, {_bound(perf.get('max'))}]" if bounds
               else "no retraining bound on it (retrain.on_performance)")
    shown = {k: v for k, v in last.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return "".join(parts) + f"<p>{esc(metric)}: {watched}</p>" + (table([shown]) if shown else "")


def _quality_section(body: dict[str, Any], history: list[dict[str, Any]]) -> str:
    parts = ["<h2>Data quality</h2>"]
    if history:
        windows = [h["window"] for h in history]
        series = [(label, windows, [_highest(h.get(key)) for h in history]) for key, label in _QUALITY]
        parts.append(line_chart("rates per window, the highest over the features", series, "window", "rate"))
    features = (body.get("last_window") or {}).get("features") or {}
    if features:
        rows = [{"feature": name, "null rate": f.get("null_rate"), "reference null rate": f.get("reference_null_rate"),
                 "out of range": f.get("out_of_range_rate"), "unseen categories": f.get("unseen_rate"),
                 "drift score": f.get("score"), "drifting": f.get("drifting")} for name, f in features.items()]
        parts.append(f"<h3>Last window (#{esc(body['last_window'].get('window'))}, {fmt(body['last_window'].get('rows'))} rows)</h3>"
                     + table(rows))
    return "".join(parts)


def _alerts_section(body: dict[str, Any]) -> str:
    alerts = body.get("alerts") or []
    parts = [f"<h2>Alerts ({len(alerts)} most recent)</h2>"]
    if not alerts:
        return "".join(parts) + "<p class=ok>none</p>"
    counts: dict[str, int] = {}
    for a in alerts:
        counts[a.get("kind", "?")] = counts.get(a.get("kind", "?"), 0) + 1
    parts.append(bar_chart("alerts by kind", sorted(counts.items())))
    parts.append(table([{"time": _utc(a.get("time")), "kind": a.get("kind"), "message": a.get("message")}
                        for a in reversed(alerts)]))
    return "".join(parts)


def _gate_cell(gate: dict[str, Any] | None) -> str:
    if not gate:
        return "–"
    head = "<b class=ok>passed</b>" if gate.get("passed") else "<b class=err>rejected</b>"
    reasons = "".join(f"<li>{'✔' if r.get('passed') else '✘'} {esc(r.get('message', ''))}</li>" for r in gate.get("reasons") or [])
    return f"{head}<ul style='text-align:left;margin:0'>{reasons}</ul>"


def _retrain_section(body: dict[str, Any]) -> str:
    rt = body.get("retrain") or {}
    history = rt.get("history") or []
    state = "running" if rt.get("running") else "idle"
    parts = [f"<h2>Retraining ({fmt(rt.get('count', 0))} done, {state})</h2>"]
    if not history:
        return "".join(parts) + "<p class=muted>no retraining yet</p>"
    rows = "".join(
        f"<tr><td>{i}</td><td>{esc(h.get('trigger'))}</td><td>{fmt(h.get('window'))}</td>"
        f"<td>{fmt((h.get('model') or {}).get('version'))}</td><td>{fmt(h.get('production_rows'))}</td>"
        f"<td class={'ok' if h.get('outcome') == 'promoted' else 'err'}>{esc(h.get('outcome'))}</td>"
        f"<td>{_gate_cell(h.get('gate'))}{'<p class=err>' + esc(h['error']) + '</p>' if h.get('error') else ''}</td>"
        f"<td>{_utc(h.get('finished_at'))}</td></tr>"
        for i, h in enumerate(history, 1)
    )
    head = "".join(f"<th>{c}</th>" for c in ("#", "trigger", "window", "version", "production rows", "outcome",
                                             "gate decision", "finished"))
    return "".join(parts) + f"<table class=retrains><tr>{head}</tr>{rows}</table>"


def prefers_html(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for HTML before JSON (a browser does; ``*/*``,
    ``application/json`` and no header get JSON).

    >>> prefers_html("text/html,application/xhtml+xml,*/*;q=0.8"), prefers_html("*/*"), prefers_html(None)
    (True, False, False)
    """
    quality: dict[str, float] = {}
    for item in (accept or "").split(","):
        media, *params = [p.strip() for p in item.split(";")]
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        quality[media.lower()] = max(q, quality.get(media.lower(), 0.0))
    html = quality.get("text/html", quality.get("text/*", 0.0))
    json = quality.get("application/json", quality.get("application/*", quality.get("*/*", 0.0)))
    return html > 0 and html > json


def render_monitor_html(body: dict[str, Any]) -> str:
    """The monitor's report (the JSON of ``GET /monitor``) as a standalone HTML page.

    Args:
        body: what ``GET /monitor`` answers: ``model``, ``monitoring`` and, when
            monitoring, the monitor actor's ``report()`` (``history`` holds the windows
            plotted; a report without it shows the last window only).

    Returns:
        The page: inline SVG plots and tables, no script, no network.
    """
    model = body.get("model") or {}
    title = f"raypipe monitor: {model.get('name')} version {model.get('version')}"
    parts = [f"<h1>{esc(title)}</h1>"]
    if not body.get("monitoring"):
        return page(title, parts + ["<p>monitoring is off for this endpoint (monitor.enabled)</p>"])
    parts.append(f"<p>{fmt(body.get('logged_rows', 0))} predictions logged, {fmt(body.get('labelled_rows', 0))} labeled, "
                 f"{fmt(body.get('windows', 0))} windows of {fmt(body.get('window_rows'))} rows</p>")
    history = [h for h in body.get("history") or [] if isinstance(h.get("window"), (int, float))]
    marks = _retrain_marks(body)
    parts += [_drift_section(body, history, marks), _performance_section(body, history, marks), _quality_section(body, history),
              _alerts_section(body), _retrain_section(body)]
    return page(title, parts)
