"""Tumbling windows over time and sliding views as merges of the last k.

:class:`WindowSeries` routes batches to the tumbling window that contains
``now`` (windows are aligned to multiples of ``length_s`` since the epoch, so
replicas agree on boundaries) and keeps the last ``keep`` closed windows.
A sliding view is the merge of the last k closed windows (bin counts add).
Memory is bounded: at most ``keep + 1`` sketches of fixed size (see
:mod:`driftcar.stats.sketch`), whatever the traffic. Data stamped before the
open window (late) goes into the open window and is counted in ``late``.

Thread safety: not thread-safe; one series per (model, version).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping

from driftcar.stats.profile import Profile
from driftcar.stats.sketch import WindowSketch

__all__ = ["WindowSeries", "ClosedWindow"]


@dataclass(frozen=True)
class ClosedWindow:
    start: float
    end: float
    sketch: WindowSketch


class WindowSeries:
    """Tumbling windows of ``length_s`` seconds over one profile.

    >>> import numpy as np
    >>> from driftcar.stats import profile
    >>> prof = profile({"x": np.linspace(0.0, 10.0, 1_000)})
    >>> s = WindowSeries(prof, length_s=60, keep=3)
    >>> s.add({"x": [1.0, 2.0]}, now=10.0)
    []
    >>> closed = s.add({"x": [3.0]}, now=70.0)          # crosses into the next window
    >>> [(c.start, c.end, c.sketch.rows) for c in closed], s.current.rows
    ([(0.0, 60.0, 2)], 1)
    >>> s.roll(now=200.0)[-1].sketch.rows, s.sliding(2).rows
    (0, 1)
    """

    def __init__(self, profile: Profile, length_s: float = 60.0, keep: int = 10):
        if not (length_s > 0 and math.isfinite(length_s)):
            raise ValueError(f"length_s must be a finite number > 0, got {length_s!r}")
        if not (isinstance(keep, int) and keep >= 1):
            raise ValueError(f"keep must be an int >= 1, got {keep!r}")
        self.profile = profile
        self.length_s = float(length_s)
        self.keep = keep
        self.closed: deque[ClosedWindow] = deque(maxlen=keep)
        self.current = profile.new_window()
        self.start: float | None = None
        self.late = 0

    def _start_of(self, now: float) -> float:
        return math.floor(now / self.length_s) * self.length_s

    def roll(self, now: float) -> list[ClosedWindow]:
        """Close every window that ended at or before ``now``; returns them oldest first.
        Empty windows in a gap are closed too (at most ``keep`` are returned)."""
        start = self._start_of(now)
        if self.start is None:
            self.start = start
            return []
        out: list[ClosedWindow] = []
        if start <= self.start:
            return out
        out.append(ClosedWindow(self.start, self.start + self.length_s, self.current))
        gap = int(round((start - self.start) / self.length_s)) - 1
        for k in range(max(0, gap - self.keep), gap):
            s = self.start + (k + 1) * self.length_s
            out.append(ClosedWindow(s, s + self.length_s, self.profile.new_window()))
        out = out[-self.keep:]
        self.closed.extend(out)
        self.current = self.profile.new_window()
        self.start = start
        return out

    def add(self, columns: Mapping[str, Any], now: float, roles: Mapping[str, str] | None = None) -> list[ClosedWindow]:
        """Add a batch stamped ``now``; returns windows this closed (see :meth:`roll`)."""
        closed = self.roll(now)
        if self.start is not None and now < self.start:
            self.late += 1
        self.current.update(columns, roles=roles)
        return closed

    def sliding(self, k: int) -> WindowSketch:
        """Merge of the last ``k`` closed windows (fewer if fewer exist)."""
        if not (isinstance(k, int) and k >= 1):
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        out = self.profile.new_window()
        for c in list(self.closed)[-k:]:
            out = out.merge(c.sketch)
        return out
