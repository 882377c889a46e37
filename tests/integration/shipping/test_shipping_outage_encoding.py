"""Through an outage the worker converts and encodes nothing for attempts that cannot be sent, and
every row goes once the endpoint is back (real transports, a real receiver on the refused port).

Before each batch, OTLP/HTTP opens its kept-alive connection and gRPC, with no channel open,
has the endpoint answer an HTTP/2 handshake: nothing is converted while the port is refused.
"""

from __future__ import annotations

import numpy as np
import pytest

from driftcar.hook.shipping import Shipper, ShipperConfig
from tests.support.otlp import GrpcOtlpReceiver, HttpOtlpReceiver
from tests.support.waiting import free_port, wait_until
from tests.unit.shipping.helpers import Counting, decoded_batches, item

ROWS_PER_ITEM, ITEMS = 3, 40


@pytest.mark.timeout(90)
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_nothing_is_converted_for_refused_attempts_and_every_row_goes_once_the_endpoint_is_back(protocol):
    port = free_port()
    convert = Counting()
    shipper = Shipper(ShipperConfig("reach", "1", endpoint=f"http://127.0.0.1:{port}", protocol=protocol,
                                    max_batch_age_s=0.05, timeout_s=30.0, retry_initial_backoff_s=0.05,
                                    retry_max_backoff_s=0.2, retry_jitter=0.0), convert=convert)
    try:
        rng = np.random.default_rng(3)
        sent = [rng.normal(size=(ROWS_PER_ITEM, 4)) for _ in range(ITEMS)]
        for x in sent[:ITEMS // 2]:
            shipper.offer(item(x))
        wait_until(lambda: shipper.stats["failed_attempts"] >= 6, timeout=30, what="refused attempts")
        for x in sent[ITEMS // 2:]:  # offers during the outage: queued, and they end back-off waits
            shipper.offer(item(x))
        wait_until(lambda: shipper.stats["failed_attempts"] >= 10, timeout=30, what="more refused attempts")
        assert convert.calls == 0, shipper.stats
        receiver_type = GrpcOtlpReceiver if protocol == "grpc" else HttpOtlpReceiver
        with receiver_type(port=port) as receiver:
            assert shipper.flush(30), shipper.stats
            batches = decoded_batches(receiver.logs)
        stats = shipper.stats
        # the export's deadline (30 s) outlasts the outage: its batch is retried, not dropped
        assert stats["sent_rows"] == ROWS_PER_ITEM * ITEMS and stats["dropped_rows"] == 0, stats
        got = np.vstack([np.column_stack([b.columns[f"x{j}"] for j in range(4)]) for _, b in batches if b.rows])
        np.testing.assert_array_equal(got, np.vstack(sent))  # every row, once, in order
    finally:
        shipper.shutdown(5)
