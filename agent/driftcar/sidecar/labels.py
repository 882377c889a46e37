"""The label join of one (model, version): predictions wait (by id) for their labels, the pairs
met during a window are scored at its close, and the best class probability of each prediction is
averaged into the estimated accuracy.

Bounds: ``label_max_rows`` predictions wait at most ``label_ttl`` (then they count as
``expired``); labels for unknown ids count as ``unknown_id``. Each reason is exported once, as a
delta, through ``driftcar.labels.unmatched``. Mutated under the store's lock only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["LabelJoin", "REASONS"]

REASONS = ("expired", "unknown_id", "evicted")
#: reason -> the LabelJoiner counter behind it
_COUNTERS = {"expired": "expired", "unknown_id": "unmatched_labels", "evicted": "evicted"}


class LabelJoin:
    """The label part of a model's state; see the module docstring."""

    def __init__(self, model: str, version: str, ttl_s: float, max_rows: int, telemetry):
        from driftcar.stats import LabelJoiner

        self.model = model
        self.version = version
        self.tel = telemetry
        self.joiner = LabelJoiner(ttl_s=ttl_s, max_rows=max_rows)
        self._seen = {r: 0 for r in REASONS}  # counts already exported, per reason
        self.y_true: list = []
        self.y_pred: list = []
        self.proba_sum = 0.0
        self.proba_n = 0

    def add_labels(self, ids, labels, now_s: float) -> None:
        y_true, y_pred = self.joiner.add_labels(ids, labels, now_s)
        if len(y_true):
            self.y_true.extend(np.asarray(y_true).tolist())
            self.y_pred.extend(np.asarray(y_pred).tolist())
        self._report_unmatched()

    def add_predictions(self, ids, predictions, now_s: float) -> None:
        self.joiner.add_predictions(ids, predictions, now_s)
        self._report_unmatched()

    def add_probabilities(self, probabilities: np.ndarray) -> None:
        """One row of class probabilities per prediction: its best one counts (estimated accuracy)."""
        if not probabilities.size:
            return
        best = np.nanmax(probabilities, axis=1)
        best = best[np.isfinite(best)]
        self.proba_sum += float(best.sum())
        self.proba_n += int(best.size)

    def expire(self, now_s: float) -> None:
        self.joiner.expire(now_s)
        self._report_unmatched()

    def take_window(self) -> tuple[list, list, float, int]:
        """The window's joined pairs and probability sum; the next window starts empty."""
        out = (self.y_true, self.y_pred, self.proba_sum, self.proba_n)
        self.y_true, self.y_pred = [], []
        self.proba_sum, self.proba_n = 0.0, 0
        return out

    def _report_unmatched(self) -> None:
        for reason, attr in _COUNTERS.items():
            value = int(getattr(self.joiner, attr))
            delta = value - self._seen[reason]
            if delta > 0:
                self.tel.add_labels_unmatched(self.model, self.version, reason, delta)
                self._seen[reason] = value

    # ------------------------------------------------------------------ checkpoint
    def to_bytes(self) -> bytes | None:
        """The predictions waiting for labels; None when the joiner cannot say (best effort)."""
        try:
            return self.joiner.to_bytes()
        except Exception:
            return None

    def restore(self, blob: Any) -> None:
        """Predictions read back from a checkpoint; their counts before the restart are not re-exported."""
        from driftcar.stats import LabelJoiner

        self.joiner = LabelJoiner.from_bytes(blob)
        for reason, attr in _COUNTERS.items():
            self._seen[reason] = int(getattr(self.joiner, attr))
