"""The CPUs the sidecar counts before starting a second process (``grpc_front=auto``, the decode
pool): its affinity, capped by a cgroup v2 CPU limit (a container limited to one CPU on a
many-core node must not start a second process)."""

from __future__ import annotations

import os

import pytest

from driftcar.sidecar import decode_pool


@pytest.fixture
def cpu_max(tmp_path, monkeypatch):
    path = tmp_path / "cpu.max"
    monkeypatch.setattr(decode_pool, "CPU_MAX_PATH", str(path))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    return path


@pytest.mark.parametrize("text,cpus,available", [
    ("max 100000\n", 8, True),  # no limit: the affinity
    ("100000 100000\n", 1.0, False),  # limited to one CPU
    ("150000 100000\n", 1.5, False),
    ("200000 100000\n", 2.0, True),
    ("1600000 100000\n", 8, True),  # a limit above the affinity: the affinity
])
def test_a_container_cpu_limit_caps_the_affinity(cpu_max, text, cpus, available):
    cpu_max.write_text(text)
    assert decode_pool.cpus() == cpus
    assert decode_pool.available() is available


@pytest.mark.parametrize("text", [None, "", "garbage\n"])
def test_without_a_readable_limit_the_affinity_counts(cpu_max, text):
    if text is not None:
        cpu_max.write_text(text)
    assert decode_pool.cpus() == 8 and decode_pool.available()
