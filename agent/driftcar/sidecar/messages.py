"""What the sidecar says about verdicts: like compared with like, and never a flood.

A p-value test decides by ``p < cut-off``; a distance decides by ``score >= threshold``.
Printing "ks 0.25 vs threshold 0.05" puts a statistic next to a p-value cut-off, so every
message goes through :func:`describe`, which names the quantity that decided. The
kind is read from the result itself (a p-value present means the test decided by it),
so a test that decides by p-value on small windows and by distance on large ones is
described correctly on both sides.

:class:`LineBudget` caps the per-window summary lines a sidecar with many models writes.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # the stats engine's result types: the contract these texts read
    from driftcar.stats.drift import DriftReport, DriftResult

__all__ = ["safe", "PVALUE", "SCORE", "decision_kind", "decision_pvalue", "describe", "window_summary", "LineBudget"]

PVALUE = "pvalue"
SCORE = "score"
#: longest name (model, feature) written into a message; longer ones are cut with "…"
MAX_NAME_CHARS = 64


def safe(name: object) -> str:
    r"""A data-derived name fit for a log line: printable only (no forged lines), at most
    :data:`MAX_NAME_CHARS` characters.

    >>> safe("income"), safe("a\nb"), safe("x" * 70)[-3:]
    ('income', 'a\\nb', 'xx…')
    """
    text = str(name)
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= MAX_NAME_CHARS else text[:MAX_NAME_CHARS - 1] + "…"


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def decision_pvalue(result: DriftResult) -> float | None:
    """The p-value the threshold is compared with: adjusted across features when the engine corrected
    it (so ``p < threshold`` reads as the decision), else the raw one; None when the result decided by
    its score (so an exported p-value always means "the threshold is a p-value cut-off")."""
    if not result.by_pvalue:
        return None
    p = result.pvalue if result.pvalue_adjusted is None else result.pvalue_adjusted
    if p is None:
        return None
    number = _finite(p)
    return 1.0 if number is None else number


def decision_kind(result: DriftResult) -> str:
    """``pvalue`` when the result decided by its p-value, else ``score``.

    >>> from driftcar.stats import DriftResult as R
    >>> decision_kind(R("x", "ks", 0.2, 0.01, 0.05, True, 100, 100, True, True))
    'pvalue'
    >>> decision_kind(R("x", "wasserstein", 0.2, None, 0.1, True, 100, 100, True, True))
    'score'
    """
    return PVALUE if result.by_pvalue else SCORE


def describe(result: DriftResult) -> str:
    """The decision as a comparison of like with like: the engine's own wording, with the statistic
    next to a p-value (a score is its own statistic).

    >>> from driftcar.stats import DriftResult as R
    >>> describe(R("x", "ks", 0.2488, 1e-5, 0.05, True, 100, 100, True, True, pvalue_adjusted=2e-5))
    'ks adjusted p = 2e-05 < 0.05 (statistic 0.2488)'
    >>> describe(R("x", "wasserstein", 0.031, None, 0.1, False, 100, 100, True, True))
    'wasserstein score 0.031 < threshold 0.1'
    """
    score = _finite(result.statistic)
    stat = f" (statistic {score:.4g})" if score is not None and decision_kind(result) == PVALUE else ""
    return f"{result.method} {result.describe()}{stat}"


def _clock(ns: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ns / 1e9))


def window_summary(model: str, version: str, start_ns: int, end_ns: int, rows: int, report: DriftReport | None,
                   verdicts: dict[str, bool], coverage: float | None, max_named: int = 5) -> str:
    """One line per model and window: rows, coverage, tests run, what drifts (and by how much)."""
    deciding = [r for r in (report.results if report is not None else []) if r.deciding]
    tested = [r for r in deciding if r.ok]
    drifting = [r for r in deciding if verdicts.get(r.feature)]
    parts = [f"window {_clock(start_ns)}-{_clock(end_ns)} UTC {safe(model)}@{safe(version)}: {rows} rows",
             f"{len(tested)}/{len(deciding)} features tested"]
    if coverage is not None:
        parts.append(f"coverage {coverage:.0%}")
    if drifting:
        named = "; ".join(f"{safe(r.feature)} ({describe(r)})" for r in drifting[:max_named])
        more = f"; and {len(drifting) - max_named} more" if len(drifting) > max_named else ""
        parts.append(f"drifting: {named}{more}")
    else:
        parts.append("no drift")
    return ", ".join(parts)


class LineBudget:
    """At most ``per_minute`` lines in any rolling minute; the lines held back are counted and
    reported with the next line let through. Thread-safe."""

    def __init__(self, per_minute: int = 20, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self._sent: list[float] = []
        self.suppressed = 0
        self._lock = threading.Lock()

    def take(self) -> int | None:
        """None when the budget is spent (the line is counted as suppressed), else the number of lines
        suppressed since the last one let through (to mention them)."""
        with self._lock:
            now = self.clock()
            self._sent = [t for t in self._sent if now - t < 60.0]
            if len(self._sent) >= self.per_minute:
                self.suppressed += 1
                return None
            self._sent.append(now)
            held, self.suppressed = self.suppressed, 0
            return held
