"""Drift reports from files or in-memory data: ``driftcar report`` and :func:`driftcar.report`.

The reference is a saved profile (``.driftcar``), a data file (profiled here, two
passes like ``driftcar profile``) or in-memory data / a :class:`~driftcar.stats.Profile`.
The current data is a file read in chunks (bounded memory whatever its size) or a
table in memory, cut into windows by a time column (aligned to multiples of the window
length since the epoch, as the sidecar's windows are) or by a row count, or one window.
Each window is judged with :func:`~driftcar.stats.evaluate_drift` and the verdicts go
through :class:`~driftcar.stats.VerdictTracker` (the sidecar's hysteresis), so a report
on the same rows says what the sidecar would have said. The distributions shown are
the last window's (the last one large enough to judge, when the final one is not).

Limits: at most :data:`MAX_WINDOWS` windows (a clear error beyond, asking for a longer
window); time values are Unix seconds (numbers) or ISO 8601 text; rows whose time is
missing or unreadable are left out and counted in a note of the report.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import time
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from driftcar.stats.profile import PREDICTION
from driftcar.view.document import (
    current_of,
    distribution,
    feature_entry,
    history_point,
    order_features,
    quality_entry,
    reference_of,
)

__all__ = ["Report", "report", "MAX_WINDOWS", "build_document", "load_reference"]

MAX_WINDOWS = 1_000
_PROFILE_MAGIC = b"DCPROF"


class Report:
    """A rendered drift report: ``.html`` (one self-contained file), ``.save(path)``,
    ``.document`` (the data behind it), ``.drifted`` ({model: [features]}); shows inline in
    Jupyter (``_repr_html_``, isolated in an iframe so its styles stay inside)."""

    def __init__(self, document: dict):
        from driftcar.view.render import render_page

        self.document = document
        self.html = render_page(document)

    @property
    def drifted(self) -> list[str]:
        return [name for m in self.document["models"] for name in m["drifted"]]

    def save(self, path: str | os.PathLike) -> str:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.html)
        return os.fspath(path)

    def _repr_html_(self) -> str:
        from html import escape

        return (f'<iframe srcdoc="{escape(self.html, quote=True)}" style="width:100%;height:720px;border:0" '
                'sandbox="allow-scripts"></iframe>')

    def __repr__(self) -> str:
        return f"Report(drifted={self.drifted}, {len(self.html):,} bytes of HTML)"


# ---------------------------------------------------------------------------- inputs


def _is_profile_file(path: str | os.PathLike) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(_PROFILE_MAGIC)) == _PROFILE_MAGIC


def _file_chunks(path, chunk_rows: int, fmt: str, delimiter: str, progress, label: str) -> Iterator[dict]:
    from driftcar.stats.readers import read_chunks

    name = f"{label} {os.path.basename(os.fspath(path))}"
    yield from read_chunks(path, chunk_rows, fmt, delimiter, (lambda f: progress(name, f)) if progress else None)


def _columns(data: Any) -> dict:
    """An in-memory table (DataFrame, dict of columns, numpy record array) as name -> column."""
    from driftcar.stats._columns import as_columns

    return as_columns(data)


def _split(chunk: dict, label: str | None, prediction: str | None, exclude: Iterable[str], where: str):
    for col in (label, prediction):
        if col and col not in chunk:
            raise ValueError(f"{where}: no column {col!r} (columns: {', '.join(chunk)})")
    chunk = dict(chunk)
    y = chunk.pop(label) if label else None
    pred = chunk.pop(prediction) if prediction else None
    for col in exclude:
        chunk.pop(col, None)
    return chunk, y, pred


def load_reference(reference: Any, *, label=None, prediction=None, exclude=(), categorical=(),
                   chunk_rows: int = 100_000, fmt: str = "auto", delimiter: str = ",", progress=None):
    """A Profile from a Profile, a ``.driftcar`` file, a CSV/Parquet file or an in-memory table."""
    from driftcar.stats import Profile, ProfileBuilder, profile

    if isinstance(reference, Profile):
        return reference
    if isinstance(reference, (str, os.PathLike)):
        if _is_profile_file(reference):
            return Profile.load(reference)
        builder = ProfileBuilder(categorical=list(categorical))
        for step, feed in ((1, builder.observe), (2, builder.count)):
            for chunk in _file_chunks(reference, chunk_rows, fmt, delimiter, progress, f"reference {step}/2"):
                feed(*_split(chunk, label, prediction, exclude, os.fspath(reference)))
            if step == 1:
                builder.fix()
        return builder.finish()
    X, y, pred = _split(_columns(reference), label, prediction, exclude, "reference")
    return profile(X, y, pred, categorical=list(categorical))


# ---------------------------------------------------------------------------- windows


def parse_times(values: Any) -> np.ndarray:
    """Unix seconds (float64, NaN where missing or unreadable) from numbers or ISO 8601 text.

    >>> parse_times([0, 86400.5, None]).tolist()
    [0.0, 86400.5, nan]
    >>> parse_times(["1970-01-02", "1970-01-01T00:01:00+00:00", "later"]).tolist()
    [86400.0, 60.0, nan]
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "iuf":
        return arr.astype(np.float64)
    if arr.dtype.kind == "M":
        out = arr.astype("datetime64[ns]").astype(np.int64) / 1e9
        return np.where(np.isnat(arr), np.nan, out)
    out = np.full(len(arr), np.nan)
    for i, v in enumerate(arr.tolist()):
        if v is None or isinstance(v, float) and math.isnan(v):
            continue
        try:
            out[i] = float(v)
            continue
        except (TypeError, ValueError):
            pass
        try:
            t = _dt.datetime.fromisoformat(str(v).strip().replace("Z", "+00:00"))
        except ValueError:
            continue
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        out[i] = t.timestamp()
    return out


class _Windows:
    """Window sketches keyed by start (time windows) or number (row windows), plus labels."""

    def __init__(self, prof, window_s: float | None, rows: int | None):
        self.prof, self.window_s, self.rows = prof, window_s, rows
        self.sketches: dict[float, Any] = {}
        self.labels: dict[float, tuple[list, list]] = {}
        self.seen = 0
        self.untimed = 0

    def _get(self, key: float):
        if key not in self.sketches:
            if len(self.sketches) >= MAX_WINDOWS:
                raise ValueError(f"more than {MAX_WINDOWS} windows: use a longer --window or a larger --rows")
            self.sketches[key] = self.prof.new_window()
            self.labels[key] = ([], [])
        return self.sketches[key]

    def add(self, X: dict, y, pred, times: np.ndarray | None) -> None:
        n = len(next(iter(X.values()))) if X else (len(pred) if pred is not None else 0)
        if times is not None:
            ok = np.isfinite(times)
            self.untimed += int((~ok).sum())
            keys = np.floor(times / self.window_s) * self.window_s
        elif self.rows:
            keys = (np.arange(self.seen, self.seen + n) // self.rows).astype(np.float64)
            ok = np.ones(n, dtype=bool)
        else:
            keys, ok = np.zeros(n), np.ones(n, dtype=bool)
        self.seen += n
        for key in np.unique(keys[ok]).tolist():
            idx = np.flatnonzero(ok & (keys == key))
            part = {c: _take(v, idx) for c, v in X.items()}
            if pred is not None:
                part[PREDICTION] = _take(pred, idx)
            roles = {c: "feature" for c in X} | ({PREDICTION: "prediction"} if pred is not None else {})
            self._get(key).update(part, roles)
            if y is not None and pred is not None:
                self.labels[key][0].extend(np.asarray(_take(y, idx)).tolist())
                self.labels[key][1].extend(np.asarray(_take(pred, idx)).tolist())


def _take(values: Any, idx: np.ndarray):
    if isinstance(values, np.ndarray):
        return values[idx]
    if hasattr(values, "iloc"):
        return values.iloc[idx].to_numpy()
    return [values[i] for i in idx.tolist()]


def _quality(prof, y_true: list, y_pred: list) -> dict[str, float]:
    from driftcar.stats import classification_scores, regression_scores

    if not y_true:
        return {}
    pred = np.asarray(y_pred)
    classification = (prof.prediction.kind == "categorical") if prof.prediction is not None else pred.dtype.kind != "f"
    scores = classification_scores(y_true, y_pred) if classification else regression_scores(y_true, y_pred)
    return quality_entry(scores)


class _Judged:
    """Every window judged in time order, with the sidecar's hysteresis across them."""

    def __init__(self, prof, windows: _Windows, config, name: str):
        from driftcar.stats import VerdictTracker, evaluate_drift

        self.tracker = VerdictTracker(config)
        self.keys = sorted(windows.sketches)
        self.history: dict[str, list[dict]] = {}
        self.since: dict[str, tuple[int | None, int]] = {}  # feature -> (window start, window number)
        self.events: list[dict] = []
        self.shown = None  # (key, report) of the last window that could be judged, else the last one
        for k, key in enumerate(self.keys, start=1):
            sketch = windows.sketches[key]
            start, end = _bounds(windows, key)
            report = evaluate_drift(prof, sketch, config)
            deciding = report.deciding()
            for feature, result in deciding.items():
                self.history.setdefault(feature, []).append(history_point(result, start or 0, end or 0, sketch.rows))
            for change in self.tracker.update(report):
                if change.detected:
                    self.since[change.feature] = (start, k)
                self.events.append(_event(change, name, start, end, k))
            if self.shown is None or any(r.ok for r in deciding.values()) \
                    or not any(r.ok for r in self.shown[1].deciding().values()):
                self.shown = (key, report)

    def features(self, prof, sketch) -> list[dict]:
        out = []
        for feature, result in (self.shown[1].deciding().items() if self.shown else ()):
            verdict = self.tracker.state(feature)
            start_ns, k = self.since.get(feature, (None, None)) if verdict else (None, None)
            dist = distribution(reference_of(prof, feature), current_of(sketch, feature))
            out.append(feature_entry(result, verdict, start_ns, dist, self.history.get(feature, ()), since_window=k))
        return order_features(out)


def build_document(prof, windows: _Windows, config=None, *, title: str = "driftcar drift report",
                   name: str = "model", reference_label: str = "training", notes: Iterable[str] = ()) -> dict:
    """Judge every window in order (with hysteresis) and describe the last one that could be
    judged (a short last window, below the minimum sample size, is only in the history)."""
    from driftcar.stats import DriftConfig

    judged = _Judged(prof, windows, config or DriftConfig(), name)
    notes = list(notes)
    if windows.untimed:
        notes.append(f"{windows.untimed:,} rows without a readable time were left out")
    if judged.shown is None:
        notes.append("no current rows: nothing to compare")
    elif judged.shown[0] != judged.keys[-1]:
        notes.append(f"the last window ({windows.sketches[judged.keys[-1]].rows:,} rows) is too small to judge: "
                     "the distributions and verdicts shown are the last window that could be judged")
    key = judged.shown[0] if judged.shown else None
    sketch = windows.sketches[key] if key is not None else None
    features = judged.features(prof, sketch)
    start, end = _bounds(windows, key) if key is not None else (None, None)
    return {
        "title": title, "kind": "report", "generated_unix_nano": time.time_ns(), "refresh_seconds": 0,
        "models": [{
            "name": name, "version": "report",
            "reference": {"source": reference_label, "file": None, "rows": int(prof.rows)},
            "rows_total": int(windows.seen), "windows_kept": len(judged.keys), "window_seconds": windows.window_s,
            "last_window": None if key is None else {"start_unix_nano": start, "end_unix_nano": end,
                                                     "rows": int(sketch.rows)},
            "golden": None,
            "quality": _quality(prof, *windows.labels[key]) if key is not None else {},
            "estimated_accuracy": None,
            "drifted": [f["name"] for f in features if f["verdict"]],
            "features": features,
        }],
        "events": judged.events,
        "notes": notes,
    }


def _bounds(windows: _Windows, key: float) -> tuple[int | None, int | None]:
    if windows.window_s is None:
        return None, None
    return int(key * 1e9), int((key + windows.window_s) * 1e9)


def _event(change, name: str, start: int | None, end: int | None, k: int) -> dict:
    from driftcar.view.document import event_entry

    r = change.result
    entry = event_entry({
        "event_name": "driftcar.drift.detected" if change.detected else "driftcar.drift.resolved",
        "time_unix_nano": end or 0,
        "attributes": {"model.name": name, "model.version": "report", "feature.name": change.feature,
                       "drift.method": r.method, "drift.score": r.statistic, "drift.threshold": r.threshold,
                       "window.start": start},
    })
    entry["window"] = k
    return entry


def report(reference: Any, current: Any, *, time_column: str | None = None, window: str | float | None = None,
           rows: int | None = None, label: str | None = None, prediction: str | None = None,
           exclude: Iterable[str] = (), categorical: Iterable[str] = (), config: Any = None,
           title: str | None = None, name: str | None = None, chunk_rows: int = 100_000, fmt: str = "auto",
           delimiter: str = ",", progress: Callable[[str, float], None] | None = None) -> Report:
    """A drift report of ``current`` against ``reference``; see the module docstring.

    ``reference``: a Profile, a ``.driftcar`` profile file, a CSV/Parquet file or a table
    (DataFrame, dict of columns). ``current``: a CSV/Parquet file or a table. Windows:
    ``time_column`` + ``window`` (``"1d"``, ``"6h"``, seconds), or ``rows`` per window,
    or none (one window). ``label`` / ``prediction`` name columns of both inputs (quality
    when both are in ``current``). Returns a :class:`Report`; ``ValueError`` on bad input.
    """
    from driftcar.sidecar.config import parse_duration

    if (time_column is None) != (window is None):
        raise ValueError("time_column and window go together (a time column cut into windows of that length)")
    if rows is not None and time_column is not None:
        raise ValueError("choose windows by time (time_column + window) or by rows, not both")
    if rows is not None and rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    window_s = parse_duration(window) if window is not None else None
    exclude = list(exclude) + ([time_column] if time_column else [])
    prof = load_reference(reference, label=label, prediction=prediction, exclude=exclude, categorical=categorical,
                          chunk_rows=chunk_rows, fmt=fmt, delimiter=delimiter, progress=progress)
    windows = _Windows(prof, window_s, rows)
    is_file = isinstance(current, (str, os.PathLike))
    chunks = (_file_chunks(current, chunk_rows, fmt, delimiter, progress, "current") if is_file
              else [_columns(current)])
    where = os.fspath(current) if is_file else "current"
    for chunk in chunks:
        if time_column and time_column not in chunk:
            raise ValueError(f"{where}: no time column {time_column!r} (columns: {', '.join(chunk)})")
        times = parse_times(chunk[time_column]) if time_column else None
        X, y, pred = _split(chunk, label if label in chunk else None, prediction, exclude, where)
        windows.add(X, y, pred, times)
    ref_label = os.path.basename(os.fspath(reference)) if isinstance(reference, (str, os.PathLike)) else "in memory"
    model = name or (os.path.splitext(os.path.basename(where))[0] if is_file else "model")
    doc = build_document(prof, windows, config, title=title or f"driftcar drift report: {model}", name=model,
                         reference_label=ref_label)
    return Report(doc)
