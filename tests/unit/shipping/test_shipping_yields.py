"""The worker lets a waiting model thread run between the stages of a large batch (GIL releases), and makes
no extra release for a small one."""

import threading
import time

import numpy as np

from driftcar.hook.shipping import Shipper, ShipperConfig
from driftcar.hook.shipping import shipper as shipper_module
from tests.unit.shipping.helpers import FakeExporter, item


def _releases(monkeypatch, rows: int) -> tuple[int, FakeExporter]:
    fake = FakeExporter()
    s = Shipper(ShipperConfig("m", "1", resource={"service.name": "t"}, max_batch_rows=10**6, max_batch_age_s=60.0),
                exporter_factory=lambda cfg: fake)
    try:
        for _ in range(4):
            s._buffer.put(item(np.ones((rows, 3)), np.zeros(rows)), rows * 32, rows)
        taken = s._buffer.take(10**6, 1 << 40)
        me, sleeps = threading.get_ident(), []
        real = time.sleep

        def sleep(seconds):
            if seconds == 0 and threading.get_ident() == me:
                sleeps.append(seconds)
            real(seconds)

        monkeypatch.setattr(shipper_module.time, "sleep", sleep)
        s._ship(taken)  # on this thread, as the worker would
        monkeypatch.setattr(shipper_module.time, "sleep", real)
        assert fake.payloads, "the batch was shipped"
        return len(sleeps), fake
    finally:
        s.shutdown(1.0)


def test_a_large_batch_releases_the_gil_after_its_conversion_and_each_body(monkeypatch):
    n, _ = _releases(monkeypatch, 1_000)  # 4,000 rows
    assert n >= 2  # after the conversion, after the body


def test_a_small_batch_makes_no_extra_release(monkeypatch):
    n, _ = _releases(monkeypatch, 10)
    assert n == 0
