"""A real driftcar sidecar on loopback (in this process, its own event loop thread) for the examples."""

from __future__ import annotations

import json
import urllib.request

import pytest


@pytest.fixture
def sidecar():
    from driftcar.sidecar.config import load_config
    from driftcar.sidecar.service import run_in_thread

    config = load_config(None, env={}, flags={
        "grpc": "127.0.0.1:0", "http": "127.0.0.1:0", "prometheus": "127.0.0.1:0",
        "window": "1s", "export": "none", "live_reference_rows": 0,
        "performance_thresholds": "precision=0.6,recall=0.6",
    })
    handle = run_in_thread(config)
    yield handle
    handle.stop(timeout=15)


def model_doc(handle, name: str, version: str = "1") -> dict | None:
    """The sidecar's drift document for (name, version), or None before it knows the model."""
    try:
        with urllib.request.urlopen(f"{handle.http_endpoint}/v1/models/{name}/drift", timeout=2) as resp:
            doc = json.load(resp)
    except OSError:
        return None
    return next((v for v in doc.get("versions", []) if v.get("version") == version), None)


def events(handle) -> list[dict]:
    with urllib.request.urlopen(f"{handle.http_endpoint}/v1/events?limit=1000", timeout=2) as resp:
        return json.load(resp)["events"]
