"""The in-process hook: ``instrument`` a model, capture what it sees and says, ship it.

Light to import (numpy and the OpenTelemetry API; the shipper pulls grpcio and
opentelemetry-proto when the first Monitor is made); never scipy or aiohttp.
"""

from driftcar.hook.instrument import DEFAULT_ENDPOINT, DEFAULT_METHODS, instrument, uninstrument
from driftcar.hook.monitor import Monitor
from driftcar.hook.records import Captured

__all__ = ["instrument", "uninstrument", "Monitor", "Captured", "DEFAULT_ENDPOINT", "DEFAULT_METHODS"]
