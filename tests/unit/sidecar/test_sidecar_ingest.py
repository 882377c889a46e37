"""Ingest: validation, partial success, all-or-nothing bounded queue, counting, error mapping."""

import sys
import time

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from driftcar.sidecar.errors import BadRequest, Overloaded, ShuttingDown, TooLarge, Unauthenticated, \
    grpc_status, http_status
from driftcar.sidecar.ingest import IngestQueue, Ingestor
from driftcar.wire import DEFAULT_LIMITS

from tests.unit.sidecar.batches import inference_body, numeric_frame, other_record, record, request
from tests.unit.sidecar.fake_telemetry import FakeTelemetry


def make(max_rows=10_000, max_bytes=10**8):
    tel = FakeTelemetry()
    queue = IngestQueue(max_rows, max_bytes)
    return Ingestor(queue, tel, DEFAULT_LIMITS, retry_after_s=2.5), queue, tel


def test_good_request_is_queued_and_counted():
    ingestor, queue, tel = make()
    body = inference_body(numeric_frame(100))
    result = ingestor.ingest(request(record(body), record(body, model="other"), other_record()))
    assert (result.accepted, result.rejected, result.ignored) == (2, 0, 1)
    assert len(queue) == 2 and queue.rows == 200
    item = queue.get(0)
    assert item.model == "m" and item.version == "1" and item.batch.rows == 100
    assert tel.counters[("batches", "accepted")] == 2 and tel.counters[("ignored",)] == 1


def test_partial_success_counts_and_quotes_reasons():
    ingestor, queue, tel = make()
    good = inference_body(numeric_frame(10))
    result = ingestor.ingest(request(record(good), record(b"\xc1garbage", rows=10), record(good, model="")))
    assert (result.accepted, result.rejected) == (1, 2)
    assert "2 driftcar.batch record(s) rejected" in result.message
    assert "msgpack" in result.message and "model.name" in result.message
    assert tel.counters[("batches", "rejected")] == 2


def test_all_bad_is_bad_request_with_reason():
    ingestor, queue, tel = make()
    body = inference_body(numeric_frame(10))
    with pytest.raises(BadRequest, match="driftcar.batch.rows=11 but body has 10 rows"):
        ingestor.ingest(request(record(body, rows=11)))
    with pytest.raises(BadRequest, match="body kind is 'inference'"):
        ingestor.ingest(request(record(body, kind="labels")))
    assert len(queue) == 0


def test_only_foreign_records_is_success():
    ingestor, queue, tel = make()
    result = ingestor.ingest(request(other_record(), other_record("x")))
    assert (result.accepted, result.rejected, result.ignored) == (0, 0, 2)


def test_full_queue_refuses_whole_request_and_never_grows():
    ingestor, queue, tel = make(max_rows=250)
    body = inference_body(numeric_frame(100))
    ingestor.ingest(request(record(body)))
    ingestor.ingest(request(record(body)))
    with pytest.raises(Overloaded) as info:
        ingestor.ingest(request(record(body)))  # 300 > 250
    assert info.value.retry_after_s == 2.5
    assert queue.rows == 200 and len(queue) == 2
    assert tel.counters[("batches", "throttled")] == 1
    item = queue.get(0)
    queue.done(item)
    assert ingestor.ingest(request(record(body))).accepted == 1  # room again


def test_oversized_single_batch_accepted_when_queue_empty():
    ingestor, queue, tel = make(max_rows=50)
    assert ingestor.ingest(request(record(inference_body(numeric_frame(100))))).accepted == 1


def test_stopping_answers_shutting_down():
    ingestor, queue, tel = make()
    ingestor.stopping = True
    with pytest.raises(ShuttingDown):
        ingestor.ingest(request(record(inference_body(numeric_frame(5)))))


def test_model_cap_refusal_is_a_reason():
    ingestor, queue, tel = make()
    ingestor.admit = lambda m, v: "model cap reached" if m == "new" else None
    body = inference_body(numeric_frame(5))
    result = ingestor.ingest(request(record(body), record(body, model="new")))
    assert result.rejected == 1 and "model cap reached" in result.message


@pytest.mark.parametrize("error,code,status,retry", [
    (BadRequest("x"), grpc.StatusCode.INVALID_ARGUMENT, 400, False),
    (TooLarge("x"), grpc.StatusCode.RESOURCE_EXHAUSTED, 413, False),
    (Unauthenticated("x"), grpc.StatusCode.UNAUTHENTICATED, 401, False),
    (Overloaded("x", 1.5), grpc.StatusCode.UNAVAILABLE, 503, True),
])
def test_error_translation(error, code, status, retry):
    got_code, details, trailers = grpc_status(error)
    assert got_code == code and details == "x"
    rich = status_pb2.Status.FromString(dict(trailers)["grpc-status-details-bin"])
    assert rich.code == code.value[0]
    http, headers = http_status(error)
    assert http == status
    if retry:
        info = error_details_pb2.RetryInfo()
        assert rich.details[0].Unpack(info)
        assert info.retry_delay.seconds == 1 and info.retry_delay.nanos == 500_000_000
        assert headers["Retry-After"] == "2"
    else:
        assert not rich.details and "Retry-After" not in headers


# --------------------------------------------------------------------------- coalescing queued batches


def _mixed_items(n: int):
    import numpy as np

    from driftcar.sidecar.ingest import Item
    from driftcar.wire import decode_batch

    rng = np.random.default_rng(7)
    items = []
    for i in range(n):
        X = numeric_frame(50 + 10 * i, seed=i)
        X["city"] = [None if j % 17 == 0 else f"c{int(v)}" for j, v in enumerate(rng.integers(0, 5, len(X["x0"])))]
        rows = len(X["x0"])
        calls = {"method": ["predict"], "duration_s": np.array([0.001 * (i + 1)]), "rows": np.array([rows]),
                 "captured": np.array([rows]), "error_type": [None]}
        body = inference_body(X, predictions=rng.integers(0, 3, rows), calls=calls,
                              hook={"instance": "h", "dropped_rows": i})
        model = "other" if i == 3 else "m"  # breaks the run: a batch of another model in between
        items.append(Item(model, "1", decode_batch(body), len(body), 0))
    return items


def _applied(items, coalesced: bool):
    from driftcar.sidecar.coalesce import coalesce
    from driftcar.sidecar.config import load_config
    from driftcar.sidecar.state import StateStore
    from driftcar.stats import profile

    tel = FakeTelemetry()
    store = StateStore(load_config(env={}, flags={"live_reference_rows": "0"}).store_config(), tel)
    ref = numeric_frame(2_000, seed=99)
    ref["city"] = [f"c{i % 4}" for i in range(2_000)]
    for model in ("m", "other"):
        store.get_or_create(model, "1").set_profile(profile(ref), "file")
    groups = coalesce(items) if coalesced else [(i, 1) for i in items]
    for merged, _ in groups:
        store.apply(merged)
    return store, tel, groups


def test_coalesced_batches_count_exactly_what_one_by_one_counts():
    import numpy as np

    items = _mixed_items(8)
    one, tel_one, _ = _applied(items, coalesced=False)
    many, tel_many, groups = _applied(items, coalesced=True)
    assert [n for _, n in groups] == [3, 1, 4]  # runs split by the other model's batch
    for key in (("m", "1"), ("other", "1")):
        a, b = one.models[key], many.models[key]
        assert (a.rows_total, a.batches_total, a.window_rows) == (b.rows_total, b.batches_total, b.window_rows)
        for name in ("num_counts", "num_inf", "num_invalid", "cat_counts", "cat_missing"):
            assert np.array_equal(getattr(a.window, name), getattr(b.window, name)), name
        # per-bin sums: the same values added in another order (float rounding only)
        np.testing.assert_allclose(a.window.num_sums, b.window.num_sums, rtol=1e-12, atol=1e-12)
        assert a.hook_dropped == b.hook_dropped
    assert tel_one.counters == tel_many.counters


def test_str_columns_are_counted_by_their_dictionary_exactly_as_by_their_values():
    import dataclasses

    import numpy as np

    from driftcar.wire import StrColumn

    items = _mixed_items(8)
    assert isinstance(items[0].batch.columns["city"], StrColumn)
    plain = [dataclasses.replace(i, batch=dataclasses.replace(i.batch, columns={
        n: c.tolist() if isinstance(c, StrColumn) else c for n, c in i.batch.columns.items()})) for i in items]
    assert not isinstance(plain[0].batch.columns["city"], StrColumn)
    coded, _, _ = _applied(items, coalesced=True)
    listed, _, _ = _applied(plain, coalesced=True)
    for key in (("m", "1"), ("other", "1")):
        a, b = coded.models[key].window, listed.models[key].window
        assert a.cat_counts.sum() > 0 and a.cat_missing.sum() > 0
        for name in ("num_counts", "num_sums", "num_inf", "num_invalid", "cat_counts", "cat_missing"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_applying_str_columns_reads_their_dictionary_only():
    # making each row's value was ~30 % of decoding a batch: the path from the wire to the sketch never does
    from driftcar.wire import StrColumn

    _, _, groups = _applied(_mixed_items(8), coalesced=True)
    columns = [merged.batch.columns["city"] for merged, _ in groups]
    assert len(groups) < 8 and all(type(c) is StrColumn and c._rows is None for c in columns)


def test_worker_takes_waiting_batches_together_and_marks_each_done():
    from driftcar.sidecar.ingest import IngestQueue, IngestWorker

    queue = IngestQueue(10**6, 10**9)
    items = _mixed_items(6)
    assert queue.offer(items)
    applied = []
    worker = IngestWorker(queue, applied.append)
    worker.start()
    try:
        assert queue.wait_empty(10)
    finally:
        worker.stop()
    assert sum(i.batches for i in applied) == 6 and len(applied) < 6
    assert sum(i.batch.rows for i in applied) == sum(i.batch.rows for i in items)
    assert queue.rows == 0 and queue.bytes == 0


def test_the_worker_gathers_batches_arriving_one_by_one_into_one_take():
    """Fewer than the limit waiting: get_many waits (up to gather_s) for the rest; alone, one comes back."""
    import threading

    queue = IngestQueue(10**6, 10**9)
    items = _mixed_items(4)
    assert queue.offer(items[:1])
    feeder = threading.Thread(target=lambda: [queue.offer([i]) for i in items[1:]])
    feeder.start()
    took = queue.get_many(4, timeout=1, gather_s=30)
    feeder.join(10)
    assert [id(i) for i in took] == [id(i) for i in items]
    for item in took:
        queue.done(item)
    assert queue.offer(items[:1])
    start = time.monotonic()
    assert len(queue.get_many(4, timeout=1, gather_s=0.05)) == 1
    assert time.monotonic() - start < 5


def test_a_gathering_worker_is_woken_once_what_it_waits_for_is_there_not_by_every_offer():
    import threading

    from tests.support.waiting import wait_until

    queue = IngestQueue(10**6, 10**9)
    items = _mixed_items(4)
    notified = []
    notify = queue._cond.notify
    queue._cond.notify = lambda *a: (notified.append(len(queue._items)), notify(*a))
    took = []
    taker = threading.Thread(target=lambda: took.extend(queue.get_many(4, timeout=30, gather_s=30)))
    taker.start()
    assert queue.offer(items[:1])  # an empty queue's first item wakes the worker
    wait_until(lambda: queue._wanted == 4, what="the worker gathering")
    assert queue.offer(items[1:2]) and queue.offer(items[2:3]) and notified == [1]
    assert queue.offer(items[3:])
    taker.join(20)
    assert not taker.is_alive() and [id(i) for i in took] == [id(i) for i in items] and notified == [1, 4]
    assert queue._wanted == 1


def test_a_waiting_request_is_taken_when_the_worker_makes_room():
    import asyncio

    ingestor, queue, tel = make(max_rows=150)
    body = inference_body(numeric_frame(100))
    ingestor.ingest(request(record(body)))
    prepared = ingestor.prepare(request(record(body)))

    async def main():
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, lambda: queue.done(queue.get(0)))  # the worker applies one batch
        return await ingestor.ingest_async(prepared)

    assert asyncio.run(main()).accepted == 1
    assert ("batches", "throttled") not in tel.counters and queue.rows == 100


def test_a_request_still_refused_after_the_admission_wait():
    import asyncio

    from driftcar.sidecar.ingest import ADMIT_WAIT_S

    ingestor, queue, tel = make(max_rows=150)
    body = inference_body(numeric_frame(100))
    ingestor.ingest(request(record(body)))
    prepared = ingestor.prepare(request(record(body)))
    started = time.monotonic()
    with pytest.raises(Overloaded):
        asyncio.run(ingestor.ingest_async(prepared))
    assert time.monotonic() - started >= ADMIT_WAIT_S
    assert tel.counters[("batches", "throttled")] == 1 and queue.rows == 100


_PASSES = """
import resource, sys, threading
import numpy as np
from driftcar.sidecar.ingest import keep_heap
kept = keep_heap() if sys.argv[1] == "keep" else None
faults = []
def passes():  # what each coalesced pass does: a few MB of temporaries, freed
    for _ in range(6):
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        blocks = [np.ones(n * 2**20 // 8) for n in (1, 2, 3, 4)] + [np.ones(100_000 // 8) for _ in range(40)]
        del blocks
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
thread = threading.Thread(target=passes)
thread.start()
thread.join()
print(kept, *faults)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc, per-thread page faults")
def test_memory_freed_by_the_worker_thread_is_reused_without_page_faults():
    import subprocess

    got = {}
    for mode in ("keep", "default"):  # each in a fresh process: malloc's settings are process-wide
        out = subprocess.run([sys.executable, "-c", _PASSES, mode], capture_output=True, text=True, timeout=60,
                             check=True).stdout.split()
        got[mode] = [int(n) for n in out[1:]]
        if mode == "keep" and out[0] != "True":
            pytest.skip("no glibc mallopt")
    assert sum(got["keep"][2:]) < 100, got  # ~2,560 pages of temporaries: faulted in once, then reused
    assert sum(got["default"][1:]) > 2_000, got  # glibc's defaults: faulted in again, pass after pass
