"""Fixtures shared by the shipping unit tests."""

import pytest


@pytest.fixture
def shippers():
    """Shippers a test makes (append them): shut down after it, so no worker outlives it."""
    made = []
    yield made
    for s in made:
        s.shutdown(1.0)
