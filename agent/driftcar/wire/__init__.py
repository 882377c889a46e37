"""The wire contract shared by hook and sidecar: batch codec, limits, OTLP mapping.

Importing this package is light (numpy, msgpack, opentelemetry-proto only).
"""

from driftcar.wire.codec import (
    CALL_COLUMNS,
    KINDS,
    ROLES,
    SCHEMA_VERSION,
    VERSIONS,
    Batch,
    BatchError,
    Column,
    StrColumn,
    Table,
    decode_batch,
    encode_batch,
)
from driftcar.wire.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "CALL_COLUMNS",
    "KINDS",
    "ROLES",
    "SCHEMA_VERSION",
    "VERSIONS",
    "Batch",
    "BatchError",
    "Column",
    "StrColumn",
    "Table",
    "decode_batch",
    "encode_batch",
    "Limits",
    "DEFAULT_LIMITS",
]
