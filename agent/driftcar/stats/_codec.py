"""Framing and array packing for profile and window files (internal).

A file is ``MAGIC (8 bytes) | format version (uint16 LE) | crc32 of payload
(uint32 LE) | payload (msgpack map)``. Arrays travel as ``{"d": dtype, "s":
shape, "b": raw little-endian bytes}``; msgpack is read without extension types
and nothing is ever unpickled. Every failure becomes :class:`ProfileError`
with a reason a user can act on.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import msgpack
import numpy as np

from driftcar.stats.errors import ProfileError

_HEADER = struct.Struct("<8sHI")
_DTYPES = {"<f8", "<i8", "|b1"}
MAX_BYTES = 1 << 30  # 1 GiB: no sane profile or window is larger


def pack_array(a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a)
    dt = a.dtype.newbyteorder("<") if a.dtype.byteorder not in "|<" else a.dtype
    a = a.astype(dt, copy=False)
    return {"d": a.dtype.str, "s": list(a.shape), "b": a.tobytes()}


def unpack_array(obj: Any, what: str) -> np.ndarray:
    try:
        dtype = obj["d"]
        shape = tuple(int(s) for s in obj["s"])
        raw = obj["b"]
    except (TypeError, KeyError, ValueError) as exc:
        raise ProfileError(f"{what}: malformed array ({exc!r})") from None
    if dtype not in _DTYPES or not isinstance(raw, bytes):
        raise ProfileError(f"{what}: unsupported array type {dtype!r}")
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if any(s < 0 for s in shape) or expected != len(raw):
        raise ProfileError(f"{what}: array of shape {shape} does not match its {len(raw)} bytes")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def frame(magic: bytes, version: int, payload: dict[str, Any]) -> bytes:
    body = msgpack.packb(payload, use_bin_type=True)
    return _HEADER.pack(magic, version, zlib.crc32(body)) + body


def unframe(data: bytes, magic: bytes, version: int, what: str) -> dict[str, Any]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProfileError(f"{what}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_BYTES:
        raise ProfileError(f"{what}: {len(data)} bytes is over the {MAX_BYTES} byte limit")
    if len(data) < _HEADER.size or not data.startswith(magic):
        raise ProfileError(f"not a driftcar {what} (bad magic or empty/truncated file)")
    _, got_version, crc = _HEADER.unpack_from(data)
    if got_version != version:
        raise ProfileError(
            f"{what} format version {got_version} is not supported (this driftcar reads version {version})"
        )
    body = data[_HEADER.size :]
    if zlib.crc32(body) != crc:
        raise ProfileError(f"{what} is corrupt or truncated (checksum mismatch over {len(body)} bytes)")
    try:
        payload = msgpack.unpackb(body, raw=False, strict_map_key=False, ext_hook=_no_ext)
    except Exception as exc:  # msgpack raises several types; all mean the same here
        raise ProfileError(f"{what} is corrupt: {exc}") from None
    if not isinstance(payload, dict):
        raise ProfileError(f"{what} is corrupt: payload is not a map")
    return payload


def _no_ext(code: int, data: bytes) -> Any:
    raise ProfileError(f"msgpack extension type {code} is not allowed")


def field(payload: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    """payload[key], checked to be of ``kind``; ProfileError naming the path otherwise."""
    if key not in payload:
        raise ProfileError(f"{what}: missing field {key!r}")
    value = payload[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProfileError(f"{what}.{key}: expected {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
    return value
