"""Snapshot buffers for large ``copy=True`` calls, reused instead of allocated per call.

Why: a ``copy=True`` call too large for a columnar block (a 1,000-row call of 20 float
features: 160 KB) was snapshotted with ``x.tobytes()``, a fresh malloc per call, freed later
by the worker (shipped) or by a put (the buffer dropping its oldest); glibc handed out fresh
pages for many of them. Minor faults per 1,000 such calls, all threads (``hook_workload.py
instrumented --rows 1000``, each twice): 1,921 -> 583-593 at 300 calls/s with every row
delivered; 8,229 -> 4,983-5,548 flat out over 2,000 calls right after a flush (most of what
is left is the buffer filling its ``max_buffer_bytes`` from empty again: with 64 MiB idle
kept it was 253); in a flat-out steady state (buffer full, no flush) ~170 -> 0-6 on the
model thread. A snapshot taken here is a view of a buffer that goes back to this pool when
its last reference dies, whether its item was shipped, dropped by the buffer or discarded at
shutdown, so the next call writes into pages already mapped. Cost: ~0.5 µs per copy over
``tobytes()`` with 50 snapshots in flight, ~2 µs with one hot buffer (thread CPU, least of 7
reps of 2,000 copies).

How: :func:`snapshot` returns a 1-D ``uint8`` :class:`Snapshot` over a pooled ``bytearray``
(a bytes-like object, as ``tobytes()`` was: ``np.frombuffer``, ``b"".join`` and the helper
ring's writer take it) whose ``__del__`` hands its buffer back. The pool keeps at most :data:`IDLE_BYTES` of idle
buffers (a buffer beyond that is freed); buffers in use are bounded by the shipper's buffer
bound like any snapshot. A buffer is never handed out twice while a snapshot of it is
alive: it re-enters the pool only from that snapshot's ``__del__``. After ``fork()`` the
child's pool starts empty and buffers of snapshots made before the fork are not taken back
(:attr:`SnapshotPool.generation`).

Thread safety: the idle lists and their byte count change under a lock (``__del__`` runs on
whichever thread drops the last reference, the model's or the worker's).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

__all__ = ["Snapshot", "SnapshotPool", "snapshot", "POOL", "MIN_BYTES", "IDLE_BYTES"]

#: smallest snapshot taken from the pool; smaller ones stay ``tobytes()`` (malloc serves them from
#: warm free lists: a 1-row call's bytes never faulted; blocks take calls up to 256 rows anyway)
MIN_BYTES = 64 * 1024
#: idle buffers kept per process at most, in bytes (a batch's worth of 1,000-row calls and more)
IDLE_BYTES = 8 * 1024 * 1024
#: size classes kept at most (calls of many sizes: the rest are freed as before)
_CLASSES = 16
_UINT8 = np.dtype(np.uint8)
_new_snapshot = np.ndarray.__new__
#: buffer sizes are rounded up to this, so calls of nearby sizes share buffers
_GRAIN = 16 * 1024


class Snapshot(np.ndarray):
    """A snapshot's bytes: a view of a pooled buffer that goes back to its pool when it dies."""

    __slots__ = ("_home",)  # (pool, buffer, generation); views of a snapshot have none

    def __del__(self) -> None:
        home = getattr(self, "_home", None)
        if home is not None:
            home[0].give(home[1], home[2])


class SnapshotPool:
    """Idle snapshot buffers by size class; see the module docstring."""

    def __init__(self, idle_bytes: int = IDLE_BYTES):
        self.idle_bytes = idle_bytes
        self.generation = 0
        self._reset()

    def _reset(self) -> None:
        # a new lock too: in a forked child the parent's may have been held by a thread of the parent
        self._lock = threading.Lock()
        self._idle: dict[int, list[bytearray]] = {}
        self.idle = 0  # bytes in idle buffers (under the lock)
        self.reused = 0  # snapshots written into a buffer from the pool (for tests and counts)
        self.fresh = 0  # snapshots that needed a new buffer
        self.freed = 0  # buffers given back and not kept (the pool was full)

    def after_fork(self) -> None:
        """In a forked child: drop the idle buffers; buffers of older snapshots are not taken back."""
        self.generation += 1
        self._reset()

    def take(self, nbytes: int) -> bytearray:
        """A buffer of at least ``nbytes`` (its size class): an idle one if any, else a new one.

        Nothing under the lock allocates an object the garbage collector tracks: a collection
        started there could run a snapshot's ``__del__`` (:meth:`give`) on this thread.
        """
        size = -(-nbytes // _GRAIN) * _GRAIN
        with self._lock:
            idle = self._idle.get(size)
            if idle:
                self.idle -= size
                self.reused += 1
                return idle.pop()
            self.fresh += 1
        return bytearray(size)

    def give(self, raw: bytearray, generation: int) -> None:
        """Take ``raw`` back (a dead snapshot's buffer), unless the pool is full or it predates a fork."""
        size = len(raw)
        if generation != self.generation:
            return
        idle = self._idle.get(size)
        if idle is None and len(self._idle) < _CLASSES:
            idle = self._idle.setdefault(size, [])  # made outside the lock (see take)
        with self._lock:
            if idle is None or self.idle + size > self.idle_bytes:
                self.freed += 1
                return
            idle.append(raw)
            self.idle += size

    def copy(self, x: np.ndarray) -> Snapshot:
        """``x``'s bytes in C order (what ``x.tobytes()`` holds) in a pooled buffer."""
        nbytes = x.nbytes
        raw = self.take(nbytes)
        # made on the bytearray itself, so the snapshot is the base every numpy view of it keeps
        # alive (numpy collapses a view's base to the first array that owns its data or whose
        # base is no array: over an ndarray buffer, np.frombuffer(snapshot) kept only that
        # buffer, and the snapshot's death gave the buffer back while the view still read it)
        np.copyto(_new_snapshot(np.ndarray, x.shape, x.dtype, raw), x, casting="no")
        out = _new_snapshot(Snapshot, (nbytes,), _UINT8, raw)
        out._home = (self, raw, self.generation)
        return out


POOL = SnapshotPool()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=POOL.after_fork)


def snapshot(x: np.ndarray) -> Any:
    """A snapshot of ``x``'s bytes: ``x.tobytes()`` below :data:`MIN_BYTES`, else a pooled :class:`Snapshot`."""
    if x.nbytes < MIN_BYTES:
        return x.tobytes()
    return POOL.copy(x)
