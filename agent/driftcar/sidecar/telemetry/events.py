"""Sidecar log events: OTLP log records with ``event_name``, plus a bounded in-memory ring.

Events go through the SDK ``Logger`` (``event_name`` is supported since SDK 1.3x)
so the ``BatchLogRecordProcessor`` batches and exports them off the caller's
thread: :meth:`EventLog.emit` never blocks on I/O. The ring keeps the last
``max_events`` events for the JSON API.

Thread-safety: safe from any thread.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from typing import Mapping

from opentelemetry._logs import SeverityNumber

from driftcar.sidecar.telemetry.names import EVENTS

__all__ = ["SEVERITIES", "EventLog"]

SEVERITIES = {
    "DEBUG": SeverityNumber.DEBUG,
    "INFO": SeverityNumber.INFO,
    "WARN": SeverityNumber.WARN,
    "ERROR": SeverityNumber.ERROR,
}


def _clean_attributes(attributes: Mapping[str, object]) -> dict:
    """OTel attribute values: str/bool/int/float or homogeneous sequences; ``None`` drops the key."""
    clean = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"event attribute keys must be non-empty strings, got {key!r}")
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, (str, bool, int, float)):
            clean[key] = value
        elif isinstance(value, (list, tuple)):
            clean[key] = tuple(str(v) if not isinstance(v, (str, bool, int, float)) else v for v in value)
        else:
            clean[key] = str(value)
    return clean


class EventLog:
    """Emit contract events to an SDK logger (optional) and remember the last ones."""

    def __init__(self, logger=None, max_events: int = 1000):
        self._logger = logger  # opentelemetry.sdk._logs.Logger or None (export none)
        self._ring: collections.deque = collections.deque(maxlen=max_events)
        self._lock = threading.Lock()

    def emit(self, event_name: str, severity: str, body: str, attributes: Mapping[str, object]) -> dict:
        """Record one event; ``ValueError`` for an unknown event name or severity."""
        if event_name not in EVENTS:
            raise ValueError(f"unknown event {event_name!r}; expected one of {', '.join(EVENTS)}")
        number = SEVERITIES.get(severity)
        if number is None:
            raise ValueError(f"unknown severity {severity!r}; expected one of {', '.join(SEVERITIES)}")
        attrs = _clean_attributes(attributes)
        now = time.time_ns()
        entry = {
            "event_name": event_name,
            "severity": severity,
            "body": str(body),
            "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()},
            "time_unix_nano": now,
        }
        with self._lock:
            self._ring.append(entry)
        if self._logger is not None:
            self._logger.emit(
                timestamp=now,
                observed_timestamp=now,
                severity_number=number,
                severity_text=severity,
                body=str(body),
                attributes=attrs,
                event_name=event_name,
            )
        return entry

    def recent(self, limit: int = 100) -> list[dict]:
        """The newest ``limit`` events, oldest first (copies)."""
        if limit < 0:
            raise ValueError("limit must be >= 0")
        with self._lock:
            items = list(self._ring)[-limit:] if limit else []
        return [dict(item, attributes=dict(item["attributes"])) for item in items]
