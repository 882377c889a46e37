"""Real OTLP test receivers on 127.0.0.1 (gRPC and HTTP) with scriptable answers.

Used by integration tests as the downstream of the hook and of the sidecar.
``respond`` lets a test choose the status of each request (retry tests);
by default every request succeeds and is recorded.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Callable

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.support.waiting import free_port, wait_until


@dataclass
class Answer:
    """What the scripted server answers to one request."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.OK
    http_status: int = 200
    message: str = ""
    retry_after_s: float | None = None  # RetryInfo (gRPC) / Retry-After seconds (HTTP)
    headers: dict | None = None  # extra HTTP headers (e.g. an HTTP-date Retry-After)
    delay_s: float = 0.0  # sleep before answering (black-hole-ish)
    rejected_log_records: int = 0  # partial success
    rejected_data_points: int = 0  # partial success (metrics)


OK = Answer()


class _Recorder:
    """What both receivers share: what they got, how often, with which headers; the answers."""

    def __init__(self, respond, port, scheme: str):
        self.port = port or free_port()
        self.endpoint = f"{scheme}://127.0.0.1:{self.port}"
        self.respond = respond or (lambda kind, request, n: OK)
        self.logs: list = []
        self.metrics: list = []
        self.traces: list = []
        self.attempts: list[tuple[float, str]] = []  # (monotonic time, kind) of every request
        self.headers: list[dict] = []  # request headers / metadata (lower-case keys), in order
        self._lock = threading.Lock()

    def _answer(self, kind: str, request, headers: dict) -> Answer:
        """Record one attempt and ask ``respond`` for the answer (n = attempts of this kind so far)."""
        with self._lock:
            self.attempts.append((time.monotonic(), kind))
            self.headers.append(headers)
            n = sum(1 for _, k in self.attempts if k == kind)
        return self.respond(kind, request, n)

    def _store(self, kind: str, request) -> None:
        with self._lock:
            getattr(self, kind).append(request)

    @staticmethod
    def _success(kind: str, answer: Answer):
        """The success response for ``kind``, with the partial success the answer asks for."""
        if kind == "logs":
            response = logs_service_pb2.ExportLogsServiceResponse()
            if answer.rejected_log_records:
                response.partial_success.rejected_log_records = answer.rejected_log_records
                response.partial_success.error_message = answer.message
        elif kind == "metrics":
            response = metrics_service_pb2.ExportMetricsServiceResponse()
            if answer.rejected_data_points:
                response.partial_success.rejected_data_points = answer.rejected_data_points
                response.partial_success.error_message = answer.message
        else:
            response = trace_service_pb2.ExportTraceServiceResponse()
        return response

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_records(self) -> list:
        with self._lock:
            return [r for req in self.logs for rl in req.resource_logs for sl in rl.scope_logs for r in sl.log_records]

    def wait_for_logs(self, predicate: Callable[[list], bool], timeout: float = 20.0) -> list:
        wait_until(lambda: predicate(self.log_records()), timeout, what="log records at the test receiver")
        return self.log_records()


class GrpcOtlpReceiver(_Recorder):
    """grpcio server implementing the OTLP Logs, Metrics and Trace services."""

    def __init__(
        self,
        respond: Callable[[str, object, int], Answer] | None = None,
        port: int | None = None,
        max_receive_bytes: int = 64 * 1024 * 1024,  # 4 MiB is the usual collector limit
        tls: tuple[bytes, bytes] | None = None,  # (private key PEM, certificate PEM): serve TLS
    ):
        super().__init__(respond, port, "https" if tls else "http")
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8),
            options=[("grpc.max_receive_message_length", max_receive_bytes)],
        )
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_Service(self, "logs"), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Service(self, "metrics"), self._server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Service(self, "traces"), self._server)
        if tls:
            self._server.add_secure_port(f"127.0.0.1:{self.port}", grpc.ssl_server_credentials([tls]))
        else:
            self._server.add_insecure_port(f"127.0.0.1:{self.port}")

    def _handle(self, kind: str, request, context):
        from google.protobuf import any_pb2, duration_pb2
        from google.rpc import error_details_pb2, status_pb2

        answer = self._answer(kind, request, dict(context.invocation_metadata()))
        if answer.delay_s:
            time.sleep(answer.delay_s)  # scripted slowness (black-hole-ish), not a wait for a condition
        if answer.grpc_code != grpc.StatusCode.OK:
            details = []
            if answer.retry_after_s is not None:
                info = error_details_pb2.RetryInfo(
                    retry_delay=duration_pb2.Duration(
                        seconds=int(answer.retry_after_s), nanos=int((answer.retry_after_s % 1) * 1e9)
                    )
                )
                packed = any_pb2.Any()
                packed.Pack(info)
                details.append(packed)
            status = status_pb2.Status(code=answer.grpc_code.value[0], message=answer.message, details=details)
            context.abort_with_status(_RichStatus(answer.grpc_code, answer.message, status))
        self._store(kind, request)
        return self._success(kind, answer)

    def start(self) -> "GrpcOtlpReceiver":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=0).wait(5)


class _RichStatus(grpc.Status):
    def __init__(self, code, details, status):
        self.code = code
        self.details = details
        self.trailing_metadata = (("grpc-status-details-bin", status.SerializeToString()),)


class _Service:
    """The ``Export`` method of one OTLP service (logs, metrics or traces), for grpcio's generic handler."""

    def __init__(self, owner: GrpcOtlpReceiver, kind: str):
        self.owner = owner
        self.kind = kind

    def Export(self, request, context):
        return self.owner._handle(self.kind, request, context)


class HttpOtlpReceiver(_Recorder):
    """aiohttp server for OTLP/HTTP protobuf (``/v1/logs``, ``/v1/metrics``, ``/v1/traces``), in a thread."""

    _REQUESTS = {
        "logs": logs_service_pb2.ExportLogsServiceRequest,
        "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
        "traces": trace_service_pb2.ExportTraceServiceRequest,
    }

    def __init__(
        self,
        respond: Callable[[str, object, int], Answer] | None = None,
        port: int | None = None,
        ssl_context=None,  # an ssl.SSLContext with the server certificate loaded: serve HTTPS
    ):
        super().__init__(respond, port, "https" if ssl_context else "http")
        self.ssl_context = ssl_context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="http-otlp-receiver")
        self._runner = None

    async def _handler(self, request):
        from aiohttp import web

        kind = request.path.rsplit("/", 1)[-1]
        body = await request.read()
        # aiohttp may already have inflated a gzip body; inflate only what is still gzip
        if request.headers.get("Content-Encoding") == "gzip" and body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        message = self._REQUESTS[kind].FromString(body)
        answer = self._answer(kind, message, {k.lower(): v for k, v in request.headers.items()})
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)  # scripted slowness, not a wait for a condition
        headers = dict(answer.headers or {})
        if answer.retry_after_s is not None:
            headers["Retry-After"] = str(int(answer.retry_after_s))
        if answer.http_status != 200:
            return web.Response(status=answer.http_status, text=answer.message, headers=headers)
        self._store(kind, message)
        response = self._success(kind, answer)
        return web.Response(body=response.SerializeToString(), content_type="application/x-protobuf", headers=headers)

    async def _start(self):
        from aiohttp import web

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/{kind}", self._handler)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context).start()

    def start(self) -> "HttpOtlpReceiver":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
