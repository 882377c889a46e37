"""The whole sidecar service in-process (run_in_thread): real receivers, state, evaluator,
telemetry (export none) and JSON API on 127.0.0.1; statistics checked against driftcar.stats,
sklearn and scipy on the same rows."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import accuracy_score

from driftcar.stats import DriftConfig, evaluate_drift, profile
from driftcar.wire import Column, encode_batch

from tests.integration.sidecar.sidecar_helpers import GrpcSender, config, get_json, get_text, sidecar  # noqa: F401 (fixture)
from tests.unit.sidecar.batches import inference_body, numeric_frame, other_record, record, request
from tests.support.waiting import wait_until

FEATURES = 10
SHIFTED = ("x0", "x3", "x7")


def reference_body(X: dict) -> bytes:
    return encode_batch("reference", [Column(n, "feature", v) for n, v in X.items()])


def _same_score_from_kept_windows(score: float, result) -> None:
    """A sliding view reads the kept closed windows, which store each fine bin's mean in 3 bits
    (``stats.windows.MEAN_BITS``): Wasserstein within 1/7 of its reported bound of the exact value,
    every other score exact."""
    tolerance = result.bound / 7 if result.method == "wasserstein" else 0.0
    assert abs(score - result.statistic) <= tolerance + 1e-12 * max(1.0, abs(result.statistic)), result


def test_drift_from_reference_batches_matches_stats_engine(sidecar):
    handle = sidecar()
    sender = GrpcSender(handle.service.grpc_port)
    ref = numeric_frame(5_000, FEATURES, seed=1)
    live = numeric_frame(3_000, FEATURES, seed=2, shift={f: 1.0 for f in SHIFTED})
    sender.send(request(record(reference_body(ref), kind="reference")))
    for start in range(0, 3_000, 1_000):  # three batches, one window
        part = {k: v[start:start + 1_000] for k, v in live.items()}
        sender.send(request(record(inference_body(part))))
    wait_until(lambda: handle.service.queue.wait_empty(0) and handle.service.store.models, 10, what="applied")
    handle.close_window()
    status, doc = get_json(f"{handle.http_endpoint}/v1/models/m/drift")
    assert status == 200
    view = doc["versions"][0]
    assert view["reference"]["source"] == "batch"
    assert view["window"]["rows"] == 3_000
    assert sorted(f for f in view["drift_detected"] if not f.startswith("__")) == sorted(SHIFTED)
    # the same numbers as the statistics engine on the same rows
    prof = profile(ref)
    window = prof.new_window()
    window.update(live)
    expected = evaluate_drift(prof, window, DriftConfig())
    for result in expected.results:
        got = view["features"][result.feature]["methods"][result.method]
        assert got["score"] == pytest.approx(result.statistic, rel=1e-12, abs=1e-12)
        assert got["deciding"] == result.deciding
    # and KS within the engine's documented bound of scipy on the raw rows
    for name in ("x0", "x1"):
        if "ks" in view["features"][name]["methods"]:
            res = expected.result(name, "ks")
            raw = scipy.stats.ks_2samp(ref[name], live[name]).statistic
            assert abs(view["features"][name]["methods"]["ks"]["score"] - raw) <= res.bound + 1e-12
    hist = view["features"]["x0"]["histogram"]
    assert sum(hist["current"]) == 3_000 and sum(hist["reference"]) == 5_000
    text = get_text(f"http://127.0.0.1:{handle.service.prometheus_port}/metrics")
    detected = [line for line in text.splitlines() if line.startswith("driftcar_drift_detected_ratio{")]
    on = sorted(line.split('feature_name="')[1].split('"')[0] for line in detected if line.endswith(" 1"))
    assert len(detected) >= FEATURES  # one series per feature (+ __multivariate__ / __prediction__)
    assert [f for f in on if not f.startswith("__")] == sorted(SHIFTED)
    # sliding view over the last 2 closed windows: a second, unshifted window dilutes x0
    sender.send(request(record(inference_body(numeric_frame(3_000, FEATURES, seed=7)))))
    wait_until(lambda: handle.service.queue.wait_empty(0), 10, what="applied")
    handle.close_window()
    status, sliding = get_json(f"{handle.http_endpoint}/v1/models/m/drift?windows=2")
    view2 = sliding["versions"][0]
    assert status == 200 and view2["windows"] == 2 and view2["window"]["rows"] == 6_000
    both = prof.new_window()
    both.update(live)
    both.update(numeric_frame(3_000, FEATURES, seed=7))
    expected2 = evaluate_drift(prof, both, DriftConfig())
    for result in expected2.results:
        got = view2["features"][result.feature]["methods"][result.method]
        _same_score_from_kept_windows(got["score"], result)
    assert get_json(f"{handle.http_endpoint}/v1/models/m/drift?windows=0")[0] == 400
    assert get_json(f"{handle.http_endpoint}/v1/models/nope/drift")[0] == 404
    # the compact view: the deciding test per feature, the same numbers, no histograms; also sliding
    status, compact = get_json(f"{handle.http_endpoint}/v1/models/m/drift?view=summary&windows=2")
    features = compact["versions"][0]["features"]
    assert status == 200 and set(features) == {r.feature for r in expected2.results if r.deciding}
    for feature, result in expected2.deciding().items():
        got = features[feature]
        assert got["method"] == result.method and "histogram" not in got and "methods" not in got
        _same_score_from_kept_windows(got["score"], result)
        assert got["threshold_kind"] == ("pvalue" if got["pvalue"] is not None else "score")
    assert compact["versions"][0]["coverage"]["share"] == 1.0
    assert get_json(f"{handle.http_endpoint}/v1/models/m/drift?view=everything")[0] == 400
    events = get_json(f"{handle.http_endpoint}/v1/events")[1]["events"]
    assert sorted(e["attributes"]["feature.name"] for e in events if e["event_name"] == "driftcar.drift.detected"
                  and not e["attributes"]["feature.name"].startswith("__")) == sorted(SHIFTED)
    sender.close()


def test_late_labels_accuracy_equals_sklearn(sidecar):
    handle = sidecar(window="1h")
    sender = GrpcSender(handle.service.grpc_port)
    rng = np.random.default_rng(3)
    n = 800
    ids = np.arange(n, dtype=np.int64)
    y_pred = rng.choice(np.array(["a", "b", "c"], dtype=object), n)
    y_true = np.where(rng.random(n) < 0.7, y_pred, rng.choice(np.array(["a", "b", "c"], dtype=object), n))
    X = numeric_frame(n, 2, seed=4)
    sender.send(request(record(inference_body(X, predictions=list(y_pred), ids=ids))))
    labels = encode_batch("labels", [Column("id", "id", np.concatenate([ids[::-1], [10_000, 10_001]])),
                                     Column("label", "label", list(y_true[::-1]) + ["a", "b"])])
    sender.send(request(record(labels, kind="labels")))
    wait_until(lambda: handle.service.queue.wait_empty(0) and handle.service.store.models, 10, what="applied")
    handle.close_window()
    view = get_json(f"{handle.http_endpoint}/v1/models/m/drift")[1]["versions"][0]
    assert view["performance"]["accuracy"] == pytest.approx(accuracy_score(list(y_true), list(y_pred)), abs=1e-12)
    text = get_text(f"http://127.0.0.1:{handle.service.prometheus_port}/metrics")
    assert 'driftcar_labels_unmatched_total{model_name="m",model_version="1",driftcar_scope="pod",reason="unknown_id"} 2' in text
    sender.close()


def test_bad_clients_do_not_disturb_a_good_one(sidecar):
    handle = sidecar(max_request_bytes="1MiB")
    good = GrpcSender(handle.service.grpc_port)
    bad = GrpcSender(handle.service.grpc_port)
    sent = []
    errors = []

    def well_behaved():
        for i in range(40):
            X = numeric_frame(250, 3, seed=i)
            try:
                good.send(request(record(inference_body(X))))
                sent.append(250)
            except grpc.RpcError as exc:  # would be a loss
                errors.append(exc.code())

    thread = threading.Thread(target=well_behaved)
    thread.start()
    codes = []
    raw = bad.channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                                  request_serializer=lambda b: b, response_deserializer=lambda b: b)
    inputs = [
        ("random", lambda: raw(np.random.default_rng(0).bytes(2000), timeout=10)),
        ("truncated", lambda: raw(request(record(inference_body(numeric_frame(10)))).SerializeToString()[:-7],
                                  timeout=10)),
        ("bad body", lambda: bad.send(request(record(b"\x93\x01\x02\x03", rows=3)))),
        ("oversized", lambda: bad.send(request(record(inference_body(numeric_frame(50_000, 3)))))),
    ]
    for _ in range(5):
        for name, call in inputs:
            try:
                call()
                codes.append((name, grpc.StatusCode.OK))
            except grpc.RpcError as exc:
                codes.append((name, exc.code()))
    result = bad.send(request(other_record(), other_record()))  # non-batch records: ignored, OK
    assert not result.HasField("partial_success")
    thread.join(60)
    assert not errors and sum(sent) == 40 * 250
    expected = {"random": grpc.StatusCode.INVALID_ARGUMENT, "truncated": grpc.StatusCode.INVALID_ARGUMENT,
                "bad body": grpc.StatusCode.INVALID_ARGUMENT, "oversized": grpc.StatusCode.RESOURCE_EXHAUSTED}
    for name, code in codes:
        if name == "random" and code == grpc.StatusCode.OK:
            continue  # random bytes may happen to parse as an empty protobuf request
        assert code == expected[name], (name, code)
    wait_until(lambda: handle.service.queue.wait_empty(0), 10, what="queue drained")
    doc = get_json(f"{handle.http_endpoint}/v1/models")[1]
    models = doc["models"]
    assert models[0]["rows_total"] == 40 * 250  # nothing lost
    assert doc["sidecar"]["apply_errors"] == 0 and doc["sidecar"]["queue"]["rows"] == 0
    text = get_text(f"http://127.0.0.1:{handle.service.prometheus_port}/metrics")
    assert 'driftcar_receiver_batches_total{outcome="accepted"} 40' in text
    assert "driftcar_receiver_records_ignored_total 2" in text
    good.close()
    bad.close()


def test_checkpoint_restores_reference_and_closed_windows(sidecar, tmp_path):
    state_dir = str(tmp_path / "state")
    handle = sidecar(state_dir=state_dir)
    sender = GrpcSender(handle.service.grpc_port)
    sender.send(request(record(reference_body(numeric_frame(2_000, 4, seed=1)), kind="reference")))
    sender.send(request(record(inference_body(numeric_frame(500, 4, seed=2)))))
    wait_until(lambda: handle.service.queue.wait_empty(0) and handle.service.store.models, 10, what="applied")
    handle.close_window()
    sender.close()
    handle.stop()
    again = sidecar(state_dir=state_dir)
    models = get_json(f"{again.http_endpoint}/v1/models")[1]["models"]
    assert models[0]["reference"]["source"] == "batch"
    assert models[0]["closed_windows"] >= 1
    restored = again.service.store.models[("m", "1")]
    assert restored.closed[0].rows == 500
    assert restored.closed[0].sketch.feature("x0").n == 500


def test_hook_over_otlp_http_reaches_the_sidecar(sidecar):
    import driftcar

    handle = sidecar()
    ref = numeric_frame(2_000, 3, seed=1)

    def model(X):
        return (np.asarray(X)[:, 0] > 0).astype(np.int64)

    monitor = driftcar.instrument(model, name="http-model", version="2", endpoint=handle.http_endpoint,
                                  protocol="http/protobuf")
    try:
        X_ref = np.column_stack([ref[f"x{i}"] for i in range(3)])
        monitor.set_reference(X_ref, predictions=model(X_ref))
        X = np.column_stack([v for v in numeric_frame(500, 3, seed=2, shift={"x2": 3.0}).values()])
        monitor.model(X)
        assert monitor.flush(20)
        wait_until(lambda: ("http-model", "2") in handle.service.store.models
                   and handle.service.store.models[("http-model", "2")].window_rows == 500, 20,
                   what="rows over OTLP/HTTP")
        handle.close_window()
        view = get_json(f"{handle.http_endpoint}/v1/models/http-model/drift")[1]["versions"][0]
        assert view["reference"]["source"] == "batch"
        assert [f for f in view["drift_detected"] if not f.startswith("__")] == ["x2"]
    finally:
        monitor.shutdown(10)
