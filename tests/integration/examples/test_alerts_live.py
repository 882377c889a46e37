"""The shipped alert rules against a live sidecar: a real Prometheus scrapes the embedded /metrics
endpoint with deploy/prometheus/alerts.yaml loaded; drift makes DriftcarDriftDetected active for the
drifted feature only, and stopping the sidecar makes DriftcarSidecarDown active. This checks the rules
against what the sidecar really exposes, not only against the names table."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.support.waiting import free_port, require_binary, wait_until, stop_process

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.timeout(120)


def _alerts(port: int) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=2) as resp:
        return json.load(resp)["data"]["alerts"]


def test_drift_and_sidecar_down_alerts_on_live_metrics(tmp_path, sidecar):
    prometheus = require_binary("prometheus")
    import pandas as pd
    import sklearn.linear_model as sklearn_linear
    import driftcar

    prom_target = sidecar.service.prometheus_port
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{ROOT / 'deploy/prometheus/alerts.yaml'}']\n"
        "scrape_configs:\n"
        f"  - {{job_name: driftcar, static_configs: [{{targets: ['127.0.0.1:{prom_target}']}}]}}\n"
    )
    web_port = free_port()
    proc = subprocess.Popen(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{web_port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"),
    )
    try:
        rng = np.random.default_rng(5)
        X = pd.DataFrame(rng.normal(size=(4000, 2)), columns=["x", "z"])
        model = sklearn_linear.LogisticRegression().fit(X, (X["x"] > 0).astype(int))
        monitor = driftcar.instrument(model, name="alerted", version="2", endpoint=sidecar.grpc_endpoint,
                                      spans=False, max_batch_age_s=0.1)
        monitor.set_reference(X)
        monitor.flush(10)

        def drift_alert():
            shifted = pd.DataFrame(rng.normal(size=(400, 2)), columns=["x", "z"])
            shifted["z"] += 3.0
            model.predict(shifted)
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            return [a for a in _alerts(web_port) if a["labels"]["alertname"] == "DriftcarDriftDetected"]

        active = wait_until(drift_alert, timeout=45, interval=0.5, what="DriftcarDriftDetected pending/firing")
        flagged = {a["labels"]["feature_name"] for a in active}
        assert {f for f in flagged if not f.startswith("__")} == {"z"}, flagged  # (+ __multivariate__ may join)
        assert {a["labels"]["model_name"] for a in active} == {"alerted"} and active[0]["state"] in ("pending", "firing")
        assert not [a for a in _alerts(web_port) if a["labels"]["alertname"] == "DriftcarSidecarDown"]
        monitor.shutdown(5)

        sidecar.stop(timeout=15)  # the fixture's own stop afterwards is a no-op
        down = wait_until(lambda: [a for a in _alerts(web_port) if a["labels"]["alertname"] == "DriftcarSidecarDown"],
                          timeout=30, interval=0.5, what="DriftcarSidecarDown after the sidecar stopped")
        assert down[0]["labels"]["instance"] == f"127.0.0.1:{prom_target}"
    finally:
        stop_process(proc, 10)
