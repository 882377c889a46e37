"""OTLP/HTTP logs receiver: ``POST /v1/logs`` in protobuf or JSON, optionally gzip.

The body is read as a stream and inflated incrementally with a hard cap, so the one
``max_request_bytes`` limit holds *after* decompression and a gzip bomb never
allocates more than the limit (aiohttp's own auto-decompression is switched off on
the runner for this reason: see :data:`RUNNER_KWARGS`).

OTLP/JSON differs from protobuf's canonical JSON in two ways handled here: trace and
span ids are hex strings (not base64), and unknown fields must be ignored. Bytes
fields (the batch body) stay base64, as in canonical JSON.

Responses follow OTLP/HTTP: 200 with an ``ExportLogsServiceResponse`` (with
``partial_success`` when some records were rejected), errors with a ``google.rpc.Status``
body, both in the request's encoding.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import zlib

from aiohttp import web
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse

from driftcar.sidecar.errors import (
    BadRequest,
    IngestError,
    TooLarge,
    Unauthenticated,
    UnsupportedMediaType,
    http_status,
    rpc_status,
)
from driftcar.sidecar.ingest import Ingestor
from driftcar.sidecar.security import TokenAuth

__all__ = ["HttpReceiver", "RUNNER_KWARGS", "read_body", "parse_otlp_json"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
#: pass to ``web.AppRunner`` so request bodies reach :func:`read_body` still compressed
RUNNER_KWARGS = {"auto_decompress": False}
CHUNK = 64 * 1024
INFLATE_STEP = 1024 * 1024


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read the whole body, inflating gzip/deflate as it streams; never hold more than ``limit``.

    Raises TooLarge past ``limit`` (compressed or inflated), BadRequest for a corrupt
    stream, UnsupportedMediaType for an unknown Content-Encoding.
    """
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "", "gzip", "deflate"):
        raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding[:32]!r} (use gzip or none)")
    declared = request.content_length
    if declared is not None and declared > limit:
        raise TooLarge(f"request of {declared} bytes exceeds the limit of {limit}")
    if encoding in ("identity", ""):
        parts, size = [], 0
        async for chunk in request.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"request exceeds the limit of {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    # pieces joined once at the end, not a growing bytearray: growing one reallocates, and a
    # realloc that cannot extend in place holds the old and the new buffer at once (up to twice
    # the limit, depending on the heap's layout), so a refused bomb's peak was not bounded
    out: list[bytes] = []
    size = 0
    received = 0
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            received += len(chunk)
            if received > limit:
                raise TooLarge(f"compressed request exceeds the limit of {limit} bytes")
            data = chunk
            while data:
                if inflater.eof:  # concatenated gzip members (RFC 1952 allows them)
                    data = inflater.unused_data + data if inflater.unused_data else data
                    inflater = zlib.decompressobj(wbits)
                # at most INFLATE_STEP per call, yielding in between: a gzip bomb inflates 32 MiB
                # from one 64 KiB chunk, ~0.1 s of work that must not hold the event loop
                piece = inflater.decompress(data, min(limit + 1 - size, INFLATE_STEP))
                out.append(piece)
                size += len(piece)
                await asyncio.sleep(0)
                if size > limit:
                    raise TooLarge(f"request inflates beyond the limit of {limit} bytes")
                data = inflater.unconsumed_tail
                if inflater.eof and inflater.unused_data:
                    data = inflater.unused_data
                    inflater = zlib.decompressobj(wbits)
        if not inflater.eof:
            out.append(inflater.flush(limit + 1 - size))
            size += len(out[-1])
    except zlib.error as exc:
        raise BadRequest(f"corrupt {encoding} body: {exc}") from None
    if size > limit:
        raise TooLarge(f"request inflates beyond the limit of {limit} bytes")
    if not inflater.eof and received:
        raise BadRequest(f"truncated {encoding} body")
    return b"".join(out)


def _hex_ids_to_base64(records: list) -> None:
    for record in records:
        if not isinstance(record, dict):
            continue
        for key in ("traceId", "spanId", "trace_id", "span_id"):
            value = record.get(key)
            if isinstance(value, str) and value:
                try:
                    record[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
                except ValueError:
                    raise BadRequest(f"logRecords[].{key} must be hex") from None


def parse_otlp_json(body: bytes) -> ExportLogsServiceRequest:
    """OTLP/JSON -> request; BadRequest with the reason when it is not valid OTLP/JSON."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"body is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object (ExportLogsServiceRequest)")
    for rl in data.get("resourceLogs", data.get("resource_logs", [])) or []:
        if not isinstance(rl, dict):
            continue
        for sl in rl.get("scopeLogs", rl.get("scope_logs", [])) or []:
            if isinstance(sl, dict):
                records = sl.get("logRecords", sl.get("log_records"))
                if isinstance(records, list):
                    _hex_ids_to_base64(records)
    try:
        return json_format.ParseDict(data, ExportLogsServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError, binascii.Error) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise BadRequest(f"body is not a valid OTLP/JSON logs request: {reason}") from None


class HttpReceiver:
    """The ``POST /v1/logs`` handler; mount with :meth:`add_routes` on the sidecar's HTTP app."""

    def __init__(self, ingestor: Ingestor, auth: TokenAuth, *, max_request_bytes: int):
        self.ingestor = ingestor
        self.auth = auth
        self.max_request_bytes = max_request_bytes

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/logs", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        content_type = request.content_type.lower()
        as_json = content_type == JSON
        try:
            if not self.auth.check(request.headers.get("Authorization")):
                raise Unauthenticated("missing or invalid bearer token")
            if content_type not in (PROTOBUF, JSON):
                raise UnsupportedMediaType(f"Content-Type must be {PROTOBUF} or {JSON}")
            try:
                body = await read_body(request, self.max_request_bytes)
            except IngestError as exc:
                self.ingestor.reject_request(exc)
                raise
            result = await self.ingestor.ingest_body(body, as_json)
        except IngestError as error:
            status, headers = http_status(error)
            return self._respond(rpc_status(error), as_json, status, headers)
        response = ExportLogsServiceResponse()
        if result.rejected:
            response.partial_success.rejected_log_records = result.rejected
            response.partial_success.error_message = result.message
        return self._respond(response, as_json, 200, {})

    @staticmethod
    def _respond(message, as_json: bool, status: int, headers: dict) -> web.Response:
        if as_json:
            text = json_format.MessageToJson(message, indent=None)
            return web.Response(status=status, text=text, content_type=JSON, headers=headers)
        return web.Response(status=status, body=message.SerializeToString(), content_type=PROTOBUF,
                            headers=headers)
