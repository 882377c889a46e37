"""One fleet window: the replicas' windows of a model added up (pure; no server, no clock).

Sketches merge by addition (:meth:`driftcar.stats.WindowSketch.merge`), so the
merged window is the window of the pooled rows: its drift scores equal those of
one sidecar that saw every row (up to float summation order). Joined labels are
concatenated, probability sums and golden signals added.

Idempotent per replica: a second record from a replica already merged (an OTLP
retry after a lost answer) is refused as a duplicate, never counted twice.
Records whose sketch cannot be read yet (the gateway has not seen their
reference) are held, bounded by bytes, and merged when it arrives.
"""

from __future__ import annotations

from typing import Any

from driftcar.sidecar.fleet.golden import GoldenWindow
from driftcar.wire.window import WindowRecord

__all__ = ["FleetWindow", "MAX_TRACE_IDS"]

MAX_TRACE_IDS = 10
MAX_LABELS = 1_000_000  # joined label pairs kept per fleet window (the rest are counted in labels_dropped)


class FleetWindow:
    """The open fleet window of one (model, version, start). One writer at a time."""

    def __init__(self, model: str, version: str, start_ns: int, end_ns: int, max_labels: int = MAX_LABELS):
        self.model, self.version = model, version
        self.start_ns, self.end_ns = start_ns, end_ns
        self.profile: Any = None
        self.sketch: Any = None
        self.replicas: dict[str, int] = {}  # replica -> rows it reported
        self.held: list[WindowRecord] = []  # sketches waiting for their reference
        self.held_bytes = 0
        self.mismatched: list[str] = []  # replicas binned against another reference (not merged)
        self.rows = 0
        self.y_true: list = []
        self.y_pred: list = []
        self.proba_sum = 0.0
        self.proba_n = 0
        self.golden = GoldenWindow()
        self.trace_ids: list[str] = []
        self.closed_by = ""  # all_reported | bound | shutdown, set by the gateway
        self.max_labels = max_labels
        self.labels_dropped = 0

    def add(self, rec: WindowRecord, profile: Any) -> str:
        """Merge ``rec``; ``profile`` is its reference (None: not known yet, the sketch is held).

        Returns ``merged``, ``held`` or ``duplicate``. Raises ProfileError (nothing
        changed) when the sketch bytes do not fit the profile.
        """
        if rec.replica in self.replicas:
            return "duplicate"
        outcome = "merged"
        if rec.sketch is not None:
            if profile is None:
                self.held.append(rec)
                self.held_bytes += len(rec.sketch)
                outcome = "held"
            elif not self._merge_sketch(rec, profile):
                self.mismatched.append(rec.replica)
        self.replicas[rec.replica] = rec.rows
        self.rows += rec.rows if outcome == "merged" else 0
        room = max(0, self.max_labels - len(self.y_true))
        self.y_true.extend(rec.y_true[:room])
        self.y_pred.extend(rec.y_pred[:room])
        self.labels_dropped += max(0, len(rec.y_true) - room)
        self.proba_sum += rec.proba_sum
        self.proba_n += rec.proba_n
        self.golden.merge(rec.calls, rec.durations)
        room = MAX_TRACE_IDS - len(self.trace_ids)
        if room > 0:
            self.trace_ids.extend(rec.trace_ids[:room])
        return outcome

    def _merge_sketch(self, rec: WindowRecord, profile: Any) -> bool:
        from driftcar.stats import WindowSketch

        if self.profile is not None and profile.fingerprint != self.profile.fingerprint:
            return False  # the window is judged against the first reference that reached it
        sketch = WindowSketch.from_bytes(rec.sketch, profile)
        self.profile = profile
        self.sketch = sketch if self.sketch is None else self.sketch.merge(sketch)
        return True

    def release(self, fingerprint: str, profile: Any) -> int:
        """Merge the held sketches of ``fingerprint`` now that its profile is known; how many merged."""
        keep, merged = [], 0
        for rec in self.held:
            if rec.profile != fingerprint:
                keep.append(rec)
                continue
            self.held_bytes -= len(rec.sketch)
            try:
                ok = self._merge_sketch(rec, profile)
            except ValueError:  # ProfileError: the bytes do not fit the profile they name
                ok = False
            if ok:
                self.rows += rec.rows
                merged += 1
            else:
                self.mismatched.append(rec.replica)
        self.held = keep
        return merged
