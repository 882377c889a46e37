"""Columnar blocks: where the commonest call's rows wait, one block per layout, until a batch is due.

A model call with numpy in and numpy out, every row kept, no row ids (the
commonest call) writes its input and output bytes and its call's start,
duration, rows and trace id into the open :class:`Block` of its layout (method,
dtypes, widths, feature names): a few slot stores under the block's lock, no
object per call kept alive. Only a full block, or one the shipper seals (batch
age, flush, shutdown), becomes one buffer entry (a :class:`~driftcar.hook.records.Sealed`),
which the worker turns into columns by joining each column once.

Measured under callgrind against the former path (a 13-slot tuple per call through
``Shipper.offer_raw`` and ``ByteBuffer.put``, and on the worker a ``take``, a uniformity
test and a free per item): see the hook README's Cost section for the figures.

Why ``tobytes()`` into lists and not a preallocated ndarray: ``block[i] = x`` measured
~1.5 k instructions per copy, ``x.tobytes()`` stored in a list slot well under half of
that; the worker then joins each column once (``b"".join``) as it did for tuples.

Bounds: an open block holds at most ``cap`` calls and ``cap`` rows (outside the
buffer's byte bound: at most one block per layout); sealed blocks count against the
buffer bound like any item. Thread safety: :meth:`Block.write` from any number of
model threads; sealing from any thread (all under :attr:`Block.lock`).
"""

from __future__ import annotations

import threading
from typing import Any

from driftcar.hook.records import Sealed, SealedCalls

__all__ = ["Block", "CallsBlock", "BLOCK_ROWS", "block_capacity", "CALL_BYTES"]

#: largest block, in rows (and calls): a 1-row call pays an entry of the buffer once per block
BLOCK_ROWS = 256
#: bytes a call keeps in a block beside its data (two bytes objects, two ints, six list slots)
CALL_BYTES = 192


def block_capacity(max_batch_rows: int) -> int:
    """Rows per block: at most :data:`BLOCK_ROWS`, and a whole number of blocks per batch.

    >>> block_capacity(10_000), block_capacity(500), block_capacity(3)
    (250, 250, 3)
    """
    blocks = -(-max_batch_rows // BLOCK_ROWS)
    return max(-(-max_batch_rows // blocks), 1)


class _Open:
    """What every open block shares: its lock, bounds and counts, and how it is retired."""

    __slots__ = ("lock", "shipper", "cap", "live", "rows", "calls", "starts", "durations", "nrows", "traces")

    def seal(self) -> Any:  # pragma: no cover - each kind seals its own slots
        raise NotImplementedError

    def _after_write(self, sealed: Any, c: int) -> None:
        """Outside the lock, after call ``c`` was stored: queue a block sealed full, and wake the worker
        on a block's first call. (:meth:`Block.write` has this inline, and hands the worker the GIL
        every 16 calls as offers do: a method call per 1-row call is measurable there.)"""
        shipper = self.shipper
        if sealed is not None:
            shipper.offer_sealed(sealed)
        if not c:
            shipper.block_started()

    def retire(self, fork: bool = False) -> Any:
        """Take no more writes (shutdown, or the parent's block in a forked child); returns what was
        queued. In a forked child the lock may have been held by a parent's thread: a new one."""
        if fork:
            self.lock = threading.Lock()
            self.live = False
            self.cap = 0
            self.rows = self.calls = 0
            return None
        with self.lock:
            sealed = self.seal()
            self.live = False
            self.cap = 0
        return sealed


class Block(_Open):
    """The open block of one layout; see the module docstring. ``write`` never raises for data
    it accepts and returns False for anything else (the caller takes the general path)."""

    __slots__ = ("method", "names", "xdtype", "ydtype", "yndim", "xrow", "yrow", "ytail", "ncols", "xs", "ys")

    def __init__(self, shipper: Any, method: str, x: Any, y: Any, names: tuple | None, cap: int):
        self.lock = threading.Lock()
        self.shipper = shipper
        self.method = method
        self.names = names
        self.xdtype, self.ydtype = x.dtype, y.dtype
        self.yndim = y.ndim
        self.ncols = x.shape[1]
        self.ytail = y.shape[1:]
        self.xrow = x.dtype.itemsize * self.ncols  # bytes per row
        self.yrow = y.dtype.itemsize * (y.shape[1] if y.ndim == 2 else 1)
        self.cap = cap
        self.live = True
        self._fresh()

    def _fresh(self) -> None:
        cap = self.cap
        self.rows = self.calls = 0
        self.xs, self.ys, self.starts = [None] * cap, [None] * cap, [0] * cap
        self.durations, self.nrows, self.traces = [0] * cap, [0] * cap, [0] * cap

    def write(self, method: str, x: Any, y: Any, start_ns: int, duration_ns: int, trace_id: int) -> int:
        """Append one call of this layout (copies of ``x`` and ``y``, whose feature names the caller
        checked); its rows, or 0 when it is not this layout, has no rows or more than a block, or
        the block is retired (fork, shutdown).

        The layout test reads no ``shape`` (a new tuple per read): same dtypes, 2-D ``x``, ``y`` of
        this block's rank with a row per input row, and the copies' lengths fix the widths.
        """
        xd, yd = x.dtype, y.dtype
        if ((xd is not self.xdtype and xd != self.xdtype) or (yd is not self.ydtype and yd != self.ydtype)
                or (method is not self.method and method != self.method) or x.ndim != 2 or y.ndim != self.yndim):
            return 0
        rows = len(x)
        if not 0 < rows <= self.cap or len(y) != rows:
            return 0
        xb, yb = x.tobytes(), y.tobytes()  # outside the lock: the copies are the slow part
        if len(xb) != rows * self.xrow or len(yb) != rows * self.yrow:
            return 0
        sealed = None
        lock = self.lock
        lock.acquire()  # acquire/release measured ~1.7 k instructions less than ``with lock``
        try:
            c, n = self.calls, self.rows
            if c >= self.cap or n + rows > self.cap:
                if not self.live:
                    return 0
                sealed = self.seal()
                c = n = 0
            self.xs[c] = xb
            self.ys[c] = yb
            self.starts[c] = start_ns
            self.durations[c] = duration_ns
            self.nrows[c] = rows
            self.traces[c] = trace_id
            self.rows = n + rows
            self.calls = c + 1
        finally:
            lock.release()
        shipper = self.shipper
        if sealed is not None:
            shipper.offer_sealed(sealed)
        if not c:  # the block's first call: the worker may sleep on an empty buffer (after the store)
            shipper.block_started()
        elif not c & 15:  # every 16 calls, as offers do (see Shipper.offer_raw)
            shipper.maybe_hand_over()
        return rows

    def seal(self) -> Sealed | None:
        """The calls written so far as one buffer item, and a fresh block (the caller holds :attr:`lock`)."""
        if not self.calls:
            return None
        sealed = Sealed(self.method, self.names, self.xdtype, self.ncols, self.ydtype, self.ytail, self.calls,
                        self.rows, self.xs, self.ys, self.starts, self.durations, self.nrows, self.traces)
        self._fresh()
        return sealed


class CallsBlock(_Open):
    """Calls sent without their rows (:mod:`driftcar.hook.shipping.budget`'s sample), of any method,
    until sealed: four list stores per call under the lock, where a compact item per call cost the
    model's thread a buffer entry and the worker a Python loop step each (~1.2 µs per call, measured
    under cProfile in the worker's ``thaw_all``). Same sealing as :class:`Block`; ``rows`` is
    always 0 (no data waits here), ``calls`` tells the shipper something does."""

    __slots__ = ("methods",)

    def __init__(self, shipper: Any, cap: int):
        self.lock = threading.Lock()
        self.shipper = shipper
        self.cap = cap
        self.live = True
        self.rows = 0
        self._fresh()

    def _fresh(self) -> None:
        cap = self.cap
        self.calls = 0
        self.methods, self.starts, self.durations = [None] * cap, [0] * cap, [0] * cap
        self.nrows, self.traces = [0] * cap, [0] * cap

    def write(self, method: str, start_ns: int, duration_ns: int, rows: int, trace_id: int) -> bool:
        """Append one call; False when the block is retired (fork, shutdown: the caller counts it)."""
        sealed = None
        lock = self.lock
        lock.acquire()
        try:
            c = self.calls
            if c >= self.cap:
                if not self.live:
                    return False
                sealed = self.seal()
                c = 0
            self.methods[c] = method
            self.starts[c], self.durations[c], self.nrows[c], self.traces[c] = start_ns, duration_ns, rows, trace_id
            self.calls = c + 1
        finally:
            lock.release()
        self._after_write(sealed, c)
        return True

    def seal(self) -> SealedCalls | None:
        """The calls written so far as one buffer item, and a fresh block (the caller holds :attr:`lock`)."""
        if not self.calls:
            return None
        sealed = SealedCalls(self.calls, self.methods, self.starts, self.durations, self.nrows, self.traces)
        self._fresh()
        return sealed
