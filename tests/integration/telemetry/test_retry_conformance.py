"""The sidecar's OTLP exporters follow the OTLP specification's retry table, cell by cell.

A scripted receiver answers the first request with the cell's status and the
second with success; the number of attempts tells whether the exporter retried.
The expected tables are written here from the specification (not imported from
the code under test):
https://opentelemetry.io/docs/specs/otlp/#failures (gRPC) and #failures-1 (HTTP).
"""

from __future__ import annotations

import time
from email.utils import formatdate

import grpc
import pytest
from opentelemetry.sdk.metrics.export import MetricExportResult

from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig
from driftcar.sidecar.telemetry.exporters import ExportStats, GrpcMetricExporter, HttpMetricExporter
from tests.support.otlp import OK, Answer, GrpcOtlpReceiver, HttpOtlpReceiver
from tests.support.waiting import free_port, wait_until

pytestmark = pytest.mark.timeout(120)

SPEC_GRPC_RETRYABLE = {"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"}
SPEC_HTTP_RETRYABLE = {429, 502, 503, 504}
GRPC_CODES = [code for code in grpc.StatusCode if code != grpc.StatusCode.OK]
HTTP_STATUSES = [400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504]
RETRY_INFO_S = 0.05


def small_metrics_data():
    tel = Telemetry(TelemetryConfig(export="none"))
    tel.add_rows("m", "1", 5)
    return tel.metrics_data()


DATA = small_metrics_data()


def first_fails(answer: Answer):
    return lambda kind, request, n: answer if n == 1 else OK


def gap(rx) -> float:
    return rx.attempts[1][0] - rx.attempts[0][0]


@pytest.mark.parametrize("with_retry_info", [False, True], ids=["plain", "retryinfo"])
@pytest.mark.parametrize("code", GRPC_CODES, ids=[c.name for c in GRPC_CODES])
def test_grpc_retry_table(code, with_retry_info):
    answer = Answer(grpc_code=code, message="scripted", retry_after_s=RETRY_INFO_S if with_retry_info else None)
    with GrpcOtlpReceiver(respond=first_fails(answer)) as rx:
        stats = ExportStats()
        exporter = GrpcMetricExporter(endpoint=rx.endpoint, timeout=5, stats=stats, initial_backoff_s=0.01)
        try:
            result = exporter.export(DATA)
        finally:
            exporter.shutdown()
    retryable = code.name in SPEC_GRPC_RETRYABLE or (code.name == "RESOURCE_EXHAUSTED" and with_retry_info)
    assert len(rx.attempts) == (2 if retryable else 1), rx.attempts
    assert result == (MetricExportResult.SUCCESS if retryable else MetricExportResult.FAILURE)
    if retryable:
        assert len(rx.metrics) == 1
        if with_retry_info:  # the server's RetryInfo delay is honoured
            assert gap(rx) >= RETRY_INFO_S * 0.9
    else:
        assert stats.as_dict()["metrics"]["failures"] == 1
        assert code.name in stats.as_dict()["metrics"]["last_error"]


HEADER_VARIANTS = {
    "none": lambda: None,
    "seconds": lambda: {"Retry-After": "0"},
    "http-date": lambda: {"Retry-After": formatdate(time.time() - 5, usegmt=True)},  # already passed: no wait
}


@pytest.mark.parametrize("variant", sorted(HEADER_VARIANTS))
@pytest.mark.parametrize("status", HTTP_STATUSES)
def test_http_retry_table(status, variant):
    answer = Answer(http_status=status, message="scripted", headers=HEADER_VARIANTS[variant]())
    with HttpOtlpReceiver(respond=first_fails(answer)) as rx:
        exporter = HttpMetricExporter(endpoint=f"{rx.endpoint}/v1/metrics", timeout=5)
        try:
            result = exporter.export(DATA)
        finally:
            exporter.shutdown()
    retryable = status in SPEC_HTTP_RETRYABLE
    assert len(rx.attempts) == (2 if retryable else 1), rx.attempts
    assert result == (MetricExportResult.SUCCESS if retryable else MetricExportResult.FAILURE)
    if retryable and variant != "none":  # Retry-After replaces the default >= 0.8 s back-off
        assert gap(rx) < 0.5
    if retryable and variant == "none":
        assert gap(rx) >= 0.75


def test_http_retry_after_seconds_is_waited():
    with HttpOtlpReceiver(respond=first_fails(Answer(http_status=503, retry_after_s=1))) as rx:
        exporter = HttpMetricExporter(endpoint=f"{rx.endpoint}/v1/metrics", timeout=5)
        try:
            assert exporter.export(DATA) == MetricExportResult.SUCCESS
        finally:
            exporter.shutdown()
    assert gap(rx) >= 0.95


@pytest.mark.parametrize("transport", ["grpc", "http/protobuf"])
def test_partial_success_is_final_and_recorded(transport):
    answer = Answer(rejected_data_points=3, rejected_log_records=2, message="3 points had bad attributes")
    receiver_cls = GrpcOtlpReceiver if transport == "grpc" else HttpOtlpReceiver
    with receiver_cls(respond=lambda kind, request, n: answer) as rx:
        tel = Telemetry(TelemetryConfig(otlp_endpoint=rx.endpoint, otlp_protocol=transport))
        try:
            tel.add_rows("m", "1", 5)
            assert tel.force_flush(10)
            tel.emit_event("driftcar.drift.resolved", "INFO", "ok", {"model.name": "m"})
            assert tel.force_flush(10)
        finally:
            tel.shutdown(10)
        stats = tel.export_stats()
        assert [kind for _, kind in rx.attempts].count("logs") == 1  # not retried
        assert stats["metrics"]["rejected"] >= 3 and stats["metrics"]["failures"] == 0
        assert stats["metrics"]["rejected"] == 3 * [kind for _, kind in rx.attempts].count("metrics")
        assert stats["logs"]["rejected"] == 2
        assert stats["metrics"]["last_partial_message"] == "3 points had bad attributes"


def test_grpc_export_to_a_down_endpoint_ends_at_its_deadline():
    exporter = GrpcMetricExporter(endpoint=f"http://127.0.0.1:{free_port()}", timeout=1.0, initial_backoff_s=0.05)
    started = time.monotonic()
    try:
        assert exporter.export(DATA) == MetricExportResult.FAILURE
    finally:
        exporter.shutdown()
    assert time.monotonic() - started < 1.5


def test_shutdown_is_bounded_when_the_downstream_black_holes(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "3000")  # milliseconds, as the OTLP spec says
    with GrpcOtlpReceiver(respond=lambda kind, request, n: Answer(delay_s=2.5)) as rx:
        tel = Telemetry(TelemetryConfig(otlp_endpoint=rx.endpoint))
        tel.add_rows("m", "1", 1)
        started = time.monotonic()
        assert tel.shutdown(0.5) is False
        assert time.monotonic() - started < 1.0
        wait_until(lambda: rx.attempts, 5, what="the export attempt to reach the receiver")


@pytest.mark.parametrize("code,with_retry_info,attempts", [
    ("RESOURCE_EXHAUSTED", False, 1), ("RESOURCE_EXHAUSTED", True, 2), ("UNAVAILABLE", False, 2),
    ("INVALID_ARGUMENT", True, 1),
])
def test_grpc_log_exporter_uses_the_same_table(code, with_retry_info, attempts):
    answer = Answer(grpc_code=grpc.StatusCode[code], retry_after_s=RETRY_INFO_S if with_retry_info else None)
    with GrpcOtlpReceiver(respond=first_fails(answer)) as rx:
        tel = Telemetry(TelemetryConfig(otlp_endpoint=rx.endpoint), initial_backoff_s=0.01)
        try:
            tel.emit_event("driftcar.drift.resolved", "INFO", "ok", {"model.name": "m"})
            tel.force_flush(10)
        finally:
            tel.shutdown(10)
    assert [kind for _, kind in rx.attempts].count("logs") == attempts


def test_the_plain_sdk_exporter_still_deviates():
    """Why GrpcMetricExporter exists: the SDK retries RESOURCE_EXHAUSTED without RetryInfo (the spec
    says final). If this starts failing, the SDK was fixed and our retry override can go."""
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    MeterProvider(metric_readers=[reader]).get_meter("t").create_counter("c").add(1)
    sdk_data = reader.get_metrics_data()
    with GrpcOtlpReceiver(respond=first_fails(Answer(grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED))) as rx:
        exporter = OTLPMetricExporter(endpoint=rx.endpoint, insecure=True, timeout=5)
        try:
            result = exporter.export(sdk_data)
        finally:
            exporter.shutdown()
    assert len(rx.attempts) == 2 and result == MetricExportResult.SUCCESS
