"""State and evaluator with a fake telemetry: references (file/batch/live), golden signals,
hook counters, trace samples, caps, window close/evaluate, events, checkpoints."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from driftcar.sidecar.checkpoint import Checkpointer
from driftcar.sidecar.config import load_config
from driftcar.sidecar.evaluator import Evaluator
from driftcar.sidecar.ingest import Item
from driftcar.sidecar.state import StateStore
from driftcar.stats import DriftConfig, Profile, evaluate_drift, profile
from driftcar.wire import Column, decode_batch, encode_batch

from tests.unit.sidecar.batches import inference_body, numeric_frame
from tests.unit.sidecar.fake_telemetry import FakeTelemetry


class Clock:
    def __init__(self):
        self.ns = 1_700_000_000 * 10**9

    def __call__(self):
        return self.ns


def make(**flags):
    base = {"live_reference_rows": "0", "window": "1m"}
    base.update(flags)
    tel = FakeTelemetry()
    clock = Clock()
    config = load_config(env={}, flags=base)
    store = StateStore(config.store_config(), tel, clock=clock)
    evaluator = Evaluator(store, tel, config.evaluator_config())
    return store, evaluator, tel, clock


def item(body: bytes, model="m", version="1", trace_id=b""):
    return Item(model, version, decode_batch(body), len(body), 0, trace_id)


def reference(X: dict, **extra) -> bytes:
    cols = [Column(n, "feature", v) for n, v in X.items()]
    cols += [Column(n, role, v) for n, (role, v) in extra.items()]
    return encode_batch("reference", cols)


def test_reference_batches_then_inference_window_matches_engine():
    store, evaluator, tel, clock = make()
    ref, live = numeric_frame(2_000, 3, seed=1), numeric_frame(600, 3, seed=2, shift={"x1": 1.0})
    store.apply(item(reference(ref)))
    store.apply(item(inference_body(live)))
    state = store.models[("m", "1")]
    assert state.reference_source == "batch" and state.window_rows == 600
    clock.ns += 60 * 10**9
    closes = store.close_windows()
    evaluator.evaluate_all(closes)
    prof = profile(ref)
    window = prof.new_window()
    window.update(live)
    for result in evaluate_drift(prof, window, DriftConfig()).results:
        score, pvalue, threshold, detected, window_label = tel.gauges[("drift", "m", "1", result.feature,
                                                                       result.method)]
        assert score == pytest.approx(result.statistic, abs=1e-12)
        assert window_label == "1m"
        assert (detected is None) == (not result.deciding)
    assert state.verdicts.get("x1") is True and not state.verdicts.get("x0")
    events = [e for e in tel.events if e["event_name"] == "driftcar.drift.detected"]
    assert "x1" in [e["attributes"]["feature.name"] for e in events]
    assert all(e["severity"] == "WARN" and e["attributes"]["window.end"] > e["attributes"]["window.start"]
               for e in events)
    hist = tel.histograms[("feature", "m", "1", "x1")]
    assert hist[3] == 600 and sum(hist[1]) == 600 and len(hist[1]) == len(hist[0]) + 1


def test_empty_window_keeps_last_values_and_events_only_on_change():
    store, evaluator, tel, clock = make()
    store.apply(item(reference(numeric_frame(2_000, 2, seed=1))))
    store.apply(item(inference_body(numeric_frame(500, 2, seed=2, shift={"x0": 2.0}))))
    evaluator.evaluate_all(store.close_windows())
    before = dict(tel.gauges)
    n_events = len(tel.events)
    clock.ns += 60 * 10**9
    evaluator.evaluate_all(store.close_windows())  # no rows: nothing re-evaluated
    assert tel.gauges == before and len(tel.events) == n_events
    store.apply(item(inference_body(numeric_frame(500, 2, seed=3, shift={"x0": 2.0}))))
    evaluator.evaluate_all(store.close_windows())  # still drifted: no new event
    assert len(tel.events) == n_events


def test_verdicts_belong_to_the_reference_they_were_judged_against():
    store, evaluator, tel, clock = make()
    ref = numeric_frame(2_000, 2, seed=1)
    store.apply(item(reference(ref)))

    def drifted_window(seed, equal_profile=False):
        store.apply(item(inference_body(numeric_frame(500, 2, seed=seed, shift={"x0": 2.0}))))
        clock.ns += 60 * 10**9
        closes = store.close_windows()
        if equal_profile:
            closes = [dataclasses.replace(c, profile=Profile.from_bytes(state.profile.to_bytes())) for c in closes]
            assert closes[0].profile is not state.profile
            assert closes[0].profile.fingerprint == state.profile.fingerprint
        evaluator.evaluate_all(closes)
        return len([e for e in tel.events if e["event_name"] == "driftcar.drift.detected"
                    and e["attributes"]["feature.name"] == "x0"])

    state = store.models[("m", "1")]
    assert drifted_window(2) == 1 and state.verdicts.get("x0") is True
    # judged against the same reference, even as another, equal profile object (a fleet
    # gateway's decoded records are), the verdict holds and does not re-alert
    assert drifted_window(3, equal_profile=True) == 1 and state.verdicts.get("x0") is True
    # a new reference starts with no verdicts: the same shift alerts again, once
    state.set_profile(profile(ref), "batch")
    assert not state.verdicts
    assert drifted_window(4) == 2 and drifted_window(5) == 2


def test_live_reference_from_first_rows_is_flagged():
    store, evaluator, tel, clock = make(live_reference_rows="500")
    store.apply(item(inference_body(numeric_frame(800, 2, seed=1))))
    state = store.models[("m", "1")]
    assert state.reference_source == "live" and state.profile.source == "live"
    assert state.window_rows == 300  # rows that became the reference are not compared with themselves
    assert state.summary()["reference"]["source"] == "live"


def test_reference_file_binds_to_model(tmp_path):
    prof = profile(numeric_frame(1_000, 2, seed=1))
    path = tmp_path / "ref.profile"
    prof.save(path)
    store, evaluator, tel, clock = make(reference=[f"m@1={path}"])
    store.apply(item(inference_body(numeric_frame(100, 2))))
    store.apply(item(inference_body(numeric_frame(100, 2)), model="other"))
    assert store.models[("m", "1")].reference_source == "file"
    assert store.models[("other", "1")].profile is None
    assert store.models[("other", "1")].unprofiled_rows == 100
    store.apply(item(reference(numeric_frame(500, 2, seed=9))))  # the configured file wins
    store.apply(item(inference_body(numeric_frame(10, 2))))
    assert store.models[("m", "1")].reference_source == "file"
    assert store.models[("m", "1")].summary()["ignored_reference_rows"] == 500


def test_golden_signals_hook_counters_and_trace_samples():
    store, evaluator, tel, clock = make(trace_samples="3")
    calls = {"method": ["predict", "predict", "predict_proba", "predict"],
             "duration_s": np.array([0.01, 0.02, 0.03, 0.04]), "rows": np.array([5, 5, 3, 1]),
             "captured": np.array([5, 5, 3, 0]), "error_type": [None, None, None, "ValueError"],
             "trace_id": ["a" * 32, "b" * 32, None, "c" * 32]}
    body = inference_body(numeric_frame(13, 2), calls=calls, hook={"instance": "h1", "dropped_rows": 4})
    store.apply(item(body, trace_id=bytes(16)))
    store.apply(item(inference_body(numeric_frame(1, 2), hook={"instance": "h1", "dropped_rows": 2})))
    assert tel.counters[("calls", "m", "1", "predict", None)] == 2
    assert tel.counters[("calls", "m", "1", "predict", "ValueError")] == 1
    assert tel.counters[("calls", "m", "1", "predict_proba", None)] == 1
    assert tel.counters[("rows", "m", "1")] == 14 + 1
    durations = {args[2]: args[3] for name, args in tel.calls if name == "record_durations"}
    assert durations["predict"] == [0.01, 0.02, 0.04] and durations["predict_proba"] == [0.03]
    assert tel.gauges[("hook_dropped", "m", "1")] == 4  # max per instance, never down
    state = store.models[("m", "1")]
    traces = state.signals.trace_ids
    assert len(traces) == 3 and set(traces) <= {"a" * 32, "b" * 32, "c" * 32, "00" * 16}


def test_model_cap_refuses_new_models_only():
    store, evaluator, tel, clock = make(max_models="2")
    for model in ("a", "b"):
        store.apply(item(inference_body(numeric_frame(5, 1)), model=model))
    assert store.admit("a", "1") is None
    assert "model cap" in store.admit("c", "1")
    assert tel.gauges[("models",)] == 2


def test_probabilities_give_estimated_accuracy_and_degraded_event_once():
    store, evaluator, tel, clock = make(performance_thresholds="accuracy=0.9,estimated_accuracy=0.95")
    n = 200
    ids = np.arange(n, dtype=np.int64)
    preds = np.array(["a", "b"] * (n // 2), dtype=object)
    proba = {"a": np.where(preds == "a", 0.8, 0.2), "b": np.where(preds == "a", 0.2, 0.8)}
    store.apply(item(inference_body(numeric_frame(n, 1), predictions=list(preds), ids=ids, probabilities=proba)))
    truth = preds.copy()
    truth[:50] = np.where(truth[:50] == "a", "b", "a")  # 75% right
    labels = encode_batch("labels", [Column("id", "id", ids), Column("label", "label", list(truth))])
    store.apply(item(labels))
    evaluator.evaluate_all(store.close_windows())
    assert tel.gauges[("performance", "m", "1", "accuracy")] == pytest.approx(0.75)
    assert tel.gauges[("estimated_accuracy", "m", "1")] == pytest.approx(0.8)
    degraded = [e for e in tel.events if e["event_name"] == "driftcar.performance.degraded"]
    assert sorted(e["attributes"]["metric"] for e in degraded) == ["accuracy", "estimated_accuracy"]
    assert tel.counters[("class", "m", "1", "a")] == 100
    store.apply(item(inference_body(numeric_frame(n, 1), predictions=list(preds), ids=ids + n,
                                    probabilities=proba)))
    store.apply(item(encode_batch("labels", [Column("id", "id", ids + n), Column("label", "label", list(truth))])))
    evaluator.evaluate_all(store.close_windows())
    assert len([e for e in tel.events if e["event_name"] == "driftcar.performance.degraded"]) == 2  # no repeat


def test_checkpoint_round_trip_and_corrupt_file(tmp_path):
    store, evaluator, tel, clock = make()
    store.apply(item(reference(numeric_frame(1_000, 2, seed=1))))
    store.apply(item(inference_body(numeric_frame(300, 2, seed=2), hook={"instance": "h", "dropped_rows": 9})))
    store.apply(item(inference_body(numeric_frame(40, 2, seed=3), predictions=np.array([1] * 20 + [0] * 20),
                                    ids=np.arange(40, dtype=np.int64))))
    evaluator.evaluate_all(store.close_windows())
    ckpt = Checkpointer(str(tmp_path), store)
    assert ckpt.save() > 0
    store2, _, _, _ = make()
    assert Checkpointer(str(tmp_path), store2).restore() == 1
    restored = store2.models[("m", "1")]
    original = store.models[("m", "1")]
    assert restored.profile.fingerprint == original.profile.fingerprint
    assert [w.rows for w in restored.closed] == [340]
    assert np.array_equal(restored.closed[0].sketch.feature("x0").counts, original.closed[0].sketch.feature("x0").counts)
    assert restored.hook_dropped == {"h": 9} and restored.verdicts == original.verdicts
    # the label buffer survives: predictions sent before the checkpoint meet labels after it
    assert len(restored.labels.joiner) == 40
    store2.apply(item(encode_batch("labels", [Column("id", "id", np.arange(40, dtype=np.int64)),
                                              Column("label", "label", [1] * 40)])))
    assert len(restored.labels.y_true) == 40 and restored.labels.y_pred == [1] * 20 + [0] * 20
    with open(os.path.join(tmp_path, "state.msgpack"), "r+b") as fh:
        fh.seek(10)
        fh.write(b"\xff" * 20)
    store3, _, _, _ = make()
    assert Checkpointer(str(tmp_path), store3).restore() == 0  # never fatal
    assert os.path.exists(os.path.join(tmp_path, "state.msgpack.corrupt")) and not store3.models


def test_empty_strings_and_bad_values_never_break_a_window():
    from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig

    tel = Telemetry(TelemetryConfig(export="none"))  # the real one: it refuses empty attribute values
    clock = Clock()
    config = load_config(env={}, flags={"live_reference_rows": "0"})
    store = StateStore(config.store_config(), tel, clock=clock)
    evaluator = Evaluator(store, tel, config.evaluator_config())
    ref = {"city": ["", "a", "b"] * 300, "x": np.arange(900, dtype=np.float64)}
    store.apply(item(encode_batch("reference", [Column("city", "feature", ref["city"]),
                                                Column("x", "feature", ref["x"])])))
    live = [Column("city", "feature", ["", "", "a"] * 100), Column("x", "feature", np.full(300, np.inf)),
            Column("prediction", "prediction", ["", "yes"] * 150)]
    store.apply(item(encode_batch("inference", live)))
    clock.ns += 60 * 10**9
    evaluator.evaluate_all(store.close_windows())
    text = tel.prometheus_text()
    assert 'driftcar_prediction_class_total{model_name="m",model_version="1",class="(empty)"} 150' in text
    assert 'category="(empty)"' in text
    assert 'driftcar_drift_detected_ratio{' in text and 'feature_name="city"' in text


def test_odd_call_tables_are_counted_not_fatal():
    from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig

    tel = Telemetry(TelemetryConfig(export="none"))
    store = StateStore(load_config(env={}, flags={"live_reference_rows": "0"}).store_config(), tel, clock=Clock())
    calls = {"method": ["", None], "duration_s": np.array([np.nan, -1.0]), "rows": np.array([2, 1]),
             "error_type": ["", None]}
    store.apply(item(inference_body(numeric_frame(3, 1), calls=calls)))
    text = tel.prometheus_text()
    assert 'method="(empty)",error_type="(empty)"} 1' in text.replace("error.type", "error_type")
    assert store.models[("m", "1")].rows_total == 3


def test_a_checkpoint_written_before_the_state_split_restores(tmp_path, caplog):
    import json
    import shutil

    import msgpack

    from tests.unit.sidecar.checkpoint_fixture import DIRECTORY

    directory = str(tmp_path / "state")
    shutil.copytree(DIRECTORY, directory)
    with open(os.path.join(directory, "expected.json")) as fh:
        expected = json.load(fh)
    store, evaluator, tel, clock = make()
    assert Checkpointer(directory, store).restore() == 1
    state = store.models[("m", "1")]
    assert (state.profile.fingerprint, state.reference_source) == (expected["fingerprint"], expected["source"])
    assert [w.rows for w in state.closed] == expected["closed_rows"]
    assert np.asarray(state.closed[-1].sketch.feature("x1").counts).tolist() == expected["x1_counts"]
    assert state.cumulative.rows == expected["cumulative_rows"]
    assert sorted(f for f, v in state.verdicts.items() if v) == expected["verdicts"]
    assert (state.hook_dropped, state.rows_total, state.batches_total) == (
        expected["hook_dropped"], expected["rows_total"], expected["batches_total"])
    assert len(state.labels.joiner) == expected["waiting_labels"]
    # the restored verdicts hold: the next drifted window raises no second event
    store.apply(item(inference_body(numeric_frame(400, 2, seed=5, shift={"x1": 2.0}))))
    clock.ns += 60 * 10**9
    evaluator.evaluate_all(store.close_windows())
    assert not [e for e in tel.events if e["event_name"] == "driftcar.drift.detected"]
    assert state.verdicts.get("x1") is True

    # a format this code does not know is refused with a clear message, never fatal
    path = os.path.join(directory, "state.msgpack")
    with open(path, "rb") as fh:
        index = msgpack.unpackb(fh.read(), raw=False)
    index["v"] = 99
    with open(path, "wb") as fh:
        fh.write(msgpack.packb(index, use_bin_type=True))
    store2, _, _, _ = make()
    with caplog.at_level("WARNING", logger="driftcar.sidecar.checkpoint"):
        assert Checkpointer(directory, store2).restore() == 0
    assert "unknown checkpoint format 99" in caplog.text and not store2.models
