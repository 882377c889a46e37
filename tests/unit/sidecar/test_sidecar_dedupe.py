"""A retried batch is queued once: the bounded memory of batch ids and its place in ingest."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from driftcar.sidecar.dedupe import MAX_IDS, RecentBatches, batch_id
from driftcar.sidecar.errors import Overloaded
from driftcar.sidecar.ingest import IngestQueue, Ingestor
from driftcar.wire import DEFAULT_LIMITS, BatchError
from driftcar.wire.otlp import ATTR_BATCH_ID

from tests.unit.sidecar.batches import inference_body, numeric_frame, record, request
from tests.unit.sidecar.fake_telemetry import FakeTelemetry


def items(*ids):
    return [SimpleNamespace(batch_id=i) for i in ids]


def test_a_remembered_id_is_a_duplicate_and_a_new_one_is_not():
    recent = RecentBatches(max_ids=4)
    recent.remember(items(1, 2))
    fresh, duplicates = recent.split(items(2, 3, 1))
    assert [i.batch_id for i in fresh] == [3] and duplicates == 2


def test_items_without_an_id_are_always_fresh():
    recent = RecentBatches(max_ids=4)
    recent.remember(items(None, None))
    fresh, duplicates = recent.split(items(None, None))
    assert len(fresh) == 2 and duplicates == 0 and len(recent) == 0


def test_one_id_twice_in_one_request_is_queued_once():
    fresh, duplicates = RecentBatches().split(items(7, 7, 8))
    assert [i.batch_id for i in fresh] == [7, 8] and duplicates == 1


def test_the_memory_keeps_the_last_max_ids_and_forgets_the_oldest():
    recent = RecentBatches(max_ids=3)
    recent.remember(items(1, 2, 3, 4, 5))
    assert len(recent) == 3
    assert 1 not in recent and 2 not in recent and all(k in recent for k in (3, 4, 5))
    # documented limit: a copy arriving after max_ids other batches is applied again (taken as new)
    fresh, duplicates = recent.split(items(1, 5))
    assert [i.batch_id for i in fresh] == [1] and duplicates == 1


def test_remembering_a_known_id_again_does_not_evict_others():
    recent = RecentBatches(max_ids=2)
    recent.remember(items(1, 2))
    recent.remember(items(2, 2))
    assert 1 in recent and 2 in recent


def test_the_default_bound_holds():
    recent = RecentBatches()
    recent.remember(items(*range(MAX_IDS + 100)))
    assert len(recent) == MAX_IDS and 99 not in recent and 100 in recent


def test_max_ids_must_be_positive():
    with pytest.raises(ValueError):
        RecentBatches(0)


def test_the_attribute_is_optional_and_must_be_an_int():
    assert batch_id({}) is None
    assert batch_id({ATTR_BATCH_ID: -5}) == -5
    for bad in ("12", 1.5, True, b"\x01"):
        with pytest.raises(BatchError, match=ATTR_BATCH_ID):
            batch_id({ATTR_BATCH_ID: bad})


def make(max_rows=10_000):
    tel = FakeTelemetry()
    queue = IngestQueue(max_rows, 10**8)
    return Ingestor(queue, tel, DEFAULT_LIMITS, retry_after_s=1.0), queue, tel


def test_a_retried_request_is_answered_and_queued_once():
    ingestor, queue, tel = make()
    body = inference_body(numeric_frame(100))
    retried = request(record(body, batch_id=11), record(body, batch_id=12))
    assert ingestor.ingest(retried).accepted == 2
    again = ingestor.ingest(retried)
    assert (again.accepted, again.rejected) == (0, 0)  # a success: the client stops retrying
    assert queue.rows == 200 and len(queue) == 2
    assert tel.counters[("batches", "accepted")] == 2 and tel.counters[("batches", "duplicate")] == 2


def test_a_request_mixing_a_retried_and_a_new_batch_queues_the_new_one():
    ingestor, queue, tel = make()
    body = inference_body(numeric_frame(10))
    ingestor.ingest(request(record(body, batch_id=1)))
    result = ingestor.ingest(request(record(body, batch_id=1), record(body, batch_id=2), record(body)))
    assert result.accepted == 2 and queue.rows == 30
    assert tel.counters[("batches", "duplicate")] == 1


def test_batches_without_an_id_are_queued_every_time():
    ingestor, queue, tel = make()
    body = inference_body(numeric_frame(10))
    for _ in range(2):
        ingestor.ingest(request(record(body)))
    assert queue.rows == 20 and ("batches", "duplicate") not in tel.counters


def test_a_refused_request_is_not_remembered_so_its_retry_is_queued():
    ingestor, queue, tel = make(max_rows=150)
    body = inference_body(numeric_frame(100))
    ingestor.ingest(request(record(body, batch_id=1)))
    with pytest.raises(Overloaded):
        ingestor.ingest(request(record(body, batch_id=2)))
    queue.done(queue.get(0))
    assert ingestor.ingest(request(record(body, batch_id=2))).accepted == 1
    assert queue.rows == 100 and ("batches", "duplicate") not in tel.counters


def test_a_bad_batch_id_rejects_the_record_with_the_reason():
    from driftcar.sidecar.errors import BadRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    ingestor, queue, tel = make()
    bad = record(inference_body(numeric_frame(10)))
    bad.attributes.append(KeyValue(key=ATTR_BATCH_ID, value=AnyValue(string_value="x")))
    with pytest.raises(BadRequest, match=f"{ATTR_BATCH_ID} must be an int"):
        ingestor.ingest(request(bad))
    assert queue.rows == 0
