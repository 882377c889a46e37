"""In-memory stand-in for ``driftcar.sidecar.telemetry.Telemetry`` (unit tests only).

Records every call as ``(method, args)`` and keeps counters/gauges in dicts so tests
can assert on what the core reported without any exporter.
"""

from __future__ import annotations

import threading
from collections import defaultdict


class FakeTelemetry:
    def __init__(self):
        self.calls: list[tuple[str, tuple]] = []
        self.counters: dict[tuple, float] = defaultdict(float)
        self.gauges: dict[tuple, object] = {}
        self.events: list[dict] = []
        self.histograms: dict[tuple, tuple] = {}
        self.flushes = 0
        self.started = False
        self.stopped = False
        self._lock = threading.Lock()

    def _rec(self, name, *args):
        with self._lock:
            self.calls.append((name, args))

    def start(self):
        self.started = True

    def shutdown(self, timeout_s=5.0):
        self.stopped = True
        return True

    def force_flush(self, timeout_s=5.0):
        self.flushes += 1
        return True

    def add_calls(self, model, version, method, error_type, n):
        self._rec("add_calls", model, version, method, error_type, n)
        self.counters[("calls", model, version, method, error_type)] += n

    def add_rows(self, model, version, n):
        self.counters[("rows", model, version)] += n

    def record_durations(self, model, version, method, durations_s):
        self._rec("record_durations", model, version, method, list(durations_s))

    def set_histogram(self, kind, model, version, name, bounds, counts, total_sum, count):
        self.histograms[(kind, model, version, name)] = (list(bounds), list(counts), total_sum, count)

    def add_missing(self, model, version, feature, n):
        self.counters[("missing", model, version, feature)] += n

    def add_category(self, model, version, feature, category, n):
        self.counters[("category", model, version, feature, category)] += n

    def add_prediction_class(self, model, version, cls, n):
        self.counters[("class", model, version, cls)] += n

    def set_drift(self, model, version, feature, method, window, score, pvalue, threshold, detected):
        self.gauges[("drift", model, version, feature, method)] = (score, pvalue, threshold, detected, window)

    def set_performance(self, model, version, metric, value):
        self.gauges[("performance", model, version, metric)] = value

    def set_estimated_accuracy(self, model, version, value):
        self.gauges[("estimated_accuracy", model, version)] = value

    def add_receiver_batches(self, outcome, n):
        self.counters[("batches", outcome)] += n

    def add_ignored_records(self, n):
        self.counters[("ignored",)] += n

    def set_hook_dropped(self, model, version, total):
        self.gauges[("hook_dropped", model, version)] = total

    def set_coverage(self, model, version, share):
        self.gauges[("coverage", model, version)] = share

    def set_queue_size(self, rows):
        self.gauges[("queue",)] = rows

    def set_state_models(self, n):
        self.gauges[("models",)] = n

    def add_labels_unmatched(self, model, version, reason, n):
        self.counters[("unmatched", model, version, reason)] += n

    def emit_event(self, event_name, severity, body, attributes):
        with self._lock:
            self.events.append({"event_name": event_name, "severity": severity, "body": body,
                                "attributes": dict(attributes)})

    def prometheus_text(self):
        return "# fake\n"

    def recent_events(self, limit=100):
        with self._lock:
            return list(self.events[-limit:])
