"""collector-config/collector-centric.yaml live in driftcar's collector distribution:

    app (driftcar.instrument + OTel SDK spans, metrics, logs) --OTLP/gRPC--> otelcol-driftcar
        logs/driftcar (only driftcar.batch) --> `driftcar sidecar` --> otlp/from_driftcar
        --> Prometheus (remote write) and a file exporter standing in for Loki; spans to a file (Tempo)

Proves the split and the loop guarantee by counting on both sides: every record the collector sent
to the sidecar is a batch the sidecar accepted, the sidecar ignored no record (neither the app's
logs nor its own output came back to it), and driftcar's output did enter the collector.
"""

from __future__ import annotations

import numpy as np
import pytest

from driftcar.wire.otlp import EVENT_NAME
from tests.integration.collector.wiring import CENTRIC, centric_overlay, records, send_app_record, sidecar_metric
from tests.integration.sidecar.sidecar_helpers import SidecarProcess
from tests.support.collector import Collector
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)
MODEL = "cc-model"


def start_app_telemetry(endpoint: str):
    """The application's own OTel SDK pipelines (spans, metrics, logs) to the collector."""
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    resource = Resource.create({"service.name": "churn-app"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    meter_provider = MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=endpoint, insecure=True), export_interval_millis=300)])
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True)))
    return tracer_provider, meter_provider, logger_provider


def emit_app_telemetry(providers, n: int) -> None:
    from opentelemetry._logs import LogRecord, SeverityNumber

    tracer_provider, meter_provider, logger_provider = providers
    tracer = tracer_provider.get_tracer("churn-app")
    requests = meter_provider.get_meter("churn-app").create_counter("app.requests")
    logger = logger_provider.get_logger("churn-app")
    for i in range(n):
        with tracer.start_as_current_span("POST /predict"):
            requests.add(1, {"route": "/predict"})
            logger.emit(LogRecord(body=f"GET /predict 200 #{i}", severity_number=SeverityNumber.INFO,
                                  event_name="app.request"))


def drift_b_until_prometheus_sees_it(endpoint: str, prometheus, providers) -> int:
    """An instrumented model whose feature b drifts, until PromQL shows it; the hook's batch count."""
    import pandas as pd
    import sklearn.linear_model as sklearn_linear
    import driftcar

    rng = np.random.default_rng(3)
    columns = ["a", "b", "c"]
    X = pd.DataFrame(rng.normal(size=(4000, 3)), columns=columns)
    model = sklearn_linear.LogisticRegression().fit(X, (X["a"] + X["b"] > 0).astype(int))
    monitor = driftcar.instrument(model, name=MODEL, version="7", endpoint=endpoint, spans=False, max_batch_age_s=0.1)
    try:
        monitor.set_reference(X)
        assert monitor.flush(10)
        emit_app_telemetry(providers, 5)

        def drift_in_prometheus():
            shifted = pd.DataFrame(rng.normal(size=(500, 3)), columns=columns)
            shifted["b"] += 2.0  # only b drifts
            model.predict(shifted)
            return prometheus.query(
                f'{{__name__=~"driftcar_drift_detected.*", model_name="{MODEL}", feature_name="b"}} == 1')

        wait_until(drift_in_prometheus, timeout=60, interval=0.5, what="drift of b in Prometheus (PromQL)")
        assert monitor.flush(10)
        return monitor.stats["sent_batches"]
    finally:
        monitor.shutdown(5)
        for provider in providers:
            provider.shutdown()


def assert_backends(tmp_path, prometheus) -> None:
    """Drift scores and the app's metric in Prometheus; app logs and driftcar's events (no batch) in
    the Loki stand-in; the app's spans in the Tempo stand-in."""
    scores = prometheus.query(f'{{__name__=~"driftcar_drift_score.*", model_name="{MODEL}"}}')
    by_feature = {r["metric"]["feature_name"]: float(r["value"][1]) for r in scores}
    assert {"a", "b", "c"} <= set(by_feature), scores
    assert by_feature["b"] > max(by_feature["a"], by_feature["c"]), by_feature
    app_metric = wait_until(lambda: prometheus.query('{__name__=~"app_requests.*"}'), 20,
                            what="the app's own metric in Prometheus")
    assert float(app_metric[0]["value"][1]) >= 5
    loki = tmp_path / "loki.jsonl"
    wait_until(lambda: any(r.get("eventName") == "driftcar.drift.detected" for r in records(loki)), 20,
               what="driftcar's drift event in the Loki stand-in")
    logs = records(loki)
    assert sum(1 for r in logs if r.get("eventName") == "app.request") == 5, "every app log reaches Loki"
    assert not any(r.get("eventName") == EVENT_NAME for r in logs), "no raw batch in Loki"
    wait_until(lambda: any(s.get("name") == "POST /predict" for s in records(tmp_path / "tempo.jsonl", "traces")),
               20, what="the app's span in the Tempo stand-in (the file exporter writes on its own schedule)")


def assert_no_loop(otelcol: Collector, sidecar: SidecarProcess, hook_sent: int) -> None:
    """Counted on both sides: the hook's batches = what the collector sent the sidecar = what the
    sidecar accepted; the sidecar saw no other record, while driftcar's output did enter the collector."""
    def settled():
        sent = otelcol.metric("otelcol_exporter_sent_log_records", exporter="otlp_grpc/driftcar")
        accepted = sidecar_metric(sidecar, "driftcar_receiver_batches_total", outcome="accepted")
        return sent == accepted == hook_sent and (sent, accepted)

    wait_until(settled, 20, interval=0.2, what=f"hook sent ({hook_sent}) == collector sent == sidecar accepted")
    assert sidecar_metric(sidecar, "driftcar_receiver_records_ignored_total") == 0, \
        "a non-batch record (the app's, or driftcar's own output) reached the sidecar"
    returned = otelcol.metric("otelcol_receiver_accepted_log_records", receiver="otlp/from_driftcar")
    returned_points = otelcol.metric("otelcol_receiver_accepted_metric_points", receiver="otlp/from_driftcar")
    assert returned > 0 and returned_points > 0, "driftcar's output entered the collector on its own receiver"
    dropped_by_split = otelcol.metric("otelcol_processor_filter_logs_filtered", filter="filter/only_batches")
    assert dropped_by_split >= 5, "the split kept the app's logs away from the sidecar"
    # Control: the sidecar does count a non-batch record that reaches it (so the 0 above can fail).
    send_app_record(sidecar.ports["grpc"])
    wait_until(lambda: sidecar_metric(sidecar, "driftcar_receiver_records_ignored_total") == 1, 10,
               what="the sidecar counting a non-batch record sent to it directly")


def test_collector_centric_config_live(tmp_path, prometheus):
    sidecar = SidecarProcess(tmp_path, "--window", "1s", "--export", "otlp", "--otlp-protocol", "grpc",
                             "--export-interval", "500ms", "--live-reference-rows", "0")
    overlay, ports = centric_overlay(tmp_path, sidecar_grpc=sidecar.ports["grpc"],
                                     prometheus_write=prometheus.write_url)
    sidecar.args += ["--otlp-endpoint", f"http://127.0.0.1:{ports['return']}"]
    endpoint = f"http://127.0.0.1:{ports['grpc']}"
    with Collector(tmp_path, CENTRIC, overlay) as otelcol, sidecar:
        hook_sent = drift_b_until_prometheus_sees_it(endpoint, prometheus, start_app_telemetry(endpoint))
        assert_backends(tmp_path, prometheus)
        assert_no_loop(otelcol, sidecar, hook_sent)
        assert sidecar.terminate() == 0
