"""The sidecar's telemetry: one object the core calls, feeding OTLP export, Prometheus text and events.

The core reports what it measured (counters add, gauges set, histograms set
from its own sketches); this object applies the cardinality caps, keeps the
cumulative state, exports it as OTLP metrics every ``export_interval_s`` on a
daemon thread (and on :meth:`Telemetry.force_flush` / :meth:`Telemetry.shutdown`),
renders the same state as Prometheus text, and emits log events.

Contracts: every method is thread-safe; the recording methods never block on
I/O (a lock and a few dict operations); bad arguments raise ``ValueError``.
``force_flush`` and ``shutdown`` block up to their timeout.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import IO, Mapping, Sequence

import numpy as np
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource

from driftcar._version import __version__
from driftcar.sidecar.telemetry import names as n
from driftcar.sidecar.telemetry.caps import CardinalityCaps
from driftcar.sidecar.telemetry.config import TelemetryConfig
from driftcar.sidecar.telemetry.events import EventLog
from driftcar.sidecar.telemetry.exporters import (
    HTTP_PROTOBUF,
    ConsoleLogExporter,
    ConsoleMetricExporter,
    ExportStats,
    GrpcLogExporter,
    GrpcMetricExporter,
    HttpLogExporter,
    HttpMetricExporter,
    resolve_protocol,
    resolve_timeout_s,
)
from driftcar.sidecar.telemetry.otlp import (
    DEFAULT_MAX_REQUEST_BYTES,
    SCOPE_NAME,
    build_metrics_data,
    count_points,
    split_metrics_data,
)
from driftcar.sidecar.telemetry.prometheus import render
from driftcar.sidecar.telemetry.state import Attrs, HistogramValue, MetricState, validate_bounds

__all__ = ["Telemetry", "DURATION_BOUNDS_S", "DEFAULT_SERVICE_NAME", "build_resource"]

logger = logging.getLogger(__name__)

#: fixed bucket upper bounds (seconds) of driftcar.inference.duration: 100 µs .. 10 s
DURATION_BOUNDS_S = np.array(
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
     7.5, 10.0]
)
DEFAULT_SERVICE_NAME = "driftcar-sidecar"
#: folded (over-cap) features whose histogram totals / drift verdicts are tracked, per model
MAX_FOLDED_TRACKED = 10_000


_KINDS = ("feature", "prediction")


def build_resource(attributes: Mapping[str, object]) -> Resource:
    """SDK resource: explicit attributes over ``OTEL_RESOURCE_ATTRIBUTES`` / ``OTEL_SERVICE_NAME``;
    ``service.name`` defaults to ``driftcar-sidecar`` instead of ``unknown_service``."""
    resource = Resource.create(dict(attributes))
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def _http_url(endpoint: str | None, signal: str) -> str | None:
    """Base URL -> signal URL (``http://h:4318`` -> ``http://h:4318/v1/metrics``); a URL that already
    names a signal path keeps its base. ``None`` lets the SDK read the OTEL_* variables."""
    if not endpoint:
        return None
    base = endpoint.rstrip("/")
    for known in ("/v1/metrics", "/v1/logs", "/v1/traces"):
        if base.endswith(known):
            base = base[: -len(known)]
    return f"{base}/v1/{signal}"


def _count(n_: int, what: str) -> int:
    if isinstance(n_, (bool, float)) or not isinstance(n_, (int, np.integer)) or n_ < 0:
        raise ValueError(f"{what} must be an integer >= 0, got {n_!r}")
    return int(n_)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _finite(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return value


class Telemetry:
    """Thread-safe metric state + exporters + events for one sidecar process."""

    def __init__(self, config: TelemetryConfig | None = None, *, stream: IO[str] | None = None,
                 initial_backoff_s: float | None = None):
        self.config = cfg = config or TelemetryConfig()
        self.start_time_unix_nano = time.time_ns()
        self.resource = build_resource(cfg.resource_attributes)
        self.interval_s = cfg.resolved_interval_s()
        self.stats = ExportStats()
        self._state = MetricState()
        self._models = CardinalityCaps(cfg.max_models)
        self._features = CardinalityCaps(cfg.max_features_per_model, exempt=frozenset({n.MULTIVARIATE, n.PREDICTION}))
        self._categories = CardinalityCaps(cfg.max_categories)
        self._small = CardinalityCaps(cfg.max_categories)  # method, error.type, class
        self._lock = threading.Lock()  # the memos below
        self._deciding: dict[tuple, Attrs] = {}  # (model attrs, feature) -> attrs of its detected series
        self._overflow_hist: dict[tuple, dict[str, tuple[int, float]]] = {}  # folded features' (count, sum)
        self._overflow_detected: dict[tuple, set[str]] = {}  # folded features currently detected
        self._metric_exporter = None
        self._log_exporter = None
        self._logger_provider = None
        if cfg.export == "otlp":
            self._metric_exporter = self._otlp_exporter("metrics", HttpMetricExporter, GrpcMetricExporter,
                                                        initial_backoff_s)
            self._log_exporter = self._otlp_exporter("logs", HttpLogExporter, GrpcLogExporter, initial_backoff_s)
        elif cfg.export == "console":
            self._metric_exporter = ConsoleMetricExporter(stream)
            self._log_exporter = ConsoleLogExporter(stream)
        sdk_logger = None
        if self._log_exporter is not None:
            self._logger_provider = LoggerProvider(resource=self.resource, shutdown_on_exit=False)
            self._logger_provider.add_log_record_processor(BatchLogRecordProcessor(self._log_exporter))
            sdk_logger = self._logger_provider.get_logger(SCOPE_NAME, __version__)
        self._events = EventLog(sdk_logger, cfg.max_events)
        self._export_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.max_request_bytes = DEFAULT_MAX_REQUEST_BYTES  # per OTLP metrics request (serialized)

    def _otlp_exporter(self, signal: str, http_cls, grpc_cls, initial_backoff_s: float | None):
        """The OTLP exporter of one signal ("metrics" or "logs") on the configured protocol."""
        endpoint = self.config.otlp_endpoint
        timeout = resolve_timeout_s(signal)
        if resolve_protocol(signal, self.config.otlp_protocol) == HTTP_PROTOBUF:
            return http_cls(endpoint=_http_url(endpoint, signal), timeout=timeout, stats=self.stats)
        return grpc_cls(endpoint=endpoint, timeout=timeout, stats=self.stats, initial_backoff_s=initial_backoff_s)

    # ------------------------------------------------------------------ attributes and caps

    def _model(self, model: str, version: str) -> Attrs:
        model, version = _text(model, "model"), _text(str(version), "version")
        key, new = self._models.fold((), f"{model}\x00{version}", n.OVERFLOW)
        if key == n.OVERFLOW:
            attrs = ((n.MODEL_NAME, n.OVERFLOW), (n.MODEL_VERSION, n.OVERFLOW))
            attrs += ((n.SCOPE, self.config.scope),) if self.config.scope else ()
            if new:
                self._state.add("driftcar.cardinality.overflow", attrs + ((n.ATTRIBUTE, n.MODEL_NAME),), 1)
            return attrs
        attrs = ((n.MODEL_NAME, model), (n.MODEL_VERSION, version))
        return attrs + ((n.SCOPE, self.config.scope),) if self.config.scope else attrs

    def _fold(self, caps: CardinalityCaps, mattrs: Attrs, scope: tuple, key: str, value: str, overflow: str) -> str:
        folded, new = caps.fold(scope, _text(value, key), overflow)
        if new:
            self._state.add("driftcar.cardinality.overflow", mattrs + ((n.ATTRIBUTE, key),), 1)
        return folded

    def _feature(self, mattrs: Attrs, feature: str) -> str:
        return self._fold(self._features, mattrs, (mattrs,), n.FEATURE_NAME, feature, n.OVERFLOW)

    # ------------------------------------------------------------------ golden signals
    def add_calls(self, model: str, version: str, method: str, error_type: str | None, n_: int) -> None:
        mattrs = self._model(model, version)
        attrs = mattrs + ((n.METHOD, self._fold(self._small, mattrs, (mattrs, n.METHOD), n.METHOD, method, n.OTHER)),)
        if error_type is not None:
            attrs += ((n.ERROR_TYPE, self._fold(self._small, mattrs, (mattrs, n.ERROR_TYPE), n.ERROR_TYPE,
                                                error_type, n.OTHER)),)
        self._state.add("driftcar.inference.calls", attrs, _count(n_, "n"))

    def add_rows(self, model: str, version: str, n_: int) -> None:
        self._state.add("driftcar.inference.rows", self._model(model, version), _count(n_, "n"))

    def record_durations(self, model: str, version: str, method: str, durations_s: np.ndarray) -> None:
        """Add call durations (seconds) into the fixed :data:`DURATION_BOUNDS_S` buckets; NaN/inf ignored."""
        mattrs = self._model(model, version)
        attrs = mattrs + ((n.METHOD, self._fold(self._small, mattrs, (mattrs, n.METHOD), n.METHOD, method, n.OTHER)),)
        self._state.add_to_histogram("driftcar.inference.duration", attrs, DURATION_BOUNDS_S, durations_s)

    # ------------------------------------------------------------------ distributions
    def set_histogram(self, kind: str, model: str, version: str, name: str | None, bounds: Sequence[float],
                      counts: Sequence[int], total_sum: float, count: int) -> None:
        """Set a cumulative histogram from the core's sketch.

        ``counts[i]`` counts values in ``(bounds[i-1], bounds[i]]``, ``len(counts) == len(bounds) + 1``,
        ``sum(counts) == count``. Features beyond the cap fold into one ``__overflow__`` histogram with
        no bounds (their bins differ), whose count and sum are the totals of the folded features.
        """
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        edges = validate_bounds(bounds)
        bucket_counts = np.asarray(counts)
        if bucket_counts.shape != (edges.size + 1,):
            raise ValueError(f"counts must have len(bounds) + 1 = {edges.size + 1} entries, got {bucket_counts.shape}")
        if bucket_counts.size and (bucket_counts.min() < 0 or not np.all(bucket_counts == np.round(bucket_counts))):
            raise ValueError("counts must be non-negative integers")
        count = _count(count, "count")
        if int(bucket_counts.sum()) != count:
            raise ValueError(f"count {count} != sum(counts) {int(bucket_counts.sum())}")
        total_sum = _finite(total_sum, "total_sum")
        mattrs = self._model(model, version)
        if kind == "prediction":
            metric, attrs = "driftcar.prediction.value", mattrs
        else:
            metric = "driftcar.feature.value"
            feature = self._feature(mattrs, name)
            attrs = mattrs + ((n.FEATURE_NAME, feature),)
            if feature == n.OVERFLOW and name != n.OVERFLOW:
                with self._lock:
                    memo = self._overflow_hist.setdefault(mattrs, {})
                    if name not in memo and len(memo) >= MAX_FOLDED_TRACKED:
                        return  # bounded memory: beyond this many folded features, later ones are not added
                    memo[name] = (count, total_sum)
                    c = sum(v[0] for v in memo.values())
                    s = float(sum(v[1] for v in memo.values()))
                self._state.set_histogram(metric, attrs, HistogramValue((), (c,), s, c))
                return
        value = HistogramValue(tuple(float(b) for b in edges), tuple(int(c) for c in bucket_counts), total_sum, count)
        self._state.set_histogram(metric, attrs, value)

    def add_missing(self, model: str, version: str, feature: str, n_: int) -> None:
        mattrs = self._model(model, version)
        self._state.add("driftcar.feature.missing", mattrs + ((n.FEATURE_NAME, self._feature(mattrs, feature)),),
                        _count(n_, "n"))

    def add_category(self, model: str, version: str, feature: str, category: str, n_: int) -> None:
        mattrs = self._model(model, version)
        feature = self._feature(mattrs, feature)
        category = self._fold(self._categories, mattrs, (mattrs, feature), n.CATEGORY, str(category), n.OTHER)
        self._state.add("driftcar.feature.category", mattrs + ((n.FEATURE_NAME, feature), (n.CATEGORY, category)),
                        _count(n_, "n"))

    def add_prediction_class(self, model: str, version: str, cls: object, n_: int) -> None:
        mattrs = self._model(model, version)
        folded = self._fold(self._small, mattrs, (mattrs, n.CLASS), n.CLASS, str(cls), n.OTHER)
        self._state.add("driftcar.prediction.class", mattrs + ((n.CLASS, folded),), _count(n_, "n"))

    # ------------------------------------------------------------------ drift and quality
    def set_drift(self, model: str, version: str, feature: str, method: str, window: str, score: float,
                  pvalue: float | None, threshold: float, detected: bool | None) -> None:
        """Gauges of one drift test; ``detected`` (only for a feature's deciding test) keeps exactly one
        ``driftcar.drift.detected`` series per feature: a new deciding method replaces the old series.
        Folded features export only ``detected`` on ``__overflow__`` (1 while any folded feature drifts)."""
        mattrs = self._model(model, version)
        method, window = _text(method, "method"), _text(window, "window")
        score, threshold = _finite(score, "score"), _finite(threshold, "threshold")
        folded = self._feature(mattrs, feature)
        if folded == n.OVERFLOW and feature != n.OVERFLOW:
            if detected is not None:
                with self._lock:
                    drifting = self._overflow_detected.setdefault(mattrs, set())
                    if not detected:
                        drifting.discard(feature)
                    elif len(drifting) < MAX_FOLDED_TRACKED:
                        drifting.add(feature)
                    value = 1.0 if drifting else 0.0
                attrs = mattrs + ((n.FEATURE_NAME, n.OVERFLOW), (n.DRIFT_METHOD, n.OVERFLOW), (n.DRIFT_WINDOW, window))
                self._replace_deciding((mattrs, n.OVERFLOW), attrs)
                self._state.set_gauge("driftcar.drift.detected", attrs, value)
            return
        attrs = mattrs + ((n.FEATURE_NAME, folded), (n.DRIFT_METHOD, method), (n.DRIFT_WINDOW, window))
        self._state.set_gauge("driftcar.drift.score", attrs, score)
        self._state.set_gauge("driftcar.drift.threshold", attrs, threshold)
        if pvalue is not None and math.isfinite(float(pvalue)):
            self._state.set_gauge("driftcar.drift.pvalue", attrs, float(pvalue))
        else:  # decided by its score this window: a p-value left from an earlier window would mislabel the threshold
            self._state.remove("driftcar.drift.pvalue", attrs)
        if detected is not None:
            self._replace_deciding((mattrs, folded), attrs)
            self._state.set_gauge("driftcar.drift.detected", attrs, 1.0 if detected else 0.0)

    def _replace_deciding(self, key: tuple, attrs: Attrs) -> None:
        with self._lock:
            old = self._deciding.get(key)
            self._deciding[key] = attrs
        if old is not None and old != attrs:
            self._state.remove("driftcar.drift.detected", old)

    def set_performance(self, model: str, version: str, metric: str, value: float) -> None:
        if metric not in n.PERFORMANCE_METRICS:
            raise ValueError(f"metric must be one of {n.PERFORMANCE_METRICS}, got {metric!r}")
        self._state.set_gauge("driftcar.performance.score", self._model(model, version) + ((n.METRIC, metric),),
                              _finite(value, "value"))

    def set_estimated_accuracy(self, model: str, version: str, value: float) -> None:
        self._state.set_gauge("driftcar.performance.estimated_accuracy", self._model(model, version),
                              _finite(value, "value"))

    # ------------------------------------------------------------------ self
    def add_receiver_batches(self, outcome: str, n_: int) -> None:
        if outcome not in n.OUTCOMES:
            raise ValueError(f"outcome must be one of {n.OUTCOMES}, got {outcome!r}")
        self._state.add("driftcar.receiver.batches", ((n.OUTCOME, outcome),), _count(n_, "n"))

    def add_ignored_records(self, n_: int) -> None:
        self._state.add("driftcar.receiver.records.ignored", (), _count(n_, "n"))

    def set_hook_dropped(self, model: str, version: str, total: int) -> None:
        """The model's hook drop total, as :class:`~driftcar.sidecar.signals.HookDrops` counts it (the
        one home of that count: the JSON API and the checkpoint read the same object)."""
        self._state.set_counter("driftcar.hook.dropped", self._model(model, version), _count(total, "total"))

    def set_coverage(self, model: str, version: str, share: float) -> None:
        """Share (0..1) of the model's profiled features seen in its last window with traffic."""
        share = _finite(share, "share")
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be in [0, 1], got {share!r}")
        self._state.set_gauge("driftcar.reference.coverage", self._model(model, version), share)

    def add_fleet_windows(self, outcome: str, n_: int) -> None:
        if outcome not in n.FLEET_OUTCOMES:
            raise ValueError(f"outcome must be one of {n.FLEET_OUTCOMES}, got {outcome!r}")
        self._state.add("driftcar.fleet.windows", ((n.OUTCOME, outcome),), _count(n_, "n"))

    def set_fleet_replicas(self, model: str, version: str, replicas: int) -> None:
        self._state.set_gauge("driftcar.fleet.replicas", self._model(model, version), float(_count(replicas, "n")))

    def add_duration_counts(self, model: str, version: str, method: str, counts, total_s: float) -> None:
        """Add pre-bucketed call durations (a fleet window's) to ``driftcar.inference.duration``."""
        mattrs = self._model(model, version)
        attrs = mattrs + ((n.METHOD, self._fold(self._small, mattrs, (mattrs, n.METHOD), n.METHOD, method, n.OTHER)),)
        self._state.add_counts_to_histogram("driftcar.inference.duration", attrs, DURATION_BOUNDS_S, counts,
                                            _finite(total_s, "total_s"))

    def set_queue_size(self, rows: int) -> None:
        self._state.set_gauge("driftcar.receiver.queue.size", (), _count(rows, "rows"))

    def set_state_models(self, n_: int) -> None:
        self._state.set_gauge("driftcar.state.models", (), _count(n_, "n"))

    def add_labels_unmatched(self, model: str, version: str, reason: str, n_: int) -> None:
        if reason not in n.LABEL_REASONS:
            raise ValueError(f"reason must be one of {n.LABEL_REASONS}, got {reason!r}")
        self._state.add("driftcar.labels.unmatched", self._model(model, version) + ((n.REASON, reason),),
                        _count(n_, "n"))

    # ------------------------------------------------------------------ events
    def emit_event(self, event_name: str, severity: str, body: str, attributes: Mapping[str, object]) -> None:
        """An OTLP log record with ``event_name`` (exported in the background) + the in-memory ring."""
        if self.config.scope and n.MODEL_NAME in attributes:
            attributes = {**attributes, n.SCOPE: self.config.scope}
        self._events.emit(event_name, severity, body, attributes)

    def recent_events(self, limit: int = 100) -> list[dict]:
        return self._events.recent(limit)

    # ------------------------------------------------------------------ readers
    def snapshot(self) -> list:
        """Every current series (immutable copies), for read-only views such as the live page."""
        return self._state.snapshot()

    def prometheus_text(self) -> str:
        return render(self._state.snapshot(), dict(self.resource.attributes))

    def metrics_data(self):
        """OTLP ``opentelemetry.proto.metrics.v1.metrics_pb2.MetricsData`` of the current state."""
        return build_metrics_data(
            self._state.snapshot(),
            dict(self.resource.attributes),
            start_time_unix_nano=self.start_time_unix_nano,
            time_unix_nano=time.time_ns(),
            scope_version=__version__,
        )

    def export_stats(self) -> dict:
        """Per signal: exports, failures, retries, rejected (partial success), last error."""
        return self.stats.as_dict()

    def series_count(self) -> int:
        return self._state.series_count()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the periodic export thread (no-op without an exporter or when already started)."""
        if self._metric_exporter is None or self._thread is not None or self._closed:
            return
        self._thread = threading.Thread(target=self._run, name="driftcar-telemetry-export", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._export_metrics()

    def _export_metrics(self) -> bool:
        """Collect and export once; never raises (the sidecar must not die on its exporter)."""
        if self._metric_exporter is None:
            return True
        with self._export_lock:
            try:
                data = self.metrics_data()
                if not count_points(data):
                    return True
                ok = True
                for piece in split_metrics_data(data, self.max_request_bytes):
                    result = self._metric_exporter.export(piece)
                    ok = getattr(result, "name", str(result)) == "SUCCESS" and ok
                return ok
            except Exception:
                logger.exception("driftcar telemetry: metric export failed")
                return False

    def _bounded(self, work, timeout_s: float) -> bool:
        """Run ``work() -> bool`` on a helper thread; False if it did not finish in time."""
        outcome: list[bool] = []
        thread = threading.Thread(target=lambda: outcome.append(bool(work())), daemon=True,
                                  name="driftcar-telemetry-flush")
        thread.start()
        thread.join(timeout_s)
        return bool(outcome and outcome[0])

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Export metrics now and flush pending events; True if both completed in time."""
        deadline = time.monotonic() + timeout_s

        def work() -> bool:
            ok = self._export_metrics()
            if self._logger_provider is not None:
                remaining_ms = max((deadline - time.monotonic()) * 1000, 1)
                ok = self._logger_provider.force_flush(int(remaining_ms)) and ok
            return ok

        return self._bounded(work, timeout_s)

    def shutdown(self, timeout_s: float = 10.0) -> bool:
        """Stop the export thread, do a final export of metrics and events, close exporters.

        Bounded: at the deadline pending retries are abandoned and False is returned. Idempotent.
        """
        if self._closed:
            return True
        self._closed = True
        deadline = time.monotonic() + timeout_s
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(deadline - time.monotonic(), 0))
        ok = self.force_flush(max(deadline - time.monotonic(), 0.001))

        def close() -> bool:
            if self._logger_provider is not None:
                self._logger_provider.shutdown()
            if self._metric_exporter is not None:
                self._metric_exporter.shutdown()
            return True

        closed = self._bounded(close, max(deadline - time.monotonic(), 0.001))
        if not closed:  # interrupt retry back-offs so daemon threads end soon
            for exporter in (self._metric_exporter, self._log_exporter):
                try:
                    if exporter is not None and hasattr(exporter, "_shutdown_in_progress"):
                        exporter._shutdown_in_progress.set()
                except Exception:
                    pass
        return ok and closed
