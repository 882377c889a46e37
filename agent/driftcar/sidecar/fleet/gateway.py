"""The gateway role: merge ``driftcar.window`` records per model and window start, judge once.

Data flow: the receivers hand the window records of a request to :meth:`FleetGateway.offer`
(validated, queued all-or-nothing in a queue bounded by bytes, so an overloaded gateway
answers "retry later" like the batch path); a worker thread merges each into its open
:class:`~.merge.FleetWindow`; :meth:`FleetGateway.close_due`, on a short tick, closes the
windows that are complete or past their straggler bound and evaluates them with the
sidecar's own :class:`~driftcar.sidecar.evaluator.Evaluator` (one judge for the fleet).

When a window closes: every replica that reported in the previous window of the model
reported again (``closed_by = all_reported``), or ``fleet_wait`` passed since the
window's end (``closed_by = bound``). Its result says how many replicas were expected
(those of the previous window plus those of this one) and reported, and names the
missing ones. A record for a window already closed is late: counted, not merged.

Bounds: ``max_open`` open fleet windows (``3 x max_models``), each one merged sketch and at most
``label_max_rows`` joined labels; ``max_held_bytes`` of sketches waiting for their reference,
``max_queue_bytes`` of queued records, 64 known references.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from typing import Any, Callable

from driftcar.sidecar.config import FleetConfig
from driftcar.sidecar.errors import Overloaded
from driftcar.sidecar.fleet.merge import FleetWindow
from driftcar.sidecar.state import ClosedWindow, WindowClose
from driftcar.wire.window import DEFAULT_WINDOW_LIMITS, WindowError, WindowLimits, WindowRecord, decode_window

__all__ = ["FleetGateway", "MAX_MISSING_NAMED"]

log = logging.getLogger("driftcar.sidecar.fleet")

MAX_MISSING_NAMED = 20
MAX_REFERENCES = 64


class FleetGateway:
    """See the module docstring. ``offer`` is thread-safe and never blocks."""

    def __init__(self, store, evaluator, telemetry, config: FleetConfig, *, clock: Callable[[], int] = time.time_ns,
                 limits: WindowLimits = DEFAULT_WINDOW_LIMITS, max_queue_bytes: int = 256 << 20,
                 max_held_bytes: int = 256 << 20):
        self.store, self.evaluator, self.tel, self.config = store, evaluator, telemetry, config
        self.clock = clock
        self.limits = limits
        self.wait_ns = int(config.wait_s * 1e9)
        self.max_open = 3 * config.max_models
        self.max_queue_bytes = max_queue_bytes
        self.max_held_bytes = max_held_bytes
        self.open: dict[tuple[str, str, int], FleetWindow] = {}
        self.closed: collections.OrderedDict[tuple[str, str, int], None] = collections.OrderedDict()
        self.last_reporters: dict[tuple[str, str], frozenset[str]] = {}
        self.references: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.counts: collections.Counter[str] = collections.Counter()
        self.results: collections.deque[dict] = collections.deque(maxlen=100)
        self._lock = threading.RLock()
        self._queue: collections.deque[WindowRecord] = collections.deque()
        self._queued_bytes = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ receiving
    def offer(self, bodies: list[tuple[dict, bytes | None]]) -> tuple[int, int, list[str]]:
        """Validate and queue window records; (accepted, rejected, reasons). Raises Overloaded."""
        records, reasons = [], []
        for _attributes, body in bodies:
            try:
                if body is None:
                    raise WindowError("record body must be bytes (AnyValue.bytes_value)")
                records.append(decode_window(body, self.limits))
            except WindowError as exc:
                reasons.append(exc.reason)
        self._count("rejected", len(reasons))
        if not records:
            return 0, len(reasons), reasons
        size = sum(_size(r) for r in records)
        with self._cond:
            if self._queue and self._queued_bytes + size > self.max_queue_bytes:
                raise Overloaded(f"fleet queue full ({self._queued_bytes} bytes queued); retry later",
                                 self.config.retry_after_s)
            self._queue.extend(records)
            self._queued_bytes += size
            self._cond.notify()
        return len(records), len(reasons), reasons

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="driftcar-fleet", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                if not self._queue and not self._cond.wait_for(lambda: bool(self._queue), 0.2):
                    continue
                rec = self._queue.popleft()
            try:
                self.add(rec)
            except Exception:  # never die on input
                self._count("rejected", 1)
                log.exception("merging a window of %s@%s from %s failed", rec.model, rec.version, rec.replica)
            finally:
                with self._cond:
                    self._queued_bytes -= _size(rec)
                    self._cond.notify_all()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record is merged (tests, shutdown)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and self._queued_bytes == 0, timeout)

    # ------------------------------------------------------------------ merging
    def add(self, rec: WindowRecord) -> str:
        """Merge one decoded record (worker thread); returns its outcome."""
        key = (rec.model, rec.version, rec.start_ns)
        with self._lock:
            if key in self.closed or rec.end_ns + self.wait_ns < self.clock() - int(self.config.window_s * 1e9):
                return self._count("late", 1)
            window = self.open.get(key)
            if window is None:
                if len(self.open) >= self.max_open:
                    log.warning("fleet: %d open windows, the cap; a window of %s@%s is refused", len(self.open),
                                rec.model, rec.version)
                    return self._count("rejected", 1)
                window = self.open[key] = FleetWindow(rec.model, rec.version, rec.start_ns, rec.end_ns,
                                                      max_labels=self.config.label_max_rows)
            try:
                profile = self._profile(rec)
            except (ValueError, OSError) as exc:  # a bad attached reference: refuse the record, keep going
                log.warning("fleet: reference from %s for %s@%s refused: %s", rec.replica, rec.model, rec.version, exc)
                return self._count("rejected", 1)
            if profile is None and rec.sketch is not None and self._held_bytes() + len(rec.sketch) > self.max_held_bytes:
                return self._count("unreferenced", 1)
            outcome = window.add(rec, profile)
            return outcome if outcome == "held" else self._count(outcome, 1)  # held: counted when merged

    def _profile(self, rec: WindowRecord):
        if rec.profile is None:
            return None
        known = self.references.get(rec.profile)
        if known is None and rec.reference is not None:
            from driftcar.stats import Profile

            known = Profile.from_bytes(rec.reference)
            if known.fingerprint != rec.profile:
                raise ValueError(f"attached reference has fingerprint {known.fingerprint}, record says {rec.profile}")
            self._remember(known)
        if known is None:
            path = self.config.reference_for(rec.model, rec.version)
            if path:
                candidate = self.store.file_profile(path)
                if candidate.fingerprint == rec.profile:
                    known = candidate
                    self._remember(known)
        return known

    def _remember(self, profile) -> None:
        self.references[profile.fingerprint] = profile
        while len(self.references) > MAX_REFERENCES:
            self.references.popitem(last=False)
        for window in self.open.values():
            if window.held:
                self._count("merged", window.release(profile.fingerprint, profile))

    def _held_bytes(self) -> int:
        return sum(w.held_bytes for w in self.open.values())

    def _count(self, outcome: str, n: int) -> str:
        if n:
            self.counts[outcome] += n
            self.tel.add_fleet_windows(outcome, n)
        return outcome

    # ------------------------------------------------------------------ closing
    def due(self, now_ns: int, final: bool = False) -> list[FleetWindow]:
        """Pop the windows to close now (complete, past the bound, or all when ``final``)."""
        out = []
        with self._lock:
            for key, window in list(self.open.items()):
                previous = self.last_reporters.get(key[:2])
                complete = bool(previous) and previous <= window.replicas.keys() and not window.held
                if final or complete or now_ns >= window.end_ns + self.wait_ns:
                    window.closed_by = "all_reported" if complete else ("shutdown" if final else "bound")
                    out.append(self.open.pop(key))
                    self.closed[key] = None
                    while len(self.closed) > 4 * self.max_open:
                        self.closed.popitem(last=False)
        return sorted(out, key=lambda w: w.start_ns)

    def close_due(self, now_ns: int | None = None, final: bool = False) -> list[dict]:
        """Close and judge what is due (blocking: run it off the event loop); the results."""
        windows = self.due(self.clock() if now_ns is None else now_ns, final)
        if not windows:
            return []
        closes, results = [], []
        with self.store.lock:
            for window in windows:
                close, result = self._close(window)
                results.append(result)
                if close is not None:
                    closes.append(close)
        self.evaluator.evaluate_all(closes)
        self.results.extend(results)
        return results

    def _close(self, window: FleetWindow) -> tuple[WindowClose | None, dict]:
        model, version = window.model, window.version
        previous = self.last_reporters.get((model, version), frozenset())
        reported = frozenset(window.replicas)
        expected = previous | reported
        self.last_reporters[(model, version)] = reported
        missing = sorted(expected - reported)
        result = {
            "model": model, "version": version, "start_unix_nano": window.start_ns, "end_unix_nano": window.end_ns,
            "closed_by": window.closed_by, "replicas_expected": len(expected), "replicas_reported": len(reported),
            "missing": missing[:MAX_MISSING_NAMED], "rows": window.rows,
            "unreferenced": [r.replica for r in window.held][:MAX_MISSING_NAMED],
            "mismatched_reference": window.mismatched[:MAX_MISSING_NAMED],
            "labels_dropped": window.labels_dropped,
        }
        self._count("unreferenced", len(window.held))
        if self.store.admit(model, version):
            log.warning("fleet: model cap reached; %s@%s is not judged", model, version)
            return None, result
        state = self.store.get_or_create(model, version)
        state.fleet = result
        self.tel.set_fleet_replicas(model, version, len(reported))
        self._golden(window)
        if window.sketch is not None and (state.profile is None or state.profile.fingerprint != window.profile.fingerprint):
            state.set_profile(window.profile, "fleet")
        state.window_start_ns = window.end_ns
        state.signals.rows_total += window.rows
        state.signals.batches_total += len(reported)
        if window.sketch is not None and window.rows:
            state.series.keep_closed(ClosedWindow(window.start_ns, window.end_ns, window.rows, window.sketch,
                                                  profile=window.profile))
        close = WindowClose(model=model, version=version, profile=window.profile, sketch=window.sketch,
                            start_ns=window.start_ns, end_ns=window.end_ns, rows=window.rows, y_true=window.y_true,
                            y_pred=window.y_pred, proba_sum=window.proba_sum, proba_n=window.proba_n,
                            trace_ids=window.trace_ids, golden=window.golden, cumulative=state.cumulative,
                            classification=state.classification, coverage_share=state.coverage.share,
                            reference=state.reference.generation)
        return close, result

    def _golden(self, window: FleetWindow) -> None:
        for (method, error), count in window.golden.calls.items():
            self.tel.add_calls(window.model, window.version, method, error, count)
        for method, (counts, total) in window.golden.durations.items():
            self.tel.add_duration_counts(window.model, window.version, method, counts, total)
        if window.rows:
            self.tel.add_rows(window.model, window.version, window.rows)

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Close due windows on a short tick (cancel to stop)."""
        tick = min(1.0, max(0.05, self.config.window_s / 20))
        while True:
            await asyncio.sleep(tick)
            try:
                await asyncio.to_thread(self.close_due)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fleet window evaluation failed")

    def stop(self, timeout: float = 5.0) -> None:
        """Merge what is queued, judge every open window (shutdown), stop the worker."""
        self.drain(timeout)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.close_due(final=True)

    def status(self) -> dict:
        with self._lock:
            return {"role": "gateway", "open_windows": len(self.open), "counts": dict(self.counts),
                    "references": len(self.references), "fleet_wait_s": self.wait_ns / 1e9,
                    "last_results": list(self.results)[-10:]}


def _size(rec: WindowRecord) -> int:
    return len(rec.sketch or b"") + len(rec.reference or b"") + 64 * (len(rec.y_true) + 1)
