"""The sidecar as a process: Prometheus scraping its embedded endpoint, SIGTERM during
traffic (last window exported before exit), kill -9 + restart with --state-dir,
configuration errors refusing to start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.parse
import urllib.request

import grpc
import pytest

from driftcar.wire import Column, encode_batch

from tests.integration.sidecar.sidecar_helpers import (
    GrpcSender,
    SidecarProcess,
    get_json,
    latest,
    metric_points,
    value,
)
from tests.support.otlp import GrpcOtlpReceiver
from tests.support.waiting import free_port, require_binary, wait_until
from tests.unit.sidecar.batches import inference_body, numeric_frame, record, request


def reference_request(rows=3_000, features=4, seed=1, model="m"):
    X = numeric_frame(rows, features, seed=seed)
    body = encode_batch("reference", [Column(n, "feature", v) for n, v in X.items()])
    return request(record(body, model=model, kind="reference"))


def shifted_request(rows=1_000, features=4, seed=2, model="m"):
    return request(record(inference_body(numeric_frame(rows, features, seed=seed, shift={"x0": 2.0})), model=model))


def test_prometheus_scrapes_the_drift_score(tmp_path):
    prometheus = require_binary("prometheus")
    with SidecarProcess(tmp_path, "--window", "1s", "--export", "none", "--live-reference-rows", "0") as sidecar:
        sender = GrpcSender(sidecar.ports["grpc"])
        sender.send(reference_request())
        sender.send(shifted_request())
        sender.close()

        def api_score():
            status, doc = get_json(f"{sidecar.http}/v1/models/m/drift")
            feats = doc["versions"][0]["features"] if status == 200 else {}
            return feats.get("x0", {}).get("methods", {}).get("ks", {}).get("score")

        expected = wait_until(api_score, 20, what="a drift evaluation")
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: driftcar\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{sidecar.ports['prometheus']}']\n"
        )
        log = open(tmp_path / "prometheus.log", "wb")
        proc = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
        try:
            query = 'driftcar_drift_score_ratio{model_name="m",feature_name="x0",drift_method="ks"}'
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})

            def scraped():
                with urllib.request.urlopen(url, timeout=5) as resp:
                    result = json.loads(resp.read())["data"]["result"]
                return result or None

            result = wait_until(scraped, 60, interval=0.5, what="Prometheus to scrape the drift score")
            assert result[0]["metric"]["model_version"] == "1"
            assert result[0]["metric"]["drift_window"] == "1s"
            assert float(result[0]["value"][1]) == pytest.approx(expected, rel=1e-9)
            assert float(result[0]["value"][1]) > 0.3  # a 2 sd shift
        finally:
            proc.terminate()
            proc.wait(20)
            log.close()


def test_sigterm_during_traffic_exports_the_last_window(tmp_path):
    receiver = GrpcOtlpReceiver().start()
    try:
        sidecar = SidecarProcess(tmp_path, "--window", "1h", "--export", "otlp", "--otlp-endpoint", receiver.endpoint,
                                 "--otlp-protocol", "grpc", "--export-interval", "1h", "--live-reference-rows", "0",
                                 "--shutdown-timeout", "15s")
        sidecar.start()
        sender = GrpcSender(sidecar.ports["grpc"])
        sender.send(reference_request())
        accepted = []
        unexpected = []
        cancelled = []
        stop = threading.Event()

        def traffic():
            i = 0
            while not stop.is_set():
                try:
                    sender.send(shifted_request(rows=200, seed=100 + i), timeout=5)
                    accepted.append(200)
                except grpc.RpcError as exc:
                    # refused while stopping: UNAVAILABLE (retryable); CANCELLED when the server's grace
                    # period ended mid-call (retryable too: the rows may or may not have been applied)
                    if exc.code() == grpc.StatusCode.CANCELLED:
                        cancelled.append(200)
                    elif exc.code() != grpc.StatusCode.UNAVAILABLE:
                        unexpected.append(exc.code())
                    break
                i += 1

        thread = threading.Thread(target=traffic)
        thread.start()
        wait_until(lambda: len(accepted) >= 10, 20, what="traffic")
        assert sidecar.terminate(timeout=20) == 0  # window 1h: only the shutdown can export it
        stop.set()
        thread.join(10)
        sender.close()
        assert not unexpected
        points = metric_points(receiver)
        rows = [value(p) for a, p in latest(points, "driftcar.inference.rows").items() if dict(a)["model.name"] == "m"]
        # every accepted row is in the exported state (a call cut by the grace period may be too)
        assert len(rows) == 1 and sum(accepted) <= rows[0] <= sum(accepted) + sum(cancelled)
        scores = latest(points, "driftcar.drift.score")
        assert any(dict(a)["feature.name"] == "x0" and dict(a)["drift.method"] == "ks" and value(p) > 0.3
                   for a, p in scores.items())
        assert "driftcar sidecar stopped" in sidecar.log()
    finally:
        receiver.stop()


def test_kill_9_and_restart_keeps_reference_and_closed_windows(tmp_path):
    state_dir = str(tmp_path / "state")
    args = ("--window", "1s", "--export", "none", "--live-reference-rows", "0", "--state-dir", state_dir)
    first = SidecarProcess(tmp_path, *args).start()
    sender = GrpcSender(first.ports["grpc"])
    sender.send(reference_request())
    sender.send(shifted_request())
    sender.close()

    def closed():
        status, doc = get_json(f"{first.http}/v1/models")
        return status == 200 and doc["models"] and doc["models"][0]["closed_windows"] >= 1 and \
            os.path.exists(os.path.join(state_dir, "state.msgpack"))

    wait_until(closed, 20, what="a closed window")
    # The API can show the closed window before the checkpoint that holds it is written (the file
    # may be one close older): wait for the next checkpoint, written at the following close.
    checkpoint = os.path.join(state_dir, "state.msgpack")
    seen = os.stat(checkpoint).st_mtime_ns
    wait_until(lambda: os.stat(checkpoint).st_mtime_ns > seen, 20, what="a checkpoint after the closed window")
    before = get_json(f"{first.http}/v1/models/m/drift")[1]["versions"][0]
    first.kill()  # SIGKILL: no shutdown code runs
    second = SidecarProcess(tmp_path, *args, ports=first.ports)
    second.start(ready_timeout=30.0)  # typically ~2 s; the bound is generous for a loaded CI machine
    try:
        models = get_json(f"{second.http}/v1/models")[1]["models"]
        assert models[0]["reference"]["source"] == "batch"
        assert models[0]["closed_windows"] >= 1
        assert models[0]["rows_total"] == 1_000
        assert models[0]["drift_detected"] == before["drift_detected"]
        # the restored reference serves new traffic without a new reference
        sender = GrpcSender(second.ports["grpc"])
        sender.send(shifted_request(seed=9))
        sender.close()
        wait_until(lambda: get_json(f"{second.http}/v1/models")[1]["models"][0]["rows_total"] == 2_000, 10,
                   what="rows after restart")
        assert second.terminate() == 0
    finally:
        second.kill()


def test_bad_configuration_refuses_to_start_and_lists_every_problem(tmp_path):
    cfg = tmp_path / "driftcar.yaml"
    cfg.write_text("window: forever\nunknown_key: 1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCAR_")}
    env["DRIFTCAR_MAX_MODELS"] = "zero"
    proc = subprocess.run([sys.executable, "-m", "driftcar.cli", "sidecar", "--config", str(cfg),
                           "--grpc", "0.0.0.0:1"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    for path in (f"{cfg}: window", f"{cfg}: unknown_key", "DRIFTCAR_MAX_MODELS"):
        assert path in proc.stderr, proc.stderr


def test_start_failures_exit_3_with_the_reason(tmp_path):
    import socket

    bad = tmp_path / "bad.profile"
    bad.write_bytes(b"not a profile")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCAR_")}
    base = [sys.executable, "-m", "driftcar.cli", "sidecar", "--prometheus", "off", "--export", "none"]
    proc = subprocess.run(base + ["--reference", str(bad), "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and "not a driftcar profile" in proc.stderr, proc.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(base + ["--grpc", "127.0.0.1:0", "--http", f"127.0.0.1:{port}"], env=env,
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and "address already in use" in proc.stderr, proc.stderr


def test_standard_otel_variables_are_honoured(tmp_path):
    receiver = GrpcOtlpReceiver().start()
    try:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
               "OTEL_METRIC_EXPORT_INTERVAL": "300", "OTEL_SERVICE_NAME": "drift-sidecar-test",
               "OTEL_RESOURCE_ATTRIBUTES": "k8s.pod.name=pod-1,deployment.environment=test"}
        with SidecarProcess(tmp_path, "--window", "1h", env=env) as sidecar:
            sender = GrpcSender(sidecar.ports["grpc"])
            sender.send(shifted_request(rows=10))
            sender.close()

            def resources():
                from driftcar.wire.otlp import attributes_to_dict

                for req in list(receiver.metrics):
                    for rm in req.resource_metrics:
                        attrs = attributes_to_dict(rm.resource.attributes)
                        names = {m.name for sm in rm.scope_metrics for m in sm.metrics}
                        if "driftcar.inference.rows" in names:
                            return attrs
                return None

            attrs = wait_until(resources, 20, what="periodic export to OTEL_EXPORTER_OTLP_ENDPOINT")
            assert attrs["service.name"] == "drift-sidecar-test"
            assert attrs["k8s.pod.name"] == "pod-1" and attrs["deployment.environment"] == "test"
    finally:
        receiver.stop()
