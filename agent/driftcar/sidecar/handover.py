"""The gRPC front's hand-over of a decoded request to the sidecar: one pickle, its numpy arrays as raw bytes.

The payload is the :class:`~.ingest.Decoded` pickled with protocol 5. A batch and its call table
are written as ``_columnar(<class>, <other fields>, <layout>, <blob>)``: their 1-d numeric columns
and str columns' codes back to back in one bytes blob (:func:`_pack`), which the sidecar reads with
``np.frombuffer``, a run of columns of one dtype as one block (read-only, as the wire decoder's
arrays are). Any other 1-d numeric array is written as ``_array(<its bytes>, <dtype>)``.

Why not numpy's own pickling: its reduce costs ~5-7 µs per array whatever its size; a 1,000-row
request of 20 numeric + 5 str columns (28 arrays) took ~0.15-0.17 ms to pickle, ~0.05-0.1 ms this
way (``time.thread_time``, one process; in instructions 0.90 against 0.94 million, and in the sidecar,
frames read and unpickled, 1.86 against 2.02 million with ``asyncio.StreamReader`` and a plain
pickle: ``benchmarks/callgrind_handover.py``). Measured and not kept: the arrays out of band (pickle
protocol 5 ``buffer_callback``, sent as they are and rebuilt as views of the received frame, no
copy): unpickling took ~25 % longer in the sidecar, the busier process (Python-level slicing and one
call per array), which outweighed the copies saved. A str column travels as its dictionary and comes
back without its rows (:class:`~driftcar.wire.StrColumn` makes them only if read; the sidecar's
ingest path reads the dictionary only): rebuilding them had been ~35 % of the sidecar's side, which
went from 1.83 to 1.16 million instructions per request without it (``callgrind_handover.py``).
Writing each array apart (``_array``) cost ~1.1 µs of Python calls and pickle opcodes per array to
write and ~1.7 µs to read whatever its size; with the blob a request took ~40 instead of ~57 µs to
encode, ~34 instead of ~48 µs to decode (``time.thread_time``, least of 30 rounds; the front's side
0.69 against 0.97 million instructions).

Only driftcar's decoded types and numpy's may be unpickled (:data:`ALLOWED`); anything else, or a
damaged payload, raises :class:`HandOverError`.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

from driftcar.wire.codec import Batch, StrColumn, Table, _str_column

__all__ = ["HandOverError", "encode", "decode", "ALLOWED"]

#: (module, name) the receiving side may unpickle, beside numpy's array rebuilders
ALLOWED = {
    ("driftcar.sidecar.handover", "_array"),
    ("driftcar.sidecar.handover", "_columnar"),
    ("driftcar.sidecar.ingest", "Decoded"),
    ("driftcar.sidecar.ingest", "Item"),
    ("driftcar.wire.codec", "Batch"),
    ("driftcar.wire.codec", "Table"),
    ("driftcar.wire.codec", "_str_column"),
}
_NUMERIC = frozenset("biuf")
#: what numpy's own pickling of an array names (object or n-d arrays, not written as ``_array``)
_NUMPY_MODULES = {"numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                  "numpy._core.numeric", "numpy.dtypes"}
_NUMPY_NAMES = {"ndarray", "dtype", "_reconstruct", "_frombuffer"}


class HandOverError(ValueError):
    """A payload that is not a well-formed hand-over of a decoded request."""


def _array(data, dtype: str) -> np.ndarray:
    return np.frombuffer(data, dtype=dtype)


def _pack(columns: dict) -> tuple[list, bytes]:
    """(layout, blob): every 1-d numeric column (and str column's codes) one after another in ``blob``,
    each at a multiple of 8 bytes (aligned when read back). ``layout``, in the columns' order: (names,
    dtype, offset, length, a str column's keys or None) for a run of numeric columns of one dtype and
    length back to back (read back as one block, a row per name) or a str column, and ((name,), None,
    0, 0, the column) for a column pickled as it is."""
    layout: list[list] = []
    parts, at = [], 0
    for name, column in columns.items():
        data, keys = (column.codes, column.keys) if type(column) is StrColumn else (column, None)
        if type(data) is not np.ndarray or data.ndim != 1 or data.dtype.kind not in _NUMERIC:
            layout.append([(name,), None, 0, 0, column])
            continue
        data = np.ascontiguousarray(data)
        last = layout[-1] if layout else None
        if (keys is None and last is not None and last[4] is None and last[1] == data.dtype.str
                and last[3] == len(data) and last[2] + len(last[0]) * data.nbytes == at):
            last[0] += (name,)
        else:
            layout.append([(name,), data.dtype.str, at, len(data), keys])
        parts.append(data)
        at += data.nbytes
        if at % 8:
            parts.append(bytes(8 - at % 8))
            at += 8 - at % 8
    return [tuple(entry) for entry in layout], b"".join(parts)


def _columnar(cls, fields: dict, layout: list, blob: bytes):
    """A :class:`~driftcar.wire.Batch` or :class:`~driftcar.wire.codec.Table` back (:func:`_pack`)."""
    if cls is not Batch and cls is not Table:
        raise HandOverError(f"hand-over rebuilds a {getattr(cls, '__name__', cls)!r} with columns")
    columns = {}
    for names, dtype, at, length, keys in layout:
        if dtype is None:
            columns[names[0]] = keys
        elif keys is not None:
            columns[names[0]] = _str_column(keys, np.frombuffer(blob, dtype, length, at))
        elif len(names) == 1:
            columns[names[0]] = np.frombuffer(blob, dtype, length, at)
        else:  # (one call and a view per row: ~1.7 against ~5.4 µs for 20 columns read apart)
            columns.update(zip(names, np.frombuffer(blob, dtype, length * len(names), at).reshape(len(names), length)))
    obj = cls.__new__(cls)
    obj.__dict__.update(fields)
    obj.columns = columns
    return obj


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj):
        # Called only for objects that are not plain builtins (here: the dataclasses, str columns, arrays).
        # A batch's (and call table's) columns travel as one blob: pickling each array apart cost ~1.1 µs
        # of Python calls and pickle opcodes per array whatever its size (28 in a 1,000-row request of
        # 20 numeric + 5 str columns, measured with 1-row arrays), reading each back ~1.7 µs.
        cls = type(obj)
        if cls is Batch or cls is Table:
            fields = dict(obj.__dict__)
            return _columnar, (cls, fields, *_pack(fields.pop("columns")))
        if cls is np.ndarray and obj.dtype.kind in _NUMERIC and obj.ndim == 1:
            data = obj if obj.flags.c_contiguous else np.ascontiguousarray(obj)
            return _array, (pickle.PickleBuffer(data), data.dtype.str)
        return NotImplemented


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED or (module in _NUMPY_MODULES and name in _NUMPY_NAMES):
            return super().find_class(module, name)
        raise HandOverError(f"hand-over names {module}.{name}, which is not a decoded request's type")


def encode(decoded, head: int = 0) -> memoryview:
    """The payload for ``decoded`` (a :class:`~.ingest.Decoded`), after ``head`` bytes left for the
    caller to fill (a frame's header: the frame then goes out in one write, without a copy)."""
    out = io.BytesIO()
    if head:
        out.write(bytes(head))
    _Pickler(out, protocol=5).dump(decoded)
    return out.getbuffer()


def decode(payload: bytes | bytearray | memoryview):
    """The :class:`~.ingest.Decoded` in ``payload``."""
    try:
        decoded = _Unpickler(io.BytesIO(payload)).load()
    except HandOverError:
        raise
    except Exception as exc:  # any failure to unpickle means a damaged payload
        raise HandOverError(f"hand-over of {len(payload)} bytes cannot be read: {type(exc).__name__}: {exc}") \
            from exc
    from driftcar.sidecar.ingest import Decoded

    if type(decoded) is not Decoded:
        raise HandOverError(f"hand-over holds a {type(decoded).__name__}, not a decoded request")
    return decoded
