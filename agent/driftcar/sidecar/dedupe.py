"""Recently applied batch ids, so a retried ``driftcar.batch`` is applied once.

An OTLP client retries a request whose answer came late or was lost (DEADLINE_EXCEEDED and a
dropped connection are retryable), though the sidecar may have queued its batches already.
The hook stamps every batch with a random 64-bit ``driftcar.batch.id``
(:data:`driftcar.wire.otlp.ATTR_BATCH_ID`), the same in each retry; the ingest path asks
:class:`RecentBatches` which of a request's batches it has queued before, answers those with
success without queueing them again, and counts them as ``driftcar.receiver.batches
{outcome="duplicate"}`` (the fleet gateway refuses a replica's second ``driftcar.window`` the
same way, under ``driftcar.fleet.windows{outcome="duplicate"}``).

The limit: the ids of the last :data:`MAX_IDS` batches queued, all senders together (about
170 bytes each under tracemalloc, under 3 MiB at the default). A retry is recognised while fewer than that many
other batches have been queued since its first copy: at 1,000 batches/s, 16 s, longer than
the hook's default export deadline (10 s) within which it retries. A copy arriving later is
applied again, as is a batch without an id (older hooks, other senders). The memory is not
checkpointed: a retry reaching a restarted sidecar is applied again. Ids are drawn at random,
so ids of different senders share one memory (two of 2**64 values colliding within 16,384
ids: about 1 in 10**15 per batch).
"""

from __future__ import annotations

import collections
import threading
from typing import Iterable, Sequence, TypeVar

from driftcar.wire import BatchError
from driftcar.wire.otlp import ATTR_BATCH_ID

__all__ = ["MAX_IDS", "RecentBatches", "batch_id"]

#: batch ids remembered (the most recent ones queued)
MAX_IDS = 16_384

T = TypeVar("T")


def batch_id(attributes: dict) -> int | None:
    """The record's ``driftcar.batch.id``, None when absent; BatchError (with the reason) when not an int."""
    value = attributes.get(ATTR_BATCH_ID)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BatchError(f"attribute {ATTR_BATCH_ID} must be an int (a random int64 per batch), "
                         f"got {type(value).__name__}")
    return value


class RecentBatches:
    """The ids of the last ``max_ids`` batches queued; thread-safe, O(1) per id.

    The ingest path calls :meth:`split` and, once the queue took the fresh batches,
    :meth:`remember` — in one thread (the event loop), so no retry slips in between.
    """

    def __init__(self, max_ids: int = MAX_IDS):
        if max_ids <= 0:
            raise ValueError("max_ids must be positive")
        self.max_ids = max_ids
        self._order: collections.deque[int] = collections.deque()
        self._ids: set[int] = set()
        self._lock = threading.Lock()

    def split(self, items: Sequence[T]) -> tuple[list[T], int]:
        """``(fresh, duplicates)``: the items whose ``batch_id`` is None or not remembered, in order
        (a second item of one id in ``items`` is a duplicate too), and how many were left out."""
        fresh: list[T] = []
        seen: set[int] = set()
        with self._lock:
            for item in items:
                key = item.batch_id
                if key is not None:
                    if key in self._ids or key in seen:
                        continue
                    seen.add(key)
                fresh.append(item)
        return fresh, len(items) - len(fresh)

    def remember(self, items: Iterable) -> None:
        """Remember the ids of ``items`` (queued now), forgetting the oldest beyond ``max_ids``."""
        with self._lock:
            for item in items:
                key = item.batch_id
                if key is None or key in self._ids:
                    continue
                self._ids.add(key)
                self._order.append(key)
                if len(self._order) > self.max_ids:
                    self._ids.discard(self._order.popleft())

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)

    def __contains__(self, key: int) -> bool:
        with self._lock:
            return key in self._ids
