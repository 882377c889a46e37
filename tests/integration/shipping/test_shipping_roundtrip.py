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
    ids = {record.attributes.pop("driftcar.batch.id") for record, _ in batches}  # one idempotency key per batch
    assert len(ids) == len(batches) and all(isinstance(i, int) for i in ids)
    for i, (record, batch) in enumerate(batches):
        assert record.attributes == {
            "model.name": "churn", "model.version": "3", "driftcar.batch.kind": "inference",
            "driftcar.batch.rows": batch.rows, "driftcar.schema.version": batch.version,
        }
        assert record.resource["service.name"] == "svc-under-test"
        assert batch.calls.rows == -(-batch.rows // 15)
        assert int(np.sum(batch.calls.columns["captured"])) == batch.rows
        assert batch.hook["instance"] == shipper.instance and batch.hook["sent_batches"] == i
        assert batch.hook["dropped_rows"] == 0 and batch.hook["failed_exports"] == 0
    assert batches[0][0].trace_id == bytes.fromhex(trace)
    stats = shipper.stats
    assert stats["sent_rows"] == len(X) and stats["sent_batches"] == 3 and stats["dropped_rows"] == 0


@pytest.mark.timeout(20)
def test_a_batch_larger_than_a_4_mib_receiver_limit_arrives_whole_in_capped_requests():
    # 60,000 x 20 float64 = 9.6 MB of reference data in one captured item
    rng = np.random.default_rng(11)
    X = rng.normal(size=(60_000, 20))
    with GrpcOtlpReceiver(max_receive_bytes=4 * 1024 * 1024) as rx:
        shipper = Shipper(ShipperConfig("churn", "3", endpoint=rx.endpoint, max_batch_rows=100_000), convert=to_parts)
        try:
            shipper.offer(item(X, kind="reference"))
            assert shipper.flush(15)
        finally:
            shipper.shutdown(5)
        assert shipper.stats["failed_exports"] == 0 and shipper.stats["dropped_rows"] == 0
        sizes = [req.ByteSize() for req in rx.logs]
        batches = decoded_batches(rx.logs)
    assert len(sizes) >= 4 and max(sizes) <= 3 * 1024 * 1024
    assert {b.kind for _, b in batches} == {"reference"}
    np.testing.assert_array_equal(features(batches, 20), X)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("protocol", list(RECEIVERS))
def test_headers_and_compression_options_reach_the_receiver(protocol):
    with RECEIVERS[protocol]() as rx:
        shipper = Shipper(ShipperConfig("m", endpoint=rx.endpoint, protocol=protocol, compression="none",
                                        headers={"authorization": "Bearer t0k"}), convert=to_parts)
        try:
            shipper.offer(item(np.ones((3, 2))))
            assert shipper.flush(10)
        finally:
            shipper.shutdown(5)
        assert rx.headers[0]["authorization"] == "Bearer t0k"
        if protocol == "http/protobuf":
            assert rx.headers[0]["content-type"] == "application/x-protobuf"
            assert "content-encoding" not in rx.headers[0]
        assert decoded_batches(rx.logs)[0][1].rows == 3
