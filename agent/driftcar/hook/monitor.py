"""The :class:`Monitor`: one instrumented model, its capture state and its shipper."""

from __future__ import annotations

import logging
import time
import weakref
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from driftcar.hook.capture import copy_value, n_rows, size_hint
from driftcar.hook.records import Captured
from driftcar.hook.state import HookState
from driftcar.hook.wrappers import Wrapper

__all__ = ["Monitor", "CALLABLES"]

log = logging.getLogger("driftcar.hook")

#: plain callables cannot carry wrappers: their monitors, weakly
CALLABLES: "weakref.WeakKeyDictionary[Any, Monitor]" = weakref.WeakKeyDictionary()
#: rows per ``reference`` item offered by :meth:`Monitor.set_reference`
REFERENCE_CHUNK_ROWS = 10_000
#: set_reference flushes after this many (estimated) bytes so a large reference is not dropped
REFERENCE_FLUSH_BYTES = 16 * 1024 * 1024



class Monitor:
    """Handle on one instrumented model (returned by :func:`driftcar.instrument`).

    ``model`` is what you call: the instrumented object itself (instrumented in
    place), or, when a plain callable was instrumented, the wrapped callable
    (also at ``wrapped``; the Monitor itself is callable too). ``original`` is the
    un-instrumented object/callable.

    Thread safety: the instrumented model may be called from any number of
    threads and asyncio tasks; ``ids`` is per thread/task (a context variable).
    The ``stats`` counters are plain integers updated without a lock, so under
    heavy concurrency they may undercount slightly; the calls table shipped
    downstream is exact. Nothing on the call path blocks.
    """

    def __init__(
        self,
        model: Any,
        *,
        name: str,
        version: str,
        shipper: Any,
        owns_shipper: bool,
        sample: float,
        capture: bool,
        tracer: Any,
        explicit_provider: bool = False,
        copy: bool = True,
        feature_names: tuple[str, ...] | None = None,
    ):
        self.original = model
        self.model = model
        self.wrapped = model
        self.name = name
        self.version = version
        self._owns_shipper = owns_shipper
        #: what every wrapper of this monitor reads and counts (the hot path's only view of it)
        self.state = HookState(name=name, version=version, shipper=shipper, sample=sample, capture=capture,
                               tracer=tracer, explicit_provider=explicit_provider, copy=copy,
                               feature_names=feature_names)
        self._targets: list[Any] = []  # (weakref to an instance carrying our wrapper, method) for uninstrument

    # ------------------------------------------------------------------ wrappers

    def wrap(self, obj: Any, method: str, original: Any, root: bool, span_name: str) -> None:
        """Install a wrapper of ``original`` as ``obj.<method>`` (``obj.__dict__`` must exist)."""
        obj.__dict__[method] = Wrapper(original, obj, method, self, self.state, root, span_name)
        try:  # weakly: sub-estimators replaced by a later fit must not be kept alive by the monitor
            ref: Any = weakref.ref(obj)
        except TypeError:
            ref = lambda obj=obj: obj  # noqa: E731 - not weak-referenceable: keep it
        targets = self._targets
        if len(targets) > 64 and len(targets) & (len(targets) - 1) == 0:  # prune dead refs now and then
            targets[:] = [(r, m) for r, m in targets if r() is not None]
        targets.append((ref, method))

    def wrap_callable(self, function: Any, span_name: str) -> Wrapper:
        """The wrapper that stands for an instrumented plain callable (``monitor.model``)."""
        wrapper = Wrapper(function, None, "__call__", self, self.state, True, span_name)
        self.model = self.wrapped = wrapper
        return wrapper

    def unwrap(self, timeout: float = 5.0) -> None:
        """Remove every wrapper this monitor installed (later calls through stale ones pass
        through), then stop the shipper it created within ``timeout`` s."""
        self.state.switch("enabled", False)
        self.state.rewalk = None
        for ref, method in self._targets:
            obj = ref()
            if obj is None:
                continue
            current = obj.__dict__.get(method)
            if isinstance(current, Wrapper) and current.monitor is self:
                del obj.__dict__[method]
        self._targets.clear()
        try:
            CALLABLES.pop(self.original, None)
        except TypeError:
            pass
        if self._owns_shipper:
            self.shutdown(timeout)
        else:
            self._capture = False

    def live_wrappers(self) -> int:
        """How many instances still carry one of this monitor's wrappers (for tests and diagnostics)."""
        return sum(1 for ref, _ in self._targets if ref() is not None)

    # ------------------------------------------------------------------ switches

    @property
    def _capture(self) -> bool:
        return self.state.capture_on

    @_capture.setter
    def _capture(self, on: bool) -> None:
        self.state.switch("capture_on", bool(on))

    @property
    def sample(self) -> float:
        """Probability that a call's rows are captured (calls are always counted); settable."""
        return self.state.sample

    @sample.setter
    def sample(self, rate: float) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"sample must be a number in [0, 1], got {rate!r}")
        self.state.switch("sample", float(rate))

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        """Names given to the columns of numpy inputs (None: ``x0``, ``x1``, ...)."""
        return self.state.feature_names

    # ------------------------------------------------------------------ calling

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the instrumented callable (when a plain callable was instrumented)."""
        if self.wrapped is self.original:
            raise TypeError(
                f"this Monitor watches a {type(self.original).__name__} instrumented in place: "
                "call its methods (monitor.model.predict(...)), not the Monitor"
            )
        return self.wrapped(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Monitor(name={self.name!r}, version={self.version!r}, model={type(self.original).__name__})"

    def __reduce__(self):
        raise TypeError("a driftcar Monitor cannot be pickled (it owns a live shipper); pickle the model instead")

    # ------------------------------------------------------------------ user API

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Calls made inside the block (this thread / asyncio task) are not captured, traced or counted.

        For computing reference predictions on training data with the instrumented
        model: those rows must not count as live traffic. Other threads keep being
        captured. Calls skipped are counted in ``stats["paused_calls"]``.
        """
        state = self.state
        state.pause(1)
        token = state.paused.set(True)
        try:
            yield
        finally:
            state.paused.reset(token)
            state.pause(-1)

    @contextmanager
    def ids(self, ids: Any) -> Iterator[None]:
        """Attach row ids to the outermost calls made inside the block (for late labels).

        ``ids`` is a sequence with one id per input row of each call (a single str
        or int for one-row calls such as river's ``predict_one``). A call whose
        row count differs from ``len(ids)`` is captured without ids and counted in
        ``stats["id_mismatches"]``. Per thread / asyncio task.
        """
        state = self.state
        if not state.ids_used:
            state.switch("ids_used", True)
        token = state.ids.set(_snapshot_ids(ids))
        try:
            yield
        finally:
            state.ids.reset(token)

    def log_labels(self, ids: Any, y_true: Any) -> None:
        """Send ground-truth labels for earlier predictions, joined downstream by id.

        Raises ValueError when the lengths differ or are zero; never blocks.
        """
        self._require_capture("log_labels")
        ids = _snapshot_ids(ids)
        labels = _snapshot_values(y_true)
        if len(ids) != len(labels):
            raise ValueError(f"log_labels: {len(ids)} ids but {len(labels)} labels")
        if not len(ids):
            raise ValueError("log_labels: no ids given")
        n = len(ids)
        self.state.shipper.offer(
            Captured("labels", "log_labels", time.time_ns(), 0.0, n, ids=ids, labels=labels, size_hint=n * 32 + 128)
        )

    def set_reference(self, X: Any, y: Any = None, *, predictions: Any = None, timeout: float = 30.0) -> int:
        """Send what "normal" looks like (training data) as ``reference`` batches.

        ``X`` in any input form the model takes (2-D numpy, DataFrame, list of
        dicts); ``y`` optional labels and ``predictions`` optional model outputs,
        one per row. Sent in chunks of ``REFERENCE_CHUNK_ROWS`` rows; for large
        references this flushes the shipper every ~16 MiB, blocking up to
        ``timeout`` seconds each time, so nothing is dropped; after a flush that
        did not complete it stops waiting. Returns the rows offered.
        """
        self._require_capture("set_reference")
        n = n_rows(X) if not isinstance(X, dict) else 1
        for what, values in (("y", y), ("predictions", predictions)):
            if values is not None and len(_snapshot_values(values)) != n:
                raise ValueError(f"set_reference: {what} has {len(_snapshot_values(values))} values, X has {n} rows")
        pending = 0
        waiting = True
        for start in range(0, max(n, 1), REFERENCE_CHUNK_ROWS):
            stop = min(start + REFERENCE_CHUNK_ROWS, n)
            inputs = copy_value(_rows(X, start, stop, n))
            labels = None if y is None else _snapshot_values(_rows(y, start, stop, n))
            outputs = None if predictions is None else _snapshot_values(_rows(predictions, start, stop, n))
            hint = size_hint(inputs, stop - start) + size_hint(outputs, stop - start) + size_hint(labels, stop - start)
            self.state.shipper.offer(
                Captured("reference", "set_reference", time.time_ns(), 0.0, stop - start, inputs=inputs, outputs=outputs, labels=labels, size_hint=hint)
            )
            pending += hint
            if pending >= REFERENCE_FLUSH_BYTES and waiting:
                if not self.state.shipper.flush(timeout):  # endpoint down: do not wait per chunk
                    waiting = False
                    log.warning("driftcar: set_reference for %s could not deliver within %.1fs; the rest is "
                                "queued without waiting (rows over the buffer bound are dropped and counted)",
                                self.name, timeout)
                pending = 0
        return n

    def flush(self, timeout: float = 5.0) -> bool:
        """Send everything captured so far; True when done within ``timeout`` seconds."""
        return bool(self.state.shipper.flush(timeout))

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Flush and stop the shipper (bounded by ``timeout``); the model keeps working."""
        self._capture = False
        return bool(self.state.shipper.shutdown(timeout))

    @property
    def shipper(self) -> Any:
        """The shipper this monitor offers its captured items to (read-only)."""
        return self.state.shipper

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: ``calls``, ``errors`` (by type), ``captured_rows``, ``capture_failures``,
        ``id_mismatches``, ``feature_name_mismatches``, ``paused_calls``, ``shed_calls`` / ``shed_rows``
        (calls the CPU budget sent without their rows, and those rows), plus the shipper's
        (``dropped_rows``, ``queued_rows``, ``sent_rows``, and the exporter's state:
        ``connected``, ``last_error``, ``failed_attempts``, ``retries``, ...)."""
        out: dict[str, Any] = {}
        try:
            out.update(self.state.shipper.stats)
        except Exception:
            pass
        state = self.state
        out.update(
            calls=state.calls,
            errors=dict(state.errors),
            captured_rows=state.captured_rows,
            capture_failures=state.capture_failures,
            id_mismatches=state.id_mismatches,
            feature_name_mismatches=state.feature_name_mismatches,
            paused_calls=state.paused_calls,
            shed_calls=state.shed_calls,
            shed_rows=state.shed_rows,
        )
        return out

    def uninstrument(self) -> Any:
        """Same as :func:`driftcar.uninstrument` on this monitor's model: restores every wrapped
        method, stops the shipper it created, returns the original object / callable."""
        self.unwrap()
        return self.original

    def _require_capture(self, what: str) -> None:
        if not self._capture:
            raise RuntimeError(f"{what}: capture is off for model {self.name!r} (capture=False or shut down)")


def _snapshot_ids(ids: Any) -> Any:
    if isinstance(ids, (str, bytes, int, np.integer)):
        return [ids]
    return _snapshot_values(ids)


def _snapshot_values(values: Any) -> Any:
    """A copy of 1-D values (list or ndarray); scalars become one-element lists."""
    if isinstance(values, np.ndarray):
        return values.reshape(-1).copy() if values.ndim <= 1 else values.copy()
    if isinstance(values, (list, tuple)):
        return list(values)
    if hasattr(values, "to_numpy"):  # pandas Series
        return values.to_numpy(copy=True)
    if isinstance(values, (str, bytes)) or np.ndim(values) == 0:
        return [values]
    return list(values)


def _rows(X: Any, start: int, stop: int, n: int) -> Any:
    if start == 0 and stop == n:
        return X
    if hasattr(X, "iloc"):
        return X.iloc[start:stop]
    return X[start:stop]
