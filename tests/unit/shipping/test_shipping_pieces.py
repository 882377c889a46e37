"""Requests in pieces: the bytes of the joined request, big bodies not copied, sent as one POST by OTLP/HTTP."""

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from driftcar.hook.shipping.batching import BIG_PIECE, pack_requests, record_pieces
from driftcar.hook.shipping.http_exporter import HttpExporter
from tests.support.otlp import HttpOtlpReceiver

RESOURCE = {"service.name": "svc", "host.name": "h"}


def _records(sizes):
    bodies = [bytes(range(256)) * (n // 256) + b"y" * (n % 256) for n in sizes]
    return bodies, [record_pieces(b, model_name="m", model_version="1", kind="inference", rows=len(b),
                                  trace_id=b"", batch_id=i) for i, b in enumerate(bodies)]


@pytest.mark.parametrize("sizes", [[10], [BIG_PIECE - 1, 3], [200_000, 5, 70_000], [1 << 20, BIG_PIECE]])
@pytest.mark.parametrize("cap", [1 << 30, 1 << 20 + 4096])
def test_pieces_join_to_the_joined_request_and_keep_big_bodies_uncopied(sizes, cap):
    bodies, records = _records(sizes)
    joined = pack_requests(records, RESOURCE, cap)
    pieced = pack_requests(records, RESOURCE, cap, pieces=True)
    assert [n for _, n in pieced] == [n for _, n in joined]
    for (whole, _), (pieces, _) in zip(joined, pieced):
        assert type(pieces) is tuple and b"".join(pieces) == whole
    sent = [p for pieces, _ in pieced for p in pieces]
    for body in bodies:
        assert any(p is body for p in sent) == (len(body) >= BIG_PIECE)
    for pieces, _ in pieced:  # between two big bodies the small pieces are one (one send each)
        big = [any(p is b for b in bodies) for p in pieces]
        assert not any(not a and not b for a, b in zip(big, big[1:]))


@pytest.mark.timeout(20)
@pytest.mark.parametrize("gzip", [False, True])
def test_an_http_export_in_pieces_delivers_the_request(gzip):
    _, records = _records([300_000, 17, 100_000])
    (pieces, n), = pack_requests(records, RESOURCE, 1 << 30, pieces=True)
    with HttpOtlpReceiver() as rx:
        exporter = HttpExporter(rx.endpoint + "/v1/logs", gzip=gzip)
        try:
            for _ in range(2):  # twice on the kept-alive connection: the first body's length was exact
                assert exporter.export(pieces, 10.0).ok
        finally:
            exporter.close()
        assert [r.SerializeToString() for r in rx.logs] == [b"".join(pieces)] * 2
        assert ExportLogsServiceRequest.FromString(b"".join(pieces)).resource_logs[0].scope_logs[0].log_records
