"""The pod forwarder: bounded queue, OTLP retry rules, byte-capped requests, every drop counted."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from driftcar.hook.shipping.retry import Backoff, Outcome
from driftcar.sidecar.config import load_config
from driftcar.sidecar.fleet.forwarder import Forwarder, exporter_for
from driftcar.sidecar.fleet.golden import GoldenWindow
from driftcar.sidecar.fleet.record import aligned_bounds
from driftcar.sidecar.state import WindowClose
from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig
from driftcar.stats import profile
from driftcar.wire.window import decode_window, iter_window_bodies
from tests.support.waiting import wait_until

PROFILE = profile({"x": np.random.default_rng(0).normal(size=2_000)})
END = 1_800_000_000 * 10**9  # a minute boundary


class ScriptedExporter:
    """Answers export() from a script (then succeeds); records every request."""

    def __init__(self, *outcomes: Outcome):
        self.script = list(outcomes)
        self.requests: list[ExportLogsServiceRequest] = []
        self.lock = threading.Lock()

    def export(self, payload: bytes, timeout_s: float) -> Outcome:
        with self.lock:
            self.requests.append(ExportLogsServiceRequest.FromString(payload))
            return self.script.pop(0) if self.script else Outcome.success()

    def abort(self):
        pass

    def close(self):
        pass

    def bodies(self):
        return [decode_window(body) for r in self.requests for _, body in iter_window_bodies(r)]


def _close(model="m", rows=100):
    sketch = PROFILE.new_window()
    sketch.update({"x": np.random.default_rng(rows).normal(size=rows)})
    golden = GoldenWindow()
    golden.add_calls("predict", None, rows)
    return WindowClose(model=model, version="1", profile=PROFILE, sketch=sketch, start_ns=END - 60 * 10**9,
                       end_ns=END + 5_000_000, rows=rows, y_true=[], y_pred=[], proba_sum=0.0, proba_n=0,
                       trace_ids=[], golden=golden)


def _forwarder(exporter, **kw):
    tel = Telemetry(TelemetryConfig(export="none", scope="pod"))
    kw.setdefault("backoff", Backoff(initial_s=0.01, maximum_s=0.02, jitter=0.0))
    return Forwarder("127.0.0.1:1", "pod-a", 60.0, tel, exporter=exporter, **kw), tel


def test_retryable_failures_are_retried_then_sent_once():
    exporter = ScriptedExporter(Outcome.retry("UNAVAILABLE"), Outcome.retry("UNAVAILABLE", retry_after_s=0.01))
    fwd, tel = _forwarder(exporter)
    fwd.start()
    assert fwd.offer([_close()]) == 1
    assert fwd.stop(5.0)
    assert (fwd.counts["sent"], fwd.counts["retries"], fwd.counts["dropped"]) == (1, 2, 0)
    (rec,) = {r.replica: r for r in exporter.bodies()}.values()
    assert (rec.model, rec.replica, rec.rows, rec.start_ns, rec.end_ns) == ("m", "pod-a", 100, END - 60 * 10**9, END)
    assert rec.reference is not None  # the first window of a reference carries it
    assert 'driftcar_fleet_windows_total{outcome="sent"} 1' in tel.prometheus_text()
    attrs = {kv.key: kv.value for kv in exporter.requests[0].resource_logs[0].scope_logs[0].log_records[0].attributes}
    assert attrs["model.name"].string_value == "m" and attrs["driftcar.replica"].string_value == "pod-a"


def test_a_permanent_failure_drops_the_request_and_counts_it():
    exporter = ScriptedExporter(Outcome.permanent("INVALID_ARGUMENT", "bad window"))
    fwd, tel = _forwarder(exporter)
    fwd.offer([_close(), _close("n")])  # queued before the sender starts: one request
    fwd.start()
    fwd.stop(5.0)
    assert (fwd.counts["sent"], fwd.counts["dropped_permanent"], len(exporter.requests)) == (0, 2, 1)
    assert 'driftcar_fleet_windows_total{outcome="dropped"} 2' in tel.prometheus_text()


def test_a_partial_success_counts_the_rejected_windows():
    fwd, _ = _forwarder(ScriptedExporter(Outcome.success(rejected=1, detail="one bad")))
    fwd.offer([_close(), _close("n")])
    fwd.start()
    fwd.stop(5.0)
    assert (fwd.counts["sent"], fwd.counts["dropped_rejected"]) == (1, 1)


def test_a_full_queue_drops_new_windows_without_blocking():
    exporter = ScriptedExporter()
    fwd, _ = _forwarder(exporter, max_queue_bytes=1)  # not started: nothing drains
    assert fwd.offer([_close(), _close("n"), _close("o")]) == 1  # one always fits an empty queue
    assert fwd.counts["dropped_queue_full"] == 2
    fwd.start()
    fwd.stop(5.0)
    assert fwd.counts["sent"] == 1


def test_requests_are_capped_by_bytes():
    exporter = ScriptedExporter()
    fwd, _ = _forwarder(exporter, max_request_bytes=4_000)  # records: ~8 KB with the reference, ~1.7 KB without
    closes = [_close(f"m{i}", rows=50 + i) for i in range(6)]
    fwd.offer(closes)  # before start: all queued, then taken in capped requests
    fwd.start()
    fwd.stop(5.0)
    assert fwd.counts["sent"] == 6 and len(exporter.requests) >= 3
    for r in exporter.requests:
        records = r.resource_logs[0].scope_logs[0].log_records
        assert len(records) == 1 or sum(rec.ByteSize() for rec in records) <= 4_000
    assert sorted(r.model for r in exporter.bodies()) == [f"m{i}" for i in range(6)]


def test_retries_stop_at_the_deadline():
    fwd, _ = _forwarder(ScriptedExporter(*[Outcome.retry("UNAVAILABLE")] * 1000), max_elapsed_s=0.2)
    fwd.start()
    fwd.offer([_close()])
    wait_until(lambda: fwd.counts["dropped_gave_up"] == 1, 5, what="the forwarder to give up")
    fwd.stop(1.0)
    assert fwd.counts["sent"] == 0


def test_empty_windows_are_not_sent():
    exporter = ScriptedExporter()
    fwd, _ = _forwarder(exporter)
    empty = _close(rows=0)
    empty = dataclasses.replace(empty, rows=0, golden=GoldenWindow())
    assert fwd.offer([empty]) == 0


def test_transport_is_chosen_from_the_url():
    assert type(exporter_for("gw:14317")).__name__ == "GrpcExporter"
    assert type(exporter_for("http://gw:4317")).__name__ == "GrpcExporter"
    assert type(exporter_for("http://gw:4318/v1/logs")).__name__ == "HttpExporter"


def test_aligned_bounds_take_a_late_tick_and_an_early_shutdown_to_the_right_window():
    w = 60 * 10**9
    assert aligned_bounds(2 * w + 3_000_000_000, 60.0) == (w, 2 * w)  # tick 3 s late
    assert aligned_bounds(2 * w - 1, 60.0) == (w, 2 * w)  # shutdown just before the boundary
    assert aligned_bounds(2 * w + 20 * 10**9, 60.0) == (2 * w, 3 * w)  # 20 s in: the running window


def test_fleet_options_from_flags_env_and_yaml(tmp_path):
    config = load_config(env={"DRIFTCAR_FLEET_WAIT": "90s", "DRIFTCAR_REPLICA": "pod-7"},
                         flags={"forward": "otelcol-fleet:4317", "local_verdicts": "false"})
    assert (config.forward, config.fleet_wait, config.local_verdicts, config.replica_id()) == (
        "otelcol-fleet:4317", 90.0, False, "pod-7")
    path = tmp_path / "gw.yaml"
    path.write_text("role: gateway\nwindow: 5m\n")
    gateway = load_config(str(path), env={})
    assert (gateway.role, gateway.fleet_wait) == ("gateway", 300.0)  # default: one window
    assert load_config(env={}).replica_id({"POD_NAME": "churn-abc"}) == "churn-abc"
    with pytest.raises(ValueError, match="forward is for pod sidecars"):
        load_config(env={}, flags={"role": "gateway", "forward": "x:1"})
    with pytest.raises(ValueError, match="expected one of pod, gateway"):
        load_config(env={"DRIFTCAR_ROLE": "leader"})
