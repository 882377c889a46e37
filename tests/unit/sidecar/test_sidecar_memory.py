"""Allocator tuning: applied by the CLI on glibc, skipped when the user set MALLOC_* explicitly."""

import sys

import pytest

from driftcar.sidecar.memory import tune_malloc


def test_explicit_environment_wins():
    assert tune_malloc({"MALLOC_ARENA_MAX": "4"}) is False
    assert tune_malloc({"MALLOC_MMAP_THRESHOLD_": "65536"}) is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_accepts_the_settings():
    assert tune_malloc({}) is True
