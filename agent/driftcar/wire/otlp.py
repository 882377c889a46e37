"""Mapping between batch bodies and OTLP log records (spec: ``proto/BATCH.md``).

Both sides use these helpers so that the event name and attribute keys are
written in exactly one place.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs, SeverityNumber
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from driftcar.wire.codec import SCHEMA_VERSION

__all__ = [
    "EVENT_NAME",
    "ATTR_MODEL_NAME",
    "ATTR_MODEL_VERSION",
    "ATTR_KIND",
    "ATTR_ROWS",
    "ATTR_SCHEMA_VERSION",
    "ATTR_BATCH_ID",
    "BatchRecord",
    "new_batch_id",
    "batch_log_record",
    "export_request",
    "iter_batch_records",
    "is_batch_record",
    "any_value_to_python",
    "attributes_to_dict",
]

EVENT_NAME = "driftcar.batch"
ATTR_MODEL_NAME = "model.name"
ATTR_MODEL_VERSION = "model.version"
ATTR_KIND = "driftcar.batch.kind"
ATTR_ROWS = "driftcar.batch.rows"
ATTR_SCHEMA_VERSION = "driftcar.schema.version"
#: optional idempotency key: one random int64 per batch, the same in every retry of it, so a
#: receiver applies a retried batch once (records without it are applied as they come)
ATTR_BATCH_ID = "driftcar.batch.id"
#: pre-``event_name`` convention; accepted on receive for older collectors
LEGACY_EVENT_ATTR = "event.name"

SCOPE_NAME = "driftcar.hook"


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, bytes):
        return KeyValue(key=key, value=AnyValue(bytes_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


_SCALARS = frozenset({"string_value", "bool_value", "int_value", "double_value", "bytes_value"})


def any_value_to_python(value: AnyValue) -> Any:
    """Scalar AnyValue -> Python value (arrays/maps -> None: not used here)."""
    which = value.WhichOneof("value")
    return getattr(value, which) if which in _SCALARS else None


def attributes_to_dict(attributes) -> dict[str, Any]:
    """Attributes -> {key: scalar value or None}. Why :func:`any_value_to_python` is written out here (and
    a record's body read once below): one call less per attribute, 6 a batch record with its resource;
    ``iter_batch_records`` of one benchmark request ~9.4 -> ~8.9 µs (``timeit``, least of 9, the two
    versions alternating on a loaded machine: a small gain)."""
    out = {}
    for kv in attributes:
        value = kv.value
        which = value.WhichOneof("value")
        out[kv.key] = getattr(value, which) if which in _SCALARS else None
    return out


def new_batch_id() -> int:
    """A random signed 64-bit id (``AnyValue.int_value`` is an int64); drawn per batch, kept for its retries.

    ``os.urandom``, not :mod:`random`: two forked processes never share the stream.
    """
    return int.from_bytes(os.urandom(8), "little", signed=True)


def batch_log_record(
    body: bytes,
    *,
    model_name: str,
    model_version: str,
    kind: str,
    rows: int,
    time_unix_nano: int | None = None,
    trace_id: bytes = b"",
    span_id: bytes = b"",
    schema_version: int = SCHEMA_VERSION,
    batch_id: int | None = None,
) -> LogRecord:
    """One ``driftcar.batch`` log record carrying an encoded body (``schema_version``: the body's ``v``;
    ``batch_id``: :data:`ATTR_BATCH_ID`, left out when None)."""
    now = time.time_ns() if time_unix_nano is None else time_unix_nano
    record = LogRecord(
        time_unix_nano=now,
        observed_time_unix_nano=now,
        severity_number=SeverityNumber.SEVERITY_NUMBER_INFO,
        event_name=EVENT_NAME,
        body=AnyValue(bytes_value=body),
        attributes=[
            _kv(ATTR_MODEL_NAME, model_name),
            _kv(ATTR_MODEL_VERSION, model_version),
            _kv(ATTR_KIND, kind),
            _kv(ATTR_ROWS, int(rows)),
            _kv(ATTR_SCHEMA_VERSION, int(schema_version)),
        ],
        trace_id=trace_id,
        span_id=span_id,
    )
    if batch_id is not None:
        record.attributes.append(_kv(ATTR_BATCH_ID, int(batch_id)))
    return record


def export_request(
    records: list[LogRecord],
    resource: Mapping[str, Any],
    *,
    scope_version: str = "",
) -> ExportLogsServiceRequest:
    """Wrap records in one ResourceLogs/ScopeLogs of an export request."""
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=[_kv(k, v) for k, v in resource.items()]),
                scope_logs=[
                    ScopeLogs(
                        scope=InstrumentationScope(name=SCOPE_NAME, version=scope_version),
                        log_records=records,
                    )
                ],
            )
        ]
    )


def is_batch_record(record: LogRecord) -> bool:
    if record.event_name:
        return record.event_name == EVENT_NAME
    for kv in record.attributes:
        if kv.key == LEGACY_EVENT_ATTR:
            return kv.value.string_value == EVENT_NAME
    return False


@dataclass
class BatchRecord:
    """A ``driftcar.batch`` record found in a request, body not yet decoded."""

    resource: dict[str, Any]
    attributes: dict[str, Any]
    body: bytes | None  # None when the body is not an AnyValue bytes_value
    time_unix_nano: int
    trace_id: bytes


def iter_batch_records(request: ExportLogsServiceRequest) -> Iterator[BatchRecord | None]:
    """Yield a BatchRecord per batch record and None per other record.

    None entries let the caller count the records it ignores.
    """
    for rl in request.resource_logs:
        resource = attributes_to_dict(rl.resource.attributes)
        for sl in rl.scope_logs:
            for record in sl.log_records:
                if not is_batch_record(record):
                    yield None
                    continue
                body = record.body  # (read once: each read makes a new wrapper)
                body = body.bytes_value if body.WhichOneof("value") == "bytes_value" else None
                yield BatchRecord(
                    resource=resource,
                    attributes=attributes_to_dict(record.attributes),
                    body=body,
                    time_unix_nano=record.time_unix_nano,
                    trace_id=record.trace_id,
                )
