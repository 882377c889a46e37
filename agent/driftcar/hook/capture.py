"""The capture path: what a root wrapper does with a call after the model returned.

Everything here runs on the model's thread inside every captured call, so it
only copies (the caller may reuse or mutate its buffers after the call
returns) and never converts: conversion to wire columns happens later on the
shipper's thread (:mod:`driftcar.hook.columns`). Two entries, both never
raising into the model (a failure is counted in the state):

- :func:`record_array`: numpy in, numpy out, every row kept: the commonest call,
  written to its layout's columnar block (:mod:`driftcar.hook.shipping.blocks`), or,
  when no block takes it (row ids, more rows than a block, other shapes), offered in
  the compact tuple form (:func:`driftcar.hook.records.thaw`).
- :func:`record`: everything else (errors, sampling, DataFrames, dict rows,
  probabilities, labels, call-only methods), as a :class:`Captured`.

Past the shipper's CPU budget (:mod:`driftcar.hook.shipping.budget`) both keep a uniform
sample of calls with their rows; the others are sent as calls without data (counted in
``shed_calls`` / ``shed_rows``). Calls with row ids and learning calls (``learn_one``) always
keep theirs: labels are joined to them.

The helpers (``n_rows``, ``copy_value``, ``size_hint``) may raise on odd
input; the entries wrap them and count the failure.
"""

from __future__ import annotations

import random
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
from opentelemetry.trace import get_current_span

from driftcar.hook.records import Captured
from driftcar.hook.shipping.snapshots import MIN_BYTES as _POOLED, snapshot as _snapshot

if TYPE_CHECKING:  # pragma: no cover
    from driftcar.hook.specs import MethodSpec
    from driftcar.hook.state import HookState

__all__ = ["record_array", "record", "n_rows", "copy_value", "size_hint", "input_of"]

_ndarray = np.ndarray
_random = random.random
#: bytes added to each item's size hint for its fixed parts (method, times, trace id)
_ITEM_HINT = 160


def _trace_id(state: "HookState", span: Any) -> int:
    if span is not None:
        return span.get_span_context().trace_id
    if state.otel_live:
        return get_current_span().get_span_context().trace_id
    return 0  # no SDK provider anywhere: no span can carry a trace id worth keeping


def _row_ids(state: "HookState", rows: int) -> Any:
    """The ids of ``monitor.ids(...)`` for a call of ``rows`` rows, or None (a mismatch is counted)."""
    ids = state.ids.get() if state.ids_used else None
    if ids is not None and len(ids) != rows:
        state.id_mismatches += 1
        return None
    return ids


def _names(state: "HookState", shape: tuple) -> tuple | None:
    names = state.feature_names
    if names is not None and (not 0 < len(shape) <= 2 or shape[-1] != len(names)):
        state.names_mismatch(shape)
        return None
    return names


def record_array(state: "HookState", method: str, x: np.ndarray, result: np.ndarray, start_ns: int,
                 duration_ns: int, span: Any) -> None:
    """Capture a numpy-in, numpy-out call whose rows are all kept (the caller checked the types).

    The call goes to the block of the last layout first, reading no ``shape`` (a tuple built per
    read, ~1 k instructions): the block checks the layout itself, the names were checked when
    the block was chosen, and row ids or another layout take :func:`_record_array`.
    """
    try:
        if state.gate.keep < 1.0 and _sheds(state):  # one load and compare while every call is kept
            _shed(state, method, x, start_ns, duration_ns, span)
            return
        block = state.block
        if block is not None and (not state.ids_used or state.ids.get() is None):
            rows = block.write(method, x, result, start_ns, duration_ns,
                               _trace_id(state, span) if span is not None or state.otel_live else 0)
            if rows:
                state.calls += 1
                state.captured_rows += rows
                return
    except Exception as failure:  # never raise into the model
        state.failed(failure)
        return
    _record_array(state, method, x, result, start_ns, duration_ns, span)


def _record_array(state: "HookState", method: str, x: np.ndarray, result: np.ndarray, start_ns: int,
                  duration_ns: int, span: Any) -> None:
    """:func:`record_array` for a call no open block took: a block for its layout, else a tuple."""
    try:
        shape = x.shape
        tabular = len(shape) <= 2  # images and other tensors: outputs only
        rows = shape[0] if len(shape) > 1 else 1
        # the guards inline: the helpers' calls cost more than the common answers (None, 0)
        names = _names(state, shape) if state.feature_names is not None else None
        ids = _row_ids(state, rows) if state.ids_used else None
        trace_id = _trace_id(state, span) if span is not None or state.otel_live else 0
        state.calls += 1
        # copy=False takes blocks too: copying a small call into its block measured cheaper than
        # queuing a tuple of references (see driftcar.hook.shipping.blocks); names that do not fit
        # the width are counted per call, so such calls never get a block
        if ids is None and len(shape) == 2 and names is state.feature_names and _new_block(
                state, method, x, result, start_ns, duration_ns, trace_id, names):
            state.captured_rows += rows
            return
        offer_raw = state.offer_raw
        if offer_raw is not None and not state.copy:  # references, as the caller asked
            offer_raw((method, start_ns, duration_ns, rows, trace_id, ids, x if tabular else None,
                       None, None, result, None, None, names), rows,
                      (x.nbytes if tabular else 0) + result.nbytes + _ITEM_HINT)
        elif offer_raw is not None and not x.dtype.hasobject and not result.dtype.hasobject:
            # bytes snapshots in one tuple, nothing else kept alive: every object this thread
            # allocates and keeps costs it cold-cache writes (~1.8 µs per call less than two
            # copy() and a Captured, measured)
            # a large snapshot goes to a pooled buffer (no fresh pages per call: see snapshots)
            xb = (x.tobytes() if x.nbytes < _POOLED else _snapshot(x)) if tabular else None
            yb = result.tobytes()
            offer_raw((method, start_ns, duration_ns, rows, trace_id, ids, xb, x.dtype, shape,
                       yb, result.dtype, result.shape, names),
                      rows, (len(xb) if tabular else 0) + len(yb) + _ITEM_HINT)
        else:
            inputs = x.copy() if tabular else None
            outputs = result.copy()
            state.shipper.offer(Captured(
                kind="inference", method=method, start_ns=start_ns, duration_s=duration_ns / 1e9, rows=rows,
                trace_id=trace_id, inputs=inputs, outputs=outputs, ids=ids, feature_names=names,
                size_hint=(0 if inputs is None else inputs.nbytes) + outputs.nbytes + _ITEM_HINT))
        state.captured_rows += rows
    except Exception as failure:  # never raise into the model
        state.failed(failure)


def _sheds(state: "HookState") -> bool:
    """The CPU budget sends this call without its rows: not in its sample (``gate.keep``), and no row
    ids (``monitor.ids``: labels will be joined to those rows; a call kept without them would leave
    its labels unmatched)."""
    return _random() >= state.gate.keep and not (state.ids_used and state.ids.get() is not None)


def _shed(state: "HookState", method: str, x: np.ndarray, start_ns: int, duration_ns: int, span: Any) -> None:
    """A call the CPU budget keeps without its rows (:mod:`driftcar.hook.shipping.budget`): still sent
    as a call (the shipper's calls block), so calls, rows and durations downstream stay exact."""
    shape = x.shape
    rows = shape[0] if len(shape) > 1 else 1
    trace_id = _trace_id(state, span) if span is not None or state.otel_live else 0
    state.calls += 1
    state.shed_calls += 1
    state.shed_rows += rows
    state.shipper.shed(method, start_ns, duration_ns, rows, trace_id)


def _new_block(state: "HookState", method: str, x: np.ndarray, result: np.ndarray, start_ns: int,
               duration_ns: int, trace_id: int, names: tuple | None) -> int:
    """Write the call to the shipper's block for its layout (first call, another layout, a retired
    block); its rows, or 0 when no block takes it."""
    block_for = state.block_for
    if block_for is None:
        return 0
    block = block_for(method, x, result, names)
    if block is None:
        return 0
    state.block = block
    return block.write(method, x, result, start_ns, duration_ns, trace_id)


def record(state: "HookState", spec: "MethodSpec", owner: Any, args: tuple, kwargs: dict, result: Any,
           start_ns: int, duration_ns: int, span: Any, exc: BaseException | None) -> None:
    """Capture any other outermost call (see the module docstring); never raises, never blocks."""
    try:
        state.calls += 1
        x = args[0] if args else input_of(kwargs)
        rows = n_rows(x)
        base = dict(kind="inference", method=spec.name, start_ns=start_ns, duration_s=duration_ns / 1e9, rows=rows,
                    trace_id=_trace_id(state, span))
        if exc is not None:
            error = type(exc).__name__
            state.errors[error] = state.errors.get(error, 0) + 1
            item = Captured(error_type=error, **base)
        elif spec.mode in ("call", "fit") or (state.sample < 1.0 and _random() >= state.sample):
            item = Captured(**base)
        elif spec.mode != "learn" and state.gate.keep < 1.0 and _sheds(state):
            item = Captured(**base)  # the CPU budget's sample (see _shed)
            state.shed_calls += 1
            state.shed_rows += rows
        else:
            item = _with_data(state, spec, owner, x, rows, args, kwargs, result, base)
            state.captured_rows += rows
        state.shipper.offer(item)
    except Exception as failure:  # never raise into the model
        state.failed(failure)


def _with_data(state: "HookState", spec: "MethodSpec", owner: Any, x: Any, rows: int, args: tuple, kwargs: dict,
               result: Any, base: dict) -> Captured:
    copy = state.copy
    names = None
    if type(x) is _ndarray and x.ndim > 2:  # images and other tensors are not tabular: outputs only
        inputs, hint = None, _ITEM_HINT
    else:
        inputs = copy_value(x) if copy else x
        hint = size_hint(inputs, rows) + _ITEM_HINT
        if type(x) is _ndarray and state.feature_names is not None:
            names = _names(state, x.shape)
    outputs = classes = labels = None
    if spec.outputs:
        outputs = copy_value(result) if copy else result
        hint += size_hint(outputs, rows)
        if spec.proba:
            classes = getattr(owner, "classes_", None)
    elif spec.mode == "learn":
        labels = args[1] if len(args) > 1 else kwargs.get("y")
    return Captured(inputs=inputs, outputs=outputs, classes=classes, ids=_row_ids(state, rows), labels=labels,
                    feature_names=names, size_hint=hint, **base)


def input_of(kwargs: dict) -> Any:
    """The input among keyword arguments: ``X``, ``x``, else the first one (None without any)."""
    if not kwargs:
        return None
    if "X" in kwargs:
        return kwargs["X"]
    if "x" in kwargs:
        return kwargs["x"]
    return next(iter(kwargs.values()))


def _pandas_kind(obj: Any) -> str | None:
    pd = sys.modules.get("pandas")
    if pd is None:
        return None
    if isinstance(obj, pd.DataFrame):
        return "frame"
    if isinstance(obj, pd.Series):
        return "series"
    return None


def n_rows(x: Any) -> int:
    """Input rows of one call: 2-D -> first axis; dict (river row), scalar or 1-D vector -> 1."""
    if type(x) is _ndarray:
        return x.shape[0] if x.ndim >= 2 else 1
    if x is None:
        return 0
    if isinstance(x, dict):
        return 1
    if isinstance(x, (list, tuple)):
        return len(x)
    shape = getattr(x, "shape", None)
    if shape is not None:
        if len(shape) >= 2 or _pandas_kind(x) == "series":
            return int(shape[0])
        return 1
    return 1


_COW: list[bool] = []  # pandas copy-on-write, decided once


def _copy_pandas(obj: Any) -> Any:
    # With copy-on-write (always on in pandas >= 3) a shallow copy is a safe snapshot
    # and costs O(columns), not O(cells); older pandas needs a deep copy.
    if not _COW:
        pd = sys.modules["pandas"]
        _COW.append(int(pd.__version__.split(".", 1)[0]) >= 3 or pd.options.mode.copy_on_write is True)
    return obj.copy(deep=not _COW[0])


def copy_value(x: Any) -> Any:
    """A snapshot of ``x`` the caller cannot change afterwards (as far as cheaply possible).

    ndarray -> copy; DataFrame/Series -> copy (shallow under copy-on-write);
    list/tuple -> list (dict rows and list rows copied one level); dict -> dict;
    scalars and anything else -> as is.
    """
    if type(x) is _ndarray:
        return x.copy()
    if isinstance(x, dict):
        return dict(x)
    if isinstance(x, (list, tuple)):
        return [dict(r) if isinstance(r, dict) else (list(r) if isinstance(r, list) else r) for r in x]
    if isinstance(x, _ndarray):
        return np.array(x)
    if _pandas_kind(x) is not None:
        return _copy_pandas(x)
    if hasattr(x, "toarray") and hasattr(x, "copy"):  # scipy.sparse
        return x.copy()
    return x


def size_hint(x: Any, rows: int) -> int:
    """Rough bytes ``x`` holds, for the shipper's byte bound (cheap, not exact)."""
    if x is None:
        return 0
    nbytes = getattr(x, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) == 2:
        return int(shape[0]) * int(shape[1]) * 16
    if isinstance(x, dict):
        return 64 * len(x) + 64
    if isinstance(x, list):
        first = x[0] if x else None
        width = len(first) if isinstance(first, (dict, list, tuple)) else 1
        return 64 * width * len(x) + 64
    return 64 * max(rows, 1)
