"""The OTLP specification's failure table, shared by every driftcar exporter.

The hook's shipper and the sidecar's telemetry exporters must retry exactly the
same codes and read the server's hint the same way, so the table lives here once.
(Spec: opentelemetry-proto ``docs/specification.md``, "Failures" and "Throttling".)

Imports grpcio and the google.rpc protos, so it is not pulled in by ``driftcar.wire``
itself; exporters import it directly.
"""

from __future__ import annotations

import grpc

__all__ = ["RETRYABLE_GRPC_CODES", "RETRYABLE_HTTP_STATUSES", "retry_delay_from_metadata", "grpc_is_retryable"]

#: gRPC codes a client retries (RESOURCE_EXHAUSTED only with RetryInfo: see grpc_is_retryable)
RETRYABLE_GRPC_CODES = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
#: HTTP statuses a client retries (honouring Retry-After)
RETRYABLE_HTTP_STATUSES = frozenset({429, 502, 503, 504})

_DETAILS_KEY = "grpc-status-details-bin"
_LEGACY_RETRY_INFO_KEY = "google.rpc.retryinfo-bin"  # where some SDK servers put it; still accepted


def _delay(info) -> float:
    return max(0.0, info.retry_delay.seconds + info.retry_delay.nanos / 1e9)


def retry_delay_from_metadata(metadata) -> float | None:
    """Seconds of the server's ``google.rpc.RetryInfo`` in trailing metadata, or None.

    A garbled trailer is no hint (None), never an error.

    >>> retry_delay_from_metadata(()) is None, retry_delay_from_metadata([(_DETAILS_KEY, b"\\xff")]) is None
    (True, True)
    """
    from google.rpc import error_details_pb2, status_pb2

    legacy = None
    for key, value in metadata or ():
        if key == _LEGACY_RETRY_INFO_KEY and legacy is None:
            try:
                legacy = _delay(error_details_pb2.RetryInfo.FromString(value))
            except Exception:
                pass
        if key != _DETAILS_KEY:
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:
            return None
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                return _delay(info)
    return legacy


def grpc_is_retryable(code: grpc.StatusCode, retry_delay: float | None) -> bool:
    """The spec's gRPC table: retryable codes, and RESOURCE_EXHAUSTED only with a RetryInfo hint."""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return retry_delay is not None
    return code in RETRYABLE_GRPC_CODES
