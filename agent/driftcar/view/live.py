"""The live page at ``/`` on the sidecar's HTTP port.

``GET /`` serves the whole page (server-rendered, so it shows data even with scripts
off); its script re-fetches ``GET /?part=body`` every few seconds (half a window,
between 2 and 30 s) and swaps the content in. The document is built off the event loop
(``asyncio.to_thread``): the per-window score history evaluates each kept window once
(cached per model and window, dropped with the window), the rest only reads the
snapshots the JSON API reads.

Auth: when the sidecar has a bearer token, the page needs it like the JSON API does:
``Authorization: Bearer <token>`` (curl, a proxy adding the header), or, for a browser,
open ``/?token=<token>`` once: the answer is a redirect to ``/`` that stores the token in
an ``HttpOnly; SameSite=Strict`` cookie valid for this page only (the ``/v1`` API still
wants the header), so the token leaves the address bar and the history. Headers: a
Content-Security-Policy that allows nothing but the page's own inline style and script
and same-origin fetches, ``Cache-Control: no-store``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from typing import Any

from aiohttp import web

from driftcar.view.document import (
    EVENT_NAMES,
    current_of,
    distribution,
    event_entry,
    feature_entry,
    history_point,
    order_features,
    quality_entry,
    reference_of,
)
from driftcar.view.render import render_body, render_page

__all__ = ["LivePage", "COOKIE", "live_document"]

#: cookie holding the page's bearer token after ``/?token=...``
COOKIE = "driftcar_token"
_CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": _CSP, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}
_EVENTS_SHOWN = 50


def _quantile(bounds: tuple, counts: tuple, q: float) -> float | None:
    """Linear interpolation inside the bucket holding quantile ``q`` (as Prometheus' histogram_quantile)."""
    total = sum(counts)
    if not total:
        return None
    rank, seen = q * total, 0
    for i, c in enumerate(counts):
        if c and seen + c >= rank:
            lo = bounds[i - 1] if i > 0 else 0.0
            hi = bounds[i] if i < len(bounds) else bounds[-1]
            return lo + (hi - lo) * (rank - seen) / c
        seen += c
    return bounds[-1] if bounds else None


def golden_signals(series: list, model: str, version: str) -> dict | None:
    """Calls, errors and latency quantiles of one model from the telemetry's current series."""
    calls = errors = 0
    bounds, counts = None, None
    for s in series:
        attrs = dict(s.attributes)
        if attrs.get("model.name") != model or attrs.get("model.version") != version:
            continue
        if s.name == "driftcar.inference.calls":
            calls += int(s.value)
            errors += int(s.value) if "error.type" in attrs else 0
        elif s.name == "driftcar.inference.duration":
            bounds = s.value.bounds
            counts = s.value.counts if counts is None else tuple(a + b for a, b in zip(counts, s.value.counts))
    if not calls and counts is None:
        return None
    out: dict[str, Any] = {"calls": calls, "errors": errors, "p50_s": None, "p99_s": None}
    if counts is not None:
        out["p50_s"], out["p99_s"] = _quantile(bounds, counts, 0.5), _quantile(bounds, counts, 0.99)
    return out


def latest_quality(series: list, model: str, version: str) -> tuple[dict, float | None]:
    """The quality figures last exported for a model (they persist across windows without labels)."""
    scores, estimated = {}, None
    for s in series:
        attrs = dict(s.attributes)
        if attrs.get("model.name") != model or attrs.get("model.version") != version:
            continue
        if s.name == "driftcar.performance.score":
            scores[attrs.get("metric")] = s.value
        elif s.name == "driftcar.performance.estimated_accuracy":
            estimated = s.value
    return quality_entry(scores), estimated


class _History:
    """Per model, the deciding results of each kept window, evaluated once per window."""

    def __init__(self) -> None:
        self._cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()  # two page requests may build at once

    def points(self, state: Any, windows: list, config: Any) -> dict[str, list[dict]]:
        with self._lock:
            return self._points(state, windows, config)

    def _points(self, state: Any, windows: list, config: Any) -> dict[str, list[dict]]:
        from driftcar.stats import evaluate_drift

        prof = state.profile
        cached = self._cache.get(state)
        if cached is None or cached[0] is not prof:
            cached = (prof, {})
            self._cache[state] = cached
        per_window = cached[1]
        for key in set(per_window) - {w.start_ns for w in windows}:
            del per_window[key]  # the window left the kept ones
        out: dict[str, list[dict]] = {}
        for w in windows:
            if w.start_ns not in per_window:
                if w.profile is not prof:
                    continue  # kept from before the reference changed: not comparable
                report = evaluate_drift(prof, w.sketch, config)
                per_window[w.start_ns] = {f: history_point(r, w.start_ns, w.end_ns, w.rows)
                                          for f, r in report.deciding().items()}
            for feature, point in per_window[w.start_ns].items():
                out.setdefault(feature, []).append(point)
        return out


def _since(events: list[dict], model: str, version: str) -> dict[str, int]:
    """feature -> start of the window whose evaluation put it in the drifted state (latest event)."""
    out = {}
    for ev in events:
        a = ev.get("attributes") or {}
        if ev.get("event_name") == "driftcar.drift.detected" and a.get("model.name") == model \
                and a.get("model.version") == version:
            out[a.get("feature.name")] = int(a.get("window.start") or ev.get("time_unix_nano") or 0)
    return out


def model_view(state: Any, store: Any, window_s: float, config: Any, history: _History, events: list,
               series: list) -> dict:
    """One model's part of the document, from its state's immutable snapshots."""
    with store.lock:  # the deque is appended by the evaluator; copy it whole
        windows = list(state.closed)
    prof, last, verdicts = state.profile, state.last, dict(state.verdicts)
    since = _since(events, state.model, state.version)
    points = history.points(state, windows, config) if prof is not None else {}
    features = []
    for name, result in ((last.report.deciding() if last is not None and last.report is not None else {}).items()):
        dist = distribution(reference_of(prof, name), current_of(last.sketch, name))
        verdict = bool(verdicts.get(name, False))
        features.append(feature_entry(result, verdict, since.get(name) if verdict else None, dist,
                                      points.get(name, ())))
    if last is not None and last.label is not None:  # label drift, judged on the labels joined in its window
        verdict = state.judgement.label_drifted() == [last.label.feature]
        features.append(feature_entry(last.label, verdict, since.get(last.label.feature) if verdict else None,
                                      distribution(reference_of(prof, last.label.feature), last.label_current)))
    features = order_features(features)
    quality, estimated = latest_quality(series, state.model, state.version)
    if last is not None:  # telemetry without a series snapshot: the last window's own figures
        quality = quality or quality_entry(last.performance)
        estimated = estimated if estimated is not None else last.estimated_accuracy
    return {
        "name": state.model, "version": state.version,
        "reference": None if prof is None else {"source": state.reference_source, "file": state.reference_file,
                                                "rows": int(getattr(prof, "rows", 0) or 0)},
        "rows_total": int(state.rows_total), "windows_kept": len(windows), "window_seconds": window_s,
        "last_window": None if last is None else {"start_unix_nano": last.start_ns, "end_unix_nano": last.end_ns,
                                                  "rows": last.rows},
        "golden": golden_signals(series, state.model, state.version),
        "quality": quality,
        "estimated_accuracy": estimated,
        "drifted": [f["name"] for f in features if f["verdict"]],
        "features": features,
    }


def live_document(store: Any, telemetry: Any, window_s: float, config: Any, history: _History | None = None) -> dict:
    """The whole view of a running sidecar (call off the event loop: it may evaluate windows)."""
    from driftcar.stats import DriftConfig

    config = config or DriftConfig()
    events = [e for e in telemetry.recent_events(1000) if e.get("event_name") in EVENT_NAMES]
    series = telemetry.snapshot() if hasattr(telemetry, "snapshot") else []
    states = sorted(list(store.models.values()), key=lambda s: (s.model, s.version))
    history = history or _History()
    return {
        "title": "driftcar — live drift",
        "kind": "live",
        "generated_unix_nano": time.time_ns(),
        "refresh_seconds": min(30.0, max(2.0, window_s / 2)),
        "models": [model_view(s, store, window_s, config, history, events, series) for s in states],
        "events": [event_entry(e) for e in events[-_EVENTS_SHOWN:]],
        "notes": [],
    }


class LivePage:
    """The ``/`` route of the sidecar's HTTP app; shares the JSON API's store, telemetry and auth."""

    def __init__(self, api: Any):
        self.api = api
        self._history = _History()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.page)

    def _authorized(self, request: web.Request) -> bool:
        auth = self.api.auth
        if auth.check(request.headers.get("Authorization")):
            return True
        cookie = request.cookies.get(COOKIE)
        return bool(cookie) and auth.check(f"Bearer {cookie}")

    def _login(self, request: web.Request, token: str) -> web.Response:
        if not self.api.auth.check(f"Bearer {token}"):
            raise web.HTTPUnauthorized(text="invalid token", headers={"WWW-Authenticate": 'Bearer realm="driftcar"'})
        response = web.HTTPSeeOther("/", headers=_HEADERS)
        response.set_cookie(COOKIE, token, path="/", httponly=True, samesite="Strict", secure=request.secure)
        raise response

    async def page(self, request: web.Request) -> web.Response:
        token = request.query.get("token")
        if token is not None and self.api.auth.enabled:
            self._login(request, token)
        if not self._authorized(request):
            raise web.HTTPUnauthorized(
                text="driftcar: this page needs the sidecar's bearer token: send Authorization: Bearer <token>, "
                     "or open /?token=<token> once in the browser",
                headers={"WWW-Authenticate": 'Bearer realm="driftcar"'})
        api = self.api
        doc = await asyncio.to_thread(live_document, api.store, api.tel, api.window_s, api.drift_config,
                                      self._history)
        html = render_body(doc) if request.query.get("part") == "body" else render_page(doc)
        response = web.Response(text=html, content_type="text/html", charset="utf-8", headers=_HEADERS)
        response.enable_compression()  # repetitive SVG: ~6x smaller gzipped, and refetched every few seconds
        return response
