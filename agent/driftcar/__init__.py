"""driftcar: OpenTelemetry-native observability for machine-learning models.

Public API: :func:`instrument`, :func:`uninstrument`, :class:`Monitor` (the
in-process hook), :func:`profile` (a reference profile from training data) and
:func:`report` (an HTML drift report of data against a reference).
Attributes are resolved lazily so that ``import driftcar`` in a model server
pulls neither scipy nor aiohttp.
"""

from __future__ import annotations

from typing import Any

from driftcar._version import __version__

__all__ = ["instrument", "uninstrument", "Monitor", "profile", "report", "__version__"]

_LAZY = {
    "instrument": ("driftcar.hook", "instrument"),
    "uninstrument": ("driftcar.hook", "uninstrument"),
    "Monitor": ("driftcar.hook", "Monitor"),
    "profile": ("driftcar.stats", "profile"),
    "report": ("driftcar.view", "report"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'driftcar' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API only (not the module's own imports such as ``Any``)."""
    return sorted(__all__)
