"""hook -> the real driftcar sidecar, with its bearer token: accepted with it, refused (not retried) without."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

from driftcar.hook.shipping import Shipper, ShipperConfig
from tests.support.waiting import free_port, wait_until, stop_process
from tests.unit.shipping.helpers import item, to_parts

TOKEN = "hook-test-token"


def _get(url: str) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=2) as response:
        return response.read().decode()


@pytest.fixture
def sidecar():
    grpc_port, http_port, prom_port = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "driftcar.cli", "sidecar", "--grpc", f"127.0.0.1:{grpc_port}",
         "--http", f"127.0.0.1:{http_port}", "--prometheus", f"127.0.0.1:{prom_port}", "--export", "none"],
        env=dict(os.environ, DRIFTCAR_TOKEN=TOKEN), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: proc.poll() is not None or _get(f"http://127.0.0.1:{http_port}/readyz"), 20,
                   what="sidecar ready")
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        yield {"grpc": f"http://127.0.0.1:{grpc_port}", "http/protobuf": f"http://127.0.0.1:{http_port}",
               "metrics": f"http://127.0.0.1:{prom_port}/metrics"}
    finally:
        stop_process(proc, 10)


def _rows_counted(metrics_url: str) -> float:
    text = _get(metrics_url)
    match = re.search(r'^driftcar_inference_rows_total\{[^}]*model_name="hooked"[^}]*\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.mark.timeout(30)
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_the_sidecar_accepts_batches_with_its_token_and_refuses_them_without(sidecar, protocol):
    results = {}
    for name, env in (("with", {"DRIFTCAR_TOKEN": TOKEN}), ("without", {})):
        shipper = Shipper(ShipperConfig.from_env("hooked", "1", env=env, endpoint=sidecar[protocol],
                                                 protocol=protocol, timeout_s=5.0), convert=to_parts)
        try:
            shipper.offer(item(np.random.default_rng(3).normal(size=(250, 4)), np.zeros(250)))
            assert shipper.flush(10)
        finally:
            shipper.shutdown(5)
        results[name] = shipper.stats
    assert results["with"]["sent_rows"] == 250 and results["with"]["failed_exports"] == 0
    # unauthenticated is permanent: one attempt, counted, rows dropped
    assert results["without"]["failed_exports"] == 1 and results["without"]["retries"] == 0
    assert results["without"]["dropped_rows"] == 250
    wait_until(lambda: _rows_counted(sidecar["metrics"]) == 250, 10, what="the sidecar counting the rows")


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="the helper process is Linux-only")
def test_every_row_reaches_the_sidecar_through_the_helper_process_with_its_token(sidecar):
    import driftcar
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(4)
    X = rng.normal(size=(2_000, 4))
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    monitor = driftcar.instrument(model, name="hooked", version="1", endpoint=sidecar["http/protobuf"],
                                  protocol="http/protobuf", headers={"authorization": f"Bearer {TOKEN}"},
                                  ship_process=True)
    try:
        for i in range(1_200):
            model.predict(X[i:i + 1])
        model.predict(X[1_200:2_000])  # more rows than a block: a one-call block
        assert monitor.flush(20)
        stats = monitor.stats
    finally:
        driftcar.uninstrument(model)
    assert stats["helper_pid"] and stats["sent_rows"] == stats["captured_rows"] == 2_000
    assert stats["dropped_rows"] == 0 and stats["connected"] is True
    wait_until(lambda: _rows_counted(sidecar["metrics"]) == 2_000, 10, what="the sidecar counting the rows")
