"""The shipper's CPU budget: what share of the model process's CPU the hook's worker may take.

The worker's cost grows with the rows it converts, encodes and exports. For 1-row calls it is
small beside the model (under 1 % of the process's CPU, measured in ``bench_hookproc``), but a
model predicting 1,000-row batches flat out hands it millions of rows a second: without a bound
the worker took over half the process's CPU, competed with the model for the GIL, and the
buffer still dropped about half the rows, oldest first (a time-biased loss). With a budget the
worker measures its own share and, past the budget, the capture side keeps a uniform sample of
calls: a kept call keeps all its rows; every other call is still sent as a call (method, start,
duration, rows; no data), so the golden signals stay exact and the distributions are an unbiased
sample of the traffic. Below :data:`FLOOR_CORE_SHARE` of one core the worker is never held back:
the bound is the larger of the budget's share of the process and 5 % of one core. With a helper
process (``ship_process``) the same controller runs in the helper, on the helper's CPU against the
model process's and its own (:class:`driftcar.hook.shipping.helper.HelperShipper`), and the model
process's gate mirrors its decision from the ring's header.

:class:`CpuBudget` is both the controller (fed by the worker once per wake-up, never on a
model thread) and the gate the capture side reads (:attr:`CpuBudget.keep`, one attribute load
per call). The keep fraction follows the measured share in proportion (the worker's cost is
about proportional to the rows it ships), at most 64x down and 2x up per period, never below
:data:`MIN_KEEP`: from a flat-out start (every call kept) it settles within a few periods, and
rises again by halves once the load falls.
"""

from __future__ import annotations

import time

__all__ = ["CpuBudget", "KEEP_ALL", "MIN_KEEP", "PERIOD_S", "FLOOR_CORE_SHARE"]

#: the smallest fraction of calls kept with data: a 1-in-1,024 sample still shows a distribution
MIN_KEEP = 1 / 1024
#: how often the share is re-measured (wall seconds): long enough that one slow batch does not decide
PERIOD_S = 0.25
#: below this share of one core (50 millicores) the worker is never held back, whatever its share of
#: the process: 1-row calls flat out keep it at 0.4-2 % of a core (every row delivered; bench_hookproc's
#: "other threads' CPU" column, sidecar up to black-holed), a cheap model at a low rate is no node's
#: problem (river's ``learn_one`` at 500 events/s: ~0.5 % of a core, ~half of a nearly idle process),
#: and 1-row calls shipped in 50 ms batches over gRPC (bench_reliability's setting) ran at 2-5 %: a
#: 2 % floor sent ~1,400 of its 20,200 calls without rows for no node's gain
FLOOR_CORE_SHARE = 0.05


class CpuBudget:
    """Keeps the worker's CPU within ``share`` of the process's; ``share=None``: no bound (keep stays 1)."""

    __slots__ = ("share", "keep", "_clock", "_process_cpu", "_at", "_worker_at", "_process_at", "_started",
                 "periods", "over_periods", "last_share")

    def __init__(self, share: float | None, *, clock=time.monotonic, process_cpu=time.process_time):
        self.share = share
        self.keep = 1.0  # read by the capture side on every call: the fraction of calls kept with data
        self._clock = clock
        self._process_cpu = process_cpu
        self._started = False
        self._at = self._worker_at = self._process_at = 0.0
        self.periods = 0  # periods measured (for stats and tests)
        self.over_periods = 0  # periods the worker's share was over the budget
        self.last_share: float | None = None  # the worker's share of the process's CPU in the last period

    def restart(self) -> None:
        """Measure afresh with every call kept (a forked child: its worker and CPU are its own)."""
        self.keep = 1.0
        self._started = False
        self.last_share = None

    def update(self, worker_cpu_s: float) -> None:
        """The worker's CPU seconds so far (``time.thread_time()`` on the worker); called by the worker
        after each wake-up's work. Re-decides :attr:`keep` once per :data:`PERIOD_S`."""
        if self.share is None:
            return
        now = self._clock()
        if not self._started:
            self._started = True
            self._at, self._worker_at, self._process_at = now, worker_cpu_s, self._process_cpu()
            return
        if now - self._at < PERIOD_S:
            return
        process = self._process_cpu()
        worker, total, wall = worker_cpu_s - self._worker_at, process - self._process_at, now - self._at
        self._at, self._worker_at, self._process_at = now, worker_cpu_s, process
        if worker < FLOOR_CORE_SHARE * wall or total <= 0:
            if self.keep < 1.0:  # below the floor: no reason to hold data back
                self.keep = min(1.0, self.keep * 2)
            return
        self.periods += 1
        used = min(worker / total, 1.0)
        self.last_share = used
        if used > self.share:
            self.over_periods += 1
            self.keep = max(self.keep * max(self.share / used, 1 / 64), MIN_KEEP)
        elif self.keep < 1.0:
            # proportional, with room: aim at 80 % of the budget so that a kept call's cost
            # varying from period to period does not flip the answer every time
            self.keep = min(1.0, self.keep * min(0.8 * self.share / used, 2.0)) if used > 0 else 1.0

    def stats(self) -> dict:
        return {"cpu_budget": self.share, "budget_keep": self.keep, "budget_periods": self.periods,
                "budget_over_periods": self.over_periods, "budget_last_share": self.last_share}


#: the gate of a shipper without a budget (a custom shipper, tests): every call keeps its rows
KEEP_ALL = CpuBudget(None)
