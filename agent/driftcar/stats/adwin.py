"""ADWIN (adaptive windowing) on a stream of scores: abrupt and gradual changes of the mean.

ADWIN2 (Bifet & Gavaldà 2007): the window is kept as an exponential histogram (at most
``max_buckets`` buckets per power-of-two size, each holding a total and a variance), and every
``clock`` values each split into an older part W0 and a newer part W1 (both at least
``min_window_length`` long) is tested: a change when |mean(W0) - mean(W1)| > eps, with
eps = sqrt(2 m var d) + 2/3 d m, m = 1/(n0 - L + 1) + 1/(n1 - L + 1), d = ln(2 ln(n) / delta),
var the window's variance per value. The oldest buckets are dropped until no split fires.
Defaults are river's (``river.drift.ADWIN``: delta 0.002, clock 32, max_buckets 5,
min_window_length 5, grace_period 10); its detections on the same streams are compared in
``tests/unit/stats/test_change.py``. Beside :class:`~driftcar.stats.change.PageHinkley`
(which accumulates small persistent deviations), ADWIN adapts its window to the stream.

Thread safety: not thread-safe; one detector per monitored series.
"""

from __future__ import annotations

import math

__all__ = ["ADWIN"]


class ADWIN:
    """``update(x)`` returns True when a change is detected (``drift_detected``); the next
    value starts a new window (as river does).

    >>> import numpy as np
    >>> rng = np.random.default_rng(12345)
    >>> adwin = ADWIN()
    >>> stream = np.concatenate([rng.integers(0, 2, 1_000), rng.integers(4, 8, 1_000)])
    >>> [i for i, x in enumerate(stream) if adwin.update(x)][:1]
    [1023]
    """

    def __init__(self, delta: float = 0.002, clock: int = 32, max_buckets: int = 5, min_window_length: int = 5,
                 grace_period: int = 10):
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        for name, v in (("clock", clock), ("max_buckets", max_buckets), ("min_window_length", min_window_length),
                        ("grace_period", grace_period)):
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self.drift_detected = False
        self.detections = 0
        self._reset()

    def _reset(self) -> None:
        self._levels: list[list[list[float]]] = [[]]  # level i: buckets of 2**i values, oldest first
        self.width = 0
        self.total = 0.0
        self._var = 0.0  # sum of squared deviations over the window
        self._tick = 0

    @property
    def estimation(self) -> float:
        """Mean of the values in the current window."""
        return self.total / self.width if self.width else 0.0

    def update(self, x: float) -> bool:
        """Add one value; non-finite values are ignored (return False)."""
        x = float(x)
        if not math.isfinite(x):
            self.drift_detected = False
            return False
        if self.drift_detected:  # as river: a detection starts a new window
            self._reset()
        if self.width:
            mean = self.total / self.width
            self._var += self.width * (x - mean) ** 2 / (self.width + 1)
        self.width += 1
        self.total += x
        self._levels[0].append([x, 0.0])
        self._compress()
        self.drift_detected = self._detect()
        self.detections += self.drift_detected
        return self.drift_detected

    def _compress(self) -> None:
        """Merge the two oldest buckets of a level holding too many into one of the next level."""
        for i, level in enumerate(self._levels):
            if len(level) <= self.max_buckets:
                break
            (t1, v1), (t2, v2) = level.pop(0), level.pop(0)
            n = 2.0**i
            if i + 1 == len(self._levels):
                self._levels.append([])
            self._levels[i + 1].append([t1 + t2, v1 + v2 + n * n * (t1 / n - t2 / n) ** 2 / (2 * n)])

    def _detect(self) -> bool:
        self._tick += 1
        if self._tick % self.clock or self.width <= self.grace_period:
            return False
        detected = False
        while self._cut_found():
            detected = True
            self._drop_oldest()
        return detected

    def _cut_found(self) -> bool:
        """Any split W0 | W1 at a bucket boundary whose means differ by more than eps."""
        n0, n1, u0, u1 = 0.0, float(self.width), 0.0, self.total
        for i in range(len(self._levels) - 1, -1, -1):
            size = 2.0**i
            for total, _ in self._levels[i]:
                n0 += size
                n1 -= size
                u0 += total
                u1 -= total
                if n1 <= 0:
                    return False
                if n0 >= self.min_window_length and n1 >= self.min_window_length and self._differ(n0, n1, u0, u1):
                    return True
        return False

    def _differ(self, n0: float, n1: float, u0: float, u1: float) -> bool:
        L = self.min_window_length
        m = 1.0 / (n0 - L + 1) + 1.0 / (n1 - L + 1)
        d = math.log(2.0 * math.log(self.width) / self.delta)
        var = self._var / self.width
        return abs(u0 / n0 - u1 / n1) > math.sqrt(2.0 * m * var * d) + 2.0 / 3.0 * d * m

    def _drop_oldest(self) -> None:
        i = len(self._levels) - 1
        total, var = self._levels[i].pop(0)
        if not self._levels[i] and i:
            self._levels.pop()
        n = 2.0**i
        self.width -= int(n)
        self.total -= total
        if self.width:
            mean_rest = self.total / self.width
            self._var -= var + n * self.width * (total / n - mean_rest) ** 2 / (n + self.width)
            self._var = max(self._var, 0.0)
        else:
            self._var = 0.0
