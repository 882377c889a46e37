"""Telemetry configuration: a frozen, validated parameters-only object (no state).

``None`` means "use the standard OTel variable or the SDK default": the OTLP
endpoint (``OTEL_EXPORTER_OTLP_[METRICS_|LOGS_]ENDPOINT``), the protocol
(``OTEL_EXPORTER_OTLP_[METRICS_|LOGS_]PROTOCOL``, default ``grpc``) and the
export interval (``OTEL_METRIC_EXPORT_INTERVAL`` in ms, default 60000).
Every problem is reported at once in one ``ValueError``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Mapping

from driftcar.sidecar.config import default

__all__ = ["EXPORTS", "TelemetryConfig", "DEFAULT_EXPORT_INTERVAL_S"]

EXPORTS = ("otlp", "console", "none")
DEFAULT_EXPORT_INTERVAL_S = 60.0


@dataclass(frozen=True)
class TelemetryConfig:
    """How the sidecar exports its metrics and events, and its cardinality caps."""

    export: str = default("export")  # otlp | console | none (Prometheus only)
    otlp_endpoint: str | None = None  # gRPC "http://host:4317"; HTTP base "http://host:4318"
    otlp_protocol: str | None = None  # grpc | http/protobuf
    export_interval_s: float | None = None
    max_features_per_model: int = default("max_features")
    max_categories: int = default("max_categories")  # per feature; also caps prediction classes, call methods, error types
    max_models: int = default("max_models")  # distinct (model.name, model.version)
    resource_attributes: Mapping[str, str] = field(default_factory=dict)
    max_events: int = 1000  # in-memory ring for the JSON API
    scope: str | None = None  # driftcar.scope on every model series and event: pod | fleet (None: not set)

    def __post_init__(self) -> None:
        problems = []
        if self.export not in EXPORTS:
            problems.append(f"export: {self.export!r} is not one of {', '.join(EXPORTS)}")
        if self.otlp_protocol is not None and self.otlp_protocol not in ("grpc", "http/protobuf"):
            problems.append(f"otlp_protocol: {self.otlp_protocol!r} is not grpc or http/protobuf")
        if self.export_interval_s is not None and not (
            isinstance(self.export_interval_s, (int, float)) and math.isfinite(self.export_interval_s)
            and self.export_interval_s > 0
        ):
            problems.append(f"export_interval_s: must be a positive number of seconds, got {self.export_interval_s!r}")
        for name in ("max_features_per_model", "max_categories", "max_models", "max_events"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name}: must be an integer >= 1, got {value!r}")
        if self.scope not in (None, "pod", "fleet"):
            problems.append(f"scope: {self.scope!r} is not pod or fleet")
        if not isinstance(self.resource_attributes, Mapping):
            problems.append("resource_attributes: must be a mapping of attribute -> value")
        if problems:
            raise ValueError("invalid telemetry configuration:\n  " + "\n  ".join(problems))

    def resolved_interval_s(self) -> float:
        """The periodic export interval: explicit, else ``OTEL_METRIC_EXPORT_INTERVAL`` (ms), else 60 s."""
        if self.export_interval_s is not None:
            return float(self.export_interval_s)
        raw = os.environ.get("OTEL_METRIC_EXPORT_INTERVAL")
        if not raw:
            return DEFAULT_EXPORT_INTERVAL_S
        try:
            value = float(raw) / 1000.0
        except ValueError:
            raise ValueError(f"OTEL_METRIC_EXPORT_INTERVAL: {raw!r} is not a number of milliseconds") from None
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"OTEL_METRIC_EXPORT_INTERVAL: must be positive, got {raw!r}")
        return value
