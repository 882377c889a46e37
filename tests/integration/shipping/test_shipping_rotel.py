"""hook -> rotel (a real OTLP collector) -> test receiver: bodies and attributes arrive intact."""

from __future__ import annotations


import numpy as np
import pytest

from driftcar.hook.shipping import Shipper, ShipperConfig
from driftcar.wire.otlp import EVENT_NAME
from tests.support.rotel import Rotel
from tests.support.otlp import GrpcOtlpReceiver
from tests.support.waiting import wait_until
from tests.unit.shipping.helpers import decoded_batches, features, item, to_parts


@pytest.fixture
def rotel_to_receiver(tmp_path):
    """A rotel agent on free loopback ports forwarding OTLP logs to a test gRPC receiver."""
    with GrpcOtlpReceiver() as rx, Rotel(tmp_path, rx.endpoint, batch_timeout="50ms", logs_only=True) as rotel:
        yield {"grpc": rotel.grpc_endpoint, "http/protobuf": rotel.http_endpoint}, rx


@pytest.mark.timeout(20)
def test_batches_cross_rotel_intact_over_grpc_and_http(rotel_to_receiver):
    endpoints, rx = rotel_to_receiver
    rng = np.random.default_rng(5)
    sent = {}
    for protocol, version in (("grpc", "g"), ("http/protobuf", "h")):
        X = rng.normal(size=(1_500, 5))
        X[::50, 0] = np.nan
        shipper = Shipper(ShipperConfig("churn", version, endpoint=endpoints[protocol], protocol=protocol,
                                        resource={"service.name": "scoring", "k8s.pod.name": "p-1"}),
                          convert=to_parts)
        try:
            for start in range(0, len(X), 100):
                shipper.offer(item(X[start:start + 100], trace_id="4bf92f3577b34da6a3ce929d0e0e4736"))
            assert shipper.flush(10)
        finally:
            shipper.shutdown(5)
        assert shipper.stats["sent_rows"] == len(X)
        sent[version] = (X, shipper.instance)
    wait_until(lambda: sum(b.rows for _, b in decoded_batches(rx.logs)) == 3_000, 15, what="rows through rotel")
    batches = decoded_batches(rx.logs)
    records = rx.log_records()
    assert all(r.event_name == EVENT_NAME for r in records)  # rotel keeps LogRecord.event_name
    for version, (X, instance) in sent.items():
        mine = [(r, b) for r, b in batches if r.attributes["model.version"] == version]
        np.testing.assert_array_equal(features(mine, 5), X)
        ids = {record.attributes.pop("driftcar.batch.id") for record, _ in mine}  # the idempotency key crosses too
        assert len(ids) == len(mine) and all(isinstance(i, int) for i in ids)
        for record, batch in mine:
            assert record.attributes == {"model.name": "churn", "model.version": version,
                                         "driftcar.batch.kind": "inference", "driftcar.batch.rows": batch.rows,
                                         "driftcar.schema.version": batch.version}
            assert record.resource["service.name"] == "scoring" and record.resource["k8s.pod.name"] == "p-1"
            assert record.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
            assert batch.hook["instance"] == instance
