"""The hot path's view of one Monitor: everything a wrapper reads or counts, in one small object.

A :class:`~driftcar.hook.monitor.Monitor` owns one :class:`HookState` and every
wrapper it installs holds the same instance, so a call reads plain slots and
never reaches into the Monitor. Counters are plain ints updated without a lock
(see the Monitor's thread-safety note).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from typing import Any, Callable

from opentelemetry.trace import ProxyTracerProvider, get_tracer_provider

from driftcar.hook.shipping.budget import KEEP_ALL

__all__ = ["HookState"]

log = logging.getLogger("driftcar.hook")


class HookState:
    """Switches, shipper entry points and counters of one monitored model."""

    __slots__ = (
        "name", "shipper", "offer_raw", "block_for", "block", "gate", "enabled", "capture_on", "sample", "copy", "fast", "plain", "lock",
        "tracer", "explicit_provider", "otel_live", "tick", "wall_offset", "span_attributes", "active", "ids",
        "ids_used", "paused", "pausing", "feature_names", "rewalk", "calls", "errors", "captured_rows", "capture_failures",
        "id_mismatches", "feature_name_mismatches", "paused_calls", "shed_calls", "shed_rows",
    )

    def __init__(self, *, name: str, version: str, shipper: Any, sample: float, capture: bool, tracer: Any,
                 explicit_provider: bool, copy: bool, feature_names: tuple[str, ...] | None):
        self.name = name
        self.shipper = shipper
        # the shipper's compact entry (driftcar.hook.records.thaw), if it has one
        self.offer_raw: Callable | None = getattr(shipper, "offer_raw", None)
        # the shipper's columnar blocks (driftcar.hook.shipping.blocks), if it has them, and the last one used
        self.block_for: Callable | None = getattr(shipper, "block_for", None)
        self.block: Any = None
        # the shipper's CPU budget (driftcar.hook.shipping.budget): ``gate.keep`` is the fraction of
        # calls that keep their rows; a shipper without one keeps every sampled call's (KEEP_ALL)
        self.gate: Any = getattr(shipper, "gate", KEEP_ALL) if self.offer_raw is not None else KEEP_ALL
        self.enabled = True  # False once uninstrumented: wrappers left behind pass straight through
        self.capture_on = capture
        self.sample = float(sample)
        self.copy = copy  # snapshot inputs/outputs (default) or keep references
        self.fast = False  # the compact numpy path applies (see sync)
        self.plain = False  # the wrapper's one-test path applies (see sync)
        self.lock = threading.Lock()  # serializes switch changes and sync (never taken by a call)
        self.tracer = tracer  # None when spans are off
        self.explicit_provider = explicit_provider
        self.otel_live = explicit_provider  # an SDK provider exists (explicit or global)
        self.tick = 0  # outermost calls, for the periodic recheck
        self.wall_offset = 0  # time_ns() - perf_counter_ns(), re-anchored by recheck
        self.span_attributes = {"model.name": name, "model.version": version}
        # [thread id, depth of running outermost calls] per context (see Wrapper.__call__)
        self.active: contextvars.ContextVar[list | None] = contextvars.ContextVar(f"driftcar_active_{id(self)}",
                                                                                  default=None)
        self.ids: contextvars.ContextVar[Any] = contextvars.ContextVar(f"driftcar_ids_{id(self)}", default=None)
        self.ids_used = False  # set for good by the first ``ids(...)``: until then calls skip the lookup
        self.paused: contextvars.ContextVar[bool] = contextvars.ContextVar(f"driftcar_paused_{id(self)}",
                                                                           default=False)
        self.pausing = 0  # open paused() blocks in any context: until then calls skip the lookup
        self.feature_names = feature_names
        self.rewalk: Callable[[], None] | None = None  # re-instrument new sub-estimators after fit
        self.calls = 0
        self.errors: dict[str, int] = {}
        self.captured_rows = 0
        self.capture_failures = 0
        self.id_mismatches = 0
        self.feature_name_mismatches = 0
        self.paused_calls = 0
        self.shed_calls = 0  # calls the CPU budget sent without their rows (counted as calls downstream)
        self.shed_rows = 0
        self.sync()
        self.recheck()

    def sync(self) -> None:
        """Recompute ``fast`` and ``plain`` after a switch changed (callers that change a switch from
        several threads hold :attr:`lock` around the change and this call, so the last sync sees
        the last change).

        ``fast``: capture on, every call sampled, and either copies on or a shipper taking the
        compact form (which carries references for copy=False). ``plain``: ``fast``, enabled, no
        ``paused()`` or ``ids()`` ever open, and no SDK provider, so an outermost call makes no
        span and keeps no trace id: :meth:`Wrapper.__call__` then tests this one flag instead of
        six switches (fewer bytecodes on every call; see its figure)."""
        self.fast = self.capture_on and self.sample >= 1.0 and (self.copy or self.offer_raw is not None)
        self.plain = (self.fast and self.enabled and not self.pausing and not self.ids_used and not self.otel_live)

    def switch(self, name: str, value: Any) -> None:
        """Set one switch (``enabled``, ``capture_on``, ``sample``, ``ids_used``) and re-sync."""
        with self.lock:
            setattr(self, name, value)
            self.sync()

    def pause(self, step: int) -> None:
        """One ``paused()`` block opened (+1) or closed (-1) in some context."""
        with self.lock:
            self.pausing += step
            self.sync()

    def recheck(self) -> None:
        """Every 256 outermost calls: re-anchor the wall clock and look for an SDK provider.

        A call's start is ``perf_counter_ns() + wall_offset``: one clock read per call instead of
        ``time_ns()`` and ``perf_counter_ns()`` (~0.4 k instructions less, callgrind); a step of
        the system clock shows in the calls table after at most 256 calls.
        """
        before = time.perf_counter_ns()
        self.wall_offset = time.time_ns() - before
        if not self.otel_live:
            self.refresh_otel()

    def refresh_otel(self) -> None:
        """Is there a real (SDK) tracer provider? Once one is set globally it stays set."""
        try:
            live = not isinstance(get_tracer_provider(), ProxyTracerProvider)
        except Exception:
            live = True
        if live != self.otel_live:
            self.switch("otel_live", live)

    def failed(self, failure: Exception) -> None:
        """Count a capture that failed (never raises into the model); log the first one."""
        self.capture_failures += 1
        if self.capture_failures == 1:
            log.warning("driftcar: capture failed for %s (%s: %s); counted in stats, logged once",
                        self.name, type(failure).__name__, failure)

    def names_mismatch(self, shape: tuple) -> None:
        """A numpy input whose width differs from ``feature_names``: captured as x0, x1, ..., counted."""
        self.feature_name_mismatches += 1
        if self.feature_name_mismatches == 1:
            log.warning("driftcar: %s got an input of shape %s but feature_names has %d names; its columns are "
                        "sent as x0, x1, ... and counted in stats['feature_name_mismatches'] (logged once)",
                        self.name, shape, len(self.feature_names or ()))
