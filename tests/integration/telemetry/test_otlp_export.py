"""The sidecar's metrics and events reach real OTLP receivers (gRPC and HTTP on 127.0.0.1) intact.

Each test starts its own receiver and Telemetry; every wait has a deadline.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig
from driftcar.wire.otlp import any_value_to_python
from tests.support.otlp import GrpcOtlpReceiver, HttpOtlpReceiver
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

CUMULATIVE = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
OTEL_VARS = [
    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME", "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_BLRP_SCHEDULE_DELAY",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in OTEL_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "50")  # events leave within 50 ms


RECEIVERS = {"grpc": GrpcOtlpReceiver, "http/protobuf": HttpOtlpReceiver}


@pytest.fixture(params=sorted(RECEIVERS))
def protocol(request):
    return request.param


@pytest.fixture
def receiver(protocol):
    with RECEIVERS[protocol]() as rx:
        yield rx


def metrics_by_name(requests) -> dict[str, list]:
    """metric name -> list of Metric messages (one per export request)."""
    out: dict[str, list] = {}
    for req in requests:
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out.setdefault(metric.name, []).append(metric)
    return out


def attrs(point) -> dict:
    return {kv.key: any_value_to_python(kv.value) for kv in point.attributes}


def feed(tel: Telemetry) -> dict:
    """A little of everything; returns the histogram that was set (signed feature values)."""
    rng = np.random.default_rng(7)
    values = rng.normal(-2.0, 1.5, 1000)  # mostly negative: the SDK Histogram would drop these
    bounds = np.quantile(values, [0.1, 0.25, 0.5, 0.75, 0.9])
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=bounds.size + 1)
    tel.set_histogram("feature", "churn", "3", "balance", bounds, counts, float(values.sum()), values.size)
    tel.add_calls("churn", "3", "predict", None, 10)
    tel.add_calls("churn", "3", "predict", "ValueError", 2)
    tel.add_rows("churn", "3", 1000)
    tel.record_durations("churn", "3", "predict", np.array([0.0004, 0.002, 0.002]))
    tel.set_drift("churn", "3", "balance", "ks", "1m", 0.31, 1e-6, 0.0025, True)
    tel.add_receiver_batches("accepted", 4)
    return {"bounds": list(bounds), "counts": [int(c) for c in counts], "sum": float(values.sum()), "count": 1000}


def test_metrics_exported_intact_with_negative_bounds(receiver, protocol, monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "churn-sidecar")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=pod-1,deployment.environment=test")
    tel = Telemetry(TelemetryConfig(otlp_endpoint=receiver.endpoint, otlp_protocol=protocol))
    try:
        expected = feed(tel)
        assert tel.force_flush(10)
        tel.add_rows("churn", "3", 500)
        assert tel.force_flush(10)
    finally:
        assert tel.shutdown(10)
    wait_until(lambda: len(receiver.metrics) >= 2, 10, what="two metric exports")
    first, second = receiver.metrics[0], receiver.metrics[1]
    resource = {kv.key: any_value_to_python(kv.value) for kv in first.resource_metrics[0].resource.attributes}
    assert resource["service.name"] == "churn-sidecar"
    assert resource["k8s.pod.name"] == "pod-1" and resource["deployment.environment"] == "test"

    metrics = metrics_by_name([first])
    hist = metrics["driftcar.feature.value"][0]
    assert hist.unit == "{value}" and hist.histogram.aggregation_temporality == CUMULATIVE
    point = hist.histogram.data_points[0]
    assert attrs(point) == {"model.name": "churn", "model.version": "3", "feature.name": "balance"}
    assert list(point.explicit_bounds) == pytest.approx(expected["bounds"], abs=0)  # bit-exact doubles
    assert min(point.explicit_bounds) < 0
    assert list(point.bucket_counts) == expected["counts"]
    assert point.count == expected["count"] and point.sum == pytest.approx(expected["sum"], rel=1e-12)

    calls = metrics["driftcar.inference.calls"][0]
    assert calls.sum.is_monotonic and calls.sum.aggregation_temporality == CUMULATIVE
    by_error = {attrs(p).get("error.type"): p.as_int for p in calls.sum.data_points}
    assert by_error == {None: 10, "ValueError": 2}
    detected = metrics["driftcar.drift.detected"][0].gauge.data_points[0]
    assert detected.as_double == 1.0 and attrs(detected)["drift.method"] == "ks"
    batches = metrics["driftcar.receiver.batches"][0].sum.data_points[0]
    assert attrs(batches) == {"outcome": "accepted"}

    # cumulative: the second export carries the running total and the same start time
    rows = [m.sum.data_points[0] for m in metrics_by_name([first, second])["driftcar.inference.rows"]]
    assert [p.as_int for p in rows] == [1000, 1500]
    assert rows[0].start_time_unix_nano == rows[1].start_time_unix_nano == tel.start_time_unix_nano
    assert rows[1].time_unix_nano > rows[0].time_unix_nano


def test_events_exported_with_event_name(receiver, protocol):
    tel = Telemetry(TelemetryConfig(otlp_endpoint=receiver.endpoint, otlp_protocol=protocol))
    try:
        tel.emit_event("driftcar.drift.detected", "WARN", "balance drifted (ks)", {
            "model.name": "churn", "model.version": "3", "feature.name": "balance", "drift.method": "ks",
            "drift.score": 0.31, "drift.threshold": 0.0025, "drift.pvalue": 1e-6,
            "window.start": 1_700_000_000_000_000_000, "window.end": 1_700_000_060_000_000_000,
            "driftcar.sample_trace_ids": ["0af7651916cd43dd8448eb211c80319c", "4bf92f3577b34da6a3ce929d0e0e4736"],
        })
        tel.emit_event("driftcar.performance.degraded", "WARN", "accuracy below 0.8",
                       {"model.name": "churn", "model.version": "3", "metric": "accuracy", "value": 0.7,
                        "threshold": 0.8})
        records = receiver.wait_for_logs(lambda r: len(r) >= 2, timeout=10)
    finally:
        assert tel.shutdown(10)
    by_name = {r.event_name: r for r in records}
    drift = by_name["driftcar.drift.detected"]
    assert drift.severity_text == "WARN" and drift.severity_number == 13
    assert drift.body.string_value == "balance drifted (ks)"
    kv = {a.key: a.value for a in drift.attributes}
    assert kv["window.start"].int_value == 1_700_000_000_000_000_000
    assert kv["drift.score"].double_value == 0.31
    assert [v.string_value for v in kv["driftcar.sample_trace_ids"].array_value.values] == [
        "0af7651916cd43dd8448eb211c80319c", "4bf92f3577b34da6a3ce929d0e0e4736"]
    assert by_name["driftcar.performance.degraded"].severity_number == 13
    resource = {kv.key: any_value_to_python(kv.value) for kv in receiver.logs[0].resource_logs[0].resource.attributes}
    assert resource["service.name"] == "driftcar-sidecar"
    assert [e["event_name"] for e in tel.recent_events()] == ["driftcar.drift.detected",
                                                               "driftcar.performance.degraded"]


def test_standard_env_endpoint_headers_interval(receiver, protocol, monkeypatch):
    """No explicit endpoint: OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, _PROTOCOL and
    OTEL_METRIC_EXPORT_INTERVAL drive the periodic export."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme,authorization=Bearer%20s3cret")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")
    tel = Telemetry(TelemetryConfig())
    assert tel.interval_s == pytest.approx(0.1)
    tel.add_rows("m", "1", 7)
    tel.start()
    try:
        wait_until(lambda: len(receiver.metrics) >= 2, 10, what="two periodic exports")
    finally:
        assert tel.shutdown(10)
    headers = receiver.headers[0]
    assert headers["x-tenant"] == "acme" and headers["authorization"] == "Bearer s3cret"


def test_signal_specific_endpoint_wins(monkeypatch):
    with GrpcOtlpReceiver() as wrong, GrpcOtlpReceiver() as right:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", wrong.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", right.endpoint)
        tel = Telemetry(TelemetryConfig())
        tel.add_rows("m", "1", 1)
        try:
            assert tel.force_flush(10)
        finally:
            tel.shutdown(10)
        assert len(right.metrics) == 2 and not wrong.metrics  # force_flush + the final export


def test_console_export_prints_json_lines():
    out = io.StringIO()
    tel = Telemetry(TelemetryConfig(export="console"), stream=out)
    tel.add_rows("m", "1", 3)
    tel.emit_event("driftcar.drift.resolved", "INFO", "x back to normal", {"model.name": "m", "feature.name": "x"})
    assert tel.shutdown(10)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    metric = next(line for line in lines if line.get("name") == "driftcar.inference.rows")
    assert metric["sum"]["dataPoints"][0]["asInt"] == "3"
    event = next(line for line in lines if line.get("event_name"))
    assert event["event_name"] == "driftcar.drift.resolved" and event["severity"] == "INFO"


def test_none_export_sends_nothing_but_keeps_state():
    with GrpcOtlpReceiver() as rx:
        tel = Telemetry(TelemetryConfig(export="none", otlp_endpoint=rx.endpoint))
        tel.add_rows("m", "1", 3)
        tel.emit_event("driftcar.drift.resolved", "INFO", "ok", {"model.name": "m"})
        assert tel.force_flush(5) and tel.shutdown(5)
        assert not rx.attempts
    assert 'driftcar_inference_rows_total{model_name="m",model_version="1"} 3' in tel.prometheus_text()
    assert len(tel.recent_events()) == 1


def test_big_states_leave_in_several_requests(protocol, receiver):
    tel = Telemetry(TelemetryConfig(otlp_endpoint=receiver.endpoint, otlp_protocol=protocol))
    tel.max_request_bytes = 8 * 1024
    for f in range(200):
        tel.set_histogram("feature", "m", "1", f"f{f}", np.linspace(-3, 3, 15), np.ones(16, dtype=int), 0.0, 16)
    try:
        assert tel.force_flush(10)
    finally:
        tel.shutdown(10)
    first_flush = receiver.metrics[: len(receiver.metrics) // 2]
    assert len(first_flush) > 3
    assert all(req.ByteSize() <= 8 * 1024 for req in receiver.metrics)
    names = {attrs(p)["feature.name"] for m in metrics_by_name(first_flush)["driftcar.feature.value"]
             for p in m.histogram.data_points}
    assert names == {f"f{f}" for f in range(200)}


def test_timeout_env_is_milliseconds_and_bounds_each_export(receiver, protocol, monkeypatch):
    """OTEL_EXPORTER_OTLP_TIMEOUT=500 (ms, per the spec) against a server that answers after 2 s."""
    import time

    from tests.support.otlp import Answer

    receiver.respond = lambda kind, request, n: Answer(delay_s=2.0)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "500")
    tel = Telemetry(TelemetryConfig(otlp_endpoint=receiver.endpoint, otlp_protocol=protocol))
    tel.add_rows("m", "1", 1)
    started = time.monotonic()
    try:
        assert tel.force_flush(5) is False
        assert time.monotonic() - started < 1.5
    finally:
        tel.shutdown(0.2)
    assert tel.export_stats()["metrics"]["failures"] >= 1


def test_http_gzip_compression_from_env(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    with HttpOtlpReceiver() as rx:
        tel = Telemetry(TelemetryConfig(otlp_endpoint=rx.endpoint, otlp_protocol="http/protobuf"))
        tel.add_rows("m", "1", 11)
        try:
            assert tel.force_flush(10)
        finally:
            tel.shutdown(10)
        assert rx.headers[0]["content-encoding"] == "gzip"
        assert metrics_by_name(rx.metrics)["driftcar.inference.rows"][0].sum.data_points[0].as_int == 11


def test_shutdown_exports_what_came_after_the_last_periodic_export(receiver, protocol):
    """The SIGTERM path: nothing periodic happened yet (60 s interval); shutdown still delivers."""
    tel = Telemetry(TelemetryConfig(otlp_endpoint=receiver.endpoint, otlp_protocol=protocol))
    tel.start()
    tel.add_rows("m", "1", 42)
    tel.emit_event("driftcar.drift.resolved", "INFO", "last words", {"model.name": "m"})
    assert tel.shutdown(10) is True
    assert tel.shutdown(1) is True  # idempotent
    rows = metrics_by_name(receiver.metrics)["driftcar.inference.rows"]
    assert [m.sum.data_points[0].as_int for m in rows] == [42]
    assert [r.body.string_value for r in receiver.log_records()] == ["last words"]
    tel.start()  # no-op after shutdown
    assert tel._thread is not None and not tel._thread.is_alive()
