"""Sliding views: drift on the sum of a model's last k closed windows (bin counts add).

The JSON API's ``?windows=k`` reads a view stored here. The first ask for a k computes it (off the
loop) and remembers k for that model; after each window close the evaluator's thread recomputes
the remembered views (:meth:`SlidingViews.refresh`), so a client that polls reads a stored result
instead of evaluating drift in its request. At most :data:`MAX_KS` values of k are remembered per
model (the most recently asked).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Iterable

from driftcar.sidecar.judgement import EvaluationResult
from driftcar.sidecar.state import ModelState

if TYPE_CHECKING:
    from driftcar.stats import DriftConfig

__all__ = ["SlidingViews", "MAX_KS"]

#: window counts whose views are kept up to date, per model
MAX_KS = 8

_Key = tuple[str, str, int]  # model, version, k


class SlidingViews:
    """Stored sliding views per (model, version, k); each is valid while the model's closed windows are."""

    def __init__(self, drift_config: DriftConfig | None = None):
        self.drift_config = drift_config
        self._lock = threading.Lock()
        self._ks: dict[tuple[str, str], list[int]] = {}  # most recently asked last
        self._views: dict[_Key, tuple[object, tuple, EvaluationResult | None]] = {}  # (reference, stamp, view)

    def view(self, state: ModelState, k: int) -> tuple[EvaluationResult | None, int]:
        """The view over the last ``k`` closed windows and how many there were (None: none, or no reference)."""
        self._remember(state, k)
        return self._current(state, k)

    def refresh(self, states: Iterable[ModelState]) -> None:
        """Recompute the remembered views of ``states`` (after a window close, off the loop)."""
        for state in states:
            for k in list(self._ks.get((state.model, state.version), ())):
                self._current(state, k)

    def _current(self, state: ModelState, k: int) -> tuple[EvaluationResult | None, int]:
        key = (state.model, state.version, k)
        prof = state.profile
        windows = list(state.closed)[-k:]
        stamp = (len(windows), windows[0].start_ns, windows[-1].end_ns) if windows else (0,)
        stored = self._views.get(key)
        if stored is not None and stored[0] is prof and stored[1] == stamp:
            return stored[2], len(windows)
        result = self._compute(prof, windows)
        self._views[key] = (prof, stamp, result)
        return result, len(windows)

    def _remember(self, state: ModelState, k: int) -> None:
        model = (state.model, state.version)
        with self._lock:
            ks = self._ks.setdefault(model, [])
            if ks and ks[-1] == k:
                return
            if k in ks:
                ks.remove(k)
            ks.append(k)
            while len(ks) > MAX_KS:
                self._views.pop((*model, ks.pop(0)), None)

    def _compute(self, prof, windows: list) -> EvaluationResult | None:
        from driftcar.stats import DriftConfig, evaluate_drift

        if not windows or prof is None:
            return None
        merged = windows[0].sketch
        for w in windows[1:]:
            merged = merged.merge(w.sketch)
        report = evaluate_drift(prof, merged, self.drift_config or DriftConfig())
        rows = sum(w.rows for w in windows)
        return EvaluationResult(windows[0].start_ns, windows[-1].end_ns, rows, report, {}, {}, None, merged)

