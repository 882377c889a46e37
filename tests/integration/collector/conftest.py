"""Fixtures for the live tests through driftcar's collector distribution (helpers: wiring.py)."""

from __future__ import annotations

import pytest

from tests.integration.collector.wiring import Prometheus
from tests.support.collector import collector_binary


@pytest.fixture
def prometheus(tmp_path):
    with Prometheus(tmp_path) as prom:
        yield prom


@pytest.fixture(scope="session", autouse=True)
def _collector_built():
    """Build (or find) build/otelcol-driftcar once, before the first test's clock starts."""
    collector_binary()
