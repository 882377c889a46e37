"""``driftcar.instrument`` / ``driftcar.uninstrument``: put the hook on a model in one line.

What gets wrapped (instance level: other instances of the class are untouched):

- scikit-learn-style estimators: ``fit``, ``transform``, ``predict``,
  ``predict_proba`` (``methods=`` to change), on the model itself (captures at
  the outermost call) and, when spans are on, on every inner estimator found
  through Pipeline / FeatureUnion / ColumnTransformer and opt-in ``wrappers``
  attributes (spans only; see :mod:`driftcar.hook.walk`). After an outermost
  ``fit`` the tree is walked again, so fitted clones (``transformers_``) get spans.
- river-style models: ``predict_one``, ``predict_proba_one``, ``learn_one``,
  ``transform_one`` (dict rows; ``learn_one``'s ``y`` is captured as the label).
- any other callable: ``monitor.model`` (also ``monitor.wrapped``, and the
  Monitor itself) is the instrumented callable to call instead. Its first
  positional argument (or its only/``X``/``x`` keyword argument) is the input,
  its return value the prediction (a dict return value: probabilities per class).

What each method captures at the root: ``predict``/``predict_one``/callables:
inputs and outputs; ``predict_proba``/``predict_proba_one``: inputs and
probabilities (classes from ``classes_``); ``transform``/``transform_one``:
inputs; ``learn_one``: inputs and label; ``fit`` and any other configured
method: only the call (latency, rows, outcome). Every outermost call is in the
calls table whatever the sampling rate; ``sample`` is the probability that a
call's rows are captured (all rows of a sampled call are kept).

Numpy inputs have no column names: they travel as ``x0``, ``x1``, ... unless
``feature_names=[...]`` names them (checked against the model's
``n_features_in_`` when it has one; a call whose input width differs is
captured under ``x0``, ``x1``, ... and counted in ``stats["feature_name_mismatches"]``,
with one warning). DataFrames and dict rows keep their own names.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import types
from dataclasses import fields
from typing import Any, Iterable, Mapping, Sequence

from opentelemetry import trace

from driftcar.hook.monitor import CALLABLES, Monitor
from driftcar.hook.walk import walk
from driftcar.hook.wrappers import Unwrapped, Wrapper

__all__ = [
    "instrument",
    "uninstrument",
    "find_monitor",
    "DEFAULT_ENDPOINT",
    "DEFAULT_PROTOCOL",
    "PROTOCOLS",
    "SKLEARN_METHODS",
    "RIVER_METHODS",
    "DEFAULT_METHODS",
]

log = logging.getLogger("driftcar.hook")

DEFAULT_ENDPOINT = "http://127.0.0.1:14318"  # the sidecar's OTLP/HTTP port (see ShipperConfig.protocol)
DEFAULT_PROTOCOL = "grpc"
PROTOCOLS = ("grpc", "http/protobuf")
SKLEARN_METHODS = ("fit", "transform", "predict", "predict_proba")
RIVER_METHODS = ("learn_one", "predict_one", "predict_proba_one", "transform_one")
DEFAULT_METHODS = SKLEARN_METHODS + RIVER_METHODS
TRACER_NAME = "driftcar.hook"


class _NoShipper:
    """Stand-in when ``capture=False`` (spans only): accepts nothing, sends nothing."""

    stats: dict = {}

    def offer(self, captured: Any) -> None:
        pass

    def flush(self, timeout: float = 0.0) -> bool:
        return True

    def shutdown(self, timeout: float = 0.0) -> bool:
        return True


def _method(obj: Any, name: str) -> Any:
    try:
        value = getattr(obj, name, None)
    except Exception:  # available_if and properties may raise anything on unfitted models
        return None
    return value if callable(value) else None


def find_monitor(model: Any) -> Monitor | None:
    """The Monitor already instrumenting ``model`` (object, wrapped callable or Monitor), else None."""
    if isinstance(model, Monitor):
        return model
    if isinstance(model, Wrapper):
        return model.monitor
    state = getattr(model, "__dict__", None)
    if isinstance(state, dict) and not callable(getattr(model, "__code__", None)):
        for value in list(state.values()):
            if isinstance(value, Wrapper) and value.root and value.owner is model:
                return value.monitor
    try:
        return CALLABLES.get(model)
    except TypeError:  # unhashable or not weak-referenceable
        return None


def _check_options(options: dict) -> None:
    """Unknown keyword arguments are typos of instrument()'s own, or not shipping options: say which."""
    from driftcar.hook.shipping import ShipperConfig

    allowed = {f.name for f in fields(ShipperConfig)} - {"model_name", "model_version"}
    unknown = sorted(set(options) - allowed)
    if not unknown:
        return
    own = [p for p in inspect.signature(instrument).parameters if p != "shipping_options"]
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, own + sorted(allowed), n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise TypeError(f"instrument() got an unexpected keyword argument {', '.join(hints)}; besides its own "
                    f"arguments it takes the shipping options {', '.join(sorted(allowed - set(own)))}")


def _feature_names(names: Any, model: Any) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"driftcar.instrument: feature_names must be a sequence of non-empty str, got {names!r}")
    names = tuple(names)
    if len(set(names)) != len(names):
        raise ValueError(f"driftcar.instrument: feature_names has duplicates: {sorted({n for n in names if names.count(n) > 1})}")
    width = getattr(model, "n_features_in_", None)
    if isinstance(width, int) and width != len(names):
        raise ValueError(f"driftcar.instrument: feature_names has {len(names)} names but "
                         f"{type(model).__name__} was fitted on {width} features")
    return names


def _validate(name: Any, version: Any, sample: Any, protocol: Any, endpoint: Any, methods: Any, wrappers: Any) -> tuple:
    problems = []
    if not isinstance(name, str) or not name or len(name) > 256:
        problems.append(f"name must be a non-empty str of at most 256 characters, got {name!r}")
    if not isinstance(version, str) or len(version) > 256:
        problems.append(f"version must be a str of at most 256 characters, got {version!r}")
    if isinstance(sample, bool) or not isinstance(sample, (int, float)) or not 0.0 <= float(sample) <= 1.0:
        problems.append(f"sample must be a number in [0, 1], got {sample!r}")
    if protocol is not None and protocol not in PROTOCOLS:
        problems.append(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if endpoint is not None and (not isinstance(endpoint, str) or not endpoint.strip()):
        problems.append(f"endpoint must be a URL such as http://127.0.0.1:14317, got {endpoint!r}")
    if methods is None:
        methods = DEFAULT_METHODS
    elif isinstance(methods, str) or not all(isinstance(m, str) and m.isidentifier() for m in methods):
        problems.append(f"methods must be a sequence of method names, got {methods!r}")
    wrapped: dict[type, tuple[str, ...]] = {}
    for cls, attrs in (wrappers or {}).items():
        if not isinstance(cls, type):
            problems.append(f"wrappers keys must be classes, got {cls!r}")
            continue
        attrs = (attrs,) if isinstance(attrs, str) else tuple(attrs)
        if not all(isinstance(a, str) for a in attrs):
            problems.append(f"wrappers[{cls.__name__}] must list attribute names, got {attrs!r}")
        wrapped[cls] = attrs
    if problems:
        raise ValueError("driftcar.instrument: " + "; ".join(problems))
    return tuple(methods), wrapped


def instrument(
    model: Any,
    name: str | None = None,
    version: str | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    sample: float = 1.0,
    methods: Sequence[str] | None = None,
    wrappers: Mapping[type, Iterable[str]] | None = None,
    capture: bool = True,
    spans: bool = True,
    tracer_provider: Any = None,
    shipper: Any = None,
    copy: bool = True,
    feature_names: Sequence[str] | None = None,
    **shipping_options: Any,
) -> Monitor:
    """Instrument ``model`` in place and return its :class:`~driftcar.hook.monitor.Monitor`.

    name / version: the model's identity downstream (default: the class or function name,
    ``"unknown"``). endpoint / protocol: the sidecar or a collector (default
    ``$DRIFTCAR_ENDPOINT`` / ``$DRIFTCAR_PROTOCOL``, else OTLP/HTTP to ``http://127.0.0.1:14318``,
    posting to ``<endpoint>/v1/logs``; an endpoint given without a protocol is gRPC). sample:
    probability that a call's rows are captured (calls are always counted). methods: names to
    wrap (default :data:`DEFAULT_METHODS`). wrappers: opt-in ``{Class: ["attr", ...]}`` inner
    estimators to trace. capture / spans: turn row capture / spans off. tracer_provider:
    default the global one. shipper: an object with ``offer/flush/shutdown/stats`` (tests);
    otherwise a :class:`driftcar.hook.shipping.Shipper` made with ``shipping_options``
    (``ShipperConfig`` fields). copy: snapshot each captured input and output (default);
    ``copy=False`` keeps references, only correct when the caller never mutates an array
    after the call. feature_names: names of numpy input columns (default ``x0``, ``x1``, ...).

    An instrumented model gives back its Monitor. ValueError: bad arguments; TypeError: an
    unknown keyword or a non-model. Not safe against a concurrent (un)instrument of one model.
    """
    _check_options(shipping_options)
    existing = _existing(model, name, version)
    if existing is not None:
        return existing
    if isinstance(model, type):
        raise TypeError(f"driftcar.instrument: pass a model instance, not the class {model.__name__}")
    name = (getattr(model, "__name__", None) or type(model).__name__) if name is None else name
    numeric = isinstance(version, (int, float)) and not isinstance(version, bool)
    version = "unknown" if version is None else (str(version) if numeric else version)
    methods, wrappers = _validate(name, version, sample, protocol, endpoint, methods, wrappers)
    root_methods = _root_methods(model, methods)
    if shipper is not None and shipping_options:
        raise TypeError(f"driftcar.instrument: shipping options {sorted(shipping_options)} need the default shipper")
    names = _feature_names(feature_names, model)
    tracer = trace.get_tracer(TRACER_NAME, _version(), tracer_provider=tracer_provider) if spans else None
    owns = shipper is None or not capture
    shipper = _shipper(shipper, capture, name, version, endpoint, protocol, shipping_options)
    monitor = Monitor(model, name=name, version=version, shipper=shipper, owns_shipper=owns, sample=float(sample),
                      capture=bool(capture), tracer=tracer, explicit_provider=tracer_provider is not None,
                      copy=bool(copy), feature_names=names)
    if not root_methods:
        _wrap_callable(monitor, model)
    else:
        _wrap_object(monitor, model, methods, root_methods, wrappers, spans)
    return monitor


def _existing(model: Any, name: str | None, version: Any) -> Monitor | None:
    existing = find_monitor(model)
    if existing is not None and ((name is not None and name != existing.name)
                                 or (version is not None and str(version) != existing.version)):
        log.warning("driftcar.instrument: %r is already instrumented as %s/%s; returning that Monitor "
                    "(uninstrument it first to change its name or version)", type(model).__name__,
                    existing.name, existing.version)
    return existing


def _root_methods(model: Any, methods: tuple[str, ...]) -> list[str]:
    root_methods = [m for m in methods if _method(model, m) is not None]
    if root_methods and not isinstance(getattr(model, "__dict__", None), dict):
        raise TypeError(
            f"driftcar.instrument: {type(model).__name__} has no instance __dict__ to hold wrappers; "
            f"instrument one of its methods instead, e.g. driftcar.instrument(model.{root_methods[0]}, name=...)"
        )
    if not root_methods and not callable(model):
        raise TypeError(
            f"driftcar.instrument: {type(model).__name__} has none of the methods {list(methods)} and is not callable"
        )
    return root_methods


def _wrap_callable(monitor: Monitor, function: Any) -> None:
    owner = getattr(function, "__self__", None)
    if owner is not None and not isinstance(owner, types.ModuleType) and hasattr(function, "__name__"):
        span_name = f"{type(owner).__name__}.{function.__name__}"  # a bound method: its instance's class
    else:
        span_name = getattr(function, "__qualname__", None) or f"{type(function).__name__}.__call__"
    monitor.wrap_callable(function, span_name)
    try:
        CALLABLES[function] = monitor
    except TypeError:
        pass


def _wrap_object(monitor: Monitor, model: Any, methods: tuple[str, ...], root_methods: list[str],
                 wrappers: dict, spans: bool) -> None:
    cls_name = type(model).__name__
    for method in root_methods:
        _wrap(monitor, model, method, True, f"{cls_name}.{method}")
    if not spans:
        return

    def rewalk() -> None:
        for step in walk(model, wrappers):
            for method in methods:
                if _method(step, method) is not None:
                    _wrap(monitor, step, method, False, f"{type(step).__name__}.{method}")

    monitor.state.rewalk = rewalk
    rewalk()


def _wrap(monitor: Monitor, obj: Any, method: str, root: bool, span_name: str) -> None:
    state = getattr(obj, "__dict__", None)
    if not isinstance(state, dict):
        if root:
            raise TypeError(f"driftcar.instrument: cannot wrap {type(obj).__name__}.{method} (no instance __dict__)")
        return  # an inner step we cannot wrap only loses its span
    current = state.get(method)
    if isinstance(current, Wrapper):
        return  # already wrapped (by this or another monitor): never wrap twice
    if isinstance(current, Unwrapped):
        del state[method]  # left over from unpickling: start from the class method
    original = _method(obj, method)
    if original is not None:
        monitor.wrap(obj, method, original, root, span_name)


def uninstrument(model: Any, timeout: float = 5.0) -> Any:
    """Remove driftcar from ``model`` and return the original object / callable.

    Restores every wrapped method (root and inner steps), then flushes and stops
    the shipper the Monitor created (blocking up to ``timeout`` seconds). For a
    plain callable the wrapped callable keeps working as a pass-through. Safe to
    call on a model that is not instrumented (returns it unchanged).
    """
    monitor = find_monitor(model)
    if monitor is None:
        state = getattr(model, "__dict__", None)
        if isinstance(state, dict):  # an unpickled copy: drop the placeholders
            for key in [k for k, v in state.items() if isinstance(v, Unwrapped)]:
                del state[key]
        return model
    monitor.unwrap(timeout)
    return monitor.original


def _shipper(given: Any, capture: bool, name: str, version: str, endpoint: Any, protocol: Any, options: dict) -> Any:
    if not capture:
        return _NoShipper()
    return given if given is not None else _default_shipper(name, version, endpoint, protocol, options)


def _default_shipper(name: str, version: str, endpoint: str, protocol: str, options: dict) -> Any:
    from driftcar.hook.shipping import Shipper, ShipperConfig

    # from_env applies DRIFTCAR_* variables and the defaults (OTLP/HTTP to DEFAULT_ENDPOINT, gRPC
    # to an endpoint given without a protocol); explicit arguments win.
    config = ShipperConfig.from_env(name, version, endpoint=endpoint, protocol=protocol, **options)
    return Shipper(config)


def _version() -> str:
    from driftcar._version import __version__

    return __version__
