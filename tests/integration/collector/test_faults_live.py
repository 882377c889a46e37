"""Faults around the real collector, in the collector-centric wiring (collector-centric.yaml):

- the collector restarted mid-stream: the hook counts what it could not deliver, sending resumes;
- the memory_limiter under a flood: refusals the OTLP way (gRPC UNAVAILABLE, HTTP 503), no crash,
  the sidecar behind it untouched;
- the sidecar down behind the collector: the queue holds batches and the retry delivers them when
  the sidecar comes back inside max_elapsed_time; past it they are dropped and counted.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from tests.integration.collector.wiring import CENTRIC, centric_overlay, sidecar_metric
from tests.integration.sidecar.sidecar_helpers import SidecarProcess, get_json
from tests.support.collector import Collector, merge
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)
SIDECAR_ARGS = ("--window", "1s", "--export", "none", "--live-reference-rows", "0")


def _model(seed: int):
    import pandas as pd
    import sklearn.linear_model as sklearn_linear

    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(2000, 3)), columns=["a", "b", "c"])
    return rng, X, sklearn_linear.LogisticRegression().fit(X, (X["a"] > 0).astype(int))


def _dropping_alert_fires_on(otelcol: Collector) -> set[str]:
    """Exporters whose live drop counters the DriftcarCollectorDropping alert's name pattern matches
    (the rule selects by ``__name__``, so a Collector renaming its counters would silence it)."""
    import re
    from pathlib import Path

    import yaml

    rules = yaml.safe_load((Path(__file__).resolve().parents[3] / "deploy/prometheus/alerts.yaml").read_text())
    expr = next(r["expr"] for g in rules["groups"] for r in g.get("rules", []) if r.get("alert") == "DriftcarCollectorDropping")
    pattern = re.compile(re.search(r'__name__=~"([^"]+)"', expr).group(1))
    return {re.search(r'exporter="([^"]+)"', key).group(1) for key, value in otelcol.metrics().items()
            if pattern.fullmatch(key.split("{", 1)[0]) and value > 0 and 'exporter="' in key}


def _accepted(sidecar: SidecarProcess) -> float:
    return sidecar_metric(sidecar, "driftcar_receiver_batches_total", outcome="accepted")


def test_collector_restart_mid_stream(tmp_path):
    import driftcar

    sidecar = SidecarProcess(tmp_path, *SIDECAR_ARGS)
    overlay, ports = centric_overlay(tmp_path, sidecar_grpc=sidecar.ports["grpc"], prometheus_write="http://127.0.0.1:9/w")
    rng, X, model = _model(1)
    with sidecar, Collector(tmp_path, CENTRIC, overlay) as otelcol:
        monitor = driftcar.instrument(model, name="restarted", version="1", endpoint=f"http://127.0.0.1:{ports['grpc']}",
                                      spans=False, max_batch_age_s=0.05, max_buffer_bytes=256 * 1024)
        try:
            predict = lambda: model.predict(X.sample(200, random_state=int(rng.integers(1 << 30))))  # noqa: E731
            predict()
            wait_until(lambda: _accepted(sidecar) > 0, 20, what="first batches through the collector")
            otelcol.stop()
            outage_end = time.monotonic() + 2.0
            while time.monotonic() < outage_end:  # keeps predicting while the collector is gone
                predict()
                time.sleep(0.01)
            during = monitor.stats
            assert during["dropped_rows"] > 0, during  # the small buffer overflowed, and says so
            before_restart = _accepted(sidecar)
            otelcol.start()
            for _ in range(20):
                predict()
            assert monitor.flush(20), monitor.stats
            wait_until(lambda: _accepted(sidecar) > before_restart, 20, what="sending resumed after the restart")
            stats = monitor.stats
        finally:
            monitor.shutdown(5)
    # every captured row is accounted for: delivered, or dropped and counted
    assert stats["captured_rows"] == stats["sent_rows"] + stats["dropped_rows"] + stats["queued_rows"], stats
    assert stats["queued_rows"] == 0 and stats["sent_rows"] > 0, stats


def _log_request(records: int, size: int) -> ExportLogsServiceRequest:
    body = AnyValue(string_value="x" * size)
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(
        log_records=[LogRecord(event_name="app.flood", body=body) for _ in range(records)])])])


def _flood(port: int, request, codes: dict[str, int], stop: threading.Event, n: int = 60) -> None:
    """Send ``request`` up to ``n`` times over gRPC, counting the answers by status code."""
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub = LogsServiceStub(channel)
        for _ in range(n):
            if stop.is_set():
                return
            try:
                stub.Export(request, timeout=10)
                name = "OK"
            except grpc.RpcError as exc:
                name = exc.code().name
            codes[name] = codes.get(name, 0) + 1


def _http_status(port: int, payload: bytes) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/logs", data=payload,
                                 headers={"Content-Type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_memory_limiter_refuses_a_flood_the_otlp_way(tmp_path):
    sidecar = SidecarProcess(tmp_path, *SIDECAR_ARGS)
    overlay, ports = centric_overlay(tmp_path, sidecar_grpc=sidecar.ports["grpc"], prometheus_write="http://127.0.0.1:9/w")
    overlay = merge(overlay, {
        # a small, fixed limit so a bounded flood crosses it (the shipped config takes 80% of the pod's)
        "processors": {"memory_limiter": {"check_interval": "100ms", "limit_percentage": 0, "spike_limit_percentage": 0,
                                          "limit_mib": 64, "spike_limit_mib": 16}},
        "exporters": {"debug/blackhole": {"verbosity": "basic"}},
        "service": {"pipelines": {"logs/app": {"exporters": ["debug/blackhole"]}}},
    })
    request = _log_request(16, 256 * 1024)  # ~4 MiB per request
    payload = request.SerializeToString()
    codes: dict[str, int] = {}
    with sidecar, Collector(tmp_path, CENTRIC, overlay) as otelcol:
        accepted_before = _accepted(sidecar)
        stop = threading.Event()
        threads = [threading.Thread(target=_flood, args=(ports["grpc"], request, codes, stop)) for _ in range(6)]
        for t in threads:
            t.start()

        def http_refused() -> int | None:
            code = _http_status(ports["http"], payload)
            return code if code != 200 else None

        try:
            http_code = wait_until(http_refused, 60, interval=0.05, what="an HTTP refusal during the flood")
            wait_until(lambda: codes.get("UNAVAILABLE", 0) > 0, 60, what="a gRPC refusal during the flood")
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert http_code == 503, http_code
        assert set(codes) <= {"OK", "UNAVAILABLE"}, codes  # retryable refusals only, nothing else
        assert otelcol.proc.poll() is None, "the collector survived the flood"
        refused = otelcol.metric("otelcol_receiver_refused_log_records", receiver="otlp")
        assert refused > 0, otelcol.metrics()
        # the sidecar behind it: alive, and no flood record reached it
        assert get_json(f"{sidecar.http}/readyz")[0] == 200
        assert _accepted(sidecar) == accepted_before
        assert sidecar_metric(sidecar, "driftcar_receiver_records_ignored_total") == 0


def test_sidecar_down_behind_the_collector(tmp_path):
    """Queue + retry as the config comments say: held while the sidecar is away, delivered when it
    returns within max_elapsed_time; with a shorter max_elapsed_time the batches are dropped and counted."""
    import driftcar

    sidecar = SidecarProcess(tmp_path, *SIDECAR_ARGS)
    overlay, ports = centric_overlay(tmp_path, sidecar_grpc=sidecar.ports["grpc"], prometheus_write="http://127.0.0.1:9/w")
    rng, X, model = _model(2)
    endpoint = f"http://127.0.0.1:{ports['grpc']}"
    with Collector(tmp_path, CENTRIC, overlay) as otelcol:
        monitor = driftcar.instrument(model, name="held", version="1", endpoint=endpoint, spans=False,
                                      max_batch_age_s=0.05)
        try:
            model.predict(X.iloc[:300])
            assert monitor.flush(10), "the collector accepts while the sidecar is down"
            sent, requests = monitor.stats["sent_batches"], monitor.stats["sent_requests"]
            wait_until(lambda: "Will retry the request" in otelcol.log(), 15, interval=0.1,
                       what="the collector retrying the batches")
            assert otelcol.metric("otelcol_exporter_sent_log_records", exporter="otlp_grpc/driftcar") == 0
            with sidecar:  # back within the 60 s max_elapsed_time: the retry delivers everything held
                wait_until(lambda: _accepted(sidecar) >= sent, 30, interval=0.2,
                           what="held batches delivered after the sidecar came back")
                assert otelcol.metric("otelcol_exporter_send_failed_log_records", exporter="otlp_grpc/driftcar") == 0
                assert monitor.stats["sent_requests"] == requests, "the collector delivered them, not a hook resend"
        finally:
            monitor.shutdown(5)

    short = merge(overlay, {"exporters": {"otlp_grpc/driftcar": {"retry_on_failure": {
        "initial_interval": "200ms", "max_interval": "500ms", "max_elapsed_time": "2s"}}}})
    _, _, model = _model(3)
    with Collector(tmp_path, CENTRIC, short, name="otelcol-short") as otelcol:
        monitor = driftcar.instrument(model, name="given-up", version="1", endpoint=endpoint, spans=False,
                                      max_batch_age_s=0.05)
        try:
            model.predict(X.iloc[:300])
            assert monitor.flush(10)
            wait_until(lambda: otelcol.metric("otelcol_exporter_send_failed_log_records",
                                              exporter="otlp_grpc/driftcar") >= 1, 20,
                       what="batches dropped and counted past max_elapsed_time")
            assert "otlp_grpc/driftcar" in _dropping_alert_fires_on(otelcol)
        finally:
            monitor.shutdown(5)


def test_full_sending_queue_drops_and_counts(tmp_path):
    """With the sidecar away and the exporter's queue full, further batches are dropped and counted by
    the collector (otelcol_exporter_enqueue_failed_log_records), as the config comments say. The hook
    cannot see it: `batch/driftcar` has already answered it. Every batch is accounted for: delivered
    once the sidecar is back, or counted as dropped."""
    import driftcar

    sidecar = SidecarProcess(tmp_path, *SIDECAR_ARGS)
    overlay, ports = centric_overlay(tmp_path, sidecar_grpc=sidecar.ports["grpc"], prometheus_write="http://127.0.0.1:9/w")
    tiny = merge(overlay, {"exporters": {"otlp_grpc/driftcar": {"sending_queue": {"queue_size": 1, "num_consumers": 1}}}})
    rng, X, model = _model(4)
    enqueue_failed = lambda: otelcol.metric("otelcol_exporter_enqueue_failed_log_records",  # noqa: E731
                                            exporter="otlp_grpc/driftcar")
    with Collector(tmp_path, CENTRIC, tiny) as otelcol:
        monitor = driftcar.instrument(model, name="overflowed", version="1", endpoint=f"http://127.0.0.1:{ports['grpc']}",
                                      spans=False, max_batch_age_s=0.05)
        try:
            def dropped_once() -> bool:
                model.predict(X.sample(50, random_state=int(rng.integers(1 << 30))))
                return enqueue_failed() > 0

            wait_until(dropped_once, 20, interval=0.3, what="the full queue dropping a batch")
            assert "otlp_grpc/driftcar" in _dropping_alert_fires_on(otelcol)
            assert monitor.flush(10), monitor.stats
            stats = monitor.stats
            with sidecar:
                last: list[float] = []

                def balanced() -> bool:
                    last[:] = [_accepted(sidecar), enqueue_failed(), stats["sent_batches"]]
                    return last[0] + last[1] >= last[2]  # >=: delivery is at least once (a retry may repeat)

                try:
                    wait_until(balanced, 30, interval=0.2, what="delivered + dropped-and-counted >= the hook's batches")
                except AssertionError as exc:
                    raise AssertionError(f"{exc}: delivered, dropped, hook batches = {last}") from None
        finally:
            monitor.shutdown(5)
    assert stats["dropped_rows"] == 0 and stats["failed_exports"] == 0, stats  # the hook saw only successes
