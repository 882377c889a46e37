"""Inline SVG charts for the view: no library, nothing loaded from anywhere.

Each chart is one ``<svg>`` string with a ``viewBox`` (it scales to its container's
width), a text title for screen readers and ``<title>`` tooltips on every bar or point.
Colour is never the only carrier: legends name the series, drifted points are filled
and larger, the threshold is a labelled dashed line.

>>> svg = distribution_chart({"kind": "categorical", "labels": ["a", "b", "(missing)"],
...                           "reference": [5, 5, 0], "current": [9, 1, 0], "edges": None})
>>> svg.startswith("<svg") and "reference" in svg and "current" in svg
True
"""

from __future__ import annotations

import math
from html import escape

__all__ = ["fmt", "distribution_chart", "history_chart", "MAX_CATEGORIES", "MIN_LEVEL", "MAX_LEVEL"]

#: categories drawn per feature (largest share first); the rest are summed into one bar
MAX_CATEGORIES = 15
_W = 480  # viewBox width; the chart scales to its container
_REF = "#9aa5b1"
_CUR = "#1f6fb2"
_BAD = "#c0392b"


def fmt(value: float | None, digits: int = 4) -> str:
    """A short number for people: 4 significant digits, ``—`` for none."""
    if value is None:
        return "—"
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def _svg(height: float, label: str, body: list[str]) -> str:
    return (f'<svg class="chart" viewBox="0 0 {_W} {height:.0f}" role="img" aria-label="{escape(label)}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>{"".join(body)}</svg>')


def _legend(y: float, current_colour: str) -> list[str]:
    return [f'<rect x="8" y="{y - 9}" width="12" height="10" fill="{_REF}"/>',
            f'<text x="24" y="{y}" class="lg">reference</text>',
            f'<rect x="100" y="{y - 9}" width="12" height="10" fill="{current_colour}"/>',
            f'<text x="116" y="{y}" class="lg">current</text>']


def _numeric_labels(edges: list[float]) -> list[str]:
    inner = [fmt(e, 3) for e in edges]
    return [f"< {inner[0]}"] + [f"[{a}, {b})" for a, b in zip(inner, inner[1:])] + [f"≥ {inner[-1]}"] \
        if inner else ["all values"]


def distribution_chart(dist: dict, drifted: bool = False) -> str:
    """Reference and current shares per bin or category, overlaid; missing values last."""
    colour = _BAD if drifted else _CUR
    if dist["kind"] == "categorical":
        return _category_chart(dist, colour)
    ref, cur = _shares(dist["reference"]), _shares(dist["current"])
    labels = _numeric_labels(dist["edges"] or []) + ["missing"]
    n = len(ref)
    top, bottom, left, gap = 22, 34, 8, 14  # the missing bar sits apart, after a gap
    plot_w = _W - left - 8 - gap
    step = plot_w / n
    height = 150
    plot_h = height - top - bottom
    peak = max(max(ref), max(cur), 1e-9)
    body = _legend(13, colour)
    body.append(f'<text x="{_W - 8}" y="13" class="lg" text-anchor="end">share of rows, max {peak:.1%}</text>')
    for i, (r, c, label) in enumerate(zip(ref, cur, labels)):
        x = left + i * step + (gap if i == n - 1 else 0)
        hr, hc = r / peak * plot_h, c / peak * plot_h
        tip = escape(f"{label}: reference {r:.1%}, current {c:.1%}")
        body.append(f'<g><title>{tip}</title>'
                    f'<rect x="{x + 0.5:.1f}" y="{top + plot_h - hr:.1f}" width="{max(step - 1, 1):.1f}" '
                    f'height="{hr:.1f}" fill="{_REF}"/>'
                    f'<rect x="{x + step * 0.25:.1f}" y="{top + plot_h - hc:.1f}" width="{max(step * 0.5, 1):.1f}" '
                    f'height="{hc:.1f}" fill="{colour}"/></g>')
    base = top + plot_h
    body.append(f'<line x1="{left}" y1="{base}" x2="{_W - 8}" y2="{base}" class="axis"/>')
    edges = dist["edges"] or []
    if edges:
        for k in sorted({0, len(edges) // 2, len(edges) - 1}):
            x = left + (k + 1) * step
            body.append(f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}" class="axis"/>'
                        f'<text x="{x:.1f}" y="{base + 15}" class="tick" text-anchor="middle">'
                        f'{fmt(edges[k], 3)}</text>')
    body.append(f'<text x="{left + (n - 0.5) * step + gap:.1f}" y="{base + 28}" class="tick" '
                f'text-anchor="middle">missing</text>')
    body.append(f'<text x="{left}" y="{base + 28}" class="tick">reference quantile bins</text>')
    return _svg(height, "reference and current distribution", body)


def _category_chart(dist: dict, colour: str) -> str:
    labels = list(dist["labels"])
    ref, cur = _shares(dist["reference"]), _shares(dist["current"])
    rows = list(zip(labels, ref, cur))
    named, tail = rows[:-2], rows[-2:]  # __other__ and missing are always drawn, last
    if len(named) > MAX_CATEGORIES:
        named.sort(key=lambda t: -max(t[1], t[2]))
        rest = named[MAX_CATEGORIES:]
        named = named[:MAX_CATEGORIES] + [(f"{len(rest)} more", sum(t[1] for t in rest), sum(t[2] for t in rest))]
    rows = named + tail
    label_w, row_h, top = 130, 22, 24
    bar_w = _W - label_w - 60
    peak = max(max(r[1] for r in rows), max(r[2] for r in rows), 1e-9)
    body = _legend(13, colour)
    for i, (label, r, c) in enumerate(rows):
        y = top + i * row_h
        short = label if len(label) <= 18 else label[:17] + "…"
        tip = escape(f"{label}: reference {r:.1%}, current {c:.1%}")
        body.append(f'<g><title>{tip}</title>'
                    f'<text x="{label_w - 6}" y="{y + 14}" class="tick" text-anchor="end">{escape(short)}</text>'
                    f'<rect x="{label_w}" y="{y + 2}" width="{r / peak * bar_w:.1f}" height="8" fill="{_REF}"/>'
                    f'<rect x="{label_w}" y="{y + 10}" width="{c / peak * bar_w:.1f}" height="8" fill="{colour}"/>'
                    f'<text x="{label_w + max(r, c) / peak * bar_w + 4:.1f}" y="{y + 16}" class="tick">'
                    f'{c:.0%}</text></g>')
    return _svg(top + len(rows) * row_h + 6, "reference and current share per category", body)


#: the level axis is logarithmic, from 1/100 to 10 times the threshold (values beyond sit on the edge)
MIN_LEVEL, MAX_LEVEL = 0.01, 10.0


def _tip(i: int, n: int, point: dict) -> str:
    parts = [f"window {i + 1} of {n}: {point.get('method', '')}"]
    if point.get("pvalue") is not None:
        parts.append(f"p-value {fmt(point['pvalue'])} (drift under {fmt(point.get('threshold'))})")
    else:
        parts.append(f"score {fmt(point.get('score'))} (drift from {fmt(point.get('threshold'))})")
    if point.get("detected"):
        parts.append("DRIFT")
    if not point.get("ok", True):
        parts.append("too few rows to judge")
    return ", ".join(parts)


def history_chart(history: list[dict], method: str = "") -> str:
    """Each kept window's deciding result relative to its threshold (``level``: 1 on the dashed
    line, drift above it; log scale), so windows judged by different methods or thresholds
    share one axis; the tooltips give the raw score or p-value."""
    levels = [None if p.get("level") is None else math.log10(min(MAX_LEVEL, max(MIN_LEVEL, p["level"])))
              for p in history]
    known = [v for v in levels if v is not None]
    height, top, bottom, left, right = 120, 18, 22, 34, 10
    plot_h, plot_w = height - top - bottom, _W - left - right
    lo, hi = math.floor(min([-1.0] + known)), max([0.5] + known)  # lo a power of ten: short labels
    n = len(history)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + plot_w * (i + 0.5) / max(n, 1), top + plot_h - (v - lo) / (hi - lo) * plot_h

    y1 = xy(0, 0.0)[1]
    body = [f'<text x="{left}" y="11" class="lg">score vs threshold per window, log scale '
            f'(above the dashed line: drift)</text>',
            f'<line x1="{left}" y1="{top + plot_h}" x2="{_W - right}" y2="{top + plot_h}" class="axis"/>',
            f'<line x1="{left}" y1="{y1:.1f}" x2="{_W - right}" y2="{y1:.1f}" class="threshold"/>',
            f'<text x="{left - 4}" y="{y1 + 3:.1f}" class="tick" text-anchor="end">×1</text>',
            f'<text x="{left - 4}" y="{top + plot_h}" class="tick" text-anchor="end">×{fmt(10 ** lo, 2)}</text>',
            f'<text x="{left - 4}" y="{top + 6}" class="tick" text-anchor="end">×{fmt(10 ** hi, 2)}</text>']
    pts = [(i, v) for i, v in enumerate(levels) if v is not None]
    if len(pts) > 1:
        body.append('<polyline class="score" points="'
                    + " ".join("{:.1f},{:.1f}".format(*xy(i, v)) for i, v in pts) + '"/>')
    for i, v in pts:
        x, y = xy(i, v)
        hit = history[i].get("detected")
        kind = "pt hit" if hit else ("pt" if history[i].get("ok", True) else "pt na")  # na: too few rows
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{4.5 if hit else 3}" class="{kind}">'
                    f'<title>{escape(_tip(i, n, history[i]))}</title></circle>')
    body.append(f'<text x="{left}" y="{height - 6}" class="tick">oldest</text>'
                f'<text x="{_W - right}" y="{height - 6}" class="tick" text-anchor="end">'
                f'latest ({n} window{"s" if n != 1 else ""})</text>')
    return _svg(height, f"{method} score relative to the threshold across the kept windows", body)
