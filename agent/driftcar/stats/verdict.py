"""Hysteresis over windows, so a drift verdict does not flap.

A feature enters the drifted state after ``enter_windows`` consecutive
windows whose deciding result is detected, and leaves it after
``exit_windows`` consecutive windows that are clearly under the threshold:
distance < threshold * ``exit_factor``, or adjusted p-value >=
threshold / ``exit_factor`` — by the rule the window was decided by
(:attr:`DriftResult.decided_by`, which for one method can differ between
small and large windows). Windows in between (over the exit level but not
detected) and windows below the minimum sample size (``ok=False``) hold the
current state and reset neither streak.

Thread safety: not thread-safe; one tracker per (model, version), updated
by the evaluation tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from driftcar.stats.drift import DriftConfig, DriftReport, DriftResult

__all__ = ["VerdictTracker", "VerdictChange"]


@dataclass(frozen=True)
class VerdictChange:
    """A feature changed state: ``detected`` is the new state, ``result`` the window that decided it."""

    feature: str
    detected: bool
    result: DriftResult


@dataclass
class _State:
    detected: bool = False
    over: int = 0  # consecutive detected windows
    under: int = 0  # consecutive clearly-clean windows


class VerdictTracker:
    """Per-feature drift state across windows; see the module docstring.

    >>> from driftcar.stats.drift import DriftConfig, DriftReport, DriftResult
    >>> t = VerdictTracker(DriftConfig(enter_windows=1, exit_windows=2))
    >>> def window(score):
    ...     r = DriftResult("x", "wasserstein", score, None, 0.1, score >= 0.1, 1000, 1000, True, True,
    ...                     decided_by="distance")
    ...     return [(c.feature, c.detected) for c in t.update(DriftReport([r]))]
    >>> [window(s) for s in (0.2, 0.05, 0.2, 0.05, 0.05, 0.05)]
    [[('x', True)], [], [], [], [('x', False)], []]
    """

    def __init__(self, config: DriftConfig | None = None):
        self.config = config or DriftConfig()
        self._states: dict[str, _State] = {}

    def state(self, feature: str) -> bool:
        """True while ``feature`` is in the drifted state."""
        st = self._states.get(feature)
        return bool(st and st.detected)

    @property
    def drifted(self) -> list[str]:
        return [f for f, st in self._states.items() if st.detected]

    def _clean(self, r: DriftResult) -> bool:
        factor = self.config.exit_factor
        if r.by_pvalue:  # the rule that decided this window, not the method's usual one
            p = r.pvalue_adjusted if r.pvalue_adjusted is not None else r.pvalue
            return p is not None and p >= min(1.0, r.threshold / factor)
        return r.statistic < r.threshold * factor

    def update(self, report: DriftReport) -> list[VerdictChange]:
        """Feed one window's report; returns the state changes it caused (often none)."""
        changes = []
        for feature, r in report.deciding().items():
            st = self._states.setdefault(feature, _State())
            if not r.ok:
                continue
            if r.detected:
                st.over += 1
                st.under = 0
            elif self._clean(r):
                st.under += 1
                st.over = 0
            else:
                st.over = 0  # neither: hold state, restart the entry streak
            if not st.detected and st.over >= self.config.enter_windows:
                st.detected = True
                st.under = 0
                changes.append(VerdictChange(feature, True, r))
            elif st.detected and st.under >= self.config.exit_windows:
                st.detected = False
                st.over = 0
                changes.append(VerdictChange(feature, False, r))
        return changes

    def restore(self, drifted: Iterable[str]) -> None:
        """Start these features in the drifted state (verdicts restored after a restart), so a
        feature that was already drifted does not alert again; it leaves as usual."""
        for feature in drifted:
            self._states[feature] = _State(detected=True)
