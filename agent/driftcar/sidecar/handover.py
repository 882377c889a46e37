"""The gRPC front's hand-over of a decoded request to the sidecar: one pickle, its numpy arrays as raw bytes.

The payload is the :class:`~.ingest.Decoded` pickled with protocol 5, every 1-d numeric numpy array
in it (columns, str columns' codes, the call table) written as ``_array(<its bytes>, <dtype>)``:
the sidecar rebuilds it with ``np.frombuffer`` on the bytes the unpickler made (read-only, as the
wire decoder's arrays are, when the array was).

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

Only driftcar's decoded types and numpy's may be unpickled (:data:`ALLOWED`); anything else, or a
damaged payload, raises :class:`HandOverError`.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

__all__ = ["HandOverError", "encode", "decode", "ALLOWED"]

#: (module, name) the receiving side may unpickle, beside numpy's array rebuilders
ALLOWED = {
    ("driftcar.sidecar.handover", "_array"),
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


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj):
        # Called only for objects that are not plain builtins (here: the dataclasses, str columns, arrays).
        if type(obj) is np.ndarray and obj.dtype.kind in _NUMERIC and obj.ndim == 1:
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
