"""collector-config/direct.yaml live: hook --> `driftcar sidecar` --> gateway collector
(otelcol-driftcar) --> Prometheus (remote write); a stray batch sent to the gateway is dropped."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs, ScopeLogs

from driftcar.wire.otlp import EVENT_NAME, batch_log_record
from tests.integration.collector.wiring import DIRECT, file_exporter, records
from tests.integration.sidecar.sidecar_helpers import SidecarProcess
from tests.support.collector import K8S_OFFLINE, Collector
from tests.support.waiting import free_port, wait_until

pytestmark = pytest.mark.timeout(150)


def direct_overlay(tmp_path, prometheus_write: str) -> tuple[dict, int]:
    grpc_port, http_port = free_port(), free_port()
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                                             "http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
        "processors": {"k8s_attributes": K8S_OFFLINE},
        "exporters": {"prometheus_remote_write": {"endpoint": prometheus_write},
                      "file/loki": file_exporter(tmp_path / "loki.jsonl"),
                      "file/tempo": file_exporter(tmp_path / "tempo.jsonl")},
        "service": {"pipelines": {"logs": {"exporters": ["file/loki"]}, "traces": {"exporters": ["file/tempo"]}}},
    }, grpc_port


def test_direct_wiring_reaches_prometheus_through_the_gateway(tmp_path, prometheus):
    import pandas as pd
    import sklearn.linear_model as sklearn_linear
    import driftcar

    overlay, gateway_port = direct_overlay(tmp_path, prometheus.write_url)
    sidecar = SidecarProcess(tmp_path, "--window", "1s", "--export", "otlp", "--otlp-protocol", "grpc",
                             "--otlp-endpoint", f"http://127.0.0.1:{gateway_port}", "--export-interval", "500ms",
                             "--live-reference-rows", "0")
    with Collector(tmp_path, DIRECT, overlay, name="gateway") as gateway, sidecar:
        rng = np.random.default_rng(11)
        X = pd.DataFrame(rng.normal(size=(3000, 2)), columns=["x", "z"])
        model = sklearn_linear.LogisticRegression().fit(X, (X["x"] > 0).astype(int))
        monitor = driftcar.instrument(model, name="direct-model", version="1",
                                      endpoint=f"http://127.0.0.1:{sidecar.ports['grpc']}", spans=False,
                                      max_batch_age_s=0.1)
        try:
            monitor.set_reference(X)
            assert monitor.flush(10)

            def z_drifted():
                shifted = pd.DataFrame(rng.normal(size=(400, 2)), columns=["x", "z"])
                shifted["z"] += 3.0
                model.predict(shifted)
                return prometheus.query('{__name__=~"driftcar_drift_detected.*", model_name="direct-model", '
                                        'feature_name="z"} == 1')

            wait_until(z_drifted, timeout=60, interval=0.5, what="drift of z in Prometheus via the gateway")
            clean = prometheus.query('{__name__=~"driftcar_drift_detected.*", model_name="direct-model", feature_name="x"}')
            assert clean, "x has a verdict series too"
        finally:
            monitor.shutdown(5)

        # A misconfigured hook pointed at the gateway: its batch is dropped, never forwarded to Loki.
        with grpc.insecure_channel(f"127.0.0.1:{gateway_port}") as channel:
            stray = batch_log_record(b"\x80", model_name="m", model_version="1", kind="inference", rows=0)
            LogsServiceStub(channel).Export(ExportLogsServiceRequest(resource_logs=[ResourceLogs(
                scope_logs=[ScopeLogs(log_records=[stray])])]), timeout=10)
        wait_until(lambda: gateway.metric("otelcol_processor_filter_logs_filtered", filter="filter/drop_batches") >= 1,
                   10, what="the stray batch counted as filtered")
        loki = tmp_path / "loki.jsonl"
        wait_until(lambda: any(r.get("eventName") == "driftcar.drift.detected" for r in records(loki)), 20,
                   what="driftcar's events in the Loki stand-in")
        assert not any(r.get("eventName") == EVENT_NAME for r in records(loki))
