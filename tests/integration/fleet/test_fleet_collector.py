"""The real Collector (build/otelcol-driftcar) runs collector-config/fleet.yaml in front of three
driftcar gateways and shards window records by model.

30 models x 3 replicas send one window each through the Collector's OTLP receiver: every model's
windows land on exactly one gateway (all three replicas merged there), and every gateway holds some
models. Then one gateway is killed mid-stream. With the `static` resolver used here the ring never
changes: the dead instance's models are not moved to the others, their windows are retried, dropped
and counted by the Collector (otelcol_exporter_send_failed_log_records), the survivors' models lose
nothing, and once the instance is back on its address its models return to it. (With the `k8s` or `dns` resolver the
instance leaves the ring and its models move: test_fleet_failover.py drives the `dns` one.)
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from driftcar.sidecar.fleet.golden import GoldenWindow
from driftcar.sidecar.fleet.record import window_record
from driftcar.sidecar.state import WindowClose
from driftcar.stats import profile
from driftcar.wire.otlp import export_request
from driftcar.wire.window import encode_window, window_log_record

from tests.integration.sidecar.sidecar_helpers import GrpcSender, SidecarProcess, get_json
from tests.support.collector import CONFIG_DIR, Collector
from tests.support.waiting import free_port, wait_until

WINDOW = 2.0
MODELS = [f"model-{i:02d}" for i in range(30)]
REPLICAS = ("pod-a", "pod-b", "pod-c")
PROFILE = profile({f"x{i}": np.random.default_rng(i).normal(size=2_000) for i in range(3)}, multivariate=False)


def _config(tmp_path: Path, port: int, gateways: list[SidecarProcess]) -> Path:
    """fleet.yaml with the receiver on a free port, a static resolver and short retries."""
    config = yaml.safe_load((CONFIG_DIR / "fleet.yaml").read_text())
    config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = f"127.0.0.1:{port}"
    lb = config["exporters"]["load_balancing"]
    lb["resolver"] = {"static": {"hostnames": [f"127.0.0.1:{g.ports['grpc']}" for g in gateways]}}
    lb["retry_on_failure"].update(initial_interval="200ms", max_interval="500ms", max_elapsed_time="2s")
    path = tmp_path / "fleet-test.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _request(model: str, replica: str, start_ns: int, rows: int = 200):
    sketch = PROFILE.new_window()
    sketch.update({f"x{i}": np.random.default_rng(hash((model, replica)) & 0xFFFF).normal(size=rows) for i in range(3)})
    golden = GoldenWindow()
    golden.add_calls("predict", None, rows)
    close = WindowClose(model=model, version="1", profile=PROFILE, sketch=sketch, start_ns=start_ns,
                        end_ns=start_ns + int(WINDOW * 1e9), rows=rows, y_true=[], y_pred=[], proba_sum=0.0,
                        proba_n=0, trace_ids=[], golden=golden)
    rec = window_record(close, replica, WINDOW)  # the reference rides along: gateways learn it from the stream
    return window_log_record(encode_window(rec), rec)


def _send_window(sender: GrpcSender) -> int:
    """One window of every model from every replica, for the current window (it closes at its bound)."""
    start = int(time.time() // WINDOW) * int(WINDOW * 1e9)
    for replica in REPLICAS:
        sender.send(export_request([_request(m, replica, start) for m in MODELS],
                                   {"service.name": "driftcar-sidecar", "service.instance.id": replica}))
    return start


def _held(gateway: SidecarProcess, start: int) -> dict[str, int]:
    """model -> replicas merged, for the models whose last fleet window (``start``) this gateway judged."""
    models = get_json(f"{gateway.http}/v1/models")[1]["models"]
    return {m["name"]: m["fleet"]["replicas_reported"] for m in models
            if (m.get("fleet") or {}).get("start_unix_nano") == start}


@pytest.fixture
def gateways(tmp_path):
    procs = [SidecarProcess(tmp_path, "--role", "gateway", "--window", f"{WINDOW:g}s", "--fleet-wait", "2s",
                            "--export", "none", "--windows-kept", "5").start() for _ in range(3)]
    yield procs
    for proc in procs:
        proc.kill()


def test_models_are_sharded_over_gateways_and_a_dead_one_keeps_its_models(tmp_path, gateways):
    port = free_port()
    with Collector(tmp_path, _config(tmp_path, port, gateways), name="otelcol-fleet") as collector:
        sender = GrpcSender(port)
        start = _send_window(sender)

        def sharded():
            held = [_held(g, start) for g in gateways]
            return held if sum(len(h) for h in held) == len(MODELS) else None

        held = wait_until(sharded, 30, interval=0.3, what=f"every model judged ({collector.log()})")
        owners = {m: [i for i, h in enumerate(held) if m in h] for m in MODELS}
        assert all(len(o) == 1 for o in owners.values()), owners  # each model on exactly one gateway
        assert all(h for h in held), [len(h) for h in held]  # spread over all of them
        assert all(n == len(REPLICAS) for h in held for n in h.values())  # all replicas merged there

        # one gateway dies mid-stream
        victim = max(range(3), key=lambda i: len(held[i]))
        lost = set(held[victim])
        gateways[victim].kill()
        failed_before = collector.metric("otelcol_exporter_send_failed_log_records", exporter="load_balancing")
        start = _send_window(sender)
        survivors = [g for i, g in enumerate(gateways) if i != victim]

        def survivors_judged():
            got = {}
            for g in survivors:
                got.update(_held(g, start))
            return got if len(got) == len(MODELS) - len(lost) else None

        got = wait_until(survivors_judged, 30, interval=0.3, what="the surviving gateways' windows")
        assert set(got) == set(MODELS) - lost and all(n == len(REPLICAS) for n in got.values())
        # the static ring did not move the dead instance's models; the Collector counted their windows
        dead = f"127.0.0.1:{gateways[victim].ports['grpc']}"
        failed = wait_until(lambda: collector.metric("otelcol_exporter_send_failed_log_records", exporter="load_balancing")
                            - failed_before >= len(lost) * len(REPLICAS) and collector.metric(
                                "otelcol_exporter_send_failed_log_records", exporter="load_balancing") - failed_before,
                            30, interval=0.3, what="the lost windows counted by the Collector")
        assert failed >= len(lost) * len(REPLICAS)
        assert collector.metric("otelcol_loadbalancer_backend_outcome", endpoint=dead, success="false") > 0

        # back on its address, it gets its models again
        revived = SidecarProcess(tmp_path, "--role", "gateway", "--window", f"{WINDOW:g}s", "--fleet-wait", "2s",
                                 "--export", "none", ports=gateways[victim].ports).start()
        gateways[victim] = revived

        def returned():  # one window per round: the Collector reconnects within gRPC's back-off
            start = _send_window(sender)
            try:
                got = wait_until(lambda: _held(revived, start) or None, 2 * WINDOW + 4, interval=0.3, what="a window")
            except AssertionError:
                return False
            return set(got) == lost

        wait_until(returned, 120, interval=0.1, what="the revived gateway's models")
