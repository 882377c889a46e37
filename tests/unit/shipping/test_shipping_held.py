"""A request no attempt got an answer for (``Outcome.unanswered``: a timeout, a connection lost after
sending) is held and sent once more before the next export, with the same bytes (so the same
``driftcar.batch.id``); its rows are counted as dropped only if that fails too. A refused
request (known not applied) is counted at once, as before."""

from __future__ import annotations

import numpy as np

from driftcar.hook.shipping import Shipper, ShipperConfig
from driftcar.hook.shipping.retry import Outcome
from driftcar.hook.shipping.shipper import MAX_HELD
from tests.support.waiting import wait_until
from tests.unit.shipping.helpers import FakeExporter, item, to_parts

UNANSWERED = Outcome.retry("http timeout", unanswered=True)
REFUSED = Outcome.retry("http connection ConnectionRefusedError")


class Recording(FakeExporter):
    def __init__(self, answers=None):
        super().__init__(answers)
        self.sent: list[bytes] = []

    def export(self, payload: bytes, timeout_s: float):
        self.sent.append(payload)
        return super().export(payload, timeout_s)


def _shipper(exporter) -> Shipper:
    # no retry fits in the deadline (0.5 s + a 1 s back-off > 1 s): each export is one attempt
    return Shipper(ShipperConfig("m", "1", endpoint="http://127.0.0.1:9", max_batch_age_s=60.0, timeout_s=1.0,
                                 retry_initial_backoff_s=1.0, retry_max_backoff_s=1.0, retry_jitter=0.0),
                   convert=to_parts, exporter_factory=lambda c: exporter)


def _ship_one(shipper: Shipper, rows: int = 4) -> bool:
    shipper.offer(item(np.ones((rows, 3))))
    return shipper.flush(10)


def _shipped_one(answers) -> tuple[Recording, dict, bool]:
    """One 4-row batch shipped and flushed against scripted answers: (exporter, stats, flushed)."""
    exporter = Recording(answers)
    shipper = _shipper(exporter)
    try:
        flushed = _ship_one(shipper)  # flush waits for a held request's second attempt
        return exporter, shipper.stats, flushed
    finally:
        shipper.shutdown(2)


def test_an_unanswered_request_is_sent_once_more_with_the_same_bytes_and_counted_sent():
    exporter, stats, flushed = _shipped_one([UNANSWERED])
    assert flushed and len(exporter.sent) == 2 and exporter.sent[0] == exporter.sent[1]
    assert stats["sent_rows"] == 4 and stats["dropped_rows"] == 0 and stats["failed_exports"] == 0
    assert stats["resent_requests"] == 1


def test_a_held_request_that_gets_no_answer_again_is_counted_dropped_once():
    exporter, stats, flushed = _shipped_one([UNANSWERED, UNANSWERED])
    assert flushed and len(exporter.sent) == 2  # held once, never a third time
    assert stats["dropped_rows"] == 4 and stats["failed_exports"] == 1 and stats["sent_rows"] == 0


def test_a_refused_request_is_counted_dropped_at_once():
    exporter, stats, flushed = _shipped_one([REFUSED])
    assert flushed and len(exporter.sent) == 1
    assert stats["dropped_rows"] == 4 and stats["resent_requests"] == 0


def test_the_held_request_goes_before_the_next_export():
    exporter = Recording([UNANSWERED])
    shipper = _shipper(exporter)
    try:
        shipper.offer(item(np.ones((4, 3))))
        shipper.flush(0)  # ship now, without waiting
        wait_until(lambda: len(exporter.sent) == 1, 10, what="the first attempt")
        assert _ship_one(shipper, rows=2)  # offered while the first request is held
        stats = shipper.stats
    finally:
        shipper.shutdown(2)
    assert len(exporter.sent) == 3 and exporter.sent[0] == exporter.sent[1] != exporter.sent[2]
    assert stats["sent_rows"] == 6 and stats["dropped_rows"] == 0


def test_at_shutdown_a_held_request_gets_its_attempt_or_is_counted():
    exporter = Recording([UNANSWERED, UNANSWERED])
    shipper = _shipper(exporter)
    shipper.offer(item(np.ones((4, 3))))
    shipper.shutdown(5)  # the held request is sent once more within the shutdown deadline
    stats = shipper.stats
    assert len(exporter.sent) == 2
    assert stats["dropped_rows"] == 4 and stats["sent_rows"] == 0


def test_at_most_max_held_requests_wait_for_their_second_attempt():
    exporter = Recording([UNANSWERED] * (MAX_HELD + 1))
    shipper = _shipper(exporter)
    shipper._inflight_seq = 1  # as while a batch is being shipped
    for _ in range(MAX_HELD + 1):
        shipper._retry.clear()  # no back-off wait between these direct exports
        shipper._export(b"payload", 1, 1)
    assert len(shipper._held) == MAX_HELD and len(exporter.sent) == MAX_HELD + 1
    assert shipper.stats["dropped_rows"] == 1  # the one past the bound, counted at once
