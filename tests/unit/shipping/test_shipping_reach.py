"""The worker reaches the endpoint (the exporter's ``ready``) before it converts and encodes a batch:
through an outage no batch is converted or encoded for an attempt that cannot be sent, rows are
counted as before (dropped when the export's deadline passes), and delivery resumes once the
endpoint answers. A connection is no answer: it does not reset the back-off."""

from __future__ import annotations

import threading
import time

import numpy as np

from driftcar.hook.shipping import Shipper, ShipperConfig
from driftcar.hook.shipping.retry import Outcome
from tests.support.waiting import wait_until
from tests.unit.shipping.helpers import Counting, FakeExporter, item

REFUSED = Outcome.retry("http connection ConnectionRefusedError", detail="refused")


class Reaching(FakeExporter):
    """A fake exporter with ``ready``: refused while ``down`` is set; counts its calls."""

    def __init__(self, answers=None):
        super().__init__(answers)
        self.down = threading.Event()
        self.down.set()
        self.readies = 0

    def ready(self, timeout_s: float):
        self.readies += 1
        return REFUSED if self.down.is_set() else None


def _shipper(exporter, convert, **overrides) -> Shipper:
    options = dict(max_batch_age_s=0.05, timeout_s=10.0, retry_initial_backoff_s=0.05, retry_max_backoff_s=0.05,
                   retry_jitter=0.0)
    options.update(overrides)
    return Shipper(ShipperConfig("m", "1", endpoint="http://127.0.0.1:9", **options), convert=convert,
                   exporter_factory=lambda c: exporter)


def test_no_batch_is_converted_while_the_endpoint_is_refused_and_every_row_goes_once_it_is_back(shippers):
    exporter, convert = Reaching(), Counting()
    shipper = _shipper(exporter, convert)
    shippers.append(shipper)
    for _ in range(5):
        shipper.offer(item(np.ones((3, 4))))
    wait_until(lambda: shipper.stats["failed_attempts"] >= 4, timeout=10)
    assert convert.calls == 0 and exporter.attempts == []  # refused attempts cost no conversion, no export
    exporter.down.clear()
    assert shipper.flush(10)
    stats = shipper.stats
    assert convert.calls == 1 and len(exporter.payloads) == 1
    assert stats["sent_rows"] == 15 and stats["dropped_rows"] == 0 and stats["failed_exports"] == 0
    assert stats["failed_attempts"] == exporter.readies - 1  # each refused ready is a failed attempt
    assert stats["connected"] is True


def test_rows_of_a_batch_that_cannot_reach_the_endpoint_by_its_deadline_are_counted_dropped(shippers):
    exporter, convert = Reaching(), Counting()
    shipper = _shipper(exporter, convert, timeout_s=0.3, retry_initial_backoff_s=0.1, retry_max_backoff_s=0.1)
    shippers.append(shipper)
    for _ in range(4):
        shipper.offer(item(np.ones((2, 4))))
    wait_until(lambda: shipper.stats["failed_exports"] >= 1, timeout=10)
    stats = shipper.stats
    assert convert.calls == 0 and stats["dropped_rows"] == 8 and stats["dropped_calls"] == 4
    exporter.down.clear()
    shipper.offer(item(np.ones((5, 4))))
    assert shipper.flush(10)
    stats = shipper.stats
    assert convert.calls == 1 and stats["sent_rows"] == 5 and stats["dropped_rows"] == 8


def test_a_connection_before_a_failing_export_does_not_reset_the_back_off(shippers):
    # ready refuses twice, then connects; the export's first attempt fails: the back-off counts three failures
    exporter, convert = Reaching([REFUSED]), Counting()
    readies = iter([REFUSED, REFUSED])
    exporter.ready = lambda timeout_s: next(readies, None)
    shipper = _shipper(exporter, convert, retry_initial_backoff_s=0.01, retry_max_backoff_s=0.2)
    shippers.append(shipper)
    seen = []
    export = exporter.export
    exporter.export = lambda payload, timeout_s: (seen.append(shipper._retry.failures), export(payload, timeout_s))[1]
    shipper.offer(item(np.ones((1, 4))))
    assert shipper.flush(10)
    assert seen == [2, 3]  # a reset by the connection would have made it [0, 1]
    assert shipper.stats["failed_attempts"] == 3 and shipper.stats["sent_rows"] == 1 and convert.calls == 1


def test_offers_that_fill_a_batch_during_a_back_off_wait_hand_the_worker_no_gil(shippers, monkeypatch):
    exporter, convert = Reaching(), Counting()
    shipper = _shipper(exporter, convert, max_batch_rows=8, max_batch_age_s=60.0, retry_initial_backoff_s=5.0,
                       retry_max_backoff_s=5.0)
    shippers.append(shipper)
    for _ in range(8):  # a batch's worth: the worker takes it and its ready is refused
        shipper.offer(item(np.ones((1, 4))))
    wait_until(lambda: shipper.stats["failed_attempts"] == 1 and shipper._backing, timeout=10)
    me, handovers = threading.get_ident(), []
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: (handovers.append(s) if threading.get_ident() == me else None,
                                                   real_sleep(s)))
    for _ in range(64):  # crosses max_batch_rows again while the worker waits out its back-off
        shipper.offer(item(np.ones((1, 4))))
    assert handovers == [] and not shipper._runnable
    assert shipper.stats["queued_rows"] == 64 and convert.calls == 0
