"""One window's golden signals in mergeable form (calls per method/error, bucketed durations).

A pod's telemetry counts calls cumulatively; a fleet gateway needs each window's
share to add the replicas' up, so the state keeps this small per-window copy.
Bounded by the telemetry's caps upstream (methods and error types are few); a
hard cap of :data:`MAX_KEYS` keys folds the rest into ``__other__``.
"""

from __future__ import annotations

import collections

import numpy as np

from driftcar.wire.window import DURATION_BOUNDS_S

__all__ = ["GoldenWindow", "MAX_KEYS"]

MAX_KEYS = 256
_BOUNDS = np.asarray(DURATION_BOUNDS_S)


class GoldenWindow:
    """Calls and duration buckets of one window; one writer (the ingest worker)."""

    __slots__ = ("calls", "durations")

    def __init__(self) -> None:
        self.calls: collections.Counter[tuple[str, str | None]] = collections.Counter()
        self.durations: dict[str, list] = {}  # method -> [bucket counts (int64), sum of seconds]

    def add_calls(self, method: str, error_type: str | None, count: int) -> None:
        key = (method, error_type)
        if key not in self.calls and len(self.calls) >= MAX_KEYS:
            key = ("__other__", error_type if error_type is None else "__other__")
        self.calls[key] += int(count)

    def add_durations(self, method: str, durations_s: np.ndarray) -> None:
        values = np.asarray(durations_s, dtype=np.float64)
        values = values[np.isfinite(values)]
        if not values.size:
            return
        if method not in self.durations and len(self.durations) >= MAX_KEYS:
            method = "__other__"
        entry = self.durations.setdefault(method, [np.zeros(_BOUNDS.size + 1, dtype=np.int64), 0.0])
        entry[0] += np.bincount(np.searchsorted(_BOUNDS, values, side="left"), minlength=_BOUNDS.size + 1)
        entry[1] += float(values.sum())

    def merge(self, calls, durations) -> None:
        """Add a decoded record's ``calls`` and ``durations`` (see ``driftcar.wire.window``)."""
        for method, error, count in calls:
            self.add_calls(method, error, count)
        for method, counts, total in durations:
            if method not in self.durations and len(self.durations) >= MAX_KEYS:
                method = "__other__"
            entry = self.durations.setdefault(method, [np.zeros(_BOUNDS.size + 1, dtype=np.int64), 0.0])
            entry[0] += np.asarray(counts, dtype=np.int64)
            entry[1] += float(total)

    def wire(self) -> tuple[list, list]:
        """(calls, durations) in the record's form."""
        calls = [(m, e, int(c)) for (m, e), c in self.calls.items()]
        durations = [(m, v[0].tolist(), float(v[1])) for m, v in self.durations.items()]
        return calls, durations
