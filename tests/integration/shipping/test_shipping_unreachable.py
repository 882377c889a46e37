"""Endpoint down (nothing listening) and black-holed (accepts TCP, never answers).

20,000 offers never raise and never block, the buffer stays within its byte
bound, drops are counted, and shutdown returns within its deadline.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from driftcar.hook.shipping import Shipper, ShipperConfig
from tests.support.waiting import free_port
from tests.unit.shipping.helpers import BlackHole, item, to_parts

OFFERS = 20_000
BOUND = 256 * 1024
EXPORT_TIMEOUT_S = 2.0
# Not a speed check (speed lives in benchmarks/): an offer that blocked on the transport would take
# the export timeout; anything far below it is scheduling noise on a shared machine.
BLOCKED_OFFER_S = EXPORT_TIMEOUT_S / 4


def _hammer(endpoint: str, protocol: str) -> tuple[Shipper, dict, float]:
    shipper = Shipper(
        ShipperConfig("m", "1", endpoint=endpoint, protocol=protocol, timeout_s=EXPORT_TIMEOUT_S, max_buffer_bytes=BOUND,
                      max_batch_rows=1_000, max_batch_age_s=0.05, retry_initial_backoff_s=0.05),
        convert=to_parts,
    )
    rows = np.random.default_rng(1).normal(size=(OFFERS, 8))
    slowest = 0.0
    for i in range(OFFERS):
        started = time.perf_counter()
        shipper.offer(item(rows[i:i + 1]))  # never raises: any exception fails the test here
        slowest = max(slowest, time.perf_counter() - started)
        if i % 1_000 == 0:
            assert shipper.stats["queued_bytes"] <= BOUND
    return shipper, shipper.stats, slowest


@pytest.mark.timeout(20)
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("where", ["down", "black-holed"])
def test_unreachable_endpoint_never_blocks_or_raises_and_counts_drops(where, protocol):
    if where == "down":
        endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        shipper, stats, slowest = _hammer(endpoint, protocol)
        deadline = 1.0
    else:
        with BlackHole() as hole:
            shipper, stats, slowest = _hammer(f"http://127.0.0.1:{hole.port}", protocol)
            deadline = 1.0
            started = time.monotonic()
            shipper.shutdown(deadline)
            elapsed = time.monotonic() - started
            assert hole.conns, "the shipper never reached the black hole"
    if where == "down":
        started = time.monotonic()
        shipper.shutdown(deadline)
        elapsed = time.monotonic() - started
    assert slowest < BLOCKED_OFFER_S
    assert stats["queued_bytes"] <= BOUND
    assert stats["dropped_rows"] > 0 and stats["dropped_calls"] > 0
    assert stats["sent_rows"] == 0
    assert elapsed < deadline + 0.3  # shutdown keeps its deadline
    final = shipper.stats
    # every offered row is accounted for: nothing sent, everything dropped and counted
    assert final["dropped_rows"] == OFFERS and final["queued_rows"] == 0
