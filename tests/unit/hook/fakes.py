"""An in-memory shipper for unit tests: records every offered item."""

from __future__ import annotations

import threading

from driftcar.hook.columns import BatchPart, to_columns
from driftcar.hook.records import Captured, thaw


class FakeShipper:
    """Implements the shipper interface (offer/offer_raw/flush/shutdown/stats) in memory."""

    def __init__(self) -> None:
        self.items: list[Captured] = []
        self.flushes = 0
        self.raw = 0  # items offered in the compact form
        self.closed = False
        self._lock = threading.Lock()

    def offer(self, captured: Captured) -> None:
        with self._lock:
            self.items.append(captured)

    def offer_raw(self, raw: tuple, rows: int, nbytes: int) -> None:
        """The compact hot-path form (as the real Shipper takes it); kept as its Captured."""
        with self._lock:
            self.raw += 1
            self.items.append(thaw(raw))

    def flush(self, timeout: float = 0.0) -> bool:
        self.flushes += 1
        return True

    def shutdown(self, timeout: float = 0.0) -> bool:
        self.closed = True
        return True

    @property
    def stats(self) -> dict:
        return {"queued_rows": sum(i.rows for i in self.items)}

    def parts(self, kind: str | None = None) -> list[BatchPart]:
        parts = to_columns(list(self.items))
        return [p for p in parts if kind is None or p.kind == kind]

    def part(self, kind: str = "inference") -> BatchPart:
        parts = self.parts(kind)
        assert len(parts) == 1, [(p.kind, [c.name for c in p.columns]) for p in parts]
        return parts[0]


class OfferOnlyShipper(FakeShipper):
    """A shipper without the compact entry (``offer_raw``): the capture side must use ``offer``."""

    offer_raw = None
