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
    """Integers travel as int64 whatever their width in memory (counts are kept narrow there), so
    files and wire bytes keep one format that every driftcar reads."""
    a = np.ascontiguousarray(a)
    if a.dtype.kind in "iu" and a.dtype.itemsize < 8:
        a = a.astype(np.int64)
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


# ---------------------------------------------------------------- sparse fine grids (closed windows)
_SPARSE_HEAD = struct.Struct("<QQBB")  # frame bytes, non-empty bins, count width, gap width


def pack_sparse(frame: bytes, pos: np.ndarray, counts: np.ndarray, residuals: np.ndarray) -> bytes:
    """Non-empty bins of a fine grid, exactly: ``pos`` (flat, increasing) as gaps and ``counts`` in
    their narrowest unsigned types, ``residuals`` (uint64: each sum's bits against a guess, mostly
    leading zero bytes) split into byte planes so zlib sees the runs; ``frame`` (the rest of the
    window) rides in front. Why sparse whatever the density: a window of n rows touches at most n
    bins, and in a full one the gaps are all 1 and compress to almost nothing, so one form serves
    both. Inverse: :func:`unpack_sparse`."""
    gaps = np.diff(pos, prepend=0)
    gaps = gaps.astype(np.min_scalar_type(int(gaps.max(initial=0))))
    counts = counts.astype(np.min_scalar_type(int(counts.max(initial=0))))
    planes = np.ascontiguousarray(residuals.view(np.uint8).reshape(-1, 8).T)
    head = _SPARSE_HEAD.pack(len(frame), len(pos), counts.itemsize, gaps.itemsize)
    return zlib.compress(b"".join([head, frame, gaps.tobytes(), counts.tobytes(), planes.tobytes()]), 6)


def unpack_sparse(blob: bytes) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
    """``(frame, pos, counts, residuals as uint64)`` from :func:`pack_sparse` bytes; the caller
    undoes the residuals with the same guess. ProfileError when the bytes do not add up."""
    try:
        body = zlib.decompress(blob)
        n_frame, n, count_size, gap_size = _SPARSE_HEAD.unpack_from(body)
        at = _SPARSE_HEAD.size
        frame, pos, counts, at = _read_bins(body, at, n_frame, n, gap_size, count_size)
        planes = np.frombuffer(body, np.uint8, 8 * n, at).reshape(8, n)
        if at + 8 * n != len(body):
            raise ValueError(f"{len(body) - at - 8 * n} bytes left over")
    except (zlib.error, struct.error, KeyError, ValueError) as exc:
        raise ProfileError(f"closed window is corrupt ({exc})") from None
    return frame, pos, counts, np.ascontiguousarray(planes.T).view(np.uint64).reshape(n)


def _read_bins(body: bytes, at: int, n_frame: int, n: int, gap_size: int, count_size: int):
    """The frame, bin positions (from their gaps) and counts that both sparse forms start with,
    and the offset after them."""
    frame = body[at:at + n_frame]
    at += n_frame
    pos = np.cumsum(np.frombuffer(body, _UINTS[gap_size], n, at), dtype=np.int64)
    at += gap_size * n
    counts = np.frombuffer(body, _UINTS[count_size], n, at).astype(np.int64)
    return frame, pos, counts, at + count_size * n


_CODED_HEAD = struct.Struct("<QQBBI")  # frame bytes, non-empty bins, count width, gap width, exact sums


def pack_sparse_coded(frame: bytes, pos: np.ndarray, counts: np.ndarray, codes: np.ndarray,
                      exact_at: np.ndarray, exact: np.ndarray) -> bytes:
    """Like :func:`pack_sparse`, but each non-empty bin carries a one-byte ``codes`` entry (its mean's
    place in the bin, see ``WindowSketch.pack``) instead of its sum, and the few bins whose sum is
    kept bit for bit list their index among the non-empty ones (``exact_at``, increasing) and the
    float64 sums (``exact``). Inverse: :func:`unpack_sparse_coded`."""
    gaps = np.diff(pos, prepend=0)
    gaps = gaps.astype(np.min_scalar_type(int(gaps.max(initial=0))))
    counts = counts.astype(np.min_scalar_type(int(counts.max(initial=0))))
    head = _CODED_HEAD.pack(len(frame), len(pos), counts.itemsize, gaps.itemsize, len(exact_at))
    parts = [head, frame, gaps.tobytes(), counts.tobytes(), codes.astype(np.uint8).tobytes(),
             exact_at.astype("<u4").tobytes(), exact.astype("<f8").tobytes()]
    return zlib.compress(b"".join(parts), 6)


def unpack_sparse_coded(blob: bytes) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(frame, pos, counts, codes, exact_at, exact)`` from :func:`pack_sparse_coded` bytes;
    ProfileError when the bytes do not add up."""
    try:
        body = zlib.decompress(blob)
        n_frame, n, count_size, gap_size, n_exact = _CODED_HEAD.unpack_from(body)
        at = _CODED_HEAD.size
        frame, pos, counts, at = _read_bins(body, at, n_frame, n, gap_size, count_size)
        codes = np.frombuffer(body, np.uint8, n, at)
        exact_at, exact, at = _read_exact(body, at + n, n_exact, n)
        if at != len(body):
            raise ValueError(f"{len(body) - at} bytes left over")
    except (zlib.error, struct.error, KeyError, ValueError) as exc:
        raise ProfileError(f"closed window is corrupt ({exc})") from None
    return frame, pos, counts, codes, exact_at, exact


def _read_exact(body: bytes, at: int, n_exact: int, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The bins whose sums are kept exact and those sums, read from ``at`` (and where they end);
    ValueError when they name bins that do not exist."""
    exact_at = np.frombuffer(body, "<u4", n_exact, at).astype(np.int64)
    at += 4 * n_exact
    exact = np.frombuffer(body, "<f8", n_exact, at).astype(np.float64)
    if n_exact and (exact_at.max() >= n or np.any(np.diff(exact_at) <= 0)):
        raise ValueError("exact sums at bins that do not exist")
    return exact_at, exact, at + 8 * n_exact


_BITS_HEAD = struct.Struct("<QQBBIBI")  # as _CODED_HEAD, then bits per code and rows with a total


def pack_sparse_bits(frame: bytes, pos: np.ndarray, counts: np.ndarray, codes: np.ndarray, bits: int,
                     exact_at: np.ndarray, exact: np.ndarray, totals: np.ndarray) -> bytes:
    """:func:`pack_sparse_coded` with ``bits`` (0-8) per code, packed tight (none at 0), and
    ``totals`` (float64, may be empty) riding at the end. Inverse: :func:`unpack_sparse_bits`."""
    gaps = np.diff(pos, prepend=0)
    gaps = gaps.astype(np.min_scalar_type(int(gaps.max(initial=0))))
    counts = counts.astype(np.min_scalar_type(int(counts.max(initial=0))))
    head = _BITS_HEAD.pack(len(frame), len(pos), counts.itemsize, gaps.itemsize, len(exact_at), bits, len(totals))
    packed = np.packbits(np.unpackbits(codes.astype(np.uint8)[:, None], axis=1)[:, 8 - bits:]) if bits else b""
    parts = [head, frame, gaps.tobytes(), counts.tobytes(), bytes(packed), exact_at.astype("<u4").tobytes(),
             exact.astype("<f8").tobytes(), totals.astype("<f8").tobytes()]
    return zlib.compress(b"".join(parts), 6)


def unpack_sparse_bits(blob: bytes) -> tuple:
    """``(frame, pos, counts, codes, bits, exact_at, exact, totals)`` from :func:`pack_sparse_bits`
    bytes; ProfileError when the bytes do not add up."""
    try:
        body = zlib.decompress(blob)
        n_frame, n, count_size, gap_size, n_exact, bits, n_totals = _BITS_HEAD.unpack_from(body)
        if bits > 8:
            raise ValueError(f"{bits} bits per code")
        frame, pos, counts, at = _read_bins(body, at=_BITS_HEAD.size, n_frame=n_frame, n=n, gap_size=gap_size,
                                            count_size=count_size)
        size = (n * bits + 7) // 8
        raw = np.frombuffer(body, np.uint8, size, at)
        codes = np.zeros(n, np.uint8)
        planes = np.unpackbits(raw)[: n * bits].reshape(n, bits)
        for j in range(bits):  # most significant bit first, as packed
            codes |= planes[:, j] << np.uint8(bits - 1 - j)
        exact_at, exact, at = _read_exact(body, at + size, n_exact, n)
        totals = np.frombuffer(body, "<f8", n_totals, at).astype(np.float64)
        if at + 8 * n_totals != len(body):
            raise ValueError(f"{len(body) - at - 8 * n_totals} bytes left over")
    except (zlib.error, struct.error, KeyError, ValueError) as exc:
        raise ProfileError(f"closed window is corrupt ({exc})") from None
    return frame, pos, counts, codes, bits, exact_at, exact, totals


def zigzag_residuals(values: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """float64 ``values`` against ``guess`` as uint64: the difference of their bit patterns
    (int64, wrapping), zigzag-coded so small differences of either sign have leading zero bytes.
    Why not XOR: a difference stays small across a carry (0x..1000 vs 0x..0fff), ~2 % smaller."""
    d = values.view(np.int64) - guess.view(np.int64)
    return ((d << 1) ^ (d >> 63)).view(np.uint64)


def from_zigzag(residuals: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """Inverse of :func:`zigzag_residuals`: the float64 values, bit for bit."""
    z = residuals.view(np.int64)
    d = (residuals >> np.uint64(1)).view(np.int64) ^ -(z & 1)
    return (guess.view(np.int64) + d).view(np.float64)


_UINTS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
