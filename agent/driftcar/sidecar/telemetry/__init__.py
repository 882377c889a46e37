"""The sidecar's telemetry: metric state, OTLP export, Prometheus text and log events.

Public API: :class:`Telemetry` (what the sidecar core calls) and
:class:`TelemetryConfig`. Names and units live in :mod:`.names` (a contract).
Attributes resolve lazily, so ``python -m driftcar.sidecar.telemetry.names`` runs
without importing the exporters first.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Telemetry", "TelemetryConfig"]

_LAZY = {
    "Telemetry": "driftcar.sidecar.telemetry.telemetry",
    "TelemetryConfig": "driftcar.sidecar.telemetry.config",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'driftcar.sidecar.telemetry' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
