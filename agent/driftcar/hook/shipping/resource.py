"""The OTel resource the hook's batches carry (``service.name``, ``k8s.*`` ...).

Resolved lazily, on the worker thread, so that building a shipper costs
nothing: an explicit mapping wins; else the application's SDK tracer provider
resource (so batches describe the same service as its spans); else the SDK's
``Resource.create()`` (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``);
else, if the SDK is unusable, those two variables parsed here.
"""

from __future__ import annotations

import os
from typing import Any, Mapping
from urllib.parse import unquote

__all__ = ["resolve_resource", "resource_from_env"]


def resource_from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``OTEL_RESOURCE_ATTRIBUTES`` + ``OTEL_SERVICE_NAME`` (which wins), the SDK's rules.

    >>> resource_from_env({"OTEL_RESOURCE_ATTRIBUTES": "k8s.pod.name=p%201,service.name=a", "OTEL_SERVICE_NAME": "b"})
    {'k8s.pod.name': 'p 1', 'service.name': 'b'}
    """
    env = os.environ if env is None else env
    out: dict[str, Any] = {}
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[unquote(key.strip())] = unquote(value.strip())
    if env.get("OTEL_SERVICE_NAME"):
        out["service.name"] = env["OTEL_SERVICE_NAME"]
    out.setdefault("service.name", "unknown_service")
    return out


def resolve_resource(explicit: Mapping[str, Any] | None) -> dict[str, Any]:
    """The resource attributes to send; never raises."""
    if explicit is not None:
        return dict(explicit)
    try:
        from opentelemetry import trace

        resource = getattr(trace.get_tracer_provider(), "resource", None)
        if resource is not None and resource.attributes:
            return dict(resource.attributes)
    except Exception:
        pass
    try:
        from opentelemetry.sdk.resources import Resource

        return dict(Resource.create().attributes)
    except Exception:
        return resource_from_env()
