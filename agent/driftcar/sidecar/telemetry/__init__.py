"""The sidecar's telemetry: metric state, OTLP export, Prometheus text and log events.

Public API: :class:`Telemetry` (what the sidecar core calls) and
:class:`TelemetryConfig`. Names and units live in :mod:`.names` (a contract).
"""

from driftcar.sidecar.telemetry.config import TelemetryConfig
from driftcar.sidecar.telemetry.telemetry import Telemetry

__all__ = ["Telemetry", "TelemetryConfig"]
