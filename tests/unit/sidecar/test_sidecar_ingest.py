"""Ingest: validation, partial success, all-or-nothing bounded queue, counting, error mapping."""

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
