"""Sidecar configuration: one frozen :class:`SidecarConfig` from defaults, YAML, env and flags.

Every option has one dotted key (``tls.cert``) that is, at the same time,
- a YAML key (nested maps: ``tls: {cert: ...}``),
- an environment variable ``DRIFTCAR_`` + key upper-cased, dots -> ``_`` (``DRIFTCAR_TLS_CERT``),
- a command-line flag ``--`` + key with ``.``/``_`` -> ``-`` (``--tls-cert``).
Later sources win: defaults < YAML file < environment < flags.

All problems (unknown keys, bad values, inconsistent combinations) are collected
and raised together as one :class:`ConfigError` listing each with its path
(``config.yaml: window``, ``DRIFTCAR_WINDOW``, ``--window``), so a user fixes them
in one go. Nothing here exits the process; only the CLI does.

The bearer token itself is never a config value (it would end up in files and
process listings): it comes from ``token_file`` or the ``DRIFTCAR_TOKEN`` variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from driftcar._layers import Setting, env_layer, resolve, yaml_layer

__all__ = [
    "ConfigError",
    "Endpoint",
    "TLSConfig",
    "SidecarConfig",
    "ModelConfig",
    "EvaluatorConfig",
    "ApiConfig",
    "StoreConfig",
    "FleetConfig",
    "SecurityConfig",
    "OPTIONS",
    "load_config",
    "parse_duration",
    "format_duration",
    "parse_endpoint",
    "TOKEN_ENV",
]

TOKEN_ENV = "DRIFTCAR_TOKEN"
ENV_PREFIX = "DRIFTCAR_"
#: DRIFTCAR_* variables that belong to other driftcar components (the hook's shipper, the
#: ``profile`` and ``report`` commands, the test suite). A model container and its sidecar often share one
#: environment, so these are left alone while any other unknown DRIFTCAR_* is still refused.
_OTHER_COMPONENTS_ENV = frozenset({
    TOKEN_ENV, "DRIFTCAR_CONFIG", "DRIFTCAR_REQUIRE_ALL", "DRIFTCAR_LONG", "DRIFTCAR_SCREENSHOTS",
    "DRIFTCAR_ENDPOINT", "DRIFTCAR_PROTOCOL", "DRIFTCAR_HEADERS", "DRIFTCAR_TIMEOUT", "DRIFTCAR_COMPRESSION",
    "DRIFTCAR_CA_FILE", "DRIFTCAR_MAX_BUFFER_BYTES", "DRIFTCAR_MAX_BATCH_ROWS", "DRIFTCAR_MAX_BATCH_AGE",
    "DRIFTCAR_MAX_EXPORT_BYTES", "DRIFTCAR_EXIT_TIMEOUT", "DRIFTCAR_SHIP_PROCESS",
})
_OTHER_PREFIXES = ("DRIFTCAR_PROFILE_", "DRIFTCAR_REPORT_")  # the profile and report commands' options


class ConfigError(ValueError):
    """One or more configuration problems; ``problems`` lists ``(path, message)``."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = list(problems)
        lines = "\n".join(f"  {path}: {message}" for path, message in self.problems)
        super().__init__(f"invalid driftcar sidecar configuration ({len(self.problems)} problem(s)):\n{lines}")


# --------------------------------------------------------------------------- value parsers

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """``"1m"``, ``"30s"``, ``"1.5h"``, ``"250ms"`` or a number of seconds -> seconds (> 0).

    >>> parse_duration("1m"), parse_duration("250ms"), parse_duration(2)
    (60.0, 0.25, 2.0)
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, 1m, 1h; got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected a duration like 30s, 1m, 1h; got {value!r}")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"duration must be positive and finite, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds -> the shortest exact duration string (the ``drift.window`` attribute).

    >>> format_duration(60), format_duration(90), format_duration(1.5), format_duration(3600)
    ('1m', '90s', '1500ms', '1h')
    """
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and abs(seconds / size - round(seconds / size)) < 1e-9:
            return f"{int(round(seconds / size))}{unit}"
    return f"{int(round(seconds * 1000))}ms"


@dataclass(frozen=True)
class Endpoint:
    """A listen address; ``port`` 0 asks the OS for a free port (tests)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_endpoint(value: Any, *, allow_off: bool = True) -> Endpoint | None:
    """``HOST:PORT`` (``[v6]:PORT``) -> Endpoint; ``off``/``none``/``""`` -> None.

    >>> parse_endpoint("127.0.0.1:14317"), parse_endpoint("off")
    (Endpoint(host='127.0.0.1', port=14317), None)
    """
    text = str(value).strip()
    if allow_off and text.lower() in ("off", "none", "false", "disabled", ""):
        return None
    match = re.match(r"^\[([0-9a-fA-F:.]+)\]:(\d+)$", text) or re.match(r"^([^:\[\]]+):(\d+)$", text)
    if not match:
        raise ValueError(f"expected HOST:PORT{' or off' if allow_off else ''}, got {value!r}")
    port = int(match.group(2))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} outside 0..65535")
    return Endpoint(match.group(1), port)


def _positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a positive integer, got {value!r}")
    try:
        number = int(str(value).replace("_", "")) if not isinstance(value, int) else value
    except ValueError:
        raise ValueError(f"expected a positive integer, got {value!r}") from None
    if number <= 0:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return number


def _non_negative_int(value: Any) -> int:
    if str(value).strip() == "0":
        return 0
    return _positive_int(value)


_SIZE = re.compile(r"^\s*(\d+)\s*(b|kib|mib|gib|kb|mb|gb)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "kb": 1000, "mb": 1000**2, "gb": 1000**3}


def parse_size(value: Any) -> int:
    """``"16MiB"``, ``"512KiB"``, ``1048576`` -> bytes (> 0).

    >>> parse_size("16MiB"), parse_size(1024)
    (16777216, 1024)
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 16MiB, got {value!r}")
    if isinstance(value, int):
        number = value
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"expected a size like 16MiB or a number of bytes, got {value!r}")
        number = int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower() or None]
    if number <= 0:
        raise ValueError(f"size must be positive, got {value!r}")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {value!r}")


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}; got {value!r}")
        return text

    return parse


def _optional_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _path_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items = [p for p in re.split(r"[,\n]", value)]
    elif isinstance(value, (list, tuple)):
        items = [str(p) for p in value]
    else:
        raise ValueError(f"expected a list of files, got {type(value).__name__}")
    return tuple(p.strip() for p in items if p.strip())


def _float_map(value: Any) -> dict[str, float]:
    """``{"accuracy": 0.9}`` or ``"accuracy=0.9,f1=0.8"`` -> dict."""
    if value is None:
        return {}
    if isinstance(value, str):
        pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError(f"expected metric=value[,metric=value], got {value!r}")
        value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a map metric -> number, got {type(value).__name__}")
    out = {}
    for key, number in value.items():
        if key not in PERFORMANCE_METRICS:
            raise ValueError(f"unknown metric {key!r} (known: {', '.join(PERFORMANCE_METRICS)})")
        try:
            out[str(key)] = float(number)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: expected a number, got {number!r}") from None
    return out


def _drift(value: Any):
    """The ``drift`` section -> ``driftcar.stats.DriftConfig`` (validated by the stats engine)."""
    if value is None or value == {}:
        return None
    if isinstance(value, str):
        import yaml

        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"not valid YAML/JSON: {exc}") from None
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a map of drift settings, got {type(value).__name__}")
    from driftcar.stats import DriftConfig

    return DriftConfig.from_mapping(value, path="drift")


PERFORMANCE_METRICS = ("accuracy", "precision", "recall", "f1", "estimated_accuracy", "mae", "rmse")


# --------------------------------------------------------------------------- the options


@dataclass(frozen=True)
class Option:
    """One configuration key: dotted ``key``, parser, default and help text."""

    key: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    metavar: str = "VALUE"
    multiple: bool = False  # flag may repeat (--reference A --reference B)

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper().replace(".", "_")

    @property
    def flag(self) -> str:
        return "--" + self.key.replace(".", "-").replace("_", "-")

    @property
    def dest(self) -> str:
        return "cfg_" + self.key.replace(".", "__")


OPTIONS: tuple[Option, ...] = (
    Option("grpc", parse_endpoint, "127.0.0.1:14317", "OTLP/gRPC receiver address, or off", "HOST:PORT"),
    Option("http", parse_endpoint, "127.0.0.1:14318", "OTLP/HTTP receiver + JSON API address, or off", "HOST:PORT"),
    Option("prometheus", parse_endpoint, "127.0.0.1:9464", "embedded Prometheus /metrics address, or off", "HOST:PORT"),
    Option("window", parse_duration, "1m", "tumbling window length (30s, 1m, 1h)", "DURATION"),
    Option("reference", _path_list, (), "reference profile file(s) (driftcar profile); MODEL[@VERSION]=FILE "
           "binds one to a model, a bare FILE applies to every model without its own", "FILE", multiple=True),
    Option("live_reference_rows", _non_negative_int, 10_000,
           "without a reference, take the first N live rows as one (flagged source=live); 0 = never", "N"),
    Option("max_reference_rows", _positive_int, 200_000, "rows kept from reference batches to build a profile", "N"),
    Option("state_dir", _optional_str, None, "checkpoint state here at each window close and restore on start", "DIR"),
    Option("windows_kept", _positive_int, 60, "closed windows kept per model (API, sliding views, checkpoint)", "N"),
    Option("export", _choice("otlp", "console", "none"), "otlp", "where metrics and events go", "otlp|console|none"),
    Option("otlp_endpoint", _optional_str, None, "OTLP endpoint (default: OTEL_EXPORTER_OTLP_* / SDK default)", "URL"),
    Option("otlp_protocol", _optional_str, None, "grpc or http/protobuf (default: OTEL_EXPORTER_OTLP_PROTOCOL)", "P"),
    Option("export_interval", lambda v: None if v in (None, "") else parse_duration(v), None,
           "metric export interval (default: OTEL_METRIC_EXPORT_INTERVAL / 60s)", "DURATION"),
    Option("max_models", _positive_int, 100, "cap on (model, version) pairs; extra ones are refused and counted", "N"),
    Option("max_features", _positive_int, 500, "cap on exported features per model (rest -> __overflow__)", "N"),
    Option("max_categories", _positive_int, 50, "cap on exported categories per feature (rest -> __other__)", "N"),
    Option("grpc_front", _choice("auto", "on", "off"), "auto", "run the OTLP/gRPC receiver (receive, parse, "
           "decode) in a second process beside the sidecar's; auto: on with 2+ CPUs (a container's CPU limit counts)", "auto|on|off"),
    Option("max_request_bytes", parse_size, "32MiB", "largest request after decompression, both transports", "SIZE"),
    Option("queue_max_rows", _positive_int, 1_000_000, "ingest queue bound in rows; full -> UNAVAILABLE/503", "N"),
    Option("queue_max_bytes", parse_size, "256MiB", "ingest queue bound in body bytes; full -> UNAVAILABLE/503", "SIZE"),
    Option("retry_after", parse_duration, "1s", "retry delay suggested to clients when the queue is full", "DURATION"),
    Option("label_ttl", parse_duration, "1h", "how long predictions wait for their labels", "DURATION"),
    Option("label_max_rows", _positive_int, 100_000, "predictions kept waiting for labels per model", "N"),
    Option("trace_samples", _non_negative_int, 10, "trace ids sampled per window for drift events", "N"),
    Option("performance_thresholds", _float_map, {},
           "degraded-performance thresholds, e.g. accuracy=0.9,rmse=2.5 (below for scores, above for errors)",
           "METRIC=V,..."),
    Option("drift", _drift, None, "drift decision settings (YAML map: methods, thresholds, min_samples, "
           "enter_windows, exit_windows, features: {NAME: {method, threshold, enabled}}, ...)", "YAML"),
    Option("token_file", _optional_str, None, f"bearer token file for both receivers (or env {TOKEN_ENV})", "FILE"),
    Option("tls.cert", _optional_str, None, "TLS certificate (PEM) for both receivers and the API", "FILE"),
    Option("tls.key", _optional_str, None, "TLS private key (PEM)", "FILE"),
    Option("tls.client_ca", _optional_str, None, "require client certificates signed by this CA (PEM)", "FILE"),
    Option("allow_insecure_bind", _bool, False, "allow non-loopback binds without TLS or token (logs a warning)", ""),
    Option("shutdown_timeout", parse_duration, "10s", "SIGTERM: deadline to close, evaluate and export", "DURATION"),
    Option("log_level", _choice("debug", "info", "warning", "error"), "info", "log level", "LEVEL"),
    Option("role", _choice("pod", "gateway"), "pod", "pod: judge the local rows; gateway: merge the driftcar.window "
           "records of many replicas and judge once per model (fleet)", "pod|gateway"),
    Option("forward", _optional_str, None, "send each closed window to this fleet gateway or Collector (OTLP: "
           "host:port or http://host:port for gRPC, http://host:port/v1/logs for HTTP)", "URL"),
    Option("fleet_wait", lambda v: None if v in (None, "") else parse_duration(v), None,
           "gateway: how long after a window's end it waits for late replicas (default: one window)", "DURATION"),
    Option("local_verdicts", _bool, True, "pod: keep judging the local window too when forwarding", "BOOL"),
    Option("replica", _optional_str, None, "this replica's identity in forwarded windows (default: POD_NAME, "
           "else the host name)", "ID"),
)
_BY_KEY = {o.key: o for o in OPTIONS}


def default(key: str) -> Any:
    """The parsed default of option ``key``: the one place a default is written is :data:`OPTIONS`."""
    option = _BY_KEY[key]
    return option.parse(option.default)


def _field(key: str) -> Any:
    """A dataclass field defaulting to option ``key`` (a fresh copy of maps)."""
    value = default(key)
    if isinstance(value, dict):
        return field(default_factory=lambda: dict(value))
    return value


@dataclass(frozen=True)
class TLSConfig:
    cert: str | None = None
    key: str | None = None
    client_ca: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.cert)


@dataclass(frozen=True)
class ModelConfig:
    """What one model's state needs, and nothing else (made by :meth:`SidecarConfig.model_config`)."""

    window_s: float
    windows_kept: int
    max_reference_rows: int
    live_reference_rows: int
    label_ttl_s: float
    label_max_rows: int
    trace_samples: int
    named_references: tuple[str, ...]  # models and model@versions given a reference file
    drift: Any  # driftcar.stats.DriftConfig; None = its defaults


@dataclass(frozen=True)
class EvaluatorConfig:
    """What the window-close evaluator reads (made by :meth:`SidecarConfig.evaluator_config`)."""

    window_s: float
    performance_thresholds: tuple[tuple[str, float], ...]  # (metric, threshold), in option order
    local_verdicts: bool
    drift: Any  # driftcar.stats.DriftConfig; None = its defaults

    @property
    def window(self) -> str:
        """The window as a duration string (``drift.window`` attribute)."""
        return format_duration(self.window_s)


@dataclass(frozen=True)
class ApiConfig:
    """What the JSON API reads (made by :meth:`SidecarConfig.api_config`)."""

    window_s: float
    windows_kept: int  # the largest ``?windows=K`` a sliding view may ask for


class _References:
    """The one lookup of a model's configured reference, for every config that holds ``references``."""

    references: Mapping[str, str]

    def reference_for(self, model: str, version: str) -> str | None:
        """Profile file for (model, version): exact ``model@version``, then ``model``, then ``*``."""
        for key in (f"{model}@{version}", model, "*"):
            if key in self.references:
                return self.references[key]
        return None


@dataclass(frozen=True)
class StoreConfig(_References):
    """What the state store reads (made by :meth:`SidecarConfig.store_config`)."""

    max_models: int
    references: Mapping[str, str]  # read-only: "model", "model@version" or "*" -> profile file
    model: ModelConfig  # handed to each model's state


@dataclass(frozen=True)
class FleetConfig(_References):
    """What the fleet gateway reads (made by :meth:`SidecarConfig.fleet_config`)."""

    window_s: float
    wait_s: float  # after a window's end, for late replicas (``fleet_wait``, default one window)
    max_models: int
    retry_after_s: float
    label_max_rows: int
    references: Mapping[str, str]  # read-only, as in :class:`StoreConfig`


@dataclass(frozen=True)
class SecurityConfig:
    """What access control reads (made by :meth:`SidecarConfig.security_config`); the token is not in it."""

    token_file: str | None
    tls: TLSConfig


@dataclass(frozen=True)
class SidecarConfig(_References):
    """The whole sidecar configuration (immutable). Build it with :func:`load_config`.

    Durations are seconds, sizes bytes; endpoints are ``None`` when disabled.
    ``references`` maps ``"model"``, ``"model@version"`` or ``"*"`` to a profile file.
    """

    grpc: Endpoint | None = _field("grpc")
    http: Endpoint | None = _field("http")
    prometheus: Endpoint | None = _field("prometheus")
    window_s: float = _field("window")
    references: Mapping[str, str] = field(default_factory=dict)
    live_reference_rows: int = _field("live_reference_rows")
    max_reference_rows: int = _field("max_reference_rows")
    state_dir: str | None = _field("state_dir")
    windows_kept: int = _field("windows_kept")
    export: str = _field("export")
    otlp_endpoint: str | None = _field("otlp_endpoint")
    otlp_protocol: str | None = _field("otlp_protocol")
    export_interval_s: float | None = _field("export_interval")
    max_models: int = _field("max_models")
    max_features: int = _field("max_features")
    max_categories: int = _field("max_categories")
    grpc_front: str = _field("grpc_front")
    max_request_bytes: int = _field("max_request_bytes")
    queue_max_rows: int = _field("queue_max_rows")
    queue_max_bytes: int = _field("queue_max_bytes")
    retry_after_s: float = _field("retry_after")
    label_ttl_s: float = _field("label_ttl")
    label_max_rows: int = _field("label_max_rows")
    trace_samples: int = _field("trace_samples")
    performance_thresholds: Mapping[str, float] = _field("performance_thresholds")
    drift: Any = _field("drift")  # driftcar.stats.DriftConfig; None = its defaults
    token_file: str | None = _field("token_file")
    tls: TLSConfig = TLSConfig(default("tls.cert"), default("tls.key"), default("tls.client_ca"))
    allow_insecure_bind: bool = _field("allow_insecure_bind")
    shutdown_timeout_s: float = _field("shutdown_timeout")
    log_level: str = _field("log_level")
    role: str = _field("role")
    forward: str | None = _field("forward")
    fleet_wait_s: float | None = _field("fleet_wait")
    local_verdicts: bool = _field("local_verdicts")
    replica: str | None = _field("replica")

    @property
    def fleet_wait(self) -> float:
        """Seconds a gateway waits after a window's end for late replicas (default: one window)."""
        return self.window_s if self.fleet_wait_s is None else self.fleet_wait_s

    def replica_id(self, env: Mapping[str, str] | None = None) -> str:
        """This replica's identity: ``replica``, else ``POD_NAME``, else ``HOSTNAME``/the host name."""
        import socket

        env = os.environ if env is None else env
        return self.replica or env.get("POD_NAME") or env.get("HOSTNAME") or socket.gethostname() or "unknown"

    @property
    def window(self) -> str:
        """The window as a duration string (``drift.window`` attribute)."""
        return format_duration(self.window_s)

    def model_config(self, drift: Any = None) -> ModelConfig:
        """The part one model's state reads (``drift``: in place of ``self.drift``)."""
        return ModelConfig(self.window_s, self.windows_kept, self.max_reference_rows, self.live_reference_rows,
                           self.label_ttl_s, self.label_max_rows, self.trace_samples,
                           tuple(sorted(k for k in self.references if k != "*")),
                           self.drift if drift is None else drift)

    def evaluator_config(self, drift: Any = None) -> EvaluatorConfig:
        """The part the evaluator reads (``drift``: in place of ``self.drift``)."""
        return EvaluatorConfig(self.window_s, tuple(self.performance_thresholds.items()), self.local_verdicts,
                               self.drift if drift is None else drift)

    def api_config(self) -> ApiConfig:
        """The part the JSON API reads."""
        return ApiConfig(self.window_s, self.windows_kept)

    def store_config(self, drift: Any = None) -> StoreConfig:
        """The part the state store reads (``drift``: in place of ``self.drift`` for each model)."""
        return StoreConfig(self.max_models, MappingProxyType(dict(self.references)), self.model_config(drift))

    def fleet_config(self) -> FleetConfig:
        """The part the fleet gateway reads."""
        return FleetConfig(self.window_s, self.fleet_wait, self.max_models, self.retry_after_s, self.label_max_rows,
                           MappingProxyType(dict(self.references)))

    def security_config(self) -> SecurityConfig:
        """The part access control reads (token file and TLS files)."""
        return SecurityConfig(self.token_file, self.tls)

    def insecure_binds(self, env: Mapping[str, str] | None = None) -> list[str]:
        """Non-loopback receiver/API binds that have neither TLS nor a token configured."""
        env = os.environ if env is None else env
        if self.tls.enabled or self.token_file or (env.get(TOKEN_ENV) or "").strip():
            return []
        return [f"{n}={ep}" for n, ep in (("grpc", self.grpc), ("http", self.http), ("prometheus", self.prometheus))
                if ep is not None and not ep.is_loopback]


_RENAMES = {  # option key -> SidecarConfig field
    "window": "window_s",
    "export_interval": "export_interval_s",
    "retry_after": "retry_after_s",
    "label_ttl": "label_ttl_s",
    "shutdown_timeout": "shutdown_timeout_s",
    "fleet_wait": "fleet_wait_s",
}


def _parse_references(items: tuple[str, ...], where: str, problems: list) -> dict[str, str]:
    refs: dict[str, str] = {}
    for item in items:
        target, path = ("*", item)
        if "=" in item:
            target, path = item.split("=", 1)
            target = target.strip()
            if not target:
                problems.append((where, f"empty model name in {item!r}"))
                continue
        if not os.path.isfile(path):
            problems.append((where, f"reference file not found: {path}"))
            continue
        if target in refs:
            problems.append((where, f"two reference files for {target!r}"))
            continue
        refs[target] = path
    return refs


def load_config(
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> SidecarConfig:
    """Build the configuration; raise :class:`ConfigError` listing every problem.

    ``env`` defaults to ``os.environ`` (only ``DRIFTCAR_*`` names are read; unknown
    ones are reported, except :data:`TOKEN_ENV` and ``DRIFTCAR_CONFIG``).
    ``flags`` maps option keys (``"tls.cert"``) to values; ``None`` values are ignored.
    """
    env = os.environ if env is None else env
    problems: list[tuple[str, str]] = []
    defaults = {o.key: Setting(o.default, "default") for o in OPTIONS}
    from_yaml = yaml_layer(path, _BY_KEY, problems)
    from_env = env_layer(env, {o.env: o.key for o in OPTIONS}, ENV_PREFIX, problems,
                         ignore=lambda name: name in _OTHER_COMPONENTS_ENV or name.startswith(_OTHER_PREFIXES))
    from_flags = _flag_layer(flags or {}, problems)
    values, where = resolve({o.key: o.parse for o in OPTIONS}, (defaults, from_yaml, from_env, from_flags), problems)
    where = {key: source for key, source in where.items() if source != "default"}
    kwargs = {_RENAMES.get(key, key): value for key, value in values.items()
              if not key.startswith("tls.") and key != "reference"}
    kwargs["references"] = _parse_references(values.get("reference", ()), where.get("reference", "reference"), problems)
    kwargs["tls"] = TLSConfig(values.get("tls.cert"), values.get("tls.key"), values.get("tls.client_ca"))
    _check_files(values, where, env, problems)
    _check_receivers(values, problems)
    if problems:
        raise ConfigError(problems)
    config = SidecarConfig(**kwargs)
    insecure = config.insecure_binds(env)
    if insecure and not config.allow_insecure_bind:
        raise ConfigError([(
            "allow_insecure_bind",
            f"refusing to bind {', '.join(insecure)} beyond loopback without TLS or a token; "
            "configure tls.cert/tls.key or token_file, or pass --allow-insecure-bind",
        )])
    return config


def _flag_layer(flags: Mapping[str, Any], problems: list) -> dict[str, Setting]:
    """Command-line values as the top layer; empty ones (not given) are left out."""
    layer: dict[str, Setting] = {}
    for key, value in flags.items():
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        if key not in _BY_KEY:
            problems.append((f"--{key}", "unknown option"))
            continue
        layer[key] = Setting(value, _BY_KEY[key].flag)
    return layer


def _check_files(values: Mapping[str, Any], where: Mapping[str, str], env: Mapping[str, str], problems: list) -> None:
    """TLS pairs, and every file option naming a readable file (an empty token is no token)."""
    cert, key, client_ca = values.get("tls.cert"), values.get("tls.key"), values.get("tls.client_ca")
    if bool(cert) != bool(key):
        problems.append(("tls", "tls.cert and tls.key must be given together"))
    if client_ca and not cert:
        problems.append(("tls.client_ca", "client certificates need tls.cert and tls.key"))
    for name in ("tls.cert", "tls.key", "tls.client_ca", "token_file"):
        file = values.get(name)
        if file and not os.path.isfile(file):
            problems.append((where.get(name, name), f"file not found: {file}"))
    if values.get("token_file") and os.path.isfile(values["token_file"]):
        try:
            with open(values["token_file"], encoding="utf-8") as fh:
                if not fh.read().strip():
                    problems.append((where["token_file"], "token file is empty"))
        except OSError as exc:
            problems.append((where["token_file"], f"cannot read token file: {exc.strerror}"))
    if TOKEN_ENV in env and not str(env[TOKEN_ENV]).strip():
        problems.append((TOKEN_ENV, "is set but empty"))


def _check_receivers(values: Mapping[str, Any], problems: list) -> None:
    """At least one receiver, no two listeners on one address, no forwarding gateway."""
    if values.get("grpc") is None and values.get("http") is None and "grpc" in values and "http" in values:
        problems.append(("grpc/http", "at least one receiver must be enabled"))
    seen: dict[tuple, str] = {}
    for name in ("grpc", "http", "prometheus"):
        ep = values.get(name)
        if ep is None:
            continue
        if ep.port and (ep.host, ep.port) in seen:
            problems.append((name, f"same address as {seen[(ep.host, ep.port)]}: {ep}"))
        seen[(ep.host, ep.port)] = name
    if values.get("role") == "gateway" and values.get("forward"):
        problems.append(("forward", "a gateway judges the fleet itself; forward is for pod sidecars"))
