"""OTLP/gRPC logs receiver (``LogsService/Export``) on the sidecar's asyncio loop.

The method is registered with a raw-bytes deserializer so that this module, not
grpcio, decides what a malformed request gets (INVALID_ARGUMENT with a reason) and
counts it. gRPC's own receive limit is set to ``max_request_bytes``; grpcio applies
it after decompression and answers RESOURCE_EXHAUSTED itself (those refusals are
not counted in ``driftcar.receiver.batches``, the one gap of this transport).
"""

from __future__ import annotations

import logging

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsPartialSuccess, ExportLogsServiceResponse

from driftcar.sidecar.config import Endpoint
from driftcar.sidecar.errors import IngestError, TooLarge, Unauthenticated, grpc_status
from driftcar.sidecar.security import TokenAuth

__all__ = ["GrpcReceiver", "SERVICE", "METHOD"]

log = logging.getLogger("driftcar.sidecar.receiver.grpc")
SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
_ACCEPTED = ExportLogsServiceResponse()
METHOD = "Export"


class GrpcReceiver:
    """grpc.aio server; create and use it inside the running loop.

    ``ingestor`` is the sidecar's :class:`~.ingest.Ingestor`, or in the gRPC front process a
    :class:`~.front.Relay` to it (the same ``ingest_body`` and ``refuse``).
    ``port`` is the bound port after :meth:`start` (useful with port 0). The port is exclusive
    unless ``reuse_port``: then every receiver that asks for it may bind the same port
    (SO_REUSEPORT, same user) and the kernel spreads *connections* over them, used by
    ``benchmarks/_ingest_cuts.py`` to measure ingest spread over processes.
    """

    def __init__(self, endpoint: Endpoint, ingestor, auth: TokenAuth, *, max_request_bytes: int,
                 credentials: grpc.ServerCredentials | None = None, reuse_port: bool = False):
        self.endpoint = endpoint
        self.reuse_port = reuse_port
        self.ingestor = ingestor
        self.auth = auth
        self.max_request_bytes = max_request_bytes
        self.credentials = credentials
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None

    async def _export(self, data: bytes, context: grpc.aio.ServicerContext) -> ExportLogsServiceResponse:
        try:
            if self.auth.enabled:
                header = next((v for k, v in context.invocation_metadata() or () if k == "authorization"), None)
                if not self.auth.check(header):
                    raise Unauthenticated("missing or invalid bearer token")
            if len(data) > self.max_request_bytes:
                await self.ingestor.refuse(
                    TooLarge(f"request of {len(data)} bytes exceeds the limit of {self.max_request_bytes}"))
            result = await self.ingestor.ingest_body(data, False)
        except IngestError as error:
            code, details, trailers = grpc_status(error)
            await context.abort(code, details, trailing_metadata=trailers)
            raise  # unreachable: abort raises
        if not result.rejected:
            return _ACCEPTED  # (only ever serialised: one empty response for every full success)
        response = ExportLogsServiceResponse()
        response.partial_success.CopyFrom(
            ExportLogsPartialSuccess(rejected_log_records=result.rejected, error_message=result.message)
        )
        return response

    async def start(self) -> None:
        options = [
            ("grpc.max_receive_message_length", self.max_request_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
            # exclusive by default: a second sidecar on the same port must fail to start, not share it
            ("grpc.so_reuseport", 1 if self.reuse_port else 0),
        ]
        server = grpc.aio.server(options=options)
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {METHOD: grpc.unary_unary_rpc_method_handler(
                self._export, request_deserializer=None,
                response_serializer=ExportLogsServiceResponse.SerializeToString)},
        )
        server.add_generic_rpc_handlers((handler,))
        address = str(self.endpoint)
        if self.credentials is not None:
            self.port = server.add_secure_port(address, self.credentials)
        else:
            self.port = server.add_insecure_port(address)
        if not self.port:
            raise OSError(f"cannot bind the gRPC receiver to {address}")
        await server.start()
        self._server = server
        log.info("OTLP/gRPC receiver listening on %s:%d%s", self.endpoint.host, self.port,
                 " (TLS)" if self.credentials else "")

    async def stop(self, grace_s: float = 2.0) -> None:
        """Stop accepting; in-flight calls get ``grace_s`` to finish."""
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None
