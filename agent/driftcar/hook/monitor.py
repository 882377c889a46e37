"""The :class:`Monitor`: one instrumented model, its capture state and its shipper."""

from __future__ import annotations

import contextvars
import logging
import random
import time
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
from opentelemetry.trace import ProxyTracerProvider, get_current_span, get_tracer_provider

from driftcar.hook.capture import copy_value, n_rows, size_hint
from driftcar.hook.records import Captured

__all__ = ["Monitor"]

log = logging.getLogger("driftcar.hook")

#: rows per ``reference`` item offered by :meth:`Monitor.set_reference`
REFERENCE_CHUNK_ROWS = 10_000
#: set_reference flushes after this many (estimated) bytes so a large reference is not dropped
REFERENCE_FLUSH_BYTES = 16 * 1024 * 1024

_random = random.random
_ndarray = np.ndarray


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
    ):
        self.original = model
        self.model = model
        self.wrapped = model
        self.name = name
        self.version = version
        self._shipper = shipper
        # the shipper's compact hot-path entry (driftcar.hook.records.thaw), if it has one
        self._offer_raw = getattr(shipper, "offer_raw", None)
        self._owns_shipper = owns_shipper
        self._sample = float(sample)
        self._capture_on = capture
        self._tracer = tracer  # None when spans are off
        self._span_attributes = {"model.name": name, "model.version": version}
        self._enabled = True
        self._copy = copy  # snapshot inputs/outputs (default) or keep references
        self._fast = False  # the wrappers' inlined numpy path applies (see _sync_fast)
        self._sync_fast()
        self._explicit_provider = explicit_provider
        self._otel_live = explicit_provider  # an SDK provider exists (explicit or global)
        self._tick = 0
        if not explicit_provider:
            self._refresh_otel()
        # [thread id, depth of running outermost calls] per context (see Wrapper.__call__)
        self._active: contextvars.ContextVar[list | None] = contextvars.ContextVar(f"driftcar_active_{id(self)}",
                                                                                   default=None)
        self._ids: contextvars.ContextVar[Any] = contextvars.ContextVar(f"driftcar_ids_{id(self)}", default=None)
        self._ids_used = False  # set for good by the first ``ids(...)``: until then calls skip the lookup
        self._calls = 0
        self._errors: dict[str, int] = {}
        self._captured_rows = 0
        self._capture_failures = 0
        self._id_mismatches = 0
        self._targets: list[Any] = []  # (weakref to an instance carrying our wrapper, method) for uninstrument
        self._rewalk = None  # set by instrument(): re-instrument new sub-estimators after fit

    # ------------------------------------------------------------------ capture switch

    @property
    def _capture(self) -> bool:
        return self._capture_on

    @_capture.setter
    def _capture(self, on: bool) -> None:
        self._capture_on = bool(on)
        self._sync_fast()

    def _sync_fast(self) -> None:
        # the inlined path in Wrapper.__call__ covers: capture on, every call sampled, and either
        # copies on or a shipper taking the compact form (which carries references for copy=False)
        self._fast = self._capture_on and self._sample >= 1.0 and (self._copy or self._offer_raw is not None)

    @property
    def sample(self) -> float:
        """Probability that a call's rows are captured (calls are always counted); settable."""
        return self._sample

    @sample.setter
    def sample(self, rate: float) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"sample must be a number in [0, 1], got {rate!r}")
        self._sample = float(rate)
        self._sync_fast()

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

    # ------------------------------------------------------------------ hot path

    def _record(self, wrapper: Any, args: tuple, kwargs: dict, result: Any, start_ns: int, duration_ns: int, span: Any, exc: BaseException | None) -> None:
        """Build one Captured for an outermost call and offer it. Never raises, never blocks.

        Kept flat on purpose (every predict pays for it): numpy inputs and outputs
        take an inline path (type check, ``copy``, ``nbytes``); anything else goes
        through :mod:`driftcar.hook.capture`.
        """
        mode = wrapper.mode
        if mode == "fit" and exc is None and self._rewalk is not None:
            self._after_fit()
        if not self._capture_on:
            return
        try:
            self._calls += 1
            x = args[0] if args else _input_kwarg(kwargs)
            if type(x) is _ndarray:
                rows = x.shape[0] if x.ndim > 1 else 1
            else:
                rows = n_rows(x)
            if span is not None:
                trace_id = span.get_span_context().trace_id
            elif self._otel_live:
                trace_id = get_current_span().get_span_context().trace_id
            else:  # no SDK provider anywhere: no span can carry a trace id worth keeping
                trace_id = 0
            if exc is not None:
                name = type(exc).__name__
                self._errors[name] = self._errors.get(name, 0) + 1
                item = Captured("inference", wrapper.name, start_ns, duration_ns / 1e9, rows, name, trace_id)
            elif mode == "call" or mode == "fit" or (self._sample < 1.0 and _random() >= self._sample):
                item = Captured("inference", wrapper.name, start_ns, duration_ns / 1e9, rows, None, trace_id)
            else:
                copy = self._copy
                if type(x) is _ndarray:
                    if x.ndim > 2:  # images and other tensors are not tabular: outputs only
                        inputs, hint = None, 160
                    else:
                        inputs = x.copy() if copy else x
                        hint = inputs.nbytes + 160
                else:
                    inputs = copy_value(x) if copy else x
                    hint = size_hint(inputs, rows) + 160
                outputs = classes = labels = None
                if mode == "io":
                    if type(result) is _ndarray:
                        outputs = result.copy() if copy else result
                        hint += outputs.nbytes
                    else:
                        outputs = copy_value(result) if copy else result
                        hint += size_hint(outputs, rows)
                    if wrapper.name == "predict_proba":
                        classes = getattr(wrapper.owner, "classes_", None)
                elif mode == "learn":
                    labels = args[1] if len(args) > 1 else kwargs.get("y")
                ids = self._ids.get() if self._ids_used else None
                if ids is not None and len(ids) != rows:
                    self._id_mismatches += 1
                    ids = None
                item = Captured("inference", wrapper.name, start_ns, duration_ns / 1e9, rows, None, trace_id,
                                inputs, outputs, classes, ids, labels, hint)
                self._captured_rows += rows
            self._shipper.offer(item)
        except Exception as failure:  # never raise into the model
            self._capture_failed(failure)

    def _capture_failed(self, failure: Exception) -> None:
        self._capture_failures += 1
        if self._capture_failures == 1:
            log.warning("driftcar: capture failed for %s (%s: %s); counted in stats, logged once",
                        self.name, type(failure).__name__, failure)

    def _refresh_otel(self) -> None:
        """Is there a real (SDK) tracer provider? Once one is set globally it stays set."""
        try:
            self._otel_live = not isinstance(get_tracer_provider(), ProxyTracerProvider)
        except Exception:
            self._otel_live = True

    def _after_fit(self) -> None:
        try:
            self._rewalk()  # fit may have created new sub-estimators (ColumnTransformer clones)
        except Exception:
            self._capture_failures += 1

    # ------------------------------------------------------------------ user API

    @contextmanager
    def ids(self, ids: Any) -> Iterator[None]:
        """Attach row ids to the outermost calls made inside the block (for late labels).

        ``ids`` is a sequence with one id per input row of each call (a single str
        or int for one-row calls such as river's ``predict_one``). A call whose
        row count differs from ``len(ids)`` is captured without ids and counted in
        ``stats["id_mismatches"]``. Per thread / asyncio task.
        """
        self._ids_used = True
        token = self._ids.set(_snapshot_ids(ids))
        try:
            yield
        finally:
            self._ids.reset(token)

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
        self._shipper.offer(
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
            self._shipper.offer(
                Captured("reference", "set_reference", time.time_ns(), 0.0, stop - start, inputs=inputs, outputs=outputs, labels=labels, size_hint=hint)
            )
            pending += hint
            if pending >= REFERENCE_FLUSH_BYTES and waiting:
                if not self._shipper.flush(timeout):  # endpoint down: do not wait per chunk
                    waiting = False
                    log.warning("driftcar: set_reference for %s could not deliver within %.1fs; the rest is "
                                "queued without waiting (rows over the buffer bound are dropped and counted)",
                                self.name, timeout)
                pending = 0
        return n

    def flush(self, timeout: float = 5.0) -> bool:
        """Send everything captured so far; True when done within ``timeout`` seconds."""
        return bool(self._shipper.flush(timeout))

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Flush and stop the shipper (bounded by ``timeout``); the model keeps working."""
        self._capture = False
        return bool(self._shipper.shutdown(timeout))

    @property
    def shipper(self) -> Any:
        """The shipper this monitor offers its captured items to (read-only)."""
        return self._shipper

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: ``calls``, ``errors`` (by type), ``captured_rows``, ``capture_failures``,
        ``id_mismatches``, plus the shipper's (``dropped_rows``, ``queued_rows``, ...)."""
        out: dict[str, Any] = {}
        try:
            out.update(self._shipper.stats)
        except Exception:
            pass
        out.update(
            calls=self._calls,
            errors=dict(self._errors),
            captured_rows=self._captured_rows,
            capture_failures=self._capture_failures,
            id_mismatches=self._id_mismatches,
        )
        return out

    def uninstrument(self) -> Any:
        """Same as :func:`driftcar.uninstrument` on this monitor's model."""
        from driftcar.hook.instrument import uninstrument

        return uninstrument(self.model)

    def _require_capture(self, what: str) -> None:
        if not self._capture:
            raise RuntimeError(f"{what}: capture is off for model {self.name!r} (capture=False or shut down)")


def _input_kwarg(kwargs: dict) -> Any:
    if not kwargs:
        return None
    if "X" in kwargs:
        return kwargs["X"]
    if "x" in kwargs:
        return kwargs["x"]
    return next(iter(kwargs.values()))


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
