"""The real OTLP receivers on 127.0.0.1 (grpc.aio + aiohttp): statuses for every kind of input.

A receivers-only harness (ingestor + queue, no state) so each answer is checked in
isolation; the whole service is exercised in test_sidecar_service.py. The gRPC answers are
checked on both paths: the receiver on the sidecar's loop, and in its own process (``grpc_front``).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import threading
import zlib

import grpc
import pytest
import urllib.request
import urllib.error
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc

from driftcar.sidecar.config import Endpoint, TLSConfig
from driftcar.sidecar.front_link import FrontLink
from driftcar.sidecar.ingest import IngestQueue, Ingestor
from driftcar.sidecar.receiver_grpc import GrpcReceiver
from driftcar.sidecar.receiver_http import RUNNER_KWARGS, HttpReceiver
from driftcar.sidecar.security import TokenAuth
from driftcar.wire import DEFAULT_LIMITS

from tests.unit.sidecar.batches import inference_body, numeric_frame, other_record, record, request
from tests.unit.sidecar.fake_telemetry import FakeTelemetry

LIMIT = 256 * 1024


#: the gRPC receiver's two paths: on the sidecar's loop, and in a front process (``grpc_front``)
PATHS = ("inline", "front")


class Harness:
    def __init__(self, token=None, max_rows=10**6, path="inline"):
        from aiohttp import web

        self.tel = FakeTelemetry()
        self.queue = IngestQueue(max_rows, 10**9)
        self.ingestor = Ingestor(self.queue, self.tel, DEFAULT_LIMITS, retry_after_s=1.0)
        auth = TokenAuth(token)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start():
            if path == "front":
                self.grpc = FrontLink(Endpoint("127.0.0.1", 0), self.ingestor, {
                    "auth": auth, "tls": TLSConfig(), "limits": DEFAULT_LIMITS, "max_request_bytes": LIMIT,
                    "log_level": "warning", "grace_s": 1.0})
            else:
                self.grpc = GrpcReceiver(Endpoint("127.0.0.1", 0), self.ingestor, auth, max_request_bytes=LIMIT)
            await self.grpc.start()
            app = web.Application()
            HttpReceiver(self.ingestor, auth, max_request_bytes=LIMIT).add_routes(app)
            self.runner = web.AppRunner(app, access_log=None, **RUNNER_KWARGS)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.http_port = site._server.sockets[0].getsockname()[1]

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(40)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc.port}")
        self.stub = logs_service_pb2_grpc.LogsServiceStub(self.channel)

    def close(self):
        self.channel.close()

        async def stop():
            await self.grpc.stop(0)
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def post(self, body: bytes, content_type="application/x-protobuf", headers=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/v1/logs", data=body, method="POST",
                                     headers={"Content-Type": content_type, **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def export_raw(self, data: bytes, metadata=()):
        call = self.channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                                        request_serializer=lambda b: b,
                                        response_deserializer=logs_service_pb2.ExportLogsServiceResponse.FromString)
        return call(data, timeout=10, metadata=metadata)


@pytest.fixture(params=PATHS)
def harness(request):
    h = Harness(path=request.param)
    yield h
    h.close()


def good_request(rows=50, model="m"):
    return request(record(inference_body(numeric_frame(rows)), model=model))


def grpc_error(fn):
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value


def test_grpc_accepts_and_partial_success(harness):
    resp = harness.stub.Export(good_request(), timeout=10)
    assert not resp.HasField("partial_success")
    mixed = request(record(inference_body(numeric_frame(5))), record(b"\x00\x01", rows=5), other_record())
    resp = harness.stub.Export(mixed, timeout=10)
    assert resp.partial_success.rejected_log_records == 1
    assert "msgpack" in resp.partial_success.error_message
    assert len(harness.queue) == 2


def test_grpc_malformed_inputs(harness):
    err = grpc_error(lambda: harness.export_raw(os.urandom(0) + b"\x0a\xff\xff\xff\xff\x0f"))  # truncated protobuf
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "ExportLogsServiceRequest" in err.details()
    err = grpc_error(lambda: harness.stub.Export(request(record(b"\x81\xa1v\x03", rows=0)), timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "schema version" in err.details()
    err = grpc_error(lambda: harness.export_raw(b"\x0a" + b"\x80" * 20))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    big = request(record(inference_body(numeric_frame(LIMIT // 8))))
    err = grpc_error(lambda: harness.stub.Export(big, timeout=10))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert harness.tel.counters[("batches", "rejected")] >= 3
    harness.stub.Export(good_request(), timeout=10)  # still serving


@pytest.mark.parametrize("path", PATHS)
def test_grpc_overload_is_unavailable_with_retry_info(path):
    h = Harness(max_rows=60, path=path)
    try:
        h.stub.Export(good_request(50), timeout=10)
        err = grpc_error(lambda: h.stub.Export(good_request(50), timeout=10))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        details = dict(err.trailing_metadata())["grpc-status-details-bin"]
        info = error_details_pb2.RetryInfo()
        assert status_pb2.Status.FromString(details).details[0].Unpack(info)
        assert info.retry_delay.seconds == 1
        status, headers, _ = h.post(good_request(50).SerializeToString())
        assert status == 503 and headers["Retry-After"] == "1"
        assert h.tel.counters[("batches", "throttled")] == 2
        assert h.queue.rows == 50  # never grew
    finally:
        h.close()


def _retry_delay(err) -> float | None:
    details = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    if details is None:
        return None
    info = error_details_pb2.RetryInfo()
    for detail in status_pb2.Status.FromString(details).details:
        if detail.Unpack(info):
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


@pytest.mark.parametrize("path", PATHS)
def test_every_refusal_path_answers_as_documented(path):
    """Queue full and stopping: retryable (UNAVAILABLE + RetryInfo / 503 + Retry-After); a model
    beyond the cap: a reason, not retryable (a retry would meet the same cap)."""
    h = Harness(max_rows=60, path=path)
    try:
        h.stub.Export(good_request(50), timeout=10)
        answers = {}
        err = grpc_error(lambda: h.stub.Export(good_request(50), timeout=10))  # queue full after the wait
        answers["queue full"] = (err.code(), _retry_delay(err), h.post(good_request(50).SerializeToString()))
        h.queue.done(h.queue.get(0))
        h.ingestor.admit = lambda m, v: "model cap reached (1 model versions)" if m == "new" else None
        cap = request(record(inference_body(numeric_frame(5)), model="new"))
        err = grpc_error(lambda: h.stub.Export(cap, timeout=10))
        answers["model cap"] = (err.code(), _retry_delay(err), h.post(cap.SerializeToString()))
        h.ingestor.stopping = True
        err = grpc_error(lambda: h.stub.Export(good_request(5), timeout=10))
        answers["stopping"] = (err.code(), _retry_delay(err), h.post(good_request(5).SerializeToString()))
    finally:
        h.close()
    for path in ("queue full", "stopping"):
        code, delay, (status, headers, _) = answers[path]
        assert (code, delay, status, headers.get("Retry-After")) == (grpc.StatusCode.UNAVAILABLE, 1.0, 503, "1"), path
    code, delay, (status, headers, body) = answers["model cap"]
    assert (code, delay, status, headers.get("Retry-After")) == (grpc.StatusCode.INVALID_ARGUMENT, None, 400, None)
    assert b"model cap reached" in body


@pytest.mark.parametrize("path", PATHS)
def test_token_required_on_both_transports(path):
    h = Harness(token="s3cret-token", path=path)
    try:
        err = grpc_error(lambda: h.stub.Export(good_request(), timeout=10))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "s3cret" not in err.details()
        err = grpc_error(lambda: h.stub.Export(good_request(), timeout=10,
                                               metadata=(("authorization", "Bearer wrong"),)))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        h.stub.Export(good_request(), timeout=10, metadata=(("authorization", "Bearer s3cret-token"),))
        body = good_request().SerializeToString()
        assert h.post(body)[0] == 401
        assert h.post(body, headers={"Authorization": "Bearer nope"})[0] == 401
        assert h.post(body, headers={"Authorization": "Bearer s3cret-token"})[0] == 200
        assert len(h.queue) == 2
    finally:
        h.close()


def test_http_protobuf_gzip_and_partial_success(harness):
    status, headers, body = harness.post(gzip.compress(good_request().SerializeToString()),
                                         headers={"Content-Encoding": "gzip"})
    assert status == 200 and headers["Content-Type"].startswith("application/x-protobuf")
    mixed = request(record(inference_body(numeric_frame(5))), record(b"junk", rows=5))
    status, _, body = harness.post(mixed.SerializeToString())
    resp = logs_service_pb2.ExportLogsServiceResponse.FromString(body)
    assert status == 200 and resp.partial_success.rejected_log_records == 1
    assert len(harness.queue) == 2


def test_http_json_with_hex_ids_and_base64_body(harness):
    req = request(record(inference_body(numeric_frame(7)), trace_id=bytes(range(16)), span_id=bytes(range(8))))
    doc = json_format.MessageToDict(req)
    rec = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    rec["traceId"] = bytes(range(16)).hex()  # OTLP/JSON: hex, not base64
    rec["spanId"] = bytes(range(8)).hex()
    rec["someFutureField"] = 1  # unknown fields are ignored
    status, headers, body = harness.post(json.dumps(doc).encode(), content_type="application/json")
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    item = harness.queue.get(0)
    assert item.trace_id == bytes(range(16)) and item.batch.rows == 7


def test_http_malformed_inputs(harness):
    status, headers, body = harness.post(os.urandom(512))
    assert status in (400,)  # random bytes: not protobuf or not a valid batch
    err = status_pb2.Status.FromString(body)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and err.message
    assert harness.post(b"{not json", content_type="application/json")[0] == 400
    assert harness.post(b"[1,2]", content_type="application/json")[0] == 400
    assert harness.post(b"x", content_type="text/plain")[0] == 415
    assert harness.post(b"x", headers={"Content-Encoding": "br"})[0] == 415
    assert harness.post(gzip.compress(b"abc")[:-6], headers={"Content-Encoding": "gzip"})[0] == 400
    deep = b"[" * 100_000 + b"]" * 100_000
    assert harness.post(deep, content_type="application/json")[0] == 400
    assert harness.post(b"x" * (LIMIT + 1))[0] == 413
    assert harness.post(good_request().SerializeToString())[0] == 200


def test_http_size_limit_after_decompression_and_gzip_bomb(harness):
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    data = bomb.compress(b"\0" * (64 * 1024 * 1024)) + bomb.flush()  # 64 MiB -> ~64 KiB
    assert len(data) < LIMIT
    status, _, body = harness.post(data, headers={"Content-Encoding": "gzip"})
    assert status == 413 and b"inflates beyond" in body
    # exactly at the limit passes the size check (then fails as protobuf: 400, not 413)
    at_limit = gzip.compress(b"\x0a\x00" * (LIMIT // 2))
    assert harness.post(at_limit, headers={"Content-Encoding": "gzip"})[0] == 200
    over = gzip.compress(b"\x0a\x00" * (LIMIT // 2) + b"\x0a")
    assert harness.post(over, headers={"Content-Encoding": "gzip"})[0] == 413


def test_grpc_takes_v1_bodies_from_older_hooks_and_v2_alike(harness):
    from driftcar.wire import Column, encode_batch

    plan = ["basic", "pro", None, "basic"] * 25
    cols = [Column("plan", "feature", plan), Column("x0", "feature", numeric_frame(100)["x0"])]
    for version in (1, 2):
        body = encode_batch("inference", cols, version=version)
        resp = harness.stub.Export(request(record(body, schema_version=version)), timeout=10)
        assert not resp.HasField("partial_success")
        item = harness.queue.get(0)
        harness.queue.done(item)
        assert item.batch.version == version
        assert item.batch.columns["plan"] == plan
        assert item.batch.columns["x0"].tolist() == cols[1].data.tolist()
