"""End to end in the collector-centric shape, with rotel (a real OTLP collector) in the collector's place:

    instrumented model --OTLP/gRPC--> rotel "in" --OTLP/gRPC--> driftcar sidecar
        --OTLP/gRPC (metrics + events)--> rotel "out" --OTLP/gRPC--> test receiver (the "backend")

The application's own (non-batch) log records ride the same route and are ignored and counted by
the sidecar (rotel cannot split by event name; collector-config/collector-centric.yaml does, with
filters, and runs in the real collector in tests/integration/collector/). driftcar's output enters a different collector receiver
than the application's, so it can never loop back into the sidecar: the backend sees no batch.
"""

from __future__ import annotations

import numpy as np
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from driftcar.wire.otlp import EVENT_NAME
from tests.integration.sidecar.sidecar_helpers import metric_points
from tests.support.rotel import Rotel
from tests.support.otlp import GrpcOtlpReceiver
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


def _points(receiver: GrpcOtlpReceiver, name: str) -> list[tuple[dict, float]]:
    """(attributes, value) of every gauge/sum data point named ``name`` the backend received."""
    return [(attrs, p.as_double if p.HasField("as_double") else p.as_int)
            for metric, _, attrs, p in metric_points(receiver) if metric == name]


def _send_app_log(endpoint: str) -> None:
    """One ordinary application log record into the collector (not a driftcar batch)."""
    import grpc

    with grpc.insecure_channel(endpoint.removeprefix("http://")) as channel:
        LogsServiceStub(channel).Export(ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(
            log_records=[LogRecord(event_name="app.request", body=AnyValue(string_value="GET /predict 200"))])])]),
            timeout=10)


def test_drift_metrics_and_events_arrive_through_the_collector_hops(tmp_path):
    import pandas as pd
    import sklearn.linear_model as sklearn_linear
    import driftcar
    from driftcar.sidecar.config import load_config
    from driftcar.sidecar.service import run_in_thread

    with GrpcOtlpReceiver() as backend, Rotel(tmp_path, backend.endpoint) as rotel_out:
        config = load_config(None, env={}, flags={
            "grpc": "127.0.0.1:0", "http": "127.0.0.1:0", "prometheus": "off", "window": "1s",
            "export": "otlp", "otlp_endpoint": rotel_out.grpc_endpoint, "otlp_protocol": "grpc",
            "export_interval": "500ms", "live_reference_rows": 0,
        })
        sidecar = run_in_thread(config)
        try:
            with Rotel(tmp_path, sidecar.grpc_endpoint) as rotel_in:
                rng = np.random.default_rng(3)
                columns = ["a", "b", "c"]
                X = pd.DataFrame(rng.normal(size=(4000, 3)), columns=columns)
                y = (X["a"] + X["b"] > 0).astype(int)
                model = sklearn_linear.LogisticRegression().fit(X, y)
                monitor = driftcar.instrument(model, name="cc-model", version="7", endpoint=rotel_in.grpc_endpoint,
                                              spans=False, max_batch_age_s=0.1)
                monitor.set_reference(X, y)
                monitor.flush(10)
                _send_app_log(rotel_in.grpc_endpoint)

                def drifted_b_detected():
                    shifted = pd.DataFrame(rng.normal(size=(500, 3)), columns=columns)
                    shifted["b"] += 2.0  # only b drifts
                    model.predict(shifted)
                    return any(a.get("feature.name") == "b" and v == 1
                               for a, v in _points(backend, "driftcar.drift.detected"))

                wait_until(drifted_b_detected, timeout=30, interval=0.3, what="driftcar.drift.detected=1 for b at the backend")
                # The verdicts of the window that first flagged b (one export carries every feature's
                # series). Later windows are not asserted on: the last one, closed at shutdown, is a
                # partial window decided by KS with Benjamini-Hochberg across features, which by design
                # (it bounds the false *discovery* rate) lets a clean feature through more often once
                # other features truly drift.
                detected = {a["feature.name"]: v for a, v in _points(backend, "driftcar.drift.detected")
                            if a.get("model.name") == "cc-model"}
                monitor.shutdown(5)
        finally:
            sidecar.stop(timeout=15)

        assert detected.get("b") == 1 and detected.get("a") == 0 and detected.get("c") == 0, detected
        scores = [a for a, _ in _points(backend, "driftcar.drift.score") if a.get("feature.name") == "b"]
        assert scores and {a["model.version"] for a in scores} == {"7"} and all("drift.method" in a for a in scores)
        ignored = [v for _, v in _points(backend, "driftcar.receiver.records.ignored")]
        assert ignored and max(ignored) >= 1, "the app's own log record reached the sidecar and was counted"
        backend.wait_for_logs(lambda records: any(r.event_name == "driftcar.drift.detected" for r in records))
        assert not any(r.event_name == EVENT_NAME for r in backend.log_records()), "no batch loops to the backend"
