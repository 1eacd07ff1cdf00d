"""Inline-SVG charts and HTML pieces shared by raypipe's self-contained pages: the run
report (:mod:`raypipe.evaluate.report`) and the monitoring page (:mod:`raypipe.monitor.page`).

A page drawn with these opens in any browser, offline, and needs no plotting dependency:
each chart is a ``<figure>`` holding one ``<svg role="img" aria-label=TITLE>`` of a few
polylines, rectangles and labels. Pure (no Ray, no numpy).

>>> svg = line_chart("loss", [("", [0, 1, 2], [3.0, 2.0, 1.5])], "round", "loss")
>>> svg.count("<polyline")
1
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

__all__ = ["PALETTE", "STYLE", "esc", "fmt", "axis_number", "line_chart", "scatter", "bar_chart", "heatmap", "table", "page"]

_W, _H, _PAD = 380, 260, 36
_LEFT = 58  # room for y-axis labels such as 0.0588 or 12,345
_LEGEND = 150  # width added on the right of a chart with several series

#: Series colours (matplotlib's tab10), in order.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")

#: The stylesheet of every raypipe page.
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}figure{display:inline-block;margin:.5em}"
    ".row{display:flex;flex-wrap:wrap}.err{color:#b00}.ok{color:#060}.muted{color:#777}"
)

Series = tuple[str, Sequence[Any], Sequence[Any]]


def esc(value: Any) -> str:
    """``value`` as HTML text."""
    return html.escape(str(value))


def fmt(value: Any) -> str:
    """A table cell: ``–`` for None, words for booleans, 4 decimals, thousands separators."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "✔ yes" if value else "✘ no"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return esc(value)


def axis_number(v: float) -> str:
    """An axis label: short, never cut (``0.0588``, ``1.2e+04``)."""
    return f"{v:.4g}"


def _frame(title: str, x0: float, x1: float, y0: float, y1: float, xlabel: str, ylabel: str, inner: str,
           width: int = _W) -> str:
    # The plot area is the same with a legend: the legend takes the extra width on the right.
    return (
        f'<figure><figcaption>{esc(title)}</figcaption><svg width="{width}" height="{_H}" role="img" aria-label="{esc(title)}">'
        f'<rect x="{_LEFT}" y="{_PAD}" width="{_W - _LEFT - _PAD}" height="{_H - 2 * _PAD}" fill="none" stroke="#999"/>{inner}'
        f'<text x="{(_W + _LEFT - _PAD) / 2}" y="{_H - 6}" text-anchor="middle" font-size="11">{esc(xlabel)}</text>'
        f'<text x="12" y="{_H / 2}" font-size="11" transform="rotate(-90 12 {_H / 2})" text-anchor="middle">{esc(ylabel)}</text>'
        f'<text x="{_LEFT}" y="{_H - _PAD + 14}" font-size="10">{axis_number(x0)}</text><text x="{_W - _PAD}" y="{_H - _PAD + 14}" font-size="10" text-anchor="end">{axis_number(x1)}</text>'
        f'<text x="{_LEFT - 4}" y="{_H - _PAD}" font-size="10" text-anchor="end">{axis_number(y0)}</text><text x="{_LEFT - 4}" y="{_PAD + 8}" font-size="10" text-anchor="end">{axis_number(y1)}</text>'
        "</svg></figure>"
    )


def _scales(x0: float, x1: float, y0: float, y1: float):
    sx = lambda x: _LEFT + (x - x0) / ((x1 - x0) or 1) * (_W - _LEFT - _PAD)  # noqa: E731
    sy = lambda y: _H - _PAD - (y - y0) / ((y1 - y0) or 1) * (_H - 2 * _PAD)  # noqa: E731
    return sx, sy


def line_chart(title: str, series: Sequence[Series], xlabel: str, ylabel: str, *, diagonal: bool = False,
               unit_square: bool = False, hlines: Sequence[tuple[float, str, str]] = (),
               vlines: Sequence[tuple[float, str]] = ()) -> str:
    """One polyline per series ``(name, xs, ys)``, a legend when there are several.

    Args:
        diagonal: draw y = x on the unit square (ROC's no-skill line).
        unit_square: fix both axes to [0, 1].
        hlines: horizontal reference lines ``(y, label, css class)`` (a PR baseline, a
            drift threshold, a metric's bounds); the y axis stretches to show them.
        vlines: vertical markers ``(x, label)`` (a retraining), inside the x range only.

    Returns "" when no series has a point (None values are skipped).
    """
    lines = [(name, [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]) for name, xs, ys in series]
    lines = [(name, pts) for name, pts in lines if pts]
    if not lines:
        return ""
    every = [p for _, pts in lines for p in pts]
    x0, x1 = min(p[0] for p in every), max(p[0] for p in every)
    y0, y1 = min(p[1] for p in every), max(p[1] for p in every)
    if diagonal or unit_square:
        x0, x1, y0, y1 = 0.0, 1.0, 0.0, 1.0
    else:
        y0, y1 = min([y0, *(h[0] for h in hlines)]), max([y1, *(h[0] for h in hlines)])
    sx, sy = _scales(x0, x1, y0, y1)
    inner = ""
    if diagonal:
        inner += f'<line x1="{sx(0):.1f}" y1="{sy(0):.1f}" x2="{sx(1):.1f}" y2="{sy(1):.1f}" stroke="#bbb" stroke-dasharray="4"/>'
    for y, label, css in hlines:
        inner += (f'<line class="{esc(css)}" x1="{sx(x0):.1f}" y1="{sy(y):.1f}" x2="{sx(x1):.1f}" y2="{sy(y):.1f}" '
                  f'stroke="#bbb" stroke-dasharray="4"/><text x="{sx(x1) - 4:.1f}" y="{sy(y) - 4:.1f}" font-size="10" '
                  f'text-anchor="end" fill="#888">{esc(label)}</text>')
    for x, label in vlines:
        if x0 <= x <= x1:
            inner += (f'<line class="marker" x1="{sx(x):.1f}" y1="{_PAD}" x2="{sx(x):.1f}" y2="{_H - _PAD}" stroke="#2ca02c" '
                      f'stroke-dasharray="2 3"><title>{esc(label)}</title></line>'
                      f'<text x="{sx(x) + 2:.1f}" y="{_PAD + 10}" font-size="9" fill="#2ca02c">{esc(label)}</text>')
    legend = len(lines) > 1
    for i, (name, pts) in enumerate(lines):
        color = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        inner += f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"><title>{esc(name)}</title></polyline>'
        if legend:
            ly = _PAD + 4 + i * 15
            inner += (f'<rect x="{_W + 4}" y="{ly}" width="10" height="10" fill="{color}"/>'
                      f'<text x="{_W + 18}" y="{ly + 9}" font-size="11">{esc(name)}</text>')
    return _frame(title, x0, x1, y0, y1, xlabel, ylabel, inner, _W + _LEGEND if legend else _W)


def scatter(title: str, xs: list[float], ys: list[float], xlabel: str, ylabel: str, line: str) -> str:
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


def bar_chart(title: str, items: list[tuple[str, float]]) -> str:
    """Horizontal bars ``(label, value)``, longest = largest value; "" when empty."""
    if not items:
        return ""
    top = max(v for _, v in items) or 1.0
    row, label_w, width = 18, 170, 520
    bars = "".join(
        f'<text x="{label_w - 6}" y="{i * row + 13}" font-size="11" text-anchor="end">{esc(name)}</text>'
        f'<rect x="{label_w}" y="{i * row + 3}" width="{(width - label_w - 60) * v / top:.1f}" height="{row - 6}" fill="#1f77b4"/>'
        f'<text x="{label_w + (width - label_w - 60) * v / top + 4:.1f}" y="{i * row + 13}" font-size="10">{v:.4g}</text>'
        for i, (name, v) in enumerate(items)
    )
    return (f'<figure><figcaption>{esc(title)}</figcaption><svg width="{width}" height="{len(items) * row + 6}" role="img" '
            f'aria-label="{esc(title)}">{bars}</svg></figure>')


def heatmap(title: str, rows: Sequence[str], columns: Sequence[Any], values: Sequence[Sequence[float | None]],
            threshold: float, xlabel: str) -> str:
    """A grid of ``values[row][column]``: white at 0, red at twice ``threshold`` and above;
    a cell over ``threshold`` gets a dark border; each cell's tooltip says its value.

    Used for drift per feature (rows) over the windows (columns); "" when empty.
    """
    if not rows or not columns:
        return ""
    label_w, cell_h = 130, 16
    cell_w = max(4.0, min(24.0, 640 / len(columns)))
    width = max(int(label_w + cell_w * len(columns) + 10), 430)  # room for the colour key below
    height = _PAD + cell_h * len(rows) + 30
    top = 2 * threshold if threshold > 0 else max((v for r in values for v in r if v is not None), default=1.0) or 1.0
    cells = []
    for i, name in enumerate(rows):
        y = _PAD + i * cell_h
        cells.append(f'<text x="{label_w - 6}" y="{y + 12}" font-size="11" text-anchor="end">{esc(name)}</text>')
        for j, v in enumerate(values[i]):
            x = label_w + j * cell_w
            if v is None:
                fill, edge = "#eee", ""
            else:
                level = min(1.0, max(0.0, v / top))
                fill = f"rgb(255,{255 - int(200 * level)},{255 - int(220 * level)})"
                edge = ' stroke="#600" stroke-width="1"' if v > threshold else ""
            tip = f"{name}, {xlabel} {columns[j]}: {'–' if v is None else axis_number(v)}"
            cells.append(f'<rect x="{x:.1f}" y="{y}" width="{cell_w - 1:.1f}" height="{cell_h - 1}" fill="{fill}"{edge}>'
                         f"<title>{esc(tip)}</title></rect>")
    axis = (f'<text x="{label_w}" y="{_PAD - 6}" font-size="10">{esc(columns[0])}</text>'
            f'<text x="{label_w + cell_w * len(columns):.1f}" y="{_PAD - 6}" font-size="10" text-anchor="end">{esc(columns[-1])}</text>'
            f'<text x="{label_w}" y="{height - 8}" font-size="11">{esc(xlabel)}; '
            f'white 0, red ≥ {axis_number(top)}, outlined &gt; {axis_number(threshold)}</text>')
    return (f'<figure><figcaption>{esc(title)}</figcaption><svg width="{width}" height="{height}" role="img" '
            f'aria-label="{esc(title)}">{"".join(cells)}{axis}</svg></figure>')


def table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """An HTML table of ``rows`` (cells through :func:`fmt`); ``<p>none</p>`` when empty."""
    if not rows:
        return "<p>none</p>"
    columns = columns or list(rows[0])
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, parts: Sequence[str]) -> str:
    """A standalone HTML document: ``parts`` (already HTML) under :data:`STYLE`."""
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{esc(title)}</title><style>{STYLE}</style></head>"
            f"<body>{''.join(parts)}</body></html>")
