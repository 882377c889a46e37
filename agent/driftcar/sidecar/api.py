"""The JSON query API and health endpoints, on the sidecar's HTTP port.

- ``GET /healthz``: 200 while the process serves HTTP (liveness).
- ``GET /readyz``: 200 once receivers are up, 503 before and while shutting down.
- ``GET /v1/models``: every (model, version) with reference, row counts, last window; plus
  ``sidecar``: queue fill, batches that failed to apply, windows closed, refused models, checkpoints.
- ``GET /v1/models/{name}/drift[?version=V][&windows=K]``: the last evaluated window per
  version: per feature, per method: score, p-value, threshold, verdict, sample sizes; the
  feature's verdict (after hysteresis) and its current histogram next to the reference; label
  drift as feature ``__label__``.
  With ``windows=K``: a sliding view, the drift tests on the sum of the last K closed
  windows (computed on request, off the loop; ``verdict`` stays the tracked one).
  With ``view=summary``: per feature only the deciding test's method, score, threshold (and
  its kind: pvalue or score), p-value, decision and verdict; no histograms.
  Both views carry ``coverage``: profiled features seen, rows matched, mismatches said.
- ``GET /v1/events[?limit=N]``: recent drift, performance and reference-mismatch events.
- ``GET /``: the live page (:mod:`driftcar.view.live`).

When a bearer token is configured, the ``/v1/models`` and ``/v1/events`` routes need it
too (they expose data); health endpoints stay open for probes.
Handlers only read immutable snapshots (see :mod:`.state`), so they never block.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from aiohttp import web

from driftcar.sidecar.config import ApiConfig
from driftcar.sidecar.messages import decision_kind, decision_pvalue, describe
from driftcar.sidecar.security import TokenAuth
from driftcar.sidecar.sliding import SlidingViews
from driftcar.sidecar.judgement import EvaluationResult
from driftcar.sidecar.state import ModelState, StateStore

if TYPE_CHECKING:
    from driftcar.stats import DriftConfig, WindowSketch

__all__ = ["Api", "drift_document", "summary_document", "VIEWS"]

VIEWS = ("full", "summary")


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _ints(values: Any) -> list[int]:
    return [int(v) for v in np.asarray(values if values is not None else [], dtype=np.int64).tolist()]


def _histograms(state: ModelState, sketch: WindowSketch | None, name: str) -> dict | None:
    feature = state.profile.features.get(name) if state.profile is not None else None
    if feature is None:
        return None
    try:
        current = sketch.feature(name) if sketch is not None else None
    except (KeyError, ValueError):
        current = None
    if feature.kind == "numeric":
        return {
            "kind": "numeric",
            "edges": [float(e) for e in np.asarray(feature.edges, dtype=np.float64).tolist()],
            "reference": _ints(feature.counts),
            "current": _ints(current.counts) if current is not None else None,
            "reference_missing": int(feature.missing),
            "current_missing": int(current.missing) if current is not None else None,
        }
    ref_counts = _ints(feature.counts)
    current_counts = current.category_counts if current is not None else {}
    return {
        "kind": "categorical",
        "reference": {str(c): n for c, n in zip(feature.categories, ref_counts)},
        "current": {str(k): int(v) for k, v in current_counts.items()} if current is not None else None,
    }


def _results(last: EvaluationResult | None) -> list:
    """The window's drift results: the features', then label drift's (``__label__``) if judged."""
    if last is None:
        return []
    results = list(last.report.results) if last.report is not None else []
    return results + [last.label] if last.label is not None else results


def _verdicts(state: ModelState) -> dict[str, bool]:
    """Verdicts after hysteresis: the features' and the label's."""
    return {**state.verdicts, **{name: True for name in state.judgement.label_drifted()}}


def drift_document(state: ModelState, window_s: float, last: EvaluationResult | None = None) -> dict:
    """JSON-ready drift view of one (model, version): the last evaluated window (or ``last``)."""
    last = state.last if last is None else last
    verdicts = _verdicts(state)
    doc: dict[str, Any] = {
        "name": state.model,
        "version": state.version,
        "reference": None if state.profile is None else {"source": state.reference_source,
                                                         "file": state.reference_file},
        "window_seconds": window_s,
        "window": None,
        "features": {},
        "drift_detected": sorted(f for f, v in verdicts.items() if v),
        "coverage": state.coverage.as_dict(),
        "performance": {},
        "estimated_accuracy": None,
    }
    if state.fleet is not None:  # gateway role: who reported the last fleet window
        doc["fleet"] = state.fleet
    if last is None:
        return doc
    doc["window"] = {"start_unix_nano": last.start_ns, "end_unix_nano": last.end_ns, "rows": last.rows}
    doc["performance"] = {k: _num(v) for k, v in last.performance.items()}
    doc["estimated_accuracy"] = _num(last.estimated_accuracy)
    features: dict[str, dict] = {}
    for result in _results(last):
        entry = features.setdefault(result.feature, {"verdict": bool(verdicts.get(result.feature, False)),
                                                     "deciding_method": None, "methods": {}})
        deciding = bool(result.deciding)
        if deciding:
            entry["deciding_method"] = result.method
        entry["methods"][result.method] = {
            "score": _num(result.statistic),
            "pvalue": _num(result.pvalue),
            "pvalue_adjusted": _num(result.pvalue_adjusted),
            "threshold": _num(result.threshold),
            "threshold_kind": decision_kind(result),
            "decision": describe(result),
            "detected": bool(result.detected),
            "deciding": deciding,
            "ok": bool(result.ok),
            "n_reference": int(result.n_reference),
            "n_current": int(result.n_current),
        }
    for name, entry in features.items():
        hist = _histograms(state, last.sketch, name)
        if hist is not None:
            entry["histogram"] = hist
    doc["features"] = features
    return doc


def summary_document(state: ModelState, window_s: float, last: EvaluationResult | None = None) -> dict:
    """The compact view: per feature its deciding test only, no histograms."""
    doc = drift_document(state, window_s, last)
    last = state.last if last is None else last
    verdicts = _verdicts(state)
    deciding = {r.feature: r for r in _results(last) if r.deciding}
    doc["features"] = {name: {
        "method": r.method,
        "score": _num(r.statistic),
        "pvalue": _num(decision_pvalue(r)),
        "threshold": _num(r.threshold),
        "threshold_kind": decision_kind(r),
        "decision": describe(r),
        "tested": bool(r.ok),
        "verdict": bool(verdicts.get(name, False)),
        "n_current": int(r.n_current),
    } for name, r in deciding.items()}
    return doc


class Api:
    """Routes for health and the JSON API; ``ready()`` says whether the service is serving."""

    def __init__(self, store: StateStore, telemetry, auth: TokenAuth, config: ApiConfig,
                 ready: Callable[[], bool], drift_config: DriftConfig | None = None,
                 status: Callable[[], dict] | None = None, sliding: SlidingViews | None = None):
        self.drift_config = drift_config
        self.sliding = sliding if sliding is not None else SlidingViews(drift_config)
        self.status = status
        self.store = store
        self.tel = telemetry
        self.auth = auth
        self.config = config
        self.window_s = config.window_s
        self.ready = ready

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/models/{name}/drift", self.drift)
        app.router.add_get("/v1/events", self.events)
        from driftcar.view.live import LivePage  # the page at / (same auth)

        LivePage(self).add_routes(app)

    def _check(self, request: web.Request) -> None:
        if not self.auth.check(request.headers.get("Authorization")):
            raise web.HTTPUnauthorized(text='{"error": "missing or invalid bearer token"}',
                                       content_type="application/json",
                                       headers={"WWW-Authenticate": 'Bearer realm="driftcar"'})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if self.ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=503)

    async def models(self, request: web.Request) -> web.Response:
        self._check(request)
        models = [s.summary() for s in list(self.store.models.values())]
        body = {"models": sorted(models, key=lambda m: (m["name"], m["version"]))}
        if self.status is not None:
            body["sidecar"] = self.status()
        return web.json_response(body)

    async def drift(self, request: web.Request) -> web.Response:
        self._check(request)
        name = request.match_info["name"]
        version = request.query.get("version")
        states = self.store.find(name, version)
        if not states:
            return web.json_response({"error": f"unknown model {name!r}"
                                      + (f" version {version!r}" if version else "")}, status=404)
        view = request.query.get("view", "full")
        if view not in VIEWS:
            return web.json_response({"error": f"view must be one of {', '.join(VIEWS)}"}, status=400)
        document = summary_document if view == "summary" else drift_document
        windows = request.query.get("windows")
        if windows is None:
            docs = [document(s, self.window_s) for s in states]
        else:
            try:
                k = int(windows)
                if not 1 <= k <= self.config.windows_kept:
                    raise ValueError
            except ValueError:
                return web.json_response(
                    {"error": f"windows must be an integer in 1..{self.config.windows_kept}"}, status=400)
            docs = await asyncio.to_thread(self._sliding, states, k, document)
        return web.json_response({"name": name, "versions": sorted(docs, key=lambda d: d["version"])})

    def _sliding(self, states: list[ModelState], k: int, document=drift_document) -> list[dict]:
        """Drift on the sum of the last ``k`` closed windows: the stored view (computed here on a first ask)."""
        docs = []
        for state in states:
            view, n = self.sliding.view(state, k)
            if view is None:
                doc = document(state, self.window_s, EvaluationResult(0, 0, 0, None, {}, {}, None, None))
                doc["window"] = None
            else:
                doc = document(state, self.window_s, view)
            doc["windows"] = n
            docs.append(doc)
        return docs

    async def events(self, request: web.Request) -> web.Response:
        self._check(request)
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "100"))))
        except ValueError:
            return web.json_response({"error": "limit must be an integer"}, status=400)
        return web.json_response({"events": self.tel.recent_events(limit)}, dumps=_dumps)


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, default=str)
