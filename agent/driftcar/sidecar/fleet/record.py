"""A pod's closed window -> a ``driftcar.window`` record (``proto/WINDOW.md``).

Replicas close their windows on the same epoch-aligned boundaries but at slightly
different instants (each tick fires a little after the boundary, a shutdown closes
early), so the record carries the aligned bounds: the gateway keys on them.

The reference profile (about twice a sketch's bytes) is attached to a replica's
record every :data:`REFERENCE_EVERY` windows, staggered by replica, so a gateway
that just took over a model (another instance died) learns it within the largest
gap between the replicas' offsets (proto/WINDOW.md states the bound) without
every record paying for it.
"""

from __future__ import annotations

import math
import zlib

from driftcar.wire.window import WindowRecord

__all__ = ["aligned_bounds", "window_record", "ReferenceCadence", "REFERENCE_EVERY"]

REFERENCE_EVERY = 10


def aligned_bounds(end_ns: int, window_s: float) -> tuple[int, int]:
    """(start, end) of the aligned window a close at ``end_ns`` belongs to.

    A tick fires shortly after its boundary (up to a quarter window, at most 10 s,
    counts as that boundary); an earlier close (shutdown) belongs to the window
    still running.

    >>> aligned_bounds(120_050_000_000, 60.0)
    (60000000000, 120000000000)
    >>> aligned_bounds(150_000_000_000, 60.0)
    (120000000000, 180000000000)
    """
    w = int(round(window_s * 1e9))
    slack = min(w // 4, 10_000_000_000)
    end = math.ceil((end_ns - slack) / w) * w
    return end - w, end


class ReferenceCadence:
    """Decides when a replica attaches its reference profile (see the module docstring)."""

    def __init__(self, replica: str, every: int = REFERENCE_EVERY):
        self.every = max(1, int(every))
        self.offset = zlib.crc32(replica.encode()) % self.every
        self._sent: set[str] = set()

    def due(self, fingerprint: str, start_ns: int, window_s: float) -> bool:
        first = fingerprint not in self._sent
        if first and len(self._sent) < 1024:
            self._sent.add(fingerprint)
        index = int(start_ns // int(round(window_s * 1e9)))
        return first or index % self.every == self.offset


def window_record(close, replica: str, window_s: float, cadence: ReferenceCadence | None = None) -> WindowRecord | None:
    """The record of one :class:`~driftcar.sidecar.state.WindowClose`, or None when it holds nothing."""
    golden = close.golden
    calls, durations = golden.wire() if golden is not None else ([], [])
    if not (close.rows or close.y_true or calls or close.proba_n):
        return None
    start, end = aligned_bounds(close.end_ns, window_s)
    rec = WindowRecord(model=close.model, version=close.version, replica=replica, start_ns=start, end_ns=end,
                       rows=int(close.rows), y_true=list(close.y_true), y_pred=list(close.y_pred),
                       proba_sum=float(close.proba_sum), proba_n=int(close.proba_n), calls=calls,
                       durations=durations, trace_ids=list(close.trace_ids))
    if close.profile is not None and close.sketch is not None:
        rec.profile = close.profile.fingerprint
        rec.sketch = close.sketch.to_bytes()
        if cadence is None or cadence.due(rec.profile, start, window_s):
            rec.reference = close.profile.to_bytes()
    return rec
