"""How long one export attempt may take: half the deadline when a retry still fits after it, else all
of it; and a retry sends the same bytes, so the same ``driftcar.batch.id``."""

from __future__ import annotations

import numpy as np

from driftcar.hook.shipping import Shipper, ShipperConfig
from driftcar.hook.shipping.retry import Outcome
from tests.unit.shipping.helpers import FakeExporter, item, to_parts


class TimingExporter(FakeExporter):
    """Records the time each attempt was given; answers as scripted."""

    def __init__(self, answers=None):
        super().__init__(answers)
        self.given: list[float] = []
        self.sent: list[bytes] = []

    def export(self, payload: bytes, timeout_s: float):
        self.given.append(timeout_s)
        self.sent.append(payload)
        return super().export(payload, timeout_s)


def _ship(exporter, **config) -> Shipper:
    shipper = Shipper(ShipperConfig("m", "1", endpoint="http://127.0.0.1:9", protocol="grpc", max_batch_age_s=60.0,
                                    retry_jitter=0.0, **config),
                      convert=to_parts, exporter_factory=lambda c: exporter)
    shipper.offer(item(np.ones((4, 3))))
    assert shipper.flush(10)
    shipper.shutdown(2)
    return shipper


def test_an_unanswered_attempt_gets_half_the_deadline_and_is_retried_with_the_same_bytes():
    exporter = TimingExporter([Outcome.retry("grpc DEADLINE_EXCEEDED")])
    shipper = _ship(exporter, timeout_s=4.0, retry_initial_backoff_s=0.01)
    assert exporter.given[0] == 2.0 and len(exporter.given) == 2
    assert exporter.sent[0] == exporter.sent[1]  # same payload, so the same batch ids
    assert shipper.stats["sent_rows"] == 4 and shipper.stats["dropped_rows"] == 0


def test_an_attempt_gets_the_whole_deadline_when_no_retry_would_fit_after_it():
    # the back-off after a failure (3 s) leaves no room for a retry within a 4 s deadline
    exporter = TimingExporter()
    _ship(exporter, timeout_s=4.0, retry_initial_backoff_s=3.0, retry_max_backoff_s=3.0)
    assert len(exporter.given) == 1 and exporter.given[0] > 3.5
