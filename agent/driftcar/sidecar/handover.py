"""The gRPC front's hand-over of a decoded request to the sidecar: a small pickle and the raw column buffers.

Layout of one payload (all little-endian; offsets from its start)::

    u32 meta length, u32 buffer count, u64 size of each buffer,
    the meta pickle, then each buffer, every one starting at a multiple of 8 bytes

The meta is the :class:`~.ingest.Decoded` pickled with protocol 5, every numeric numpy array in it
(columns, str columns' codes, the call table) taken out of band: the sender writes the arrays'
memory as it is (``socket.sendmsg`` or one join), the receiver builds each array with
``np.frombuffer`` on its slice of the received payload, read-only, without a copy.

Why not a plain pickle: pickling a numpy array costs ~7 µs whatever its size (numpy's reduce), so a
1,000-row request of 20 numeric + 5 str columns (28 arrays) cost ~0.15 ms to pickle in the front and
~0.2 ms to unpickle in the sidecar; the sidecar is the busier process, so that bounded ingest.
Only driftcar's decoded types and numpy's may be unpickled (:data:`ALLOWED`); anything else, a
short payload or sizes that do not add up raise :class:`HandOverError`.
"""

from __future__ import annotations

import io
import pickle
import struct

import numpy as np

__all__ = ["HandOverError", "encode", "decode", "ALLOWED"]

_COUNTS = struct.Struct("<III")
_ALIGN = 8
_PAD = bytes(_ALIGN)
#: (module, name) the receiving side may unpickle, plus numpy's own (a fallback array, a dtype)
ALLOWED = {
    ("driftcar.sidecar.handover", "_array"),
    ("driftcar.sidecar.ingest", "Decoded"),
    ("driftcar.sidecar.ingest", "Item"),
    ("driftcar.wire.codec", "Batch"),
    ("driftcar.wire.codec", "Table"),
    ("driftcar.wire.codec", "_str_column"),
}
_NUMERIC = frozenset("biuf")


class HandOverError(ValueError):
    """A payload that is not a well-formed hand-over (the link is then out of step or the peer is wrong)."""


class _Pickler(pickle.Pickler):
    """Takes every 1-d numeric array out of the pickle: it stands there as ``_array(i)``, i its place in
    :attr:`arrays` (a call of ~1 µs, against ~5-7 µs for numpy's own reduce, in or out of band)."""

    def __init__(self, file):
        super().__init__(file, protocol=5)
        self.arrays: list[np.ndarray] = []

    def reducer_override(self, obj):
        # Called only for objects that are not plain builtins (here: the dataclasses, str columns, arrays).
        if type(obj) is np.ndarray and obj.dtype.kind in _NUMERIC and obj.ndim == 1:
            self.arrays.append(obj if obj.flags.c_contiguous else np.ascontiguousarray(obj))
            return _array, (len(self.arrays) - 1,)
        return NotImplemented


def _array(index: int) -> np.ndarray:
    raise HandOverError("an array outside a hand-over")  # (only the unpickler below resolves these)


class _Unpickler(pickle.Unpickler):
    def __init__(self, meta, buffers: list, dtypes: list[str]):
        super().__init__(io.BytesIO(meta))
        self.buffers = buffers
        self.dtypes = dtypes

    def _array(self, index: int) -> np.ndarray:
        return np.frombuffer(self.buffers[index], dtype=self.dtypes[index])

    def find_class(self, module: str, name: str):
        if (module, name) == ("driftcar.sidecar.handover", "_array"):
            return self._array
        if (module, name) in ALLOWED or module == "numpy" or module.startswith("numpy."):
            return super().find_class(module, name)
        raise HandOverError(f"hand-over names {module}.{name}, which is not a decoded request's type")


def _padded(n: int) -> int:
    return -n % _ALIGN


def encode(decoded) -> tuple[list, int]:
    """(pieces to send one after another, their total length). The pieces keep the arrays alive."""
    out = io.BytesIO()
    pickler = _Pickler(out)
    pickler.dump(decoded)
    arrays = pickler.arrays
    dtypes = ",".join([a.dtype.str for a in arrays]).encode()
    meta = out.getbuffer()
    sizes = [a.nbytes for a in arrays]
    head = _COUNTS.pack(len(meta), len(dtypes), len(sizes)) + struct.pack(f"<{len(sizes)}Q", *sizes)
    pieces: list = [head, meta, dtypes]
    total = len(head) + len(meta) + len(dtypes)
    for array, size in zip(arrays, sizes):
        if total % _ALIGN:
            pieces.append(_PAD[: _padded(total)])
            total += _padded(total)
        pieces.append(memoryview(array).cast("B") if size else b"")
        total += size
    return pieces, total


def decode(payload: bytearray | bytes | memoryview):
    """The :class:`~.ingest.Decoded` in ``payload``; its arrays are read-only views of ``payload``."""
    view = memoryview(payload).toreadonly()
    try:
        meta_len, dtypes_len, count = _COUNTS.unpack_from(view)
        sizes = struct.unpack_from(f"<{count}Q", view, _COUNTS.size)
    except struct.error as exc:
        raise HandOverError(f"hand-over payload of {len(view)} bytes is too short for its header") from exc
    offset = _COUNTS.size + 8 * count
    meta = view[offset: offset + meta_len]
    dtypes = bytes(view[offset + meta_len: offset + meta_len + dtypes_len]).decode("ascii", "replace").split(",")
    offset += meta_len + dtypes_len
    buffers = []
    for size in sizes:
        offset += _padded(offset)
        buffers.append(view[offset: offset + size])
        offset += size
    if offset != len(view) or len(dtypes) != max(count, 1):
        raise HandOverError(f"hand-over sizes add up to {offset} bytes and {len(dtypes)} dtypes for {count} "
                            f"arrays; the payload has {len(view)} bytes")
    try:
        decoded = _Unpickler(meta, buffers, dtypes).load()
    except HandOverError:
        raise
    except Exception as exc:  # any failure to unpickle means a damaged payload
        raise HandOverError(f"hand-over meta cannot be read: {type(exc).__name__}: {exc}") from exc
    from driftcar.sidecar.ingest import Decoded

    if type(decoded) is not Decoded:
        raise HandOverError(f"hand-over holds a {type(decoded).__name__}, not a decoded request")
    return decoded
