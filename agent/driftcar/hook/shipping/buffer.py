"""The byte-bounded FIFO between the model's threads and the shipper's worker.

``put`` is O(1) amortised and never waits on I/O: when the bound would be
exceeded it drops the OLDEST items (the newest data describes the model best)
and counts their rows and calls. Items carry a sequence number so that
``flush`` can wait for "everything offered before now" precisely.

Thread safety: every method takes one short lock; any thread may call them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, NamedTuple

__all__ = ["Entry", "ByteBuffer"]


class Entry(NamedTuple):
    """One buffered item with what the bound and the counters need.

    The buffer stores plain tuples of these fields (building a tuple is the
    cheapest thing the model's thread can do); ``take`` hands out Entries.
    """

    item: Any
    nbytes: int
    rows: int  # captured data rows (0 when the call was not sampled)
    seq: int
    enqueued: float  # time.monotonic() at put
    calls: int  # 1 for a model call (inference item), 0 for labels / reference items


_NBYTES, _ROWS, _SEQ, _ENQUEUED, _CALLS = 1, 2, 3, 4, 5


class ByteBuffer:
    """FIFO of :class:`Entry` bounded by the sum of their ``nbytes``.

    An item larger than the whole bound is refused (and counted as dropped)
    rather than emptying the buffer for nothing.
    """

    def __init__(self, max_bytes: int):
        if not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self._items: deque[tuple] = deque()
        self.bytes = 0
        self.rows = 0
        self.seq = 0  # sequence number of the last item put
        self.dropped_rows = 0
        self.dropped_calls = 0
        self.dropped_seq = 0  # highest seq dropped so far

    def put(self, item: Any, nbytes: int, rows: int, calls: int = 1, now: float | None = None) -> int:
        """Append; returns the rows queued afterwards (the worker's wake-up test)."""
        now = time.monotonic() if now is None else now
        with self.lock:
            self.seq += 1
            if nbytes > self.max_bytes:
                self.dropped_rows += rows
                self.dropped_calls += calls
                self.dropped_seq = self.seq
                return self.rows
            items = self._items
            while self.bytes + nbytes > self.max_bytes and items:
                old = items.popleft()
                self.bytes -= old[_NBYTES]
                self.rows -= old[_ROWS]
                self.dropped_rows += old[_ROWS]
                self.dropped_calls += old[_CALLS]
                self.dropped_seq = old[_SEQ]
            items.append((item, nbytes, rows, self.seq, now, calls))
            self.bytes += nbytes
            self.rows += rows
            return self.rows

    def take(self, max_rows: int, max_bytes: int) -> list[Entry]:
        """Pop the oldest entries up to ``max_rows`` rows and ``max_bytes`` (at least one entry)."""
        out: list[Entry] = []
        rows = nbytes = 0
        with self.lock:
            items = self._items
            while items:
                head = items[0]
                if out and (rows + head[_ROWS] > max_rows or nbytes + head[_NBYTES] > max_bytes):
                    break
                items.popleft()
                out.append(head)
                rows += head[_ROWS]
                nbytes += head[_NBYTES]
            self.bytes -= nbytes
            self.rows -= rows
        return [Entry._make(t) for t in out]

    def oldest_enqueued(self) -> float | None:
        with self.lock:
            return self._items[0][_ENQUEUED] if self._items else None

    def oldest_seq(self) -> int | None:
        with self.lock:
            return self._items[0][_SEQ] if self._items else None

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> list[Entry]:
        """Remove everything (shutdown leftovers); the caller decides how to count them."""
        with self.lock:
            out = list(self._items)
            self._items.clear()
            self.bytes = 0
            self.rows = 0
        return [Entry._make(t) for t in out]
