"""hook -> a real driftcar sidecar whose first answer comes too late (or is lost): the hook retries,
the sidecar applies the batch once, and the rows applied equal the rows captured.

Between them a loopback proxy (``tests/support/proxy.py``) lets the first request reach the sidecar
and withholds its answer until the hook gives the attempt up (or cuts the connection as the answer
comes). Before batch ids, the late answer made the hook count 100 delivered rows as dropped (the
sidecar then counted them twice: as rows and as the hook's drops), and the lost answer made the
sidecar apply the retried batch twice.
"""

from __future__ import annotations

import numpy as np
import pytest

from driftcar.hook.shipping import Shipper, ShipperConfig
from tests.reliability.harness import Sidecar, metric_sum
from tests.support.proxy import HoldFirstAnswer
from tests.support.waiting import wait_until
from tests.unit.shipping.helpers import item, to_parts

TIMEOUT_S = 1.0  # the export deadline; each attempt gets half of it


CAPTURED = 150  # rows: a batch of 100, then one of 50 that carries the hook's counters after the first export


def _ship_through(tmp_path, protocol: str, cut: bool, backoff_s: float, seed: int) -> tuple[dict, dict, float]:
    """Two batches through a proxy that withholds (or cuts) the sidecar's first answer; returns the
    sidecar's model state once every row is applied, the hook's stats and the duplicates counted."""
    rng = np.random.default_rng(seed)
    with Sidecar(tmp_path, "--export", "none", "--window", "1h") as sidecar:  # started by the with
        with HoldFirstAnswer(sidecar.ports["grpc" if protocol == "grpc" else "http"], cut=cut) as proxy:
            shipper = Shipper(ShipperConfig("retried", "1", endpoint=f"http://127.0.0.1:{proxy.port}", protocol=protocol,
                                            timeout_s=TIMEOUT_S, max_batch_age_s=60.0, retry_initial_backoff_s=backoff_s),
                              convert=to_parts)
            try:
                shipper.offer(item(rng.normal(size=(100, 4))))
                assert shipper.flush(10)
                assert proxy.held.is_set(), "the sidecar's first answer never reached the proxy"
                shipper.offer(item(rng.normal(size=(50, 4))))
                assert shipper.flush(10)
            finally:
                shipper.shutdown(5)

        def applied():
            model = sidecar.models().get(("retried", "1"))
            return model if model and model["rows_total"] >= CAPTURED else None

        state = wait_until(applied, 20, what="the captured rows to be applied")
        duplicates = metric_sum(sidecar.metrics(), "driftcar_receiver_batches_total", outcome="duplicate")
    return state, shipper.stats, duplicates


@pytest.mark.timeout(90)
@pytest.mark.parametrize("protocol,cut", [("grpc", False), ("http/protobuf", False), ("http/protobuf", True)],
                         ids=["grpc-late", "http-late", "http-lost"])
def test_a_batch_whose_answer_was_late_or_lost_is_applied_once(tmp_path, protocol, cut):
    state, stats, duplicates = _ship_through(tmp_path, protocol, cut, backoff_s=0.05, seed=7)
    counts = f"sidecar {state['rows_total']} rows, hook drops {state['hook_dropped_rows']}; hook {stats}"
    assert state["rows_total"] == CAPTURED, counts  # applied once
    assert state["hook_dropped_rows"] == 0 and stats["dropped_rows"] == 0, counts  # nothing was lost
    assert stats["sent_rows"] == CAPTURED and stats["retries"] >= 1, counts
    assert duplicates == 1  # the retry, answered without being applied again


@pytest.mark.timeout(90)
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_an_unanswered_request_with_no_room_to_retry_is_sent_once_more_and_applied_once(tmp_path, protocol):
    """The back-off leaves no retry within the deadline (as right after an outage), so the one
    attempt gets the whole deadline and no answer: the request is held and sent once more before
    the next export; the sidecar answers the copy as a duplicate. Before, its rows were counted as
    dropped though the sidecar had applied them."""
    # half the deadline + the longest first back-off (1.0 s x 1.2) does not fit in 1 s
    state, stats, duplicates = _ship_through(tmp_path, protocol, cut=False, backoff_s=1.0, seed=8)
    counts = f"sidecar {state['rows_total']} rows, hook drops {state['hook_dropped_rows']}; hook {stats}"
    assert stats["retries"] == 0 and stats["resent_requests"] == 1, counts  # no retry fitted: held, sent again
    assert state["rows_total"] == CAPTURED, counts  # applied once
    assert state["hook_dropped_rows"] == 0 and stats["dropped_rows"] == 0, counts
    assert stats["sent_rows"] == CAPTURED and stats["failed_exports"] == 0, counts
    assert duplicates == 1  # the copy, answered without being applied again
