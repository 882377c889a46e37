"""Receiver errors, classified by type and translated to wire codes in exactly one place.

The ingest path raises one of the :class:`IngestError` subclasses; each receiver calls
:func:`grpc_status` or :func:`http_status` at its edge. Nothing else in the sidecar
knows gRPC codes or HTTP statuses for errors.

| error          | retry? | gRPC                               | HTTP                |
|----------------|--------|------------------------------------|---------------------|
| BadRequest     | never  | INVALID_ARGUMENT                   | 400 (415 for an unsupported Content-Type/Encoding) |
| TooLarge       | never  | RESOURCE_EXHAUSTED (no RetryInfo)  | 413                 |
| Overloaded     | yes    | UNAVAILABLE + RetryInfo            | 503 + Retry-After   |
| Unauthenticated| never  | UNAUTHENTICATED                    | 401 + WWW-Authenticate |
| ShuttingDown   | yes    | UNAVAILABLE + RetryInfo            | 503 + Retry-After   |

Messages never contain payload bytes or tokens (they may be logged downstream).
"""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "IngestError",
    "BadRequest",
    "TooLarge",
    "UnsupportedMediaType",
    "Overloaded",
    "Unauthenticated",
    "ShuttingDown",
    "grpc_status",
    "http_status",
    "rpc_status",
]


class IngestError(Exception):
    """Base: ``message`` is safe to return to the client and to log."""

    retryable = False
    retry_after_s: float | None = None

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(IngestError):
    """Permanent: the bytes themselves are wrong (not protobuf, bad batch body, ...)."""


class UnsupportedMediaType(BadRequest):
    """Permanent: a Content-Type / Content-Encoding this receiver does not speak."""


class TooLarge(IngestError):
    """Permanent: the request exceeds ``max_request_bytes`` after decompression."""


class Unauthenticated(IngestError):
    """Permanent for these credentials: missing or wrong bearer token."""


class Overloaded(IngestError):
    """Retryable: the ingest queue is full; the client should wait ``retry_after_s``."""

    retryable = True

    def __init__(self, message: str, retry_after_s: float = 1.0):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ShuttingDown(Overloaded):
    """Retryable: this sidecar is stopping; another replica (or the restart) will take it."""


_GRPC = {
    BadRequest: grpc.StatusCode.INVALID_ARGUMENT,
    TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    Overloaded: grpc.StatusCode.UNAVAILABLE,
    ShuttingDown: grpc.StatusCode.UNAVAILABLE,
}
_HTTP = {UnsupportedMediaType: 415, BadRequest: 400, TooLarge: 413, Unauthenticated: 401, Overloaded: 503, ShuttingDown: 503}


def _code(error: IngestError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in _GRPC:
            return _GRPC[cls]
    return grpc.StatusCode.INTERNAL


def rpc_status(error: IngestError) -> status_pb2.Status:
    """The ``google.rpc.Status`` for an error (gRPC rich status and OTLP/HTTP error body)."""
    code = _code(error)
    status = status_pb2.Status(code=code.value[0], message=error.message)
    if error.retry_after_s is not None:
        seconds = max(0.0, float(error.retry_after_s))
        info = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=int(seconds), nanos=int(round((seconds % 1) * 1e9)))
        )
        packed = any_pb2.Any()
        packed.Pack(info)
        status.details.append(packed)
    return status


def grpc_status(error: IngestError) -> tuple[grpc.StatusCode, str, tuple]:
    """(code, details, trailing metadata with ``grpc-status-details-bin``) for ``context.abort``."""
    status = rpc_status(error)
    return _code(error), error.message, (("grpc-status-details-bin", status.SerializeToString()),)


def http_status(error: IngestError) -> tuple[int, dict[str, str]]:
    """(HTTP status, extra headers) for an error; the body is :func:`rpc_status` encoded."""
    status = 500
    for cls in type(error).__mro__:
        if cls in _HTTP:
            status = _HTTP[cls]
            break
    headers: dict[str, str] = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s)))
    if isinstance(error, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="driftcar"'
    return status, headers

