"""Change detection on a stream of scores (Page–Hinkley), for slow degradations.

Page–Hinkley (Page 1954; Hinkley 1971) accumulates deviations of each value
from the running mean minus a tolerance ``delta`` and flags a change when the
cumulative sum rises more than ``threshold`` above its minimum. ``mode``
"down" watches for decreases (a quality score getting worse), "up" for
increases (an error or drift score growing), "both" for either.

Thread safety: not thread-safe; one detector per monitored series.
"""

from __future__ import annotations

import math

__all__ = ["PageHinkley"]


class PageHinkley:
    """Page–Hinkley test. ``update(x)`` returns True when a change is detected
    (also readable as ``drift_detected``); the detector then resets.

    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> ph = PageHinkley(delta=0.005, threshold=0.5, mode="down", min_samples=20)
    >>> scores = np.concatenate([rng.normal(0.9, 0.02, 200), rng.normal(0.8, 0.02, 100)])
    >>> hits = [i for i, s in enumerate(scores) if ph.update(s)]
    >>> len(hits) >= 1 and 200 <= hits[0] < 220
    True
    """

    def __init__(self, delta: float = 0.005, threshold: float = 50.0, *, mode: str = "both",
                 min_samples: int = 30, alpha: float = 1.0):
        if not delta >= 0:
            raise ValueError(f"delta must be >= 0, got {delta!r}")
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold!r}")
        if mode not in ("up", "down", "both"):
            raise ValueError(f"mode must be 'up', 'down' or 'both', got {mode!r}")
        if not (isinstance(min_samples, int) and min_samples >= 1):
            raise ValueError(f"min_samples must be an int >= 1, got {min_samples!r}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha (forgetting factor) must be in (0, 1], got {alpha!r}")
        self.delta = delta
        self.threshold = threshold
        self.mode = mode
        self.min_samples = min_samples
        self.alpha = alpha
        self.drift_detected = False
        self.detections = 0
        self._reset()

    def _reset(self) -> None:
        self.n = 0
        self.mean = 0.0
        self._up = 0.0
        self._up_min = 0.0
        self._down = 0.0
        self._down_max = 0.0

    @property
    def statistic(self) -> float:
        """The current test statistic (largest excursion watched by ``mode``)."""
        up = self._up - self._up_min
        down = self._down_max - self._down
        return {"up": up, "down": down, "both": max(up, down)}[self.mode]

    def update(self, x: float) -> bool:
        """Add one value; non-finite values are ignored (return False)."""
        x = float(x)
        if not math.isfinite(x):
            self.drift_detected = False
            return False
        self.n += 1
        self.mean += (x - self.mean) / self.n
        self._up = self.alpha * self._up + (x - self.mean - self.delta)
        self._up_min = min(self._up_min, self._up)
        self._down = self.alpha * self._down + (x - self.mean + self.delta)
        self._down_max = max(self._down_max, self._down)
        self.drift_detected = self.n >= self.min_samples and self.statistic > self.threshold
        if self.drift_detected:
            self.detections += 1
            self._reset()
        return self.drift_detected
