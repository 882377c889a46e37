"""Tumbling windows over time, sliding views as merges of the last k, and closed windows kept
compact.

:class:`WindowSeries` holds one open window and the last ``keep`` closed ones over one profile.
Windows close either by time (:meth:`WindowSeries.add` / :meth:`WindowSeries.roll` route batches
to the tumbling window that contains ``now``; windows are aligned to multiples of ``length_s``
since the epoch, so replicas agree on boundaries) or when the caller says so
(:meth:`WindowSeries.update` + :meth:`WindowSeries.close`: a service's tick). A sliding view is
the merge of the last k closed windows (bin counts add); ``cumulative`` is the merge of every
window closed with rows since the series began. Memory is bounded: at most ``keep + 2`` sketches
of fixed size (see :mod:`driftcar.stats.sketch`), whatever the traffic, and closed windows and the
cumulative sketch are packed between closes (:meth:`WindowSeries.compact`). Data stamped before
the open window (late) goes into the open window and is counted in ``late``.

Thread safety: not thread-safe; one series per (model, version).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Iterable, Mapping

import numpy as np

from driftcar.stats.profile import Profile
from driftcar.stats.sketch import WindowSketch

__all__ = ["WindowSeries", "ClosedWindow", "next_boundary"]


def next_boundary(now_s: float, window_s: float) -> float:
    """Next multiple of ``window_s`` strictly after ``now_s`` (epoch-aligned tumbling windows).

    >>> next_boundary(125.0, 60.0), next_boundary(120.0, 60.0)
    (180.0, 180.0)
    """
    return (math.floor(now_s / window_s) + 1) * window_s


#: bits per fine bin's mean in a kept closed window (:func:`_pack_window`)
MEAN_BITS = 3


def _pack_window(sketch: WindowSketch) -> bytes:
    """A closed window's compact bytes: :meth:`WindowSketch.pack` with each fine bin's mean in
    :data:`MEAN_BITS` bits, its place among 7 cells of the bin (within width / 14), values all on the
    lower edge kept exact. Why not exact: a window's verdict is computed from the live sketch
    before it is packed; the kept form only serves later views (sliding windows, the live page,
    restored checkpoints), where counts, KS, chi-square/PSI, the atom test and the bin tests stay
    exact and Wasserstein moves by at most 1/7 of the current side of the error bound it already
    reports (half of each bin's width); and the means are what a closed window's bytes are:
    at 200 rows a feature, 8-bit means took ~245 B a window, 3-bit ~155 B, exact sums ~980 B
    (tests/reliability/feature_memory.py; the measured errors: tests/unit/stats/test_packed_means.py)."""
    return sketch.pack(exact=False, bits=MEAN_BITS)


def _pack_cumulative(sketch: WindowSketch) -> bytes:
    """The cumulative sketch's compact bytes: counts and out-of-range sums exact, each feature's sum
    exact (to rounding), fine bins read at their centres shifted to meet it (no means kept:
    ``pack(exact=False, bits=0, totals=True)``). Why: it serves the exported histograms, which read
    counts per coarse bin, the count and the sum; exact fine sums cost ~2.5 KB a feature against ~0.4."""
    return sketch.pack(exact=False, bits=0, totals=True)


def _unpack_window(blob: bytes, profile: Profile) -> WindowSketch:
    """Inverse of :func:`_pack_window`; also reads the earlier packed forms."""
    return WindowSketch.unpack(blob, profile)


class ClosedWindow:
    """A closed window: its bounds (ns since the epoch), rows and sketch, kept compact.

    :meth:`compact` replaces the live sketch with its packed bytes (:func:`_pack_window`), and
    :attr:`sketch` decodes on demand. :meth:`blob` is what checkpoints store, so a window is
    serialised once in its life.
    """

    __slots__ = ("start_ns", "end_ns", "rows", "profile", "_sketch", "_blob")

    def __init__(self, start_ns: int, end_ns: int, rows: int, sketch: Any = None, *, profile: Any = None,
                 blob: bytes | None = None):
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.rows = rows
        self.profile = profile if profile is not None else sketch.profile
        self._sketch = sketch
        self._blob = blob

    @property
    def start(self) -> float:
        """Start in seconds since the epoch."""
        return self.start_ns / 1e9

    @property
    def end(self) -> float:
        """End in seconds since the epoch."""
        return self.end_ns / 1e9

    def blob(self) -> bytes:
        blob = self._blob
        if blob is None:
            blob = _pack_window(self._sketch)
        return blob

    def compact(self) -> None:
        if self._blob is None:
            self._blob = _pack_window(self._sketch)
        self._sketch = None

    @property
    def sketch(self) -> WindowSketch:
        sketch = self._sketch
        if sketch is not None:
            return sketch
        return _unpack_window(self._blob, self.profile)


def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


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
        self.rows = 0  # rows in the open window (a batch of predictions only counts too)
        self.start: float | None = None
        self.late = 0
        # the merge of every closed window with rows: live from a close until compact(), then its
        # packed bytes; one attribute, so a reader on another thread sees one or the other, never neither
        self._cumulative: WindowSketch | bytes | None = None

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
        self.current.bin_pending()  # by the writer (see close())
        out.append(ClosedWindow(_ns(self.start), _ns(self.start + self.length_s), self.rows, self.current))
        if self.rows:
            self._accumulate(self.current)
        gap = int(round((start - self.start) / self.length_s)) - 1
        for k in range(max(0, gap - self.keep), gap):
            s = self.start + (k + 1) * self.length_s
            out.append(ClosedWindow(_ns(s), _ns(s + self.length_s), 0, self.profile.new_window()))
        out = out[-self.keep:]
        self.closed.extend(out)
        self.current = self.profile.new_window()
        self.rows = 0
        self.start = start
        return out

    def add(self, columns: Mapping[str, Any], now: float, roles: Mapping[str, str] | None = None) -> list[ClosedWindow]:
        """Add a batch stamped ``now``; returns windows this closed (see :meth:`roll`)."""
        closed = self.roll(now)
        if self.start is not None and now < self.start:
            self.late += 1
        self.update(columns, roles)
        return closed

    def update(self, columns: Mapping[str, Any], roles: Mapping[str, str] | None = None,
               rows: int | None = None) -> None:
        """Add a batch to the open window, whatever the time (the caller closes it: :meth:`close`);
        ``rows`` defaults to the length of the first column."""
        self.current.update(columns, roles=roles)
        self.rows += len(next(iter(columns.values()))) if rows is None and columns else (rows or 0)

    def close(self, start_ns: int, end_ns: int) -> WindowSketch:
        """Close the open window as ``[start_ns, end_ns)`` and open a fresh one; returns the closed
        sketch. Kept (and added to ``cumulative``) only when it had rows. The sketch's buffered values
        are binned here, by the writer's thread (:mod:`driftcar.stats.sketch`: the first read of a new
        sketch bins them), so readers on other threads (evaluation, checkpoints) only ever read it."""
        sketch, rows = self.current, self.rows
        sketch.bin_pending()
        self.current, self.rows = self.profile.new_window(), 0
        if rows:
            self.keep_closed(ClosedWindow(start_ns, end_ns, rows, sketch, profile=self.profile))
        return sketch

    def keep_closed(self, window: ClosedWindow) -> None:
        """Keep a window closed elsewhere (replicas merged by a fleet gateway) as the newest."""
        self.closed.append(window)
        self._accumulate(window.sketch)

    @property
    def cumulative(self) -> WindowSketch | None:
        """The merge of every window closed with rows since the series began (None: none yet);
        decoded on each read once :meth:`compact` packed it."""
        held = self._cumulative
        return _unpack_window(held, self.profile) if isinstance(held, bytes) else held

    @cumulative.setter
    def cumulative(self, sketch: WindowSketch | None) -> None:
        self._cumulative = sketch

    def _accumulate(self, sketch: WindowSketch) -> None:
        base = self.cumulative
        self.cumulative = sketch if base is None else base.merge(sketch)

    def compact(self) -> None:
        """Pack the closed windows still held live and the cumulative sketch (after evaluation).

        The cumulative sketch keeps exact counts and each feature's exact sum, no fine means
        (:func:`_pack_cumulative`): it is merged again at every close, so rounded means would drift,
        and its one reader, the exported histograms, needs counts and the sum. ~0.1 ms of CPU per
        feature per close to pack it and ~0.02 ms to read it back at the next (zlib dominates;
        measured with 2,000 features of 3,000 rows, exact form)."""
        for window in list(self.closed):
            window.compact()
        held = self._cumulative
        if isinstance(held, WindowSketch):
            self._cumulative = _pack_cumulative(held)

    def cumulative_blob(self) -> bytes:
        """The cumulative sketch's bytes (packed; read back by :meth:`restore`)."""
        held = self._cumulative
        return held if isinstance(held, bytes) else _pack_cumulative(held)

    def restore(self, windows: Iterable[ClosedWindow], cumulative: bytes | None) -> None:
        """Closed windows (oldest first) and the cumulative sketch's bytes read back from a checkpoint
        (any packed form, or zlib of :meth:`WindowSketch.to_bytes` as written before)."""
        self.closed.extend(windows)
        # refused here (ProfileError) when bad; earlier forms are larger: packed again
        self._cumulative = None if cumulative is None else _pack_cumulative(
            _unpack_window(cumulative, self.profile))

    def sliding(self, k: int) -> WindowSketch:
        """Merge of the last ``k`` closed windows (fewer if fewer exist)."""
        if not (isinstance(k, int) and k >= 1):
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        out = self.profile.new_window()
        for c in list(self.closed)[-k:]:
            out = out.merge(c.sketch)
        return out
