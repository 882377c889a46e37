"""Cardinality caps on attribute values that come from data (model names, feature names, categories).

The first ``cap`` distinct values in a scope keep their own series; later ones
fold into one overflow value (``__overflow__`` for models and features,
``__other__`` for categories and classes). First come, first kept: the counters
are cumulative, so moving counts from one series to another later would break
monotonicity. Folding is lossless for counts: every row lands in exactly one
series, so totals add up exactly.

Each *distinct* folded value is counted once (``driftcar.cardinality.overflow``,
unit ``{series}``); to keep memory flat, one ``CardinalityCaps`` remembers at most
``memo_limit`` folded values in all its scopes together (a hash each, ~60 bytes);
beyond that, a value it does not remember is counted every time it folds
(over-counting, never under-counting).

Thread-safety: guarded by one lock; calls are O(1).

>>> caps = CardinalityCaps(2)
>>> [caps.fold(("m",), v, "__overflow__")[0] for v in ["a", "b", "c", "a", "d"]]
['a', 'b', '__overflow__', 'a', '__overflow__']
>>> caps.folded_total
2
"""

from __future__ import annotations

import threading

__all__ = ["CardinalityCaps"]


class CardinalityCaps:
    """First-``cap``-distinct-values-win folding per scope."""

    def __init__(self, cap: int, *, exempt: frozenset[str] = frozenset(), memo_limit: int = 100_000):
        """``cap`` distinct values kept per scope; ``memo_limit`` folded values remembered in total."""
        if cap < 1:
            raise ValueError(f"cardinality cap must be >= 1, got {cap}")
        self.cap = cap
        self.exempt = exempt
        self.memo_limit = memo_limit
        self._lock = threading.Lock()
        self._kept: dict[tuple, set[str]] = {}
        self._folded: dict[tuple, set[int]] = {}
        self._memo_size = 0
        self.folded_total = 0

    def fold(self, scope: tuple, value: str, overflow: str) -> tuple[str, bool]:
        """``(value or overflow, newly_folded)``; ``newly_folded`` is True the first time a value folds."""
        if value in self.exempt or value == overflow:
            return value, False
        with self._lock:
            kept = self._kept.get(scope)
            if kept is None:
                kept = self._kept[scope] = set()
            if value in kept:
                return value, False
            if len(kept) < self.cap:
                kept.add(value)
                return value, False
            folded = self._folded.setdefault(scope, set())
            key = hash(value)
            if key in folded:
                return overflow, False
            if self._memo_size < self.memo_limit:
                folded.add(key)
                self._memo_size += 1
            self.folded_total += 1
            return overflow, True

    def kept(self, scope: tuple) -> frozenset[str]:
        with self._lock:
            return frozenset(self._kept.get(scope, ()))
