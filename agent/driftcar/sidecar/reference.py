"""Where a model's reference comes from: a file the operator names (``--reference``, loaded by
the store), reference batches the hook sends (inline, sealed into a profile once they stop
coming), or the first live rows when there is neither (``live_reference_rows``).

:class:`ReferenceBuilder` buffers rows and builds profiles; it never adopts one itself: the
model's state does (:meth:`ModelState.set_profile`), because a new reference also restarts the
model's windows and coverage. A configured file wins: reference batches for that model are
counted and ignored. Bounds: ``max_reference_rows`` buffered reference rows,
``live_reference_rows`` live rows. Mutated under the store's lock only.
"""

from __future__ import annotations

import collections
import logging
import warnings
from typing import Any

import numpy as np

__all__ = ["ReferenceBuilder", "RowBuffer"]

log = logging.getLogger("driftcar.sidecar.state")


def _stack(chunks: list) -> np.ndarray | list:
    if all(isinstance(c, np.ndarray) for c in chunks):
        return np.concatenate(chunks) if chunks else np.empty(0)
    out: list = []
    for c in chunks:
        out.extend(c.tolist() if isinstance(c, np.ndarray) else c)
    return out


def _copy(data):
    return data.copy() if isinstance(data, np.ndarray) else list(data)


class RowBuffer:
    """Columnar rows kept to build a profile (reference batches or the first live rows)."""

    def __init__(self, max_rows: int):
        self.max_rows = max_rows
        self.rows = 0
        self.dropped = 0
        self.features: dict[str, list] = collections.defaultdict(list)
        self.labels: list = []
        self.predictions: list = []

    def add(self, features: dict, labels=None, predictions=None, rows: int = 0) -> int:
        take = min(rows, self.max_rows - self.rows)
        self.dropped += rows - take
        if take <= 0:
            return 0
        # copies: a slice of a decoded column would keep the whole request body alive
        for name, data in features.items():
            self.features[name].append(_copy(data[:take]))
        if labels is not None:
            self.labels.append(_copy(labels[:take]))
        if predictions is not None:
            self.predictions.append(_copy(predictions[:take]))
        self.rows += take
        return take

    def build(self, source: str):
        from driftcar.stats import profile

        # a feature seen in only some batches gets NaN / None for the others' rows
        X = {name: _stack(chunks) for name, chunks in self.features.items()
             if sum(len(c) for c in chunks) == self.rows}
        y = _stack(self.labels) if self.labels and sum(len(c) for c in self.labels) == self.rows else None
        pred = (_stack(self.predictions)
                if self.predictions and sum(len(c) for c in self.predictions) == self.rows else None)
        with warnings.catch_warnings(record=True) as caught:  # what profiling inferred goes to the log
            warnings.simplefilter("always")
            prof = profile(X, y, pred)
        for warning in caught:
            log.warning("reference built from %d %s rows: %s", self.rows, source, warning.message)
        try:
            prof.source = source
        except AttributeError:  # frozen profile: the state records the source itself
            pass
        return prof


class ReferenceBuilder:
    """The reference part of a model's state; see the module docstring."""

    def __init__(self, label: str, max_reference_rows: int, live_reference_rows: int):
        self.label = label  # model@version, for the log
        self.max_reference_rows = max_reference_rows
        self.profile: Any = None
        self.generation = 0  # counts the references adopted: verdicts are about one of them
        self.source: str | None = None  # file | batch | live | fleet
        self.file: str | None = None
        self.batches: RowBuffer | None = None  # reference batches not sealed yet
        self._recent = False  # reference batches arrived in the open window
        self.ignored_rows = 0
        self._ignored_logged = False
        self.live: RowBuffer | None = RowBuffer(live_reference_rows) if live_reference_rows > 0 else None
        self.live_started_ns: int | None = None  # first row taken into a live reference
        self.live_rows: dict | None = None  # which live rows became the reference

    def adopt(self, prof: Any, source: str, file: str | None = None) -> None:
        self.profile, self.source, self.file = prof, source, file
        self.generation += 1
        self.live = None

    def add_batch(self, features: dict, labels, predictions, rows: int) -> None:
        """A reference batch from the hook (ignored, and counted, when a reference file is configured)."""
        if self.source == "file":
            self.ignored_rows += rows
            if not self._ignored_logged:
                self._ignored_logged = True
                log.warning("model %s: reference batches ignored, the reference file %s is configured",
                            self.label, self.file)
            return
        self._recent = True
        if self.batches is None:
            self.batches = RowBuffer(self.max_reference_rows)
        self.batches.add(features, labels, predictions, rows)

    def seal(self, at_close: bool = False, final: bool = False) -> Any:
        """A profile from the buffered reference batches, or None. Sealed by the next inference
        batch, or at a close once a whole window passed without more of them (a chunked reference
        may straddle a close), or at the final close."""
        if at_close:
            recent, self._recent = self._recent, False
            if recent and not final:
                return None
        buf = self.batches
        if buf is None or buf.rows == 0:
            return None
        self.batches = None
        try:
            return buf.build("training")
        except Exception as exc:  # bad reference data must not kill the worker
            log.warning("model %s: cannot build a profile from reference batches: %s", self.label, exc)
            return None

    def take_live(self, features: dict, predictions, rows: int, now_s: float) -> tuple[int, Any]:
        """Live rows while there is no reference: how many were taken, and the profile built
        once enough were (else None)."""
        if self.live_started_ns is None:
            self.live_started_ns = int(now_s * 1e9)
        taken = self.live.add(features, None, predictions, rows)
        if self.live.rows < self.live.max_rows:
            return taken, None
        buf, self.live = self.live, None
        try:
            prof = buf.build("live")
        except Exception as exc:
            log.warning("model %s: cannot build a live reference: %s", self.label, exc)
            return taken, None
        self.live_rows = {"rows": buf.rows, "from_unix_nano": self.live_started_ns, "to_unix_nano": int(now_s * 1e9)}
        return taken, prof

    def to_state(self) -> dict[str, Any]:
        """The checkpoint's fields (the profile itself is stored by fingerprint, once)."""
        return {"reference_source": self.source, "reference_file": self.file}

    def summary(self) -> dict | None:
        if self.profile is None:
            return None
        return {"source": self.source, "file": self.file, "rows": int(self.profile.rows),
                "features": sorted(self.profile.features), "live_rows": self.live_rows}
