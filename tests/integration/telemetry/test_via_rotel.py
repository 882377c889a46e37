"""The sidecar's metrics and events survive a real collector hop (rotel) unchanged.

Telemetry --OTLP/gRPC or HTTP--> rotel-agent --OTLP/gRPC--> test receiver, all on 127.0.0.1.
"""

from __future__ import annotations


import numpy as np
import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig
from driftcar.wire.otlp import any_value_to_python
from tests.support.rotel import Rotel
from tests.support.otlp import GrpcOtlpReceiver
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def hop(tmp_path):
    """(rotel grpc endpoint, rotel http endpoint, downstream receiver)."""
    with GrpcOtlpReceiver() as downstream, Rotel(tmp_path, downstream.endpoint, batch_timeout="50ms") as rotel:
        yield rotel.grpc_endpoint, rotel.http_endpoint, downstream


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_histograms_and_events_cross_rotel_intact(hop, protocol):
    grpc_endpoint, http_endpoint, downstream = hop
    endpoint = grpc_endpoint if protocol == "grpc" else http_endpoint
    tel = Telemetry(TelemetryConfig(otlp_endpoint=endpoint, otlp_protocol=protocol,
                                    resource_attributes={"service.name": "via-rotel"}))
    bounds = [-2.5, -1.0, 0.0, 1.5]
    try:
        tel.set_histogram("feature", "churn", "3", "balance", bounds, [4, 3, 2, 1, 0], -12.25, 10)
        tel.set_drift("churn", "3", "balance", "wasserstein", "1m", 0.42, None, 0.1, True)
        tel.emit_event("driftcar.drift.detected", "WARN", "balance drifted",
                       {"model.name": "churn", "feature.name": "balance", "driftcar.sample_trace_ids": ["ab" * 16]})
        assert tel.force_flush(10)
    finally:
        tel.shutdown(10)

    def histogram_point():
        for req in downstream.metrics:
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        if m.name == "driftcar.feature.value":
                            return rm, m
        return None

    rm, metric = wait_until(histogram_point, 20, what="the histogram behind rotel")
    point = metric.histogram.data_points[0]
    assert metric.histogram.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    assert list(point.explicit_bounds) == bounds and list(point.bucket_counts) == [4, 3, 2, 1, 0]
    assert point.sum == -12.25 and point.count == 10 and metric.unit == "{value}"
    resource = {kv.key: any_value_to_python(kv.value) for kv in rm.resource.attributes}
    assert resource["service.name"] == "via-rotel"

    records = downstream.wait_for_logs(lambda r: any(x.event_name == "driftcar.drift.detected" for x in r), 20)
    record = next(r for r in records if r.event_name == "driftcar.drift.detected")
    assert record.severity_number == 13 and record.body.string_value == "balance drifted"
    ids = next(a.value for a in record.attributes if a.key == "driftcar.sample_trace_ids")
    assert [v.string_value for v in ids.array_value.values] == ["ab" * 16]
    assert np.isclose(sum(point.bucket_counts), point.count)
