"""Shipper behaviour against an in-memory exporter: batching triggers, drops, failures, deadlines."""

import logging
import threading
import time

import numpy as np

from driftcar.hook.shipping import Shipper, ShipperConfig
from driftcar.hook.shipping.retry import Outcome
from driftcar.hook.shipping.shipper import ITEM_OVERHEAD_BYTES
from tests.support.waiting import wait_until
from tests.unit.shipping.helpers import FakeExporter, decoded_batches, features, item, to_parts


def make(exporter, **options):
    options.setdefault("max_batch_age_s", 60.0)
    options.setdefault("retry_initial_backoff_s", 0.01)
    convert = options.pop("convert", to_parts)
    return Shipper(ShipperConfig("m", "1", resource={"service.name": "t"}, **options),
                   convert=convert, exporter_factory=lambda cfg: exporter)


def test_batch_is_sealed_at_max_rows_without_waiting_for_age(shippers):
    fake = FakeExporter()
    s = make(fake, max_batch_rows=50)
    shippers.append(s)
    X = np.arange(400.0).reshape(100, 4)
    for i in range(0, 100, 10):
        s.offer(item(X[i:i + 10]))
    wait_until(lambda: len(fake.payloads) >= 2, 5, what="two batches sealed by row count")
    got = features(decoded_batches(fake.requests()), 4)
    np.testing.assert_array_equal(got, X[: len(got)])
    assert len(got) == 100  # 2 full batches, nothing left for the age trigger
    assert s.stats["queued_rows"] == 0


def test_batch_is_sealed_at_max_age(shippers):
    fake = FakeExporter()
    s = make(fake, max_batch_age_s=0.2)
    shippers.append(s)
    s.offer(item(np.ones((3, 2))))
    wait_until(lambda: fake.payloads, 5, what="the age trigger")
    assert decoded_batches(fake.requests())[0][1].rows == 3


def test_drops_are_counted_and_ride_along_in_the_next_batch(shippers):
    fake = FakeExporter()
    per_item = 1_000 - ITEM_OVERHEAD_BYTES  # size_hint + the per-item overhead = 1,000 bytes each
    s = make(fake, max_buffer_bytes=10_000)
    shippers.append(s)
    for i in range(100):
        s.offer(item(np.full((2, 4), float(i)), size_hint=per_item))
        assert s.stats["queued_bytes"] <= 10_000
    stats = s.stats
    assert (stats["dropped_calls"], stats["dropped_rows"], stats["queued_items"]) == (90, 180, 10)
    assert s.flush(5)
    [(_, batch)] = decoded_batches(fake.requests())
    assert batch.hook["dropped_rows"] == 180 and batch.hook["dropped_calls"] == 90
    assert batch.columns["x0"].tolist() == [float(i) for i in range(90, 100) for _ in range(2)]  # newest kept


def test_offer_never_raises_and_counts_bad_items_once_logged(shippers, caplog):
    s = make(FakeExporter())
    shippers.append(s)
    with caplog.at_level(logging.WARNING, logger="driftcar.hook"):
        for junk in (None, object(), 42, "x"):
            s.offer(junk)
    assert s.stats["offer_errors"] == 4
    assert len([r for r in caplog.records if "could not queue" in r.getMessage()]) == 1


def test_permanent_failure_is_counted_not_retried_and_reported_in_the_next_batch(shippers, caplog):
    fake = FakeExporter(answers=[Outcome.permanent("http 400", "bad batch")] * 3)
    s = make(fake)
    shippers.append(s)
    with caplog.at_level(logging.WARNING, logger="driftcar.hook"):
        for _ in range(3):
            s.offer(item(np.ones((5, 2))))
            assert s.flush(5)
    assert len(fake.attempts) == 3  # one attempt per batch: never retried
    stats = s.stats
    assert stats["failed_exports"] == 3 and stats["dropped_rows"] == 15 and stats["retries"] == 0
    assert len([r for r in caplog.records if "http 400" in r.getMessage()]) == 1  # logged once
    s.offer(item(np.ones((1, 2))))
    assert s.flush(5)
    [(_, batch)] = decoded_batches(fake.requests())
    assert batch.hook["failed_exports"] == 3 and batch.hook["dropped_rows"] == 15 and batch.hook["dropped_calls"] == 3


def test_retryable_failure_is_retried_then_delivered(shippers):
    fake = FakeExporter(answers=[Outcome.retry("grpc UNAVAILABLE")] * 2)
    s = make(fake)
    shippers.append(s)
    s.offer(item(np.ones((4, 2))))
    assert s.flush(5)
    assert len(fake.attempts) == 3 and len(fake.payloads) == 1
    assert s.stats["retries"] == 2 and s.stats["dropped_rows"] == 0 and s.stats["sent_rows"] == 4


def test_partial_success_is_recorded_not_retried(shippers):
    fake = FakeExporter(answers=[Outcome.success(rejected=1, detail="schema")])
    s = make(fake)
    shippers.append(s)
    s.offer(item(np.ones((4, 2))))
    assert s.flush(5)
    assert len(fake.attempts) == 1 and s.stats["rejected_records"] == 1


def test_conversion_failures_are_counted_as_dropped(shippers):
    def broken(items):
        raise RuntimeError("boom")

    s = make(FakeExporter(), convert=broken)
    shippers.append(s)
    s.offer(item(np.ones((7, 2))))
    assert s.flush(5)
    assert s.stats["encode_errors"] == 1 and s.stats["dropped_rows"] == 7

    def lossy(items):
        parts = to_parts(items)
        parts[0].dropped_rows = 3
        return parts

    fake = FakeExporter()
    s2 = make(fake, convert=lossy)
    shippers.append(s2)
    s2.offer(item(np.ones((7, 2))))
    assert s2.flush(5)
    assert s2.stats["dropped_rows"] == 3 and s2.stats["sent_rows"] == 7


def test_flush_and_shutdown_keep_their_deadlines_against_a_black_hole():
    fake = FakeExporter(block=threading.Event())
    s = make(fake, timeout_s=30.0)
    s.offer(item(np.ones((5, 2))))
    started = time.monotonic()
    assert s.flush(0.3) is False
    assert time.monotonic() - started < 1.0
    s.offer(item(np.ones((6, 2))))
    started = time.monotonic()
    assert s.shutdown(0.5) is False
    assert time.monotonic() - started < 1.0
    assert fake.aborted.is_set()  # the export in flight was cut short
    wait_until(lambda: s.stats["dropped_rows"] == 11, 5, what="lost rows counted")
    s.offer(item(np.ones((2, 2))))  # after shutdown: dropped and counted, never raises
    assert s.stats["dropped_rows"] == 13
    s.shutdown(0.1)  # idempotent, never raises


def test_shutdown_flushes_what_is_queued(shippers):
    fake = FakeExporter()
    s = make(fake)
    s.offer(item(np.ones((9, 2))))
    assert s.shutdown(5) is True
    assert decoded_batches(fake.requests())[0][1].rows == 9 and fake.closed
    fake = FakeExporter()
    with make(fake) as s2:  # a context manager shuts down on exit
        s2.offer(item(np.ones((4, 2))))
    assert decoded_batches(fake.requests())[0][1].rows == 4 and fake.closed


def test_fork_reset_gives_an_empty_buffer_and_a_new_identity(shippers):
    s = make(FakeExporter())
    shippers.append(s)
    s.offer(item(np.ones((9, 2))))
    before = s.instance
    s._after_fork_in_child()  # what os.register_at_fork runs in a child
    assert s.instance != before
    assert s.stats["queued_rows"] == 0 and s._worker is None and s._exporter is None


def test_tiny_items_are_bounded_by_their_real_footprint_not_only_their_data(shippers):
    s = make(FakeExporter(), max_buffer_bytes=100_000)
    shippers.append(s)
    for _ in range(1_000):
        s.offer(item(np.ones((1, 2)), size_hint=16))  # 16 data bytes, ~600 bytes of objects
    stats = s.stats
    assert stats["queued_items"] == 100_000 // (16 + ITEM_OVERHEAD_BYTES)
    assert stats["dropped_calls"] == 1_000 - stats["queued_items"]


def test_concurrent_offers_are_each_sent_once_or_counted_dropped(shippers):
    fake = FakeExporter()
    s = make(fake, max_buffer_bytes=200_000, max_batch_rows=500, max_batch_age_s=0.05)
    shippers.append(s)
    threads, per_thread = 4, 3_000

    def produce(t):
        for i in range(per_thread):
            s.offer(item(np.full((1, 2), float(t * per_thread + i))))

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert s.flush(10)
    values = np.concatenate([b.columns["x0"] for _, b in decoded_batches(fake.requests())])
    stats = s.stats
    assert len(np.unique(values)) == len(values)  # nothing sent twice
    assert len(values) == stats["sent_rows"]
    assert stats["sent_rows"] + stats["dropped_rows"] == threads * per_thread  # nothing lost uncounted
    assert stats["offer_errors"] == 0


def test_split_batches_number_their_bodies_consecutively(shippers):
    fake = FakeExporter()
    s = make(fake, max_request_bytes=128 * 1024, max_batch_rows=100_000)
    shippers.append(s)
    X = np.arange(20_000 * 4, dtype=np.float64).reshape(20_000, 4)  # 640 KB: several bodies
    s.offer(item(X[:5]))
    assert s.flush(5)
    s.offer(item(X, kind="reference"))
    assert s.flush(5)
    batches = decoded_batches(fake.requests())
    assert len(batches) >= 6
    assert [b.hook["sent_batches"] for _, b in batches] == list(range(len(batches)))  # no gaps from re-splits
    assert s.stats["sent_batches"] == len(batches)
    np.testing.assert_array_equal(features(batches[1:], 4), X)
    assert all(len(p) <= 128 * 1024 for p in fake.payloads)


def test_compact_offers_mix_with_captured_items_in_order_and_count_after_shutdown(shippers):
    """offer_raw (the capture side's numpy fast path) ships the same columns as offer(Captured)."""
    fake = FakeExporter()
    s = make(fake, max_batch_rows=12)
    shippers.append(s)
    X = np.arange(48.0).reshape(12, 4)
    y = np.arange(12)
    for i in range(0, 12, 3):
        if i % 2:
            s.offer(item(X[i:i + 3], y[i:i + 3]))
        else:
            rows_x, rows_y = X[i:i + 3], y[i:i + 3]
            s.offer_raw(("predict", time.time_ns(), 1_000, 3, 0, None, rows_x.tobytes(), rows_x.dtype, rows_x.shape,
                         rows_y.tobytes(), rows_y.dtype, rows_y.shape, None), 3, rows_x.nbytes + rows_y.nbytes)
    wait_until(lambda: fake.payloads, 5, what="the batch sealed at 12 rows")
    batches = decoded_batches(fake.requests())
    np.testing.assert_array_equal(features(batches, 4), X)
    assert np.concatenate([b.columns["prediction"] for _, b in batches]).tolist() == y.tolist()
    assert s.shutdown(2.0)
    s.offer_raw(("predict", 0, 1, 2, 0, None, None, None, None, b"\0" * 16, np.dtype("i8"), (2,)), 2, 16)
    assert (s.stats["dropped_rows"], s.stats["dropped_calls"]) == (2, 1)


def test_worker_sleeps_on_an_empty_buffer_and_the_next_offer_starts_the_age_clock(shippers):
    fake = FakeExporter()
    s = make(fake, max_batch_age_s=0.1)
    shippers.append(s)
    s.offer(item(np.ones((1, 2))))
    wait_until(lambda: len(fake.payloads) == 1, 5, what="the first batch")
    wait_until(lambda: s._idle, 5, what="the worker asleep on the empty buffer")
    s.offer(item(np.ones((2, 2))))  # must wake it: a sleeping worker has no timeout of its own
    wait_until(lambda: len(fake.payloads) == 2, 5, what="the second batch, by age")
    assert [b.rows for _, b in decoded_batches(fake.requests())] == [1, 2]


def test_stats_show_the_exporters_state_through_an_outage_and_its_recovery(shippers):
    fake = FakeExporter(answers=[Outcome.retry("grpc UNAVAILABLE", detail="connection refused")] * 3)
    s = make(fake)
    shippers.append(s)
    assert (s.stats["connected"], s.stats["last_error"], s.stats["failed_attempts"]) == (None, None, 0)
    s.offer(item(np.ones((2, 2))))
    assert s.flush(5)
    stats = s.stats
    assert stats["connected"] is True and stats["sent_rows"] == 2
    assert stats["failed_attempts"] == 3 and stats["retries"] == 3
    assert stats["last_error"] == "grpc UNAVAILABLE: connection refused"  # kept after the recovery
    fake.answers = [Outcome.permanent("grpc UNAUTHENTICATED")]
    s.offer(item(np.ones((1, 2))))
    assert s.flush(5)
    assert (s.stats["connected"], s.stats["last_error"], s.stats["failed_attempts"]) == (False, "grpc UNAUTHENTICATED", 4)


def test_stats_say_disconnected_while_an_export_is_still_retrying(shippers):
    fake = FakeExporter(answers=[Outcome.retry("grpc UNAVAILABLE")] * 1000)
    s = make(fake, retry_initial_backoff_s=0.02, retry_max_backoff_s=0.02, timeout_s=60.0)
    shippers.append(s)
    s.offer(item(np.ones((2, 2))))
    s.flush(0)
    wait_until(lambda: s.stats["failed_attempts"] >= 2, timeout=10, what="two failed attempts")
    stats = s.stats
    assert stats["connected"] is False and stats["last_error"] == "grpc UNAVAILABLE"
    assert stats["sent_rows"] == 0 and stats["queued_rows"] == 0  # the batch is in flight, not lost
