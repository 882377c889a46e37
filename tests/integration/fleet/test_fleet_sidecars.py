"""Real sidecar processes: three pods forward their windows to a gateway, which judges the fleet.

Each pod (``driftcar sidecar --forward``) gets a different slice of one window's rows over
real gRPC; the gateway (``--role gateway``) learns the reference from the records, merges
the three windows and judges once. Its JSON API and /metrics show the fleet view
(``driftcar.scope="fleet"``, 3 replicas) with scores equal, to 1e-9, to the stats engine
on the pooled rows. A pod with ``--local-verdicts false`` only forwards.
"""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest

from driftcar.stats import evaluate_drift, profile

from tests.integration.sidecar.sidecar_helpers import GrpcSender, SidecarProcess, get_json, get_text
from tests.unit.sidecar.batches import inference_body, numeric_frame, record, request
from tests.support.waiting import wait_until

WINDOW = 4.0
FEATURES = 5
SLICES = (700, 1_100, 1_500)


@pytest.fixture
def fleet(tmp_path):
    prof = profile(numeric_frame(5_000, FEATURES, seed=1))
    path = tmp_path / "reference.dcprof"
    prof.save(path)
    gateway = SidecarProcess(tmp_path, "--role", "gateway", "--window", f"{WINDOW:g}s", "--fleet-wait", "3s",
                             "--export", "none").start()
    pods = [SidecarProcess(tmp_path, "--window", f"{WINDOW:g}s", "--reference", str(path), "--export", "none",
                           "--forward", f"127.0.0.1:{gateway.ports['grpc']}", "--replica", f"pod-{i}",
                           *(["--local-verdicts", "false"] if i == 2 else [])).start() for i in range(3)]
    yield prof, gateway, pods
    for proc in pods + [gateway]:
        proc.kill()


def _send_one_window(pods, rows: dict, model: str) -> bool:
    """Send every slice within one window; False when a window boundary got in the way."""
    wait_until(lambda: 0.3 < time.time() % WINDOW < 1.0, WINDOW + 1, interval=0.01, what="a fresh window")
    start = time.time()
    lo = 0
    for pod, n in zip(pods, SLICES):
        sender = GrpcSender(pod.ports["grpc"])
        part = {k: v[lo:lo + n] for k, v in rows.items()}
        sender.send(request(record(inference_body(part), model=model)))
        sender.close()
        lo += n
    for pod in pods:
        wait_until(lambda: get_json(f"{pod.http}/v1/models")[1]["models"], 10, what="rows applied")
    return start // WINDOW == time.time() // WINDOW


def test_three_pods_one_fleet_verdict(fleet):
    prof, gateway, pods = fleet
    rows = numeric_frame(sum(SLICES), FEATURES, seed=2, shift={"x1": 0.4, "x3": 0.25})
    for attempt in range(3):  # a shared machine may stall a send past a window boundary: use a new model
        model = f"churn-{attempt}"
        if _send_one_window(pods, rows, model):
            break
    else:
        pytest.fail("could not send one window's rows within one window three times")

    def fleet_view():
        status, doc = get_json(f"{gateway.http}/v1/models/{model}/drift")
        view = doc["versions"][0] if status == 200 else {}
        return view if (view.get("fleet") or {}).get("replicas_reported") == 3 and view.get("window") else None

    try:
        view = wait_until(fleet_view, 3 * WINDOW + 10, interval=0.2, what="the gateway's fleet window")
    except AssertionError as exc:
        sidecars = [get_json(f"{p.http}/v1/models")[1].get("sidecar") for p in [gateway, *pods]]
        raise AssertionError(f"{exc}\n{sidecars}\n{gateway.log()}") from None
    assert view["fleet"]["replicas_expected"] == 3 and view["fleet"]["missing"] == []
    assert view["window"]["rows"] == sum(SLICES)

    pooled = prof.new_window()
    pooled.update(rows)
    expected = evaluate_drift(prof, pooled)
    assert expected.detected()  # the shift is large enough to be seen
    for result in expected.results:
        got = view["features"][result.feature]["methods"][result.method]
        assert got["score"] == pytest.approx(result.statistic, rel=1e-9, abs=1e-9), (result.feature, result.method)
        if result.pvalue is not None:
            assert got["pvalue"] == pytest.approx(result.pvalue, rel=1e-9, abs=1e-9)
        assert got["detected"] == result.detected

    text = get_text(f"http://127.0.0.1:{gateway.ports['prometheus']}/metrics")
    assert f'driftcar_fleet_replicas{{model_name="{model}",model_version="1",driftcar_scope="fleet"}} 3' in text
    assert 'driftcar_drift_score_ratio{model_name="' + model + '",model_version="1",driftcar_scope="fleet",' in text
    assert 'driftcar_fleet_windows_total{outcome="merged"} 3' in text

    # pods keep their local verdicts, unless told to only forward
    local = get_json(f"{pods[0].http}/v1/models/{model}/drift")[1]["versions"][0]
    assert local["window"]["rows"] == SLICES[0]
    quiet = get_json(f"{pods[2].http}/v1/models/{model}/drift")[1]["versions"][0]
    assert quiet["window"] is None and quiet["features"] == {}
    pod_metrics = get_text(f"http://127.0.0.1:{pods[0].ports['prometheus']}/metrics")
    assert f'driftcar_drift_score_ratio{{model_name="{model}",model_version="1",driftcar_scope="pod",' in pod_metrics
    assert 'driftcar_fleet_windows_total{outcome="sent"} 1' in pod_metrics
    status = get_json(f"{pods[1].http}/v1/models")[1]["sidecar"]["fleet"]
    assert status["replica"] == "pod-1" and status["counts"].get("sent") == 1

    # a gateway refuses rows (no window of its ever closes on them), saying why
    sender = GrpcSender(gateway.ports["grpc"])
    with pytest.raises(grpc.RpcError) as info:
        sender.send(request(record(inference_body({k: v[:10] for k, v in rows.items()}), model=model)))
    sender.close()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "fleet gateway" in info.value.details()
