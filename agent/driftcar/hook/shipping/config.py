"""Shipper configuration: parameters only, validated at construction.

:class:`ShipperConfig` is a frozen dataclass (config is separate from state);
:meth:`ShipperConfig.from_env` reads the ``DRIFTCAR_*`` variables. Every problem
is reported at once, in one ``ValueError``.

Environment (all optional; keyword overrides win over the environment):

================================  ==========================================================
``DRIFTCAR_ENDPOINT``             ``http://127.0.0.1:14318`` (http/protobuf, which posts to
                                  ``<endpoint>/v1/logs``) / ``http://127.0.0.1:14317`` (gRPC)
``DRIFTCAR_PROTOCOL``             ``grpc`` | ``http/protobuf`` (default: http/protobuf to the
                                  default endpoint, grpc to an endpoint given without a protocol)
``DRIFTCAR_HEADERS``              ``k=v,k2=v2`` (values URL-decoded, like ``OTEL_EXPORTER_OTLP_HEADERS``)
``DRIFTCAR_TIMEOUT``              seconds per export, retries included (default 10)
``DRIFTCAR_COMPRESSION``          ``gzip`` | ``none`` (default: none to a loopback endpoint, else gzip)
``DRIFTCAR_MAX_BUFFER_BYTES``     buffer bound, bytes or ``64MiB``-style (default 64 MiB)
``DRIFTCAR_MAX_BATCH_ROWS``       rows per batch (default 10,000)
``DRIFTCAR_MAX_BATCH_AGE``        seconds an item waits at most before its batch is sealed (default 1)
``DRIFTCAR_MAX_EXPORT_BYTES``     cap of one serialized OTLP request, bytes or ``3MiB`` (default 3 MiB)
``DRIFTCAR_EXIT_TIMEOUT``         seconds the flush at interpreter exit may take (default 1)
``DRIFTCAR_CA_FILE``              PEM roots to verify an ``https://`` endpoint (default: system roots)
``DRIFTCAR_SHIP_PROCESS``         ``1``: convert, encode and export in a helper process fed through a
                                  shared-memory ring (Linux; default 0: the in-process worker)
``DRIFTCAR_CPU_BUDGET``           the share of the process's CPU the worker may take before calls are
                                  sampled (``0.03``, ``3%``; ``off``: no bound; default 0.03)
``DRIFTCAR_TOKEN``                the sidecar's bearer token, sent as ``authorization: Bearer ...``
                                  unless the headers already carry one (or ``DRIFTCAR_TOKEN_FILE``)
================================  ==========================================================

The resource (``service.name`` ...) comes from ``resource=`` when given, else
from the application's OpenTelemetry SDK (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``), resolved lazily on the worker thread.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

__all__ = ["ShipperConfig", "PROTOCOLS", "COMPRESSIONS", "parse_bool", "parse_headers", "parse_size", "parse_share"]

PROTOCOLS = ("grpc", "http/protobuf")
COMPRESSIONS = ("gzip", "none")  # and "auto" on input: none to a loopback endpoint, else gzip
DEFAULT_GRPC_ENDPOINT = "http://127.0.0.1:14317"
DEFAULT_HTTP_ENDPOINT = "http://127.0.0.1:14318"
MiB = 1024 * 1024

#: env var -> (field, parser)
_ENV: dict[str, tuple[str, Any]] = {
    "DRIFTCAR_ENDPOINT": ("endpoint", str),
    "DRIFTCAR_PROTOCOL": ("protocol", lambda s: s.strip().lower()),
    "DRIFTCAR_HEADERS": ("headers", lambda s: parse_headers(s)),
    "DRIFTCAR_TIMEOUT": ("timeout_s", float),
    "DRIFTCAR_COMPRESSION": ("compression", lambda s: s.strip().lower()),
    "DRIFTCAR_MAX_BUFFER_BYTES": ("max_buffer_bytes", lambda s: parse_size(s)),
    "DRIFTCAR_MAX_BATCH_ROWS": ("max_batch_rows", int),
    "DRIFTCAR_MAX_BATCH_AGE": ("max_batch_age_s", float),
    # not DRIFTCAR_MAX_REQUEST_BYTES: that is the sidecar's receive limit (often set in the same environment)
    "DRIFTCAR_MAX_EXPORT_BYTES": ("max_request_bytes", lambda s: parse_size(s)),
    "DRIFTCAR_EXIT_TIMEOUT": ("exit_timeout_s", float),
    "DRIFTCAR_CA_FILE": ("ca_file", str),
    "DRIFTCAR_SHIP_PROCESS": ("ship_process", lambda s: parse_bool(s)),
    "DRIFTCAR_CPU_BUDGET": ("cpu_budget", lambda s: parse_share(s)),
}


def parse_share(text: str | float) -> float | None:
    """``"0.03"`` / ``"3%"`` / ``0.03`` -> 0.03; ``"off"`` / ``"none"`` / ``"0"`` / ``0`` -> None (no bound).

    >>> parse_share("3%"), parse_share(0.05), parse_share("off")
    (0.03, 0.05, None)
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        raw = str(text).strip().lower()
        if raw in ("off", "none", "no", "false"):
            return None
        try:
            value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
        except ValueError:
            raise ValueError(f"expected a share like 0.03 or 3% (or off), got {text!r}") from None
    if value == 0:
        return None
    if not 0 < value <= 1:
        raise ValueError(f"a CPU share must be in (0, 1], got {text!r}")
    return value


_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}


def parse_size(text: str) -> int:
    """``"3MiB"`` / ``"512KB"`` / ``"1048576"`` -> bytes (the sidecar's size syntax).

    >>> parse_size("3MiB"), parse_size("512kb"), parse_size("1048576")
    (3145728, 512000, 1048576)
    """
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"expected a size like 64MiB or a number of bytes, got {text!r}")
    return int(match.group(1)) * _UNITS[(match.group(2) or "").lower() or None]


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case).

    >>> parse_bool("On"), parse_bool("0")
    (True, False)
    """
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected 1/true/yes/on or 0/false/no/off, got {text!r}")


def _token(env: Mapping[str, str]) -> str | None:
    """The sidecar's bearer token, from ``DRIFTCAR_TOKEN`` or the file ``DRIFTCAR_TOKEN_FILE`` names."""
    token = (env.get("DRIFTCAR_TOKEN") or "").strip()
    if token:
        return token
    path = (env.get("DRIFTCAR_TOKEN_FILE") or "").strip()
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read().strip() or None
        except OSError as exc:
            raise ValueError(f"DRIFTCAR_TOKEN_FILE={path!r}: {exc.strerror}") from None
    return None


def parse_headers(text: str) -> dict[str, str]:
    """``"k=v,k2=v%202"`` -> ``{"k": "v", "k2": "v 2"}`` (keys lower-cased, as gRPC metadata needs).

    >>> parse_headers("Authorization=Bearer%20abc, x-tenant = blue")
    {'authorization': 'Bearer abc', 'x-tenant': 'blue'}
    """
    out: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"header {item.strip()!r} is not key=value")
        out[unquote(key.strip()).lower()] = unquote(value.strip())
    return out


def _loopback(endpoint: Any) -> bool:
    """Is ``endpoint`` on this host (127.0.0.0/8, ::1, localhost)?"""
    try:
        host = urlsplit(endpoint if "://" in str(endpoint) else f"http://{endpoint}").hostname or ""
    except ValueError:
        return False
    return host == "localhost" or host == "::1" or host.startswith("127.")


@dataclass(frozen=True)
class ShipperConfig:
    """Where and how the hook ships its batches; every field has a safe default.

    Bounds: ``max_buffer_bytes`` caps the memory of items waiting to be shipped
    (the oldest are dropped and counted beyond it); ``max_request_bytes`` caps
    one serialized OTLP request (receivers commonly refuse more than 4 MiB), so
    large batches are split by rows; ``timeout_s`` bounds one export including
    its retries.
    """

    model_name: str
    model_version: str = ""
    endpoint: str = ""  # "": the sidecar's default port on loopback for the protocol
    # "auto": OTLP/HTTP to the default endpoint, gRPC to an endpoint given without a protocol (as
    # before OTLP/HTTP became the default). Over OTLP/HTTP the model process has no thread but the
    # shipper's worker: measured with the sidecar up, gRPC's own threads woke ~38 times a second
    # with nothing to send and ~16 times per export (OTLP/HTTP: ~0.7/s and ~3), and a refused
    # attempt cost ~2.3 ms of CPU and ~30 wake-ups (OTLP/HTTP: ~0.5 ms and 2)
    protocol: str = "auto"
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold credentials
    timeout_s: float = 10.0
    max_buffer_bytes: int = 64 * MiB
    max_batch_rows: int = 10_000
    max_batch_age_s: float = 1.0
    # "auto": none to a loopback endpoint (a sidecar next to the app), else gzip. gzip in gRPC's
    # core cost the worker ~60 k instructions per 1-row call (20 floats), 6 % of a bare predict,
    # measured under callgrind: pure loss when the bytes never leave the host
    compression: str = "auto"
    resource: Mapping[str, Any] | None = None
    max_request_bytes: int = 3 * MiB
    # a process whose endpoint is down exits at most this late (the flush gives up then); an
    # endpoint that is up drains a full batch in milliseconds
    exit_timeout_s: float = 1.0
    retry_initial_backoff_s: float = 1.0
    # the back-off is kept across exports (driftcar.wire.retry), so this is also how late a recovered
    # endpoint is used again: 5 s bounds that, and an outage costs one attempt per 5 s (a refused
    # gRPC attempt measured ~2.3 ms of CPU, channel and threads included; OTLP/HTTP ~0.5 ms)
    retry_max_backoff_s: float = 5.0
    retry_jitter: float = 0.2  # each backoff is multiplied by uniform(1 - j, 1 + j)
    ca_file: str | None = None  # PEM bundle for https:// endpoints; None = system roots
    # a helper process does the worker's conversion, encoding and export off the model process's GIL
    # (hook/shipping/helper.py; Linux only, elsewhere the in-process worker): measured in the
    # shipping README, which says why it is not the default
    ship_process: bool = False
    # the worker's CPU as a share of the process's, past which the capture side keeps a uniform
    # sample of calls with data (every call still counted: hook/shipping/budget.py says why);
    # None: no bound. 3 % is the hook's whole CPU target; below 5 % of one core the worker is never
    # held back (budget.FLOOR_CORE_SHARE: 1-row calls flat out use 0.4-2 %)
    cpu_budget: float | None = 0.03
    gzip_level: int = 1  # HTTP only (gRPC compresses in its C core): level 1 is 2-5x faster than 6, ratio ~equal

    def __post_init__(self) -> None:
        if self.protocol == "auto":
            object.__setattr__(self, "protocol", "grpc" if self.endpoint else "http/protobuf")
        if not self.endpoint:
            default = DEFAULT_HTTP_ENDPOINT if self.protocol == "http/protobuf" else DEFAULT_GRPC_ENDPOINT
            object.__setattr__(self, "endpoint", default)
        if self.compression == "auto":
            object.__setattr__(self, "compression", "none" if _loopback(self.endpoint) else "gzip")
        problems = []
        if self.cpu_budget is not None:  # "3%", "off" as in the environment; 0 is off (None: "not given")
            try:
                object.__setattr__(self, "cpu_budget", parse_share(self.cpu_budget))
            except ValueError as exc:
                problems.append(f"cpu_budget: {exc}")
        if not isinstance(self.model_name, str) or not self.model_name:
            problems.append(f"model_name must be a non-empty str, got {self.model_name!r}")
        if not isinstance(self.model_version, str):
            problems.append(f"model_version must be a str, got {self.model_version!r}")
        if self.protocol not in PROTOCOLS:
            problems.append(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.compression not in COMPRESSIONS:
            problems.append(f"compression must be one of {COMPRESSIONS}, got {self.compression!r}")
        parts = urlsplit(self.endpoint if "://" in str(self.endpoint) else f"http://{self.endpoint}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"endpoint must look like http(s)://host:port, got {self.endpoint!r}")
        for name in ("timeout_s", "max_batch_age_s", "exit_timeout_s", "retry_initial_backoff_s", "retry_max_backoff_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                problems.append(f"{name} must be a positive number, got {value!r}")
        for name in ("max_buffer_bytes", "max_batch_rows", "max_request_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                problems.append(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.max_request_bytes, int) and self.max_request_bytes < 64 * 1024:
            problems.append(f"max_request_bytes must be at least 65536, got {self.max_request_bytes}")
        if not 0 <= self.retry_jitter < 1:
            problems.append(f"retry_jitter must be in [0, 1), got {self.retry_jitter!r}")
        if not 0 <= self.gzip_level <= 9:
            problems.append(f"gzip_level must be in 0..9, got {self.gzip_level!r}")
        if not isinstance(self.ship_process, bool):
            problems.append(f"ship_process must be a bool, got {self.ship_process!r}")
        if not isinstance(self.headers, Mapping):
            problems.append(f"headers must be a mapping, got {type(self.headers).__name__}")
        if self.ca_file is not None and not os.path.isfile(self.ca_file):
            problems.append(f"ca_file {self.ca_file!r} is not a readable file")
        if self.resource is not None and not isinstance(self.resource, Mapping):
            problems.append(f"resource must be a mapping, got {type(self.resource).__name__}")
        if problems:
            raise ValueError("invalid ShipperConfig: " + "; ".join(problems))

    @classmethod
    def from_env(cls, model_name: str, model_version: str = "", env: Mapping[str, str] | None = None, **overrides: Any):
        """Build from ``DRIFTCAR_*`` variables; ``overrides`` (not None) win.

        >>> cfg = ShipperConfig.from_env("churn", "3", env={"DRIFTCAR_PROTOCOL": "http/protobuf"})
        >>> cfg.endpoint, cfg.protocol
        ('http://127.0.0.1:14318', 'http/protobuf')
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        problems = []
        for var, (name, parse) in _ENV.items():
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[name] = parse(raw)
            except ValueError as exc:
                problems.append(f"{var}={raw!r}: {exc}")
        if problems:
            raise ValueError("invalid environment: " + "; ".join(problems))
        values.update({k: v for k, v in overrides.items() if v is not None})
        token = _token(env)
        if token and "authorization" not in {k.lower() for k in values.get("headers", {})}:
            values["headers"] = {**values.get("headers", {}), "authorization": f"Bearer {token}"}
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown ShipperConfig options {sorted(unknown)}")
        return cls(model_name=model_name, model_version=model_version, **values)

    @property
    def logs_url(self) -> str:
        """The URL an http/protobuf export posts to (``<endpoint>/v1/logs``)."""
        base = self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}"
        if base.rstrip("/").endswith("/v1/logs"):
            return base.rstrip("/")
        return base.rstrip("/") + "/v1/logs"

    @property
    def grpc_target(self) -> tuple[str, bool]:
        """``(host:port, secure)`` for a gRPC channel (https -> TLS)."""
        parts = urlsplit(self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}")
        port = parts.port or (443 if parts.scheme == "https" else 4317)
        host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
        return f"{host}:{port}", parts.scheme == "https"
