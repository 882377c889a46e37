"""Instance-level method wrappers: the code every instrumented call runs.

A wrapper replaces one bound method *on one instance* (``obj.__dict__[name]``),
so other instances of the same class stay untouched. Two roles:

- a **root** wrapper sits on the model the user instrumented. At the outermost
  call (a per-monitor context variable holds a [thread id, depth] pair saying
  whether a call of the same monitor is already running on this thread/task) it starts the outer span, times the
  call and hands the arguments and result to :meth:`Monitor._record`, which
  captures them. Nested calls (``predict`` calling ``predict_proba`` on the same
  model) only get a span.
- a **step** wrapper sits on an inner estimator (Pipeline step, ColumnTransformer
  transformer, ...). It only adds a ``Class.method`` span, child of the current
  one. Step wrappers are installed only when spans are on.

With no SDK TracerProvider anywhere (none given to ``instrument`` and the
global one still the API's proxy) no span is started at all, so the cost is
below the no-op API's; the global provider is re-checked every 256 outermost
calls, so one set later is picked up without a restart.

Inside ``monitor.paused()`` (per thread / asyncio task) a call goes straight to
the model: no span, no capture, not counted as traffic (``stats["paused_calls"]``).

Exceptions from the model are re-raised unchanged (same object); they are
recorded on the span (ERROR status) and counted by type in the calls table.
Nothing driftcar does after the model returned can raise into the caller.

Pickling / deep-copying: a wrapper reduces to :class:`Unwrapped`, which calls the
class's own method and removes itself from the instance on first use. So an
instrumented estimator pickles, unpickles and deep-copies as the
*un-instrumented* estimator (instrument the copy if you want it watched).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from opentelemetry.context import attach, detach
from opentelemetry.trace import Status, StatusCode, set_span_in_context

from driftcar.hook.capture import record, record_array
from driftcar.hook.specs import MethodSpec, spec_for
from driftcar.hook.state import HookState

__all__ = ["Wrapper", "Unwrapped", "fail_span"]

_ndarray = np.ndarray
_perf_ns = time.perf_counter_ns
_get_ident = threading.get_ident


def fail_span(span: Any, exc: BaseException) -> None:
    """Record ``exc`` on ``span`` and mark it ERROR (never raises)."""
    try:
        if span.is_recording():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    except Exception:  # pragma: no cover - a broken SDK must not change the model's exception
        pass


def _restore(obj: Any, name: str) -> "Unwrapped":
    return Unwrapped(obj, name)


def _identity(value: Any) -> Any:
    return value


class Unwrapped:
    """What a wrapper becomes after pickling or deep-copying: the plain class method.

    Calls ``type(obj).<name>`` bound to ``obj``; the first call also removes this
    placeholder from the instance so the object is left exactly as un-instrumented.
    """

    __slots__ = ("obj", "name")

    def __init__(self, obj: Any, name: str):
        self.obj = obj
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        obj = self.obj
        if obj.__dict__.get(self.name) is self:
            del obj.__dict__[self.name]
        return getattr(obj, self.name)(*args, **kwargs)

    def __reduce__(self):
        return (_restore, (self.obj, self.name))


class Wrapper:
    """Replaces one bound method (or a plain callable when ``owner`` is None).

    Thread-safe: holds no per-call state; per-call state lives in locals and in
    the state's context variables. Blocking: never, beyond the model itself.
    ``monitor`` is kept only to answer ``find_monitor``; the call path reads
    ``state`` alone.
    """

    __slots__ = ("orig", "owner", "name", "monitor", "state", "spec", "root", "fast", "quick", "span_name",
                 "__wrapped__", "__weakref__")

    def __init__(self, orig: Any, owner: Any, name: str, monitor: Any, state: HookState, root: bool, span_name: str,
                 spec: MethodSpec | None = None):
        self.orig = orig  # the bound method (or the function) to call
        self.owner = owner  # the instance whose __dict__ holds this wrapper, None for a plain callable
        self.name = name  # method name ("predict", ...; "__call__" for a callable)
        self.monitor = monitor
        self.state = state
        self.spec = spec or spec_for(name)  # what the root captures
        self.root = root  # captures (root) or only spans (step)
        self.fast = root and self.spec.fast  # may take the compact numpy path
        self.quick = self.fast and self.spec.mode != "fit"  # may take __call__'s own path (state.plain)
        self.span_name = span_name  # "Class.method"
        self.__wrapped__ = orig

    @property
    def __name__(self) -> str:  # noqa: D401 - mimic the wrapped method
        return self.name

    def __repr__(self) -> str:
        return f"<driftcar-instrumented {self.span_name} of {self.state.name!r}>"

    def __reduce__(self):
        if self.owner is None:
            return (_identity, (self.orig,))
        return (_restore, (self.owner, self.name))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        state = self.state
        if not (self.quick and state.plain):
            return self._general(state, args, kwargs)
        # The commonest call, every switch folded into ``state.plain`` (no span, no trace id, no ids,
        # no pause, every row kept): 169 bytecodes of the general path down to 113 (a trivial 1-row
        # model under callgrind: the hook's share of the model thread 16.3 k -> 15.1 k instructions).
        # Mark "a call of this monitor is running here" by mutating a per-context, per-thread
        # holder, set in the context once: ContextVar.set/reset on every call measured ~1.2 µs
        # in place (new context nodes and a Token, and it voids every context variable's cache).
        # Sharing the holder with copies of this context is harmless: asyncio tasks cannot
        # interleave inside a synchronous call, and another thread sees a foreign thread id.
        depth = state.active.get()
        ident = _get_ident()
        if depth is None or depth[0] != ident:
            depth = [ident, 0]
            state.active.set(depth)
        elif depth[1]:  # nested in a call of this monitor: no span to make (no provider)
            return self.orig(*args, **kwargs)
        state.tick += 1
        if state.tick & 255 == 1:
            state.recheck()  # the wall clock's anchor, a global provider set since
            if not state.plain:  # a provider now: this call gets its span
                return self._general(state, args, kwargs)
        depth[1] = 1
        t0 = _perf_ns()
        try:
            result = self.orig(*args, **kwargs)
        except Exception as error:
            if state.capture_on:
                record(state, self.spec, self.owner, args, kwargs, None, t0 + state.wall_offset, _perf_ns() - t0,
                       None, error)
            raise
        finally:
            depth[1] = 0
        duration_ns = _perf_ns() - t0
        if args and type(args[0]) is _ndarray and type(result) is _ndarray:
            record_array(state, self.name, args[0], result, t0 + state.wall_offset, duration_ns, None)
        else:
            record(state, self.spec, self.owner, args, kwargs, result, t0 + state.wall_offset, duration_ns, None, None)
        return result

    def _general(self, state: HookState, args: tuple, kwargs: dict) -> Any:
        """Any call :meth:`__call__` does not take itself: paused, a step, spans or trace ids, row ids,
        sampling, fit, a method that keeps no outputs."""
        if not state.enabled or (state.pausing and state.paused.get()):
            if state.pausing and self.root:
                state.paused_calls += 1
            return self.orig(*args, **kwargs)
        active = state.active
        # [thread id, depth] of this monitor's outermost call in this context, or None
        depth = active.get() if self.root else None
        if not self.root or (depth is not None and depth[1] and depth[0] == _get_ident()):
            if state.tracer is None or not state.otel_live:
                return self.orig(*args, **kwargs)
            return self._spanned(state.tracer, args, kwargs)
        state.tick += 1
        if state.tick & 255 == 1:
            state.recheck()  # the wall clock's anchor, a global provider set since
        tracer = state.tracer if state.otel_live else None
        if tracer is None and not state.capture_on and self.spec.mode != "fit":
            return self.orig(*args, **kwargs)  # nothing to trace, nothing to capture
        ident = _get_ident()  # mark the outermost call as __call__ does
        if depth is None or depth[0] != ident:
            depth = [ident, 0]
            active.set(depth)
        depth[1] += 1
        span = exc = result = None
        try:
            if tracer is not None:
                span, ctx_token = _start(tracer, self.span_name, state.span_attributes)
            t0 = _perf_ns()
            start_ns = t0 + state.wall_offset
            try:
                result = self.orig(*args, **kwargs)
            except Exception as error:
                exc = error
                if span is not None:
                    fail_span(span, error)
                raise
            finally:
                duration_ns = _perf_ns() - t0
                if exc is not None and state.capture_on:
                    record(state, self.spec, self.owner, args, kwargs, None, start_ns, duration_ns, span, exc)
        finally:
            if span is not None:
                _end(span, ctx_token)
            depth[1] -= 1
        self._after(state, args, kwargs, result, start_ns, duration_ns, span)
        return result

    def _after(self, state: HookState, args: tuple, kwargs: dict, result: Any, start_ns: int, duration_ns: int,
               span: Any) -> None:
        """Capture an outermost call that returned (the general path)."""
        if self.fast and state.fast and args and type(args[0]) is _ndarray and type(result) is _ndarray:
            record_array(state, self.name, args[0], result, start_ns, duration_ns, span)
        elif self.spec.mode == "fit":
            self._after_fit(args, kwargs, result, start_ns, duration_ns, span)
        elif state.capture_on:
            record(state, self.spec, self.owner, args, kwargs, result, start_ns, duration_ns, span, None)

    def _after_fit(self, args: tuple, kwargs: dict, result: Any, start_ns: int, duration_ns: int, span: Any) -> None:
        state = self.state
        if state.rewalk is not None:
            try:
                state.rewalk()  # fit may have created new sub-estimators (ColumnTransformer clones)
            except Exception:
                state.capture_failures += 1
        if state.capture_on:
            record(state, self.spec, self.owner, args, kwargs, result, start_ns, duration_ns, span, None)

    def _spanned(self, tracer: Any, args: tuple, kwargs: dict) -> Any:
        span, token = _start(tracer, self.span_name, None)
        if span is None:
            return self.orig(*args, **kwargs)
        try:
            return self.orig(*args, **kwargs)
        except Exception as exc:
            fail_span(span, exc)
            raise
        finally:
            _end(span, token)


def _start(tracer: Any, name: str, attributes: Any) -> tuple[Any, Any]:
    """Start a span and make it current; ``(None, None)`` if the tracing SDK fails (never raises)."""
    try:
        span = tracer.start_span(name, attributes=attributes)
    except Exception:
        return None, None
    try:
        return span, attach(set_span_in_context(span))
    except Exception:
        _end(span, None)
        return None, None


def _end(span: Any, token: Any) -> None:
    """Restore the context and end the span (never raises: the model's outcome must pass through)."""
    try:
        if token is not None:
            detach(token)
        span.end()
    except Exception:
        pass
