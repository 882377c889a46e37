"""The ``driftcar.window`` record body, schema v1 (spec: ``proto/WINDOW.md``).

A pod sidecar sends one such body per closed window so that a gateway can merge
the windows of every replica of a model by addition and judge once. The body is
one msgpack map; the window's sketch and (now and then) its reference profile
travel as deflated bytes of their own versioned formats
(:meth:`driftcar.stats.WindowSketch.to_bytes`, :meth:`driftcar.stats.Profile.to_bytes`).

The decoder trusts nothing: the body size is checked first, msgpack is read with
per-type length caps (so no string, bytes, array or map can allocate past its
limit), extension types are refused, the inflated sizes are declared and checked
before and after inflating, and every field's type and range is validated. A bad
body raises :class:`WindowError` with the reason; it is permanent (never retried).

Thread safety: pure functions, callable from any thread.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import msgpack

__all__ = [
    "EVENT_NAME", "WINDOW_SCHEMA_VERSION", "WindowError", "WindowLimits", "DEFAULT_WINDOW_LIMITS",
    "WindowRecord", "encode_window", "decode_window", "DURATION_BOUNDS_S",
]

EVENT_NAME = "driftcar.window"
WINDOW_SCHEMA_VERSION = 1
#: bucket bounds of the per-method call durations (seconds); the same as the sidecar's
#: ``driftcar.inference.duration`` histogram, so a gateway adds the counts as they are
DURATION_BOUNDS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
                     0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_KEYS = frozenset({"v", "model", "version", "replica", "start", "end", "rows", "profile", "sketch", "sketch_len",
                   "reference", "reference_len", "labels", "proba", "calls", "durations", "traces"})
_INT64 = (1 << 63) - 1


class WindowError(ValueError):
    """A window body that cannot be accepted; ``reason`` says why (permanent: never retried)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class WindowLimits:
    """Upper bounds (inclusive) for one window body; the encoder refuses what the decoder would."""

    max_body_bytes: int = 16 * 1024 * 1024
    max_sketch_bytes: int = 64 * 1024 * 1024  # inflated WindowSketch bytes
    max_reference_bytes: int = 64 * 1024 * 1024  # inflated Profile bytes
    max_labels: int = 1_000_000  # joined (y_true, y_pred) pairs
    max_name_length: int = 256  # model, version, replica, methods, error types
    max_label_length: int = 4_096  # one string label
    max_call_keys: int = 1_024  # distinct (method, error type)
    max_traces: int = 64

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"WindowLimits.{name} must be a positive int, got {value!r}")


DEFAULT_WINDOW_LIMITS = WindowLimits()


@dataclass
class WindowRecord:
    """One replica's closed window, decoded (sketch/reference inflated, not parsed)."""

    model: str
    version: str
    replica: str
    start_ns: int
    end_ns: int
    rows: int
    profile: str | None = None  # fingerprint of the reference the sketch is binned against
    sketch: bytes | None = None  # WindowSketch.to_bytes()
    reference: bytes | None = None  # Profile.to_bytes(), attached now and then
    y_true: list = field(default_factory=list)
    y_pred: list = field(default_factory=list)
    proba_sum: float = 0.0
    proba_n: int = 0
    calls: list[tuple[str, str | None, int]] = field(default_factory=list)
    durations: list[tuple[str, list[int], float]] = field(default_factory=list)
    trace_ids: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- encoding
def encode_window(rec: WindowRecord, limits: WindowLimits = DEFAULT_WINDOW_LIMITS, *, level: int = 1) -> bytes:
    """Body bytes for ``rec``; WindowError when it breaks a limit (the decoder would refuse it)."""
    body: dict[str, Any] = {
        "v": WINDOW_SCHEMA_VERSION, "model": rec.model, "version": rec.version, "replica": rec.replica,
        "start": int(rec.start_ns), "end": int(rec.end_ns), "rows": int(rec.rows), "profile": rec.profile,
        "sketch": None, "reference": None,
        "labels": None if not len(rec.y_true) else {"true": _scalars(rec.y_true), "pred": _scalars(rec.y_pred)},
        "proba": [float(rec.proba_sum), int(rec.proba_n)],
        "calls": [[m, e, int(c)] for m, e, c in rec.calls],
        "durations": [[m, [int(c) for c in counts], float(s)] for m, counts, s in rec.durations],
        "traces": list(rec.trace_ids),
    }
    if rec.sketch is not None:
        body["sketch"], body["sketch_len"] = zlib.compress(rec.sketch, level), len(rec.sketch)
    if rec.reference is not None:
        body["reference"], body["reference_len"] = zlib.compress(rec.reference, level), len(rec.reference)
    data = msgpack.packb(body, use_bin_type=True)
    decode_window(data, limits)  # the encoder never emits what the decoder refuses
    return data


def _scalars(values: Any) -> list:
    out = values.tolist() if hasattr(values, "tolist") else list(values)
    return [v.item() if hasattr(v, "item") else v for v in out]


# ---------------------------------------------------------------------- decoding
def _no_ext(code: int, data: bytes) -> Any:
    raise WindowError(f"msgpack extension type {code} is not allowed")


def decode_window(body: bytes, limits: WindowLimits = DEFAULT_WINDOW_LIMITS) -> WindowRecord:
    """Validate and decode a body; WindowError with the reason on anything wrong."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise WindowError(f"body must be bytes, got {type(body).__name__}")
    if len(body) == 0:
        raise WindowError("empty body")
    if len(body) > limits.max_body_bytes:
        raise WindowError(f"body of {len(body)} bytes is over the {limits.max_body_bytes} byte limit")
    biggest = max(limits.max_labels, limits.max_call_keys, len(DURATION_BOUNDS_S) + 1, limits.max_traces)
    try:
        raw = msgpack.unpackb(bytes(body), raw=False, strict_map_key=True, ext_hook=_no_ext, use_list=True,
                              max_bin_len=limits.max_body_bytes, max_str_len=limits.max_label_length,
                              max_array_len=biggest, max_map_len=len(_KEYS), max_ext_len=0)
    except WindowError:
        raise
    except Exception as exc:  # msgpack raises several types for bad/oversized data: all mean "not valid"
        raise WindowError(f"not valid msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict):
        raise WindowError("body must be a msgpack map")
    unknown = set(raw) - _KEYS
    if unknown:
        raise WindowError(f"unknown keys {sorted(unknown)[:5]}")
    if raw.get("v") != WINDOW_SCHEMA_VERSION:
        raise WindowError(f"schema version {raw.get('v')!r} is not supported (this driftcar reads "
                          f"{WINDOW_SCHEMA_VERSION})")
    return _record(raw, limits)


def _record(raw: dict, limits: WindowLimits) -> WindowRecord:
    start, end = _int(raw, "start", 0, _INT64), _int(raw, "end", 0, _INT64)
    if end <= start:
        raise WindowError(f"end ({end}) must be after start ({start})")
    rec = WindowRecord(
        model=_name(raw, "model", limits), version=_name(raw, "version", limits),
        replica=_name(raw, "replica", limits), start_ns=start, end_ns=end, rows=_int(raw, "rows", 0, _INT64),
    )
    fp = raw.get("profile")
    if fp is not None and not (isinstance(fp, str) and 0 < len(fp) <= 64):
        raise WindowError("profile must be nil or a fingerprint string of 1..64 characters")
    rec.profile = fp
    rec.sketch = _inflate(raw, "sketch", limits.max_sketch_bytes)
    rec.reference = _inflate(raw, "reference", limits.max_reference_bytes)
    if rec.sketch is not None and fp is None:
        raise WindowError("a sketch needs the profile fingerprint it is binned against")
    rec.y_true, rec.y_pred = _labels(raw.get("labels"), limits)
    rec.proba_sum, rec.proba_n = _proba(raw.get("proba"))
    rec.calls = _calls(raw.get("calls", []), limits)
    rec.durations = _durations(raw.get("durations", []), limits)
    traces = raw.get("traces", [])
    if not isinstance(traces, list) or len(traces) > limits.max_traces or not all(
            isinstance(t, str) and len(t) == 32 for t in traces):
        raise WindowError(f"traces must be at most {limits.max_traces} trace ids of 32 hex characters")
    rec.trace_ids = traces
    return rec


def _int(raw: dict, key: str, lo: int, hi: int) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise WindowError(f"{key} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _name(raw: dict, key: str, limits: WindowLimits) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= limits.max_name_length:
        raise WindowError(f"{key} must be a string of 1..{limits.max_name_length} characters")
    return value


def _inflate(raw: dict, key: str, limit: int) -> bytes | None:
    data = raw.get(key)
    if data is None:
        return None
    if not isinstance(data, bytes):
        raise WindowError(f"{key} must be nil or bytes")
    declared = raw.get(f"{key}_len")
    if not isinstance(declared, int) or isinstance(declared, bool) or not 0 < declared <= limit:
        raise WindowError(f"{key}_len must be an integer in [1, {limit}] (the inflated size), got {declared!r}")
    inflater = zlib.decompressobj()
    try:  # never inflate past the declared size: a small body cannot become a huge allocation
        out = inflater.decompress(data, declared + 1)
    except zlib.error as exc:
        raise WindowError(f"{key} is not valid deflate data ({exc})") from None
    if len(out) != declared or not inflater.eof or inflater.unused_data:
        raise WindowError(f"{key} inflates to a size other than its declared {declared} bytes, or is truncated")
    return out


def _labels(raw: Any, limits: WindowLimits) -> tuple[list, list]:
    if raw is None:
        return [], []
    if not isinstance(raw, dict) or set(raw) != {"true", "pred"}:
        raise WindowError("labels must be nil or a map with keys 'true' and 'pred'")
    y_true, y_pred = raw["true"], raw["pred"]
    if not isinstance(y_true, list) or not isinstance(y_pred, list) or len(y_true) != len(y_pred):
        raise WindowError("labels.true and labels.pred must be arrays of the same length")
    if len(y_true) > limits.max_labels:
        raise WindowError(f"labels: {len(y_true)} pairs are over the limit of {limits.max_labels}")
    for values in (y_true, y_pred):
        for v in values:
            if not (v is None or isinstance(v, (bool, int, str)) or (isinstance(v, float) and not math.isinf(v))):
                raise WindowError(f"labels hold scalars (nil, bool, int, finite float, str), got {type(v).__name__}")
    return y_true, y_pred


def _proba(raw: Any) -> tuple[float, int]:
    if raw is None:
        return 0.0, 0
    if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], (int, float)) and not isinstance(
            raw[0], bool) and isinstance(raw[1], int) and not isinstance(raw[1], bool)):
        raise WindowError("proba must be [sum of max probabilities, rows]")
    total, n = float(raw[0]), raw[1]
    if not math.isfinite(total) or n < 0:
        raise WindowError(f"proba: sum {total!r} must be finite and rows {n} >= 0")
    return total, n


def _calls(raw: Any, limits: WindowLimits) -> list[tuple[str, str | None, int]]:
    if not isinstance(raw, list) or len(raw) > limits.max_call_keys:
        raise WindowError(f"calls must be an array of at most {limits.max_call_keys} entries")
    out = []
    for entry in raw:
        if not (isinstance(entry, list) and len(entry) == 3 and _short(entry[0], limits)
                and (entry[1] is None or _short(entry[1], limits))
                and isinstance(entry[2], int) and not isinstance(entry[2], bool) and 0 <= entry[2] <= _INT64):
            raise WindowError("calls entries must be [method, error type or nil, count >= 0]")
        out.append((entry[0], entry[1], entry[2]))
    return out


def _durations(raw: Any, limits: WindowLimits) -> list[tuple[str, list[int], float]]:
    if not isinstance(raw, list) or len(raw) > limits.max_call_keys:
        raise WindowError(f"durations must be an array of at most {limits.max_call_keys} entries")
    out = []
    buckets = len(DURATION_BOUNDS_S) + 1
    for entry in raw:
        if not (isinstance(entry, list) and len(entry) == 3 and _short(entry[0], limits)
                and isinstance(entry[1], list) and len(entry[1]) == buckets
                and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= _INT64 for c in entry[1])
                and isinstance(entry[2], (int, float)) and not isinstance(entry[2], bool)
                and math.isfinite(entry[2])):
            raise WindowError(f"durations entries must be [method, {buckets} bucket counts, finite sum]")
        out.append((entry[0], list(entry[1]), float(entry[2])))
    return out


def _short(value: Any, limits: WindowLimits) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limits.max_name_length


def duration_counts(durations_s: Sequence[float]) -> list[int]:
    """Bucket counts of call durations in :data:`DURATION_BOUNDS_S` (OTel: a bound closes its bucket)."""
    import numpy as np

    values = np.asarray(durations_s, dtype=np.float64)
    values = values[np.isfinite(values)]
    idx = np.searchsorted(np.asarray(DURATION_BOUNDS_S), values, side="left")
    return np.bincount(idx, minlength=len(DURATION_BOUNDS_S) + 1).tolist()


# ---------------------------------------------------------------------- OTLP mapping
ATTR_REPLICA = "driftcar.replica"


def window_log_record(body: bytes, rec: WindowRecord):
    """One ``driftcar.window`` LogRecord; the model attributes let a Collector route on them."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, SeverityNumber

    from driftcar.wire import otlp

    return LogRecord(
        time_unix_nano=int(rec.end_ns), observed_time_unix_nano=int(rec.end_ns),
        severity_number=SeverityNumber.SEVERITY_NUMBER_INFO, event_name=EVENT_NAME,
        body=AnyValue(bytes_value=body),
        attributes=[otlp._kv(otlp.ATTR_MODEL_NAME, rec.model), otlp._kv(otlp.ATTR_MODEL_VERSION, rec.version),
                    otlp._kv(ATTR_REPLICA, rec.replica), otlp._kv(otlp.ATTR_SCHEMA_VERSION, WINDOW_SCHEMA_VERSION)],
    )


def iter_window_bodies(request):
    """(attributes, body or None) of every ``driftcar.window`` record of an ExportLogsServiceRequest."""
    from driftcar.wire import otlp

    for rl in request.resource_logs:
        for sl in rl.scope_logs:
            for record in sl.log_records:
                if record.event_name != EVENT_NAME:
                    continue
                body = record.body.bytes_value if record.body.WhichOneof("value") == "bytes_value" else None
                yield otlp.attributes_to_dict(record.attributes), body
