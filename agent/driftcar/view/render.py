"""The view document -> HTML: one renderer for the live page and the report file.

:func:`render_body` draws the content (models, features, charts, events);
:func:`render_page` wraps it in a complete, self-contained document with the CSS and
the small refresh script (package data in ``assets/``) inlined, so the file opens
anywhere and the page loads nothing from anywhere. Verdicts are text ("DRIFTED" /
"ok") with a colour beside it, never colour alone; every element a test or a script
needs carries a ``data-`` attribute (``data-feature``, ``data-verdict``, ``data-model``).
"""

from __future__ import annotations

import time
from html import escape
from importlib import resources

from driftcar.sidecar.config import format_duration
from driftcar.view.svg import distribution_chart, fmt, history_chart

__all__ = ["render_body", "render_page", "when"]

_SPECIAL = {"__prediction__": "model output (prediction)", "__multivariate__": "all features together (PCA)"}


def _asset(name: str) -> str:
    return resources.files("driftcar.view").joinpath("assets", name).read_text(encoding="utf-8")


def when(ns: int | None) -> str:
    """A UTC timestamp for people, or ``—``."""
    if not ns:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ns / 1e9))


def _e(value) -> str:
    return escape(str(value), quote=True)


def _verdict(drifted: bool) -> str:
    if drifted:
        return '<span class="verdict drifted">● DRIFTED</span>'
    return '<span class="verdict ok">✓ ok</span>'


def _facts(model: dict) -> str:
    ref = model.get("reference") or {}
    last = model.get("last_window") or {}
    facts = [
        ("reference", (f"{ref.get('source') or '—'}" + (f" ({ref['file']})" if ref.get("file") else ""))
         if ref else "none yet"),
        ("reference rows", f"{ref.get('rows', 0):,}" if ref else "—"),
        ("rows seen", f"{model.get('rows_total', 0):,}"),
        ("windows kept", f"{model.get('windows_kept', 0)}"
         + (f" × {format_duration(model['window_seconds'])}" if model.get("window_seconds") else "")),
        ("last evaluation", f"{when(last.get('end_unix_nano'))}, {last.get('rows', 0):,} rows" if last else "—"),
    ]
    golden = model.get("golden") or {}
    if golden:
        facts.append(("calls / errors", f"{golden.get('calls', 0):,} / {golden.get('errors', 0):,}"))
        if golden.get("p50_s") is not None:
            facts.append(("latency p50 / p99", f"{fmt(golden['p50_s'] * 1e3, 3)} / {fmt(golden['p99_s'] * 1e3, 3)} ms"))
    for metric, value in (model.get("quality") or {}).items():
        facts.append((metric, fmt(value)))
    if model.get("estimated_accuracy") is not None:
        facts.append(("estimated accuracy", fmt(model["estimated_accuracy"])))
    return '<dl class="facts">' + "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts) + "</dl>"


def _feature_name(name: str) -> str:
    label = _SPECIAL.get(name)
    return f'{_e(name)} <small>{_e(label)}</small>' if label else _e(name)


def _table(model: dict) -> str:
    head = ('<tr><th>feature</th><th>verdict</th><th class="mid">method</th><th class="mid">score</th>'
            '<th class="mid">threshold</th>'
            '<th class="wide">p-value</th><th class="wide">since</th><th class="wide">rows (ref / cur)</th></tr>')
    rows = []
    for f in model["features"]:
        state = "drifted" if f["verdict"] else "ok"
        note = "" if f["ok"] else ' <small title="fewer rows than the minimum sample size">(too few rows)</small>'
        rows.append(
            f'<tr class="{state}" data-feature="{_e(f["name"])}" data-verdict="{state}">'
            f'<td><a href="#{_anchor(model, f)}">{_feature_name(f["name"])}</a></td>'
            f'<td>{_verdict(f["verdict"])}{note}</td>'
            f'<td class="mid">{_e(f["method"])} <small>{_e(f["rule"])}</small></td>'
            f'<td class="n mid">{fmt(f["score"])}</td><td class="n mid">{fmt(f["threshold"])}</td>'
            f'<td class="n wide">{fmt(f["pvalue"])}</td>'
            f'<td class="wide">{_since(f)}</td>'
            f'<td class="n wide">{f["n_reference"]:,} / {f["n_current"]:,}</td></tr>')
    return f'<div class="scroll"><table class="features">{head}{"".join(rows)}</table></div>'


def _since(feature: dict) -> str:
    if not feature["verdict"]:
        return "—"
    if feature.get("since_unix_nano"):
        return when(feature["since_unix_nano"])
    return f"window {feature['since_window']}" if feature.get("since_window") else "—"


def _anchor(model: dict, feature: dict) -> str:
    return _e(f"f-{model['name']}-{model['version']}-{feature['name']}".replace(" ", "_"))


def _charts(model: dict) -> str:
    out = []
    for f in model["features"]:
        state = "drifted" if f["verdict"] else "ok"
        dist = (distribution_chart(f["distribution"], f["verdict"]) if f.get("distribution")
                else '<p class="empty">no distribution to draw (no reference bins for this column)</p>')
        hist = history_chart(f["history"], f["method"]) if f.get("history") else '<p class="empty">no window yet</p>'
        out.append(
            f'<details class="feature {state}" id="{_anchor(model, f)}" data-feature="{_e(f["name"])}" '
            f'data-verdict="{state}"{" open" if f["verdict"] else ""}>'
            f'<summary>{_verdict(f["verdict"])} <b>{_feature_name(f["name"])}</b> '
            f'<span class="sub">{_e(f["method"])} {fmt(f["score"])} vs {fmt(f["threshold"])}</span></summary>'
            f'<div class="charts"><figure>{dist}</figure><figure>{hist}</figure></div></details>')
    return "".join(out)


def _model(model: dict) -> str:
    drifted = model.get("drifted") or []
    badge = (f'<span class="verdict drifted">● DRIFTED: {len(drifted)} of {len(model["features"])}</span>'
             if drifted else f'<span class="verdict ok">✓ no drift in {len(model["features"])} features</span>')
    key = _e(f"{model['name']}@{model['version']}")
    features = (_table(model) + '<h3>distributions and scores</h3>' + _charts(model)) if model["features"] else (
        '<p class="empty">no window evaluated yet</p>')
    return (f'<section class="model" data-model="{key}"><h2>{key} {badge}</h2>'
            + (f'<p class="drifted-list">drifted: <b>{_e(", ".join(drifted))}</b></p>' if drifted else "")
            + _facts(model) + features + "</section>")


def _event_time(ev: dict) -> str:
    window = f"window {ev['window']}" if ev.get("window") else ""
    stamp = when(ev.get("time_unix_nano")) if ev.get("time_unix_nano") else ""
    return _e(" · ".join(p for p in (stamp, window) if p) or "—")


def _events(events: list[dict]) -> str:
    if not events:
        return '<section class="events"><h2>drift events</h2><p class="empty">none</p></section>'
    rows = []
    for ev in reversed(events):  # newest first
        kind = "drifted" if ev.get("detected") else "ok"
        traces = ev.get("trace_ids") or []
        rows.append(
            f'<tr data-event="{_e(ev.get("event_name", ""))}"><td>{_event_time(ev)}</td>'
            f'<td>{_verdict(kind == "drifted") if ev.get("feature") else ""} {_e(ev.get("event_name", ""))}</td>'
            f'<td>{_e(ev.get("model", ""))}</td><td>{_e(ev.get("feature", ""))}</td>'
            f'<td>{_e(ev.get("method", ""))} {fmt(ev.get("score"))} / {fmt(ev.get("threshold"))}</td>'
            f'<td class="traces">{"<br>".join(_e(t) for t in traces[:5]) or "—"}</td></tr>')
    return ('<section class="events"><h2>drift events</h2><div class="scroll"><table><tr><th>time</th><th>event</th>'
            '<th>model</th><th>feature</th><th>method score / threshold</th><th>sample trace ids</th></tr>'
            + "".join(rows) + "</table></div></section>")


def render_body(doc: dict) -> str:
    """The page's content (what the live page swaps in on each refresh)."""
    models = doc.get("models") or []
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in doc.get("notes") or [])
    body = "".join(_model(m) for m in models) or '<p class="empty">no model has sent data yet</p>'
    stamp = f'<p class="stamp">as of {when(doc.get("generated_unix_nano"))}</p>'
    return notes + stamp + body + _events(doc.get("events") or [])


def render_page(doc: dict) -> str:
    """A complete HTML document: CSS and script inlined, nothing fetched but its own refreshes."""
    refresh = float(doc.get("refresh_seconds") or 0)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{_e(doc.get("title", "driftcar"))}</title><style>{_asset("page.css")}</style></head>'
        f'<body data-kind="{_e(doc.get("kind", "report"))}" data-refresh="{refresh:g}">'
        f'<header><h1>{_e(doc.get("title", "driftcar"))}</h1><span id="status" role="status"></span></header>'
        f'<main id="content">{render_body(doc)}</main>'
        f'<script>{_asset("page.js")}</script></body></html>'
    )
