"""The view document: what the live page and the report show, as plain JSON-ready dicts.

One model, two producers: :mod:`driftcar.view.live` fills it from the sidecar's state,
:mod:`driftcar.view.offline` from files; :mod:`driftcar.view.render` draws it. Built
only from stats objects (``Profile``, ``WindowSketch`` snapshots, ``DriftResult``), so
both producers show exactly the same figures.

Shape (every number finite or None)::

    {"title", "kind": "live" | "report", "generated_unix_nano", "refresh_seconds",
     "models": [model], "events": [event], "notes": [str]}
    model = {"name", "version", "reference": {"source", "file", "rows"} | None,
             "rows_total", "windows_kept", "window_seconds", "last_window": {start, end, rows} | None,
             "golden": {...} | None, "quality": {metric: value}, "estimated_accuracy",
             "drifted": [feature], "features": [feature]}         # drifted first
    feature = {"name", "kind", "method", "rule", "score", "threshold", "pvalue", "verdict", "detected",
               "ok", "since_unix_nano", "since_window", "n_reference", "n_current", "distribution", "history"}
    event = see :func:`event_entry`
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from driftcar.stats.profile import OTHER

__all__ = ["MISSING_LABEL", "EVENT_NAMES", "num", "distribution", "feature_entry", "history_point",
           "order_features", "quality_entry", "level", "event_entry", "reference_of", "current_of"]

#: the bar that counts missing values (None / NaN), next to the categories or bins
MISSING_LABEL = "(missing)"
#: quality figures shown when present, in this order
QUALITY_METRICS = ("accuracy", "f1", "precision", "recall", "mae", "rmse")


def num(value: Any) -> float | None:
    """A finite float, or None (NaN, inf, None and non-numbers are not shown as numbers)."""
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _ints(values: Any) -> list[int]:
    return [int(v) for v in np.asarray(values, dtype=np.int64).tolist()]


def distribution(reference: Any, current: Any) -> dict | None:
    """Reference and current counts on the reference's bins, missing values included.

    ``reference`` is a ``FeatureProfile``; ``current`` the window's ``NumericSketch`` /
    ``CategoricalSketch`` of the same feature, or None (nothing seen yet).
    """
    if reference is None:
        return None
    if reference.kind == "numeric":
        edges = [float(e) for e in np.asarray(reference.edges, dtype=np.float64).tolist()]
        ref = _ints(reference.counts)
        cur = _ints(current.counts) if current is not None else [0] * len(ref)
        return {"kind": "numeric", "edges": edges, "labels": None,
                "reference": ref + [int(reference.missing)],
                "current": cur + [int(current.missing) if current is not None else 0]}
    labels = [str(c) for c in reference.categories] + [OTHER]
    ref = _ints(reference.counts)
    if current is not None:
        by_label = current.category_counts
        cur = [int(by_label.get(c, 0)) for c in labels]
        missing = int(current.missing)
    else:
        cur, missing = [0] * len(labels), 0
    return {"kind": "categorical", "edges": None, "labels": labels + [MISSING_LABEL],
            "reference": ref + [int(reference.missing)], "current": cur + [missing]}


def _pvalue(result: Any) -> float | None:
    """The p-value the decision used (adjusted across features when it was), or None."""
    adjusted = getattr(result, "pvalue_adjusted", None)
    return num(adjusted if adjusted is not None else getattr(result, "pvalue", None))


def _rule(result: Any) -> str:
    """How the verdict was reached: a p-value under the threshold, or a distance over it."""
    return getattr(result, "rule", None) or ("p-value" if getattr(result, "pvalue", None) is not None else "distance")


def history_point(result: Any, start_ns: int, end_ns: int, rows: int) -> dict:
    """One window's deciding result, for the score-over-time chart."""
    score, pvalue, threshold = num(result.statistic), _pvalue(result), num(result.threshold)
    return {"start_unix_nano": int(start_ns), "end_unix_nano": int(end_ns), "rows": int(rows),
            "method": result.method, "rule": _rule(result), "score": score, "pvalue": pvalue,
            "threshold": threshold, "level": level(score, pvalue, threshold),
            "detected": bool(result.detected), "ok": bool(result.ok)}


def feature_entry(result: Any, verdict: bool, since_ns: int | None, dist: dict | None,
                  history: Iterable[dict] = (), since_window: int | None = None) -> dict:
    """A feature's row: its deciding result, the tracked verdict and the charts' data.

    ``since_*``: when the current drifted state began (a time, or a 1-based window number
    for windows cut by row counts)."""
    return {
        "name": result.feature,
        "kind": getattr(result, "kind", "numeric"),
        "method": result.method,
        "rule": _rule(result),
        "score": num(result.statistic),
        "threshold": num(result.threshold),
        "pvalue": _pvalue(result),
        "verdict": bool(verdict),
        "detected": bool(result.detected),
        "ok": bool(result.ok),
        "since_unix_nano": int(since_ns) if since_ns else None,
        "since_window": since_window,
        "n_reference": int(result.n_reference),
        "n_current": int(result.n_current),
        "distribution": dist,
        "history": list(history),
    }


def level(score: float | None, pvalue: float | None, threshold: float | None) -> float | None:
    """How far a result is from its threshold, one scale for both rules: 1 at the threshold,
    above 1 drift. Distances: score / threshold; p-values: log(p) / log(threshold)."""
    if threshold is None or threshold <= 0:
        return None
    if pvalue is not None:
        if threshold >= 1:
            return None
        return math.log(max(pvalue, 1e-300)) / math.log(threshold)
    return None if score is None else score / threshold


def _severity(entry: dict) -> float:
    value = level(entry.get("score"), entry.get("pvalue"), entry.get("threshold"))
    return math.log(max(value, 1e-300)) if value is not None else -math.inf


def order_features(entries: Iterable[dict]) -> list[dict]:
    """Drifted first, then detected in the last window, then by closeness to the threshold."""
    return sorted(entries, key=lambda e: (not e["verdict"], not e["detected"], -_severity(e), e["name"]))


def quality_entry(scores: dict | None) -> dict[str, float]:
    """The quality figures worth showing (accuracy, F1, ... RMSE), finite ones only."""
    out = {}
    for metric in QUALITY_METRICS:
        value = num((scores or {}).get(metric))
        if value is not None:
            out[metric] = value
    return out


#: events the page lists (drift and quality changes)
EVENT_NAMES = ("driftcar.drift.detected", "driftcar.drift.resolved", "driftcar.performance.degraded")


def event_entry(event: dict) -> dict:
    """A sidecar event record (``event_name``, ``time_unix_nano``, ``attributes``) as a table row."""
    a = event.get("attributes") or {}
    traces = a.get("driftcar.sample_trace_ids") or []
    return {
        "event_name": event.get("event_name", ""),
        "time_unix_nano": int(event.get("time_unix_nano") or 0),
        "model": f"{a.get('model.name', '')}@{a.get('model.version', '')}",
        "feature": a.get("feature.name") or a.get("metric") or "",
        "method": a.get("drift.method", ""),
        "score": num(a.get("drift.score", a.get("value"))),
        "threshold": num(a.get("drift.threshold", a.get("threshold"))),
        "detected": event.get("event_name") in ("driftcar.drift.detected", "driftcar.performance.degraded"),
        "window_start_unix_nano": int(a.get("window.start") or 0) or None,
        "trace_ids": [str(t) for t in (traces if isinstance(traces, (list, tuple)) else [traces])],
    }


def reference_of(prof: Any, name: str) -> Any:
    """The reference ``FeatureProfile`` behind a result's feature name (features, prediction, label,
    PCA error)."""
    from driftcar.stats.profile import LABEL, MULTIVARIATE, PREDICTION

    if prof is None:
        return None
    if name == LABEL:
        return getattr(prof, "label", None)
    if name == PREDICTION:
        return getattr(prof, "prediction", None)
    if name == MULTIVARIATE:
        return getattr(prof, "pca_error", None)
    return (getattr(prof, "features", None) or {}).get(name)


def current_of(sketch: Any, name: str) -> Any:
    """The window's snapshot of one column, or None when the window does not track it."""
    if sketch is None:
        return None
    try:
        return sketch.feature(name)
    except (KeyError, ValueError):
        return None
