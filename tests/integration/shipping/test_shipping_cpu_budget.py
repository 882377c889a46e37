"""The CPU budget end to end: a model predicting 1,000-row batches flat out against the real sidecar.

Past the budget the hook keeps a sample of calls with their rows; the sidecar must still count
every call and every predicted row (golden signals), and get every kept row. In process the
worker's share decides; with the helper process the helper's (its CPU against the model
process's), and the calls sent without rows cross the ring as calls blocks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import driftcar
from driftcar.hook.shipping import ring
from tests.support.waiting import free_port, stop_process, wait_until


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.read().decode()


@pytest.fixture
def sidecar():
    http_port, prom_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "driftcar.cli", "sidecar", "--grpc", f"127.0.0.1:{free_port()}",
         "--http", f"127.0.0.1:{http_port}", "--prometheus", f"127.0.0.1:{prom_port}", "--export", "none",
         "--live-reference-rows", "0"],
        env={k: v for k, v in os.environ.items() if not k.startswith(("DRIFTCAR_", "OTEL_"))},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: proc.poll() is not None or _get(f"http://127.0.0.1:{http_port}/readyz"), 20,
                   what="sidecar ready")
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        yield f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{prom_port}/metrics"
    finally:
        stop_process(proc, 10)


def _counter(metrics_url: str, name: str) -> float:
    text = _get(metrics_url)
    found = re.findall(rf'^{name}\{{[^}}]*model_name="budgeted"[^}}]*\}} (\S+)$', text, re.M)
    return sum(float(v) for v in found)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("ship_process", [False, pytest.param(True, marks=pytest.mark.skipif(
    not ring.available() or not os.path.isdir("/proc/self/task"), reason="the helper process needs Linux"))])
def test_past_the_budget_calls_keep_a_sample_of_rows_and_the_sidecar_counts_every_row(sidecar, ship_process):
    endpoint, metrics = sidecar
    rng = np.random.default_rng(5)
    X = rng.normal(size=(2_000, 20))
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    batches = [rng.normal(size=(1_000, 20)) for _ in range(4)]
    # 1 %: 1,000-row calls flat out take the worker far past it on any machine
    monitor = driftcar.instrument(model, name="budgeted", version="1", endpoint=endpoint, protocol="http/protobuf",
                                  copy=False, cpu_budget=0.01, ship_process=ship_process)
    gate = monitor.shipper.gate
    deadline = time.monotonic() + 45
    calls = 0
    while time.monotonic() < deadline and not (gate.keep < 1.0 and monitor.stats["shed_calls"] >= 100):
        model.predict(batches[calls % 4])
        calls += 1
    assert gate.keep < 1.0, gate.stats()
    if ship_process:  # the helper decided; this process's worker never measured itself
        assert monitor.stats["helper_pid"] and gate.periods == 0
    else:
        assert gate.over_periods >= 1
    assert monitor.flush(20)
    stats = monitor.stats
    assert stats["calls"] == calls and stats["shed_calls"] >= 100
    assert stats["captured_rows"] + stats["shed_rows"] == calls * 1_000
    assert stats["sent_rows"] == stats["captured_rows"] - stats["dropped_rows"] > 0
    # every call reaches the sidecar with its 1,000 rows, kept or not (a call is lost only when the
    # buffer drops it, counted in dropped_calls)
    arrived = calls - stats["dropped_calls"]
    wait_until(lambda: _counter(metrics, "driftcar_inference_calls_total") == arrived, 20,
               what="the sidecar counting every call")
    assert _counter(metrics, "driftcar_inference_rows_total") == arrived * 1_000
    monitor.shipper.shutdown(5)
