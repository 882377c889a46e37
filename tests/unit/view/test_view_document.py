"""The view document: distributions equal numpy's binning of the same rows, the score history
equals driftcar.stats on each kept window, ordering puts drifted features first, and the live
document reads a real sidecar state (fake telemetry)."""

from __future__ import annotations

import collections
import math

import numpy as np
import pytest

from driftcar.sidecar.evaluator import Evaluator
from driftcar.sidecar.state import StateStore
from driftcar.sidecar.config import load_config
from driftcar.stats import DriftConfig, evaluate_drift, profile
from driftcar.stats.drift import DriftResult
from driftcar.view.document import (MISSING_LABEL, distribution, event_entry, feature_entry, level, order_features)
from driftcar.view.live import _quantile, golden_signals, live_document
from driftcar.sidecar.telemetry.state import HistogramValue, Series

from tests.unit.sidecar.batches import inference_body, numeric_frame
from tests.unit.sidecar.fake_telemetry import FakeTelemetry
from tests.unit.sidecar.test_sidecar_state import Clock, item, reference


def test_numeric_distribution_is_numpy_binning_on_the_reference_edges():
    rng = np.random.default_rng(3)
    ref, cur = rng.normal(0, 1, 20_000), rng.normal(0.5, 1.2, 3_000)
    cur[:40] = np.nan
    prof = profile({"x": ref})
    window = prof.new_window()
    window.update({"x": cur})
    dist = distribution(prof.features["x"], window.feature("x"))
    edges = np.asarray(dist["edges"])
    # bins are (-inf, e0), [e0, e1), ..., [e_last, inf): searchsorted(side="right") numbers them
    expected_ref = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
    finite = cur[~np.isnan(cur)]
    expected_cur = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
    assert dist["reference"] == expected_ref.tolist() + [0]
    assert dist["current"] == expected_cur.tolist() + [40]


def test_categorical_distribution_counts_other_and_missing():
    prof = profile({"c": ["a"] * 600 + ["b"] * 300 + ["z"] * 100}, top_k=2)  # 1,000 rows: no small-sample warning
    window = prof.new_window()
    values = ["a"] * 5 + ["b"] * 7 + ["new"] * 3 + [None] * 2
    window.update({"c": values})
    dist = distribution(prof.features["c"], window.feature("c"))
    assert dist["labels"] == ["a", "b", "__other__", MISSING_LABEL]
    counts = collections.Counter(values)
    assert dist["current"] == [counts["a"], counts["b"], counts["new"], counts[None]]
    assert dist["reference"] == [600, 300, 100, 0]
    assert distribution(prof.features["c"], None)["current"] == [0, 0, 0, 0]


def _result(feature, method, stat, pvalue, threshold, detected):
    return DriftResult(feature, method, stat, pvalue, threshold, detected, 1000, 1000, True, True)


def test_level_is_one_at_the_threshold_for_both_rules():
    assert level(0.2, None, 0.1) == pytest.approx(2.0)
    assert level(0.05, None, 0.1) == pytest.approx(0.5)
    assert level(None, 0.05, 0.05) == pytest.approx(1.0)
    assert level(None, 0.0025, 0.05) == pytest.approx(2.0)  # p = alpha**2
    assert level(None, 0.0, 0.05) > 100 and level(0.3, None, 0.0) is None


def test_drifted_first_then_by_distance_to_the_threshold():
    rows = [feature_entry(_result("a", "wasserstein", 0.05, None, 0.1, False), False, None, None),
            feature_entry(_result("b", "ks", 0.3, 1e-9, 0.05, True), True, 5, None),
            feature_entry(_result("c", "wasserstein", 0.09, None, 0.1, False), False, None, None),
            feature_entry(_result("d", "wasserstein", 0.5, None, 0.1, True), False, None, None)]
    assert [r["name"] for r in order_features(rows)] == ["b", "d", "c", "a"]
    assert rows[1]["rule"] == "p-value" and rows[0]["rule"] == "distance"
    assert rows[1]["since_unix_nano"] == 5 and rows[0]["since_unix_nano"] is None


def test_event_entry_keeps_trace_ids_and_scores():
    ev = event_entry({"event_name": "driftcar.drift.detected", "time_unix_nano": 7, "attributes": {
        "model.name": "m", "model.version": "1", "feature.name": "x", "drift.method": "ks", "drift.score": 0.4,
        "drift.threshold": 0.05, "driftcar.sample_trace_ids": ["ab" * 16]}})
    assert ev["model"] == "m@1" and ev["trace_ids"] == ["ab" * 16] and ev["detected"] and ev["score"] == 0.4


def test_latency_quantiles_interpolate_like_histogram_quantile():
    bounds, counts = (0.1, 0.2, 0.4), (10, 30, 60, 0)
    assert _quantile(bounds, counts, 0.5) == pytest.approx(0.2 + 0.2 * (50 - 40) / 60)
    assert _quantile(bounds, counts, 0.05) == pytest.approx(0.05)
    assert _quantile(bounds, (0, 0, 0, 0), 0.5) is None
    attrs = (("model.name", "m"), ("model.version", "1"), ("method", "predict"))
    series = [Series("driftcar.inference.calls", attrs, 9),
              Series("driftcar.inference.calls", attrs + (("error.type", "ValueError"),), 2),
              Series("driftcar.inference.calls", (("model.name", "other"), ("model.version", "1")), 50),
              Series("driftcar.inference.duration", attrs, HistogramValue(bounds, counts, 1.0, 100))]
    golden = golden_signals(series, "m", "1")
    assert golden["calls"] == 11 and golden["errors"] == 2
    assert golden["p99_s"] == pytest.approx(0.2 + 0.2 * (99 - 40) / 60)


def test_live_document_matches_stats_per_kept_window():
    tel = FakeTelemetry()
    clock = Clock()
    config = load_config(env={}, flags={"live_reference_rows": "0", "window": "1m"})
    store = StateStore(config.store_config(), tel, clock=clock)
    evaluator = Evaluator(store, tel, config.evaluator_config())
    ref = numeric_frame(3_000, 3, seed=1)
    store.apply(item(reference(ref)))
    lives = [numeric_frame(800, 3, seed=2), numeric_frame(800, 3, seed=3, shift={"x1": 1.0})]
    for live in lives:
        store.apply(item(inference_body(live)))
        clock.ns += 60 * 10**9
        evaluator.evaluate_all(store.close_windows())
    doc = live_document(store, tel, 60.0, DriftConfig())
    (model,) = doc["models"]
    assert [f for f in model["drifted"] if not f.startswith("__")] == ["x1"]
    assert model["features"][0]["verdict"] and not any(f["verdict"] for f in model["features"] if f["name"] in
                                                       ("x0", "x2"))
    assert model["windows_kept"] == 2 and model["reference"]["rows"] == 3_000
    prof = profile(ref)
    for k, live in enumerate(lives):
        window = prof.new_window()
        window.update(live)
        expected = evaluate_drift(prof, window, DriftConfig()).deciding()
        for f in model["features"]:
            point = f["history"][k]
            assert point["score"] == pytest.approx(expected[f["name"]].statistic, rel=1e-9, abs=1e-12)
            assert point["detected"] == expected[f["name"]].detected
    x1 = next(f for f in model["features"] if f["name"] == "x1")
    detected = [e for e in tel.events if e["event_name"] == "driftcar.drift.detected"]
    assert x1["verdict"] and x1["since_unix_nano"] == detected[0]["attributes"]["window.start"]
    assert sum(x1["distribution"]["current"]) == 800
    assert not math.isnan(x1["score"]) and "x1" in [e["feature"] for e in doc["events"]]
