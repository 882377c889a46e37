"""What the capture side hands to the shipper (the seam inside the hook).

The capture side (instrumentation wrappers, on the model's thread) builds one
:class:`Captured` per model call or per ``log_labels`` / ``set_reference``
and offers it to the shipper. It does the minimum on the hot path: it keeps
references to copies of the inputs/outputs; turning them into columns
happens later, on the shipper's thread (see ``to_columns``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np

__all__ = ["Captured", "Sealed", "SealedCalls", "thaw", "thaw_all"]


@dataclass(slots=True)
class Captured:
    """One unit of captured work, in the caller's raw form.

    kind:       "inference" | "labels" | "reference" (the batch kind it goes to)
    method:     model method called ("predict", "predict_proba", "learn_one", "__call__", ...)
    start_ns:   time.time_ns() at call start
    duration_s: wall time of the call
    rows:       number of input rows the call processed (golden signals, always exact)
    error_type: exception class name when the call raised, else None
    trace_id:   the active trace id: an int (0 = none; the hot path keeps the raw OTel int and
                ``to_columns`` formats it) or a 32-hex str, or None
    inputs:     the features as given (2-D numpy copy, DataFrame copy, list of dicts, dict
                for one river row), or None when the call was not sampled
    outputs:    the model output as returned (labels, values, probabilities) or None
    classes:    class labels for probability outputs (e.g. ``estimator.classes_``), or None
    ids:        row ids from ``monitor.ids(...)`` or ``log_labels``, or None
    labels:     y values (``log_labels``, ``learn_one``'s y, reference y), or None
    feature_names: names of the columns of a numpy input (``instrument(feature_names=...)``),
                or None for ``x0``, ``x1``, ...
    """

    kind: str
    method: str
    start_ns: int
    duration_s: float
    rows: int
    error_type: str | None = None
    trace_id: int | str | None = None
    inputs: Any = None
    outputs: Any = None
    classes: Any = None
    ids: Any = None
    labels: Any = None
    size_hint: int = field(default=0)  # bytes, estimated by the capture side for the buffer bound (0: unknown)
    feature_names: tuple[str, ...] | None = None
    #: a run of compact calls merged by :func:`thaw_all`: its calls table as columns
    #: (:data:`driftcar.wire.CALL_COLUMNS` name -> one value per call); None for one call
    calls: dict[str, Any] | None = None


def thaw(raw: tuple) -> Captured:
    """The :class:`Captured` for a compact hot-path item (on the shipper's thread).

    The commonest call (numpy in, numpy out, no object dtype, every row kept)
    is offered as a plain tuple ``(method, start_ns, duration_ns, rows,
    trace_id, ids, x_bytes, x_dtype, x_shape, y_bytes, y_dtype, y_shape,
    feature_names)``:
    ``ndarray.tobytes()`` snapshots and no Captured, because every object the
    model's thread allocates and keeps alive costs it cold-cache writes
    (measured ~1.8 µs per call less than two ``copy()`` and a Captured).
    ``x_bytes`` is None when the input was not tabular (> 2 dimensions). With
    ``copy=False`` the byte slots hold the caller's arrays themselves and the
    dtype slots are None. Arrays rebuilt from bytes are read-only views of them.

    >>> import numpy as np
    >>> x, y = np.array([[1.0, 2.0]]), np.array([1])
    >>> item = thaw(("predict", 5, 2_000, 1, 0, None, x.tobytes(), x.dtype, x.shape, y.tobytes(), y.dtype, y.shape,
    ...              None))
    >>> item.inputs.tolist(), item.outputs.tolist(), item.duration_s, item.size_hint
    ([[1.0, 2.0]], [1], 2e-06, 24)
    """
    method, start_ns, duration_ns, rows, trace_id, ids, xb, xdtype, xshape, yb, ydtype, yshape, names = raw
    # a None dtype means the slot holds the array itself (copy=False: the caller's own arrays)
    inputs = xb if xb is None or xdtype is None else np.frombuffer(xb, dtype=xdtype).reshape(xshape)
    outputs = yb if ydtype is None else np.frombuffer(yb, dtype=ydtype).reshape(yshape)
    return Captured(kind="inference", method=method, start_ns=start_ns, duration_s=duration_ns / 1e9, rows=rows,
                    trace_id=trace_id, inputs=inputs, outputs=outputs, ids=ids, feature_names=names,
                    size_hint=(0 if inputs is None else inputs.nbytes) + outputs.nbytes)


def _run_key(raw: tuple) -> tuple | None:
    """Layout of a compact item that may join a run (2-D bytes input, rows-long output, no ids)."""
    _, _, _, _, _, ids, xb, xdtype, xshape, _, ydtype, yshape, names = raw
    if ids is not None or xdtype is None or ydtype is None or xb is None or len(xshape) != 2 \
            or not 1 <= len(yshape) <= 2 or yshape[0] != xshape[0]:
        return None
    return (raw[0], xdtype.str, xshape[1], ydtype.str, yshape[1:], names)


def _same_run(raw: tuple, last: tuple) -> bool:
    """``raw`` has the layout of ``last`` (already in a run); the common case, without building a key.

    Items of one wrapper share the dtype objects and the names tuple, so identity
    tests answer (about a third of ``_run_key``'s cost, measured); anything else
    falls back to the key.
    """
    xshape, yshape = raw[8], raw[11]
    return (raw[5] is None and raw[7] is last[7] and raw[10] is last[10] and raw[12] is last[12]
            and raw[0] == last[0] and raw[6] is not None and len(xshape) == 2 and xshape[1] == last[8][1]
            and len(yshape) == len(last[11]) and yshape[0] == xshape[0] and yshape[1:] == last[11][1:])


_START, _DURATION, _ROWS, _TRACE, _XBYTES, _YBYTES = (itemgetter(i) for i in (1, 2, 3, 4, 6, 9))
#: slots that must be equal across a uniform batch: method, ids, x dtype and shape, y dtype and shape, names
_UNIFORM = tuple(itemgetter(i) for i in (0, 5, 7, 8, 10, 11, 12))


def _uniform_key(items: list) -> tuple | None:
    """The run key when every item is a compact call of one layout *and one shape* (a batch of 1-row
    calls, the commonest), else None.

    Decided with C-level ``map`` and ``list.count`` per slot: ~4x cheaper than
    following runs item by item (measured); mixed batches take the general path.
    """
    n = len(items)
    if n < 2 or list(map(type, items)).count(tuple) != n:
        return None
    first = items[0]
    key = _run_key(first)
    if key is None:
        return None
    try:
        for get in _UNIFORM:
            if list(map(get, items)).count(get(first)) != n:
                return None
    except Exception:  # an ids array compared ambiguously: not uniform
        return None
    return key


def _calls_table(method: str, starts: np.ndarray, durations_ns: np.ndarray, rows: np.ndarray, traces: list,
                 captured: bool = True) -> dict[str, Any]:
    """The calls table of a run of numpy calls of one method (a compact run or a sealed block): kept
    with every row, or (``captured=False``) sent without them."""
    n = len(rows)
    return {
        "method": [method] * n,
        "start_ns": starts,
        "duration_s": durations_ns / 1e9,
        "rows": rows,
        "captured": rows.copy() if captured else np.zeros(n, dtype=np.int64),
        "error_type": [None] * n,
        "trace_id": [format(t, "032x") if t else None for t in traces] if any(traces) else [None] * n,
    }


class Sealed:
    """A sealed columnar block (:mod:`driftcar.hook.shipping.blocks`): calls of one layout, as lists
    of per-call slots of which the first ``calls`` are filled (``xs``/``ys`` hold ``tobytes()`` copies)."""

    __slots__ = ("method", "names", "xdtype", "ncols", "ydtype", "ytail", "calls", "rows", "xs", "ys", "starts",
                 "durations", "nrows", "traces")

    def __init__(self, method, names, xdtype, ncols, ydtype, ytail, calls, rows, xs, ys, starts, durations, nrows,
                 traces):
        self.method, self.names, self.xdtype, self.ncols, self.ydtype, self.ytail = (method, names, xdtype, ncols,
                                                                                     ydtype, ytail)
        self.calls, self.rows, self.xs, self.ys, self.starts = calls, rows, xs, ys, starts
        self.durations, self.nrows, self.traces = durations, nrows, traces

    def thaw(self) -> Captured:
        """The block as one :class:`Captured` run (the form :func:`thaw_all` gives a run of compact
        calls): one join and one ``frombuffer`` per column, the calls table as columns."""
        c, method = self.calls, self.method
        inputs = np.frombuffer(b"".join(self.xs[:c]), dtype=self.xdtype).reshape(-1, self.ncols)
        outputs = np.frombuffer(b"".join(self.ys[:c]), dtype=self.ydtype).reshape((-1, *self.ytail))
        # every call has a row, so rows == calls means one row each (1-row calls, the commonest): no
        # conversion of that column (np.array of a list of ints: ~0.3 k instructions per element)
        nrows = np.ones(c, dtype=np.int64) if self.rows == c else np.array(self.nrows[:c], dtype=np.int64)
        calls = _calls_table(method, np.array(self.starts[:c], dtype=np.int64),
                             np.array(self.durations[:c], dtype=np.int64), nrows, self.traces[:c])
        return Captured(kind="inference", method=method, start_ns=self.starts[0], duration_s=0.0, rows=len(inputs),
                        inputs=inputs, outputs=outputs, feature_names=self.names, calls=calls,
                        size_hint=inputs.nbytes + outputs.nbytes)


class SealedCalls:
    """A sealed :class:`~driftcar.hook.shipping.blocks.CallsBlock`: calls sent without their rows, as
    lists of per-call slots of which the first ``calls`` are filled."""

    __slots__ = ("calls", "rows", "methods", "starts", "durations", "nrows", "traces")

    def __init__(self, calls, methods, starts, durations, nrows, traces):
        self.calls, self.rows, self.methods, self.starts = calls, 0, methods, starts
        self.durations, self.nrows, self.traces = durations, nrows, traces

    def thaw(self) -> Captured:
        """The calls as one :class:`Captured` without data: its calls table as columns."""
        c = self.calls
        methods = self.methods[:c]
        calls = _calls_table(methods[0], np.array(self.starts[:c], dtype=np.int64),
                             np.array(self.durations[:c], dtype=np.int64), np.array(self.nrows[:c], dtype=np.int64),
                             self.traces[:c], captured=False)
        if methods.count(methods[0]) != c:  # calls of several methods (one block takes them all)
            calls["method"] = methods
        return Captured(kind="inference", method=methods[0], start_ns=self.starts[0], duration_s=0.0, rows=0,
                        calls=calls)


def _run_calls(raws: list, method: str) -> dict[str, Any]:
    """The calls table of a run, built column by column (C loops: no per-call tuple)."""
    n = len(raws)
    return _calls_table(method, np.fromiter(map(_START, raws), dtype=np.int64, count=n),
                        np.fromiter(map(_DURATION, raws), dtype=np.int64, count=n),
                        np.fromiter(map(_ROWS, raws), dtype=np.int64, count=n), list(map(_TRACE, raws)))


def _thaw_run(raws: list, key: tuple) -> Captured:
    # one join and one frombuffer per column block for the whole run, instead of two frombuffer,
    # two reshape and a Captured per call: the worker's time per 1-row call went from ~13 to ~4 µs;
    # the calls table as columns, not one tuple per call: ~0.3 µs per call less (measured)
    method, xdtype, ncols, ydtype, ytail, names = key
    inputs = np.frombuffer(b"".join(map(_XBYTES, raws)), dtype=xdtype).reshape(-1, ncols)
    outputs = np.frombuffer(b"".join(map(_YBYTES, raws)), dtype=ydtype).reshape((-1, *ytail))
    return Captured(kind="inference", method=method, start_ns=raws[0][1], duration_s=0.0, rows=len(inputs),
                    inputs=inputs, outputs=outputs, feature_names=names, calls=_run_calls(raws, method),
                    size_hint=inputs.nbytes + outputs.nbytes)


def _layout(sealed: Sealed) -> tuple:
    return (sealed.method, sealed.names, sealed.xdtype, sealed.ncols, sealed.ydtype, sealed.ytail)


def _merged(blocks: list) -> Sealed:
    """Consecutive sealed blocks of one layout as one: a batch of many blocks is then converted and
    encoded as one item (one Column per column instead of one per block, and no concatenation
    after): the worker's conversion and encoding of a 500-row batch of 1-row calls (two blocks)
    4.72 k -> 4.21 k instructions per row (callgrind, export excluded)."""
    first = blocks[0]
    lists: tuple[list, ...] = ([], [], [], [], [], [])
    for block in blocks:
        c = block.calls
        for merged, part in zip(lists, (block.xs, block.ys, block.starts, block.durations, block.nrows,
                                        block.traces)):
            merged.extend(part[:c])  # (not +=: with an array part, as the ring's, numpy's + would run)
    return Sealed(first.method, first.names, first.xdtype, first.ncols, first.ydtype, first.ytail,
                  sum(b.calls for b in blocks), sum(b.rows for b in blocks), *lists)


def _merge_sealed(items: list) -> list:
    """``items`` with each run of consecutive sealed blocks of one layout merged (:func:`_merged`)."""
    out: list = []
    run: list = []
    for item in items:
        if run and (type(item) is not Sealed or _layout(item) != _layout(run[0])):
            out.append(run[0] if len(run) == 1 else _merged(run))
            run = []
        (run if type(item) is Sealed else out).append(item)
    if run:
        out.append(run[0] if len(run) == 1 else _merged(run))
    return out


def thaw_all(items: list) -> list:
    """Items as :class:`Captured`, in order; consecutive compact calls of one layout become one run,
    as do consecutive sealed blocks of one layout."""
    uniform = _uniform_key(items)
    if uniform is not None:
        return [_thaw_run(items, uniform)]
    items = _merge_sealed(items)
    out: list = []
    run: list = []
    run_key = None
    for item in items:
        if type(item) is Sealed or type(item) is SealedCalls:
            item = item.thaw()  # ends a run of compact calls, as any Captured does
        if run and type(item) is tuple and _same_run(item, run[-1]):
            run.append(item)
            continue
        key = _run_key(item) if type(item) is tuple else None
        if run and key != run_key:
            out.append(_thaw_run(run, run_key) if len(run) > 1 else thaw(run[0]))
            run = []
        if key is not None:
            run.append(item)
            run_key = key
        else:
            out.append(thaw(item) if type(item) is tuple else item)
    if run:
        out.append(_thaw_run(run, run_key) if len(run) > 1 else thaw(run[0]))
    return out
