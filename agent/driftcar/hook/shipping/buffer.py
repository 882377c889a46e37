"""The byte-bounded FIFO between the model's threads and the shipper's worker.

``put`` runs on every captured model call, so it takes no lock: it appends a
small tuple to a ``collections.deque`` (``append`` is atomic in CPython) and
adds to two running totals. Whatever removes items (``take``, the drop-oldest
trim, ``clear``) holds :attr:`lock` and keeps its own totals, so the queued
bytes and rows are ``added - removed``. When the bound would be exceeded,
``put`` trims the OLDEST items under the lock (the newest data describes the
model best) and counts their rows and calls.

Sequence numbers for ``flush`` ("everything offered before now") are implicit:
the buffer is FIFO, so the n-th item ever put has seq n and the oldest queued
item has seq ``removed + 1``; no per-item stamp is needed.

Bound (measured, not assumed): ``bytes <= max_bytes`` after every ``put`` that
returns, with one caveat. The running totals are updated with ``+=`` on
attributes; under the GIL (CPython <= 3.12 and the default 3.13+ build) that
sequence never switches threads in between (no eval-breaker check between the
load and the store), so no update is lost. Threads offering *concurrently* may
each see the others' items appended but not yet counted, so the bound can be
overshot by at most one item per concurrently offering thread until the next
``put`` trims. On a free-threaded build (``sys._is_gil_enabled()`` False)
``put`` takes :attr:`lock` around the update, so the bound stays exact there.

Thread safety: ``put`` from any number of threads; ``take``, ``clear`` and the
readers from any thread (they hold :attr:`lock`). Nothing blocks on I/O.
"""

from __future__ import annotations

import sys
import threading
from bisect import bisect_right
from collections import deque
from itertools import accumulate, islice, repeat, starmap
from operator import itemgetter
from typing import Any, NamedTuple

__all__ = ["Entry", "Taken", "ByteBuffer"]

#: True when ``x.attr += n`` cannot lose an update to another thread (a GIL build)
_GIL = bool(getattr(sys, "_is_gil_enabled", lambda: True)())


class Entry(NamedTuple):
    """One buffered item with what the bound and the counters need.

    The buffer stores plain ``(item, nbytes, rows, calls)`` tuples (building
    a tuple is the cheapest thing the model's thread can do); ``take`` hands
    out Entries with their sequence number.
    """

    item: Any
    nbytes: int
    rows: int  # captured data rows (0 when the call was not sampled)
    seq: int
    calls: int  # 1 for a model call (inference item), 0 for labels / reference items


_NBYTES, _ROWS, _CALLS = 1, 2, 3
_ITEM, _ROWS_OF, _CALLS_OF = itemgetter(0), itemgetter(_ROWS), itemgetter(_CALLS)
_NBYTES_OF = itemgetter(_NBYTES)


class Taken:
    """Entries removed together (oldest first): a sequence of :class:`Entry`, built on demand.

    The shipper reads only :attr:`items`, :attr:`rows`, :attr:`calls` and the
    first entry's seq, so no Entry is made per item (a NamedTuple per item cost
    ~0.3 µs, most of ``take`` for 1-row calls, measured).
    """

    __slots__ = ("_raw", "first_seq", "rows", "nbytes")

    def __init__(self, raw: list[tuple], first_seq: int, rows: int, nbytes: int):
        self._raw = raw  # the stored (item, nbytes, rows, calls) tuples
        self.first_seq = first_seq  # seq of the first entry
        self.rows = rows
        self.nbytes = nbytes

    @property
    def items(self) -> list:
        return list(map(_ITEM, self._raw))

    @property
    def calls(self) -> int:
        return sum(map(_CALLS_OF, self._raw))

    def __len__(self) -> int:
        return len(self._raw)

    def __getitem__(self, index: int) -> Entry:
        if index < 0:
            index += len(self._raw)
        item, nbytes, rows, calls = self._raw[index]
        return Entry(item, nbytes, rows, self.first_seq + index, calls)

    def __iter__(self):
        seq = self.first_seq
        for item, nbytes, rows, calls in self._raw:
            yield Entry(item, nbytes, rows, seq, calls)
            seq += 1


def _take_fitting(items: deque, max_rows: int, max_bytes: int) -> tuple[list, int, int]:
    """Pop the leading entries that fit (at least one) with C-level passes; ``take`` goes on from there.

    The running totals of the first ``max_rows + 1`` entries say how many fit (a bisection), and
    ``popleft`` is called that many times from C: ~1 k instructions per 1-row entry less than
    the item-by-item loop (callgrind). Only under the GIL. Copying the window runs no bytecode of
    its own, but an allocation in it may start a garbage collection whose finalizers do, and a
    thread switch there lets a ``put`` append: the deque then refuses the copy (RuntimeError) and
    nothing is popped here; the caller's item-by-item loop takes the entries instead (appends go to
    the right end only, and only the lock's holder pops, so that loop is safe).
    """
    try:
        window = list(islice(items, min(len(items), max(max_rows, 0) + 1)))
    except RuntimeError:  # "deque mutated during iteration": seen once in 4 producers x 5,000 puts
        return [], 0, 0
    k = min(bisect_right(list(accumulate(map(_ROWS_OF, window))), max_rows),
            bisect_right(list(accumulate(map(_NBYTES_OF, window))), max_bytes))
    out = list(starmap(items.popleft, repeat((), max(k, 1))))
    return out, sum(map(_ROWS_OF, out)), sum(map(_NBYTES_OF, out))


class ByteBuffer:
    """FIFO of items bounded by the sum of their ``nbytes``; see the module docstring.

    An item larger than the whole bound is refused (and counted as dropped)
    rather than emptying the buffer for nothing.
    """

    def __init__(self, max_bytes: int):
        if not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self._items: deque[tuple] = deque()
        self._in_bytes = 0  # written by put only
        self._in_rows = 0
        self._out_bytes = 0  # written under lock only (take, trim, clear)
        self._out_rows = 0
        self._out_items = 0  # items removed so far: the oldest queued item has seq _out_items + 1
        self.dropped_rows = 0
        self.dropped_calls = 0
        self.dropped_seq = 0  # highest seq dropped so far

    # ------------------------------------------------------------------ producers

    def put(self, item: Any, nbytes: int, rows: int, calls: int = 1) -> int:
        """Append (lock-free); returns the rows queued afterwards (the worker's wake-up test)."""
        if nbytes > self.max_bytes:
            self._refuse(rows, calls)
            return self._in_rows - self._out_rows
        self._items.append((item, nbytes, rows, calls))
        if _GIL:
            self._in_bytes += nbytes
            self._in_rows += rows
        else:  # pragma: no cover - free-threaded CPython
            with self.lock:
                self._in_bytes += nbytes
                self._in_rows += rows
        if self._in_bytes - self._out_bytes > self.max_bytes:
            self._trim()
        return self._in_rows - self._out_rows

    def _refuse(self, rows: int, calls: int) -> None:
        with self.lock:  # never queued, so it takes no sequence number a flush could wait on
            self.dropped_rows += rows
            self.dropped_calls += calls

    def _trim(self) -> None:
        """Drop the oldest items until the bound holds again (the newest item stays)."""
        with self.lock:
            items = self._items
            while self._in_bytes - self._out_bytes > self.max_bytes and len(items) > 1:
                old = items.popleft()
                self._out_bytes += old[_NBYTES]
                self._out_rows += old[_ROWS]
                self._out_items += 1
                self.dropped_rows += old[_ROWS]
                self.dropped_calls += old[_CALLS]
                self.dropped_seq = self._out_items

    # ------------------------------------------------------------------ consumer

    def take(self, max_rows: int, max_bytes: int) -> Taken:
        """Pop the oldest entries up to ``max_rows`` rows and ``max_bytes`` (at least one entry)."""
        out: list[tuple] = []
        rows = nbytes = 0
        with self.lock:
            items = self._items
            if _GIL and len(items) > 1:
                out, rows, nbytes = _take_fitting(items, max_rows, max_bytes)
            popleft, append = items.popleft, out.append
            while items:
                head = items[0]
                if out and (rows + head[_ROWS] > max_rows or nbytes + head[_NBYTES] > max_bytes):
                    break
                append(popleft())
                rows += head[_ROWS]
                nbytes += head[_NBYTES]
            first = self._out_items + 1
            self._out_bytes += nbytes
            self._out_rows += rows
            self._out_items += len(out)
        return Taken(out, first, rows, nbytes)

    def clear(self) -> Taken:
        """Remove everything (shutdown leftovers); the caller decides how to count them."""
        with self.lock:
            items = self._items
            out = list(items)
            items.clear()
            rows, nbytes = sum(map(_ROWS_OF, out)), sum(h[_NBYTES] for h in out)
            first = self._out_items + 1
            self._out_bytes += nbytes
            self._out_rows += rows
            self._out_items += len(out)
        return Taken(out, first, rows, nbytes)

    # ------------------------------------------------------------------ readers

    @property
    def bytes(self) -> int:
        """Bytes queued (exact when no put is in flight)."""
        return self._in_bytes - self._out_bytes

    @property
    def rows(self) -> int:
        """Rows queued (exact when no put is in flight)."""
        return self._in_rows - self._out_rows

    @property
    def seq(self) -> int:
        """Sequence number of the last item put (0 before any)."""
        with self.lock:
            return self._out_items + len(self._items)

    def oldest_seq(self) -> int | None:
        with self.lock:
            return self._out_items + 1 if self._items else None

    def __len__(self) -> int:
        return len(self._items)
