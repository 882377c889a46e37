"""In-memory metric state: cumulative counters, last-value gauges and explicit-bucket histograms.

Why not the OTel SDK instruments: the SDK ``Histogram`` drops negative values
and costs ~9 µs per record, while the sidecar already holds bucket counts in
its own sketches. This state stores exactly what is exported; both the OTLP
builder and the Prometheus exposition read the same :meth:`MetricState.snapshot`.

Thread-safety: every method takes one lock for a few dictionary operations
(never blocks on I/O), so it is safe from the event loop and worker threads.

>>> state = MetricState()
>>> state.add("driftcar.inference.rows", (("model.name", "m"), ("model.version", "1")), 5)
>>> state.add("driftcar.inference.rows", (("model.name", "m"), ("model.version", "1")), 2)
>>> [(s.name, s.value) for s in state.snapshot()]
[('driftcar.inference.rows', 7)]
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from driftcar.sidecar.telemetry.names import COUNTER, GAUGE, HISTOGRAM, METRICS

__all__ = ["Attrs", "HistogramValue", "Series", "MetricState", "validate_bounds"]

#: attributes of one series: ((key, value), ...) in the metric's attribute order
Attrs = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class HistogramValue:
    """Cumulative explicit-bucket histogram: ``counts[i]`` counts values in ``(bounds[i-1], bounds[i]]``;
    ``len(counts) == len(bounds) + 1`` (the last bucket is ``(bounds[-1], +inf)``)."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float
    count: int


@dataclass(frozen=True)
class Series:
    """One exported series in a snapshot (immutable copy)."""

    name: str
    attributes: Attrs
    value: int | float | HistogramValue


def validate_bounds(bounds: Sequence[float]) -> np.ndarray:
    """Explicit bucket bounds as float64; ``ValueError`` unless finite and strictly increasing."""
    array = np.asarray(bounds, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"histogram bounds must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("histogram bounds must be finite")
    if array.size > 1 and not np.all(np.diff(array) > 0):
        raise ValueError("histogram bounds must be strictly increasing")
    return array


class MetricState:
    """Thread-safe map (metric name, attributes) -> current cumulative value."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[str, dict[Attrs, object]] = {name: {} for name in METRICS}

    def _points(self, name: str, expected: str) -> dict[Attrs, object]:
        spec = METRICS.get(name)
        if spec is None:
            raise KeyError(f"unknown metric {name!r}")
        if spec.type != expected:
            raise TypeError(f"{name} is a {spec.type}, not a {expected}")
        return self._series[name]

    def add(self, name: str, attrs: Attrs, n: int | float) -> None:
        """Add ``n >= 0`` to a counter (created at 0)."""
        if not n >= 0 or not math.isfinite(n):
            raise ValueError(f"counter increments must be finite and >= 0, got {n!r}")
        with self._lock:
            points = self._points(name, COUNTER)
            points[attrs] = points.get(attrs, 0) + n

    def set_counter(self, name: str, attrs: Attrs, total: int | float) -> None:
        """Set a counter to a cumulative total (kept monotonic: a smaller total is ignored)."""
        with self._lock:
            points = self._points(name, COUNTER)
            # A zero total still creates the series: rate()/increase() need the 0 before the first drop.
            if attrs not in points or total > points[attrs]:
                points[attrs] = total

    def set_gauge(self, name: str, attrs: Attrs, value: float) -> None:
        with self._lock:
            self._points(name, GAUGE)[attrs] = float(value)

    def remove(self, name: str, attrs: Attrs) -> None:
        """Forget one series (e.g. a gauge whose deciding test changed)."""
        with self._lock:
            self._series[name].pop(attrs, None)

    def set_histogram(self, name: str, attrs: Attrs, value: HistogramValue) -> None:
        with self._lock:
            self._points(name, HISTOGRAM)[attrs] = value

    def add_to_histogram(self, name: str, attrs: Attrs, bounds: np.ndarray, values: np.ndarray) -> None:
        """Bucket ``values`` into fixed ``bounds`` and add them to the cumulative histogram (one numpy pass)."""
        values = np.asarray(values, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        # side="left": a value equal to a bound falls in the bucket that bound closes (OTel semantics)
        counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=bounds.size + 1)
        self.add_counts_to_histogram(name, attrs, bounds, counts, float(values.sum()))

    def add_counts_to_histogram(self, name: str, attrs: Attrs, bounds: np.ndarray, counts, total: float) -> None:
        """Add bucket ``counts`` (len(bounds) + 1) and their ``total`` to the cumulative histogram."""
        counts = np.asarray(counts, dtype=np.int64)
        if counts.shape != (bounds.size + 1,):
            raise ValueError(f"{bounds.size + 1} bucket counts expected, got {counts.shape}")
        with self._lock:
            points = self._points(name, HISTOGRAM)
            old = points.get(attrs)
            if old is not None:
                counts = counts + np.asarray(old.counts)
                total += old.sum
            points[attrs] = HistogramValue(
                tuple(float(b) for b in bounds), tuple(int(c) for c in counts), total, int(counts.sum())
            )

    def get(self, name: str, attrs: Attrs):
        with self._lock:
            return self._series[name].get(attrs)

    def snapshot(self) -> list[Series]:
        """All series, metrics in contract order, series sorted by attributes (a consistent copy)."""
        with self._lock:
            return [
                Series(name, attrs, value)
                for name, points in self._series.items()
                for attrs, value in sorted(points.items())
            ]

    def series_count(self) -> int:
        with self._lock:
            return sum(len(points) for points in self._series.values())
