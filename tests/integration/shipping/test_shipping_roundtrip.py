"""Real gRPC and HTTP OTLP receivers on 127.0.0.1 get exactly what was offered."""

from __future__ import annotations

import numpy as np
import pytest

from driftcar.hook.shipping import Shipper, ShipperConfig
from tests.support.otlp import GrpcOtlpReceiver, HttpOtlpReceiver
from tests.unit.shipping.helpers import decoded_batches, features, item, to_parts

RECEIVERS = {"grpc": GrpcOtlpReceiver, "http/protobuf": HttpOtlpReceiver}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("protocol", list(RECEIVERS))
def test_receiver_gets_the_offered_rows_columns_and_counters(protocol):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(2_345, 6))
    X[::97, 2] = np.nan  # missing values travel as NaN
    y = rng.integers(0, 3, size=len(X)).astype(np.float64)
    trace = "0af7651916cd43dd8448eb211c80319c"
    with RECEIVERS[protocol]() as rx:
        shipper = Shipper(
            ShipperConfig("churn", "3", endpoint=rx.endpoint, protocol=protocol, max_batch_rows=1_000,
                          resource={"service.name": "svc-under-test"}),
            convert=to_parts,
        )
        try:
            for start in range(0, len(X), 15):
                shipper.offer(item(X[start:start + 15], y[start:start + 15], trace_id=trace if start == 0 else None))
            assert shipper.flush(10)
            batches = decoded_batches(rx.logs)
        finally:
            assert shipper.shutdown(5)
    got = features(batches, 6)
    np.testing.assert_array_equal(got, X)  # exact, NaN in place, in offer order
    np.testing.assert_array_equal(np.concatenate([b.columns["prediction"] for _, b in batches]), y)
    assert [b.rows for _, b in batches] == [990, 990, 365]  # whole calls of 15 rows, at most max_batch_rows
    for i, (record, batch) in enumerate(batches):
        assert record.attributes == {
            "model.name": "churn", "model.version": "3", "driftcar.batch.kind": "inference",
            "driftcar.batch.rows": batch.rows, "driftcar.schema.version": 1,
        }
        assert record.resource["service.name"] == "svc-under-test"
        assert batch.calls.rows == -(-batch.rows // 15)
        assert int(np.sum(batch.calls.columns["captured"])) == batch.rows
        assert batch.hook["instance"] == shipper.instance and batch.hook["sent_batches"] == i
        assert batch.hook["dropped_rows"] == 0 and batch.hook["failed_exports"] == 0
    assert batches[0][0].trace_id == bytes.fromhex(trace)
    stats = shipper.stats
    assert stats["sent_rows"] == len(X) and stats["sent_batches"] == 3 and stats["dropped_rows"] == 0
