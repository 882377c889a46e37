"""Coverage said out loud, and verdicts described like with like (state + evaluator, fake telemetry).

Each mismatch a user can make (numpy names against a named profile, a model name that matches
no ``--reference NAME=``, a typo in per-feature drift settings, a live reference, features
that never arrive) must show up in the coverage gauge, once as a ``driftcar.reference.mismatch``
event and log line, and in the JSON API documents.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from driftcar.sidecar.api import drift_document, summary_document
from driftcar.sidecar.config import load_config
from driftcar.sidecar.evaluator import Evaluator
from driftcar.sidecar.messages import LineBudget, decision_kind, describe
from driftcar.sidecar.state import StateStore
from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig
from driftcar.stats import DriftConfig, profile

from tests.unit.sidecar.batches import inference_body, numeric_frame
from tests.unit.sidecar.fake_telemetry import FakeTelemetry
from tests.unit.sidecar.test_sidecar_state import Clock, item

NAMES = ("age", "income", "tenure", "balance")
MINUTE_NS = 60 * 10**9


def named_frame(rows: int, seed: int = 0, shift: float = 0.0) -> dict:
    X = numeric_frame(rows, len(NAMES), seed=seed)
    return {name: X[f"x{i}"] + (shift if name == "income" else 0.0) for i, name in enumerate(NAMES)}


@pytest.fixture
def profile_file(tmp_path):
    path = tmp_path / "loan.driftcar"
    profile(named_frame(3_000, seed=1)).save(path)
    return str(path)


def make(flags: dict, drift: DriftConfig | None = None):
    tel, clock = FakeTelemetry(), Clock()
    config = load_config(env={}, flags={"live_reference_rows": "0", "window": "1m", **flags})
    store = StateStore(config.store_config(drift), tel, clock=clock)
    return store, Evaluator(store, tel, config.evaluator_config(drift)), tel, clock


def close(store, evaluator, clock):
    clock.ns += MINUTE_NS
    evaluator.evaluate_all(store.close_windows())


def mismatches(tel, cause=None):
    return [e for e in tel.events if e["event_name"] == "driftcar.reference.mismatch"
            and (cause is None or e["attributes"]["mismatch.cause"] == cause)]


def test_numpy_names_against_a_named_profile_are_said_once_and_cover_nothing(profile_file, caplog):
    store, evaluator, tel, clock = make({"reference": f"loan={profile_file}"})
    caplog.set_level(logging.WARNING, logger="driftcar.sidecar")
    for seed in range(3):
        store.apply(item(inference_body(numeric_frame(400, 4, seed=seed)), model="loan"))
    close(store, evaluator, clock)
    events = mismatches(tel, "unknown_features")
    assert len(events) == 1 and events[0]["severity"] == "WARN"
    assert events[0]["attributes"]["mismatch.names"] == ["x0", "x1", "x2", "x3"]
    assert "feature_names=" in events[0]["body"] and "income" in events[0]["body"]
    assert any("unknown_features" in r.getMessage() for r in caplog.records)
    assert tel.gauges[("coverage", "loan", "1")] == 0.0
    cov = store.models[("loan", "1")].summary()["coverage"]
    assert (cov["share"], cov["features_profiled"], cov["features_seen"]) == (0.0, 4, 0)
    assert cov["rows_matched"] == 0 and cov["rows_unmatched"] == 1_200
    assert cov["unknown_features"] == {"x0": 1_200, "x1": 1_200, "x2": 1_200, "x3": 1_200}
    assert {m["cause"] for m in cov["mismatches"]} == {"unknown_features", "unseen_features"}


def test_partial_coverage_names_the_unseen_features(profile_file):
    store, evaluator, tel, clock = make({"reference": f"loan={profile_file}"})
    X = named_frame(500, seed=2)
    del X["tenure"]
    store.apply(item(inference_body(X), model="loan"))
    close(store, evaluator, clock)
    assert tel.gauges[("coverage", "loan", "1")] == pytest.approx(0.75)
    (event,) = mismatches(tel, "unseen_features")
    assert event["attributes"]["mismatch.names"] == ["tenure"]
    assert not mismatches(tel, "unknown_features")
    doc = drift_document(store.models[("loan", "1")], 60.0)
    assert doc["coverage"]["rows_matched"] == 500 and doc["coverage"]["unseen_features"] == ["tenure"]


def test_full_coverage_says_nothing(profile_file):
    store, evaluator, tel, clock = make({"reference": f"loan={profile_file}"})
    store.apply(item(inference_body(named_frame(500, seed=3)), model="loan"))
    close(store, evaluator, clock)
    assert tel.gauges[("coverage", "loan", "1")] == 1.0 and not mismatches(tel)
    close(store, evaluator, clock)  # an empty window keeps the last value
    assert tel.gauges[("coverage", "loan", "1")] == 1.0


def test_model_name_matching_no_reference_suggests_the_case_insensitive_one(profile_file):
    store, evaluator, tel, clock = make({"reference": f"loan={profile_file}", "live_reference_rows": "1000"})
    for seed in range(2):
        store.apply(item(inference_body(named_frame(300, seed=seed)), model="Loan"))
    assert not mismatches(tel)  # judged at the window close: a reference may be on its way
    close(store, evaluator, clock)
    (event,) = mismatches(tel, "no_reference")
    assert event["attributes"]["mismatch.suggestions"] == ["Loan -> loan"]
    assert "did you mean loan" in event["body"] and "first 1000 live rows" in event["body"]
    assert len(mismatches(tel, "live_reference")) == 1
    store.apply(item(inference_body(named_frame(300, seed=5)), model="Loan"))
    close(store, evaluator, clock)
    assert len(mismatches(tel)) == 2  # once per model and cause
    assert tel.gauges[("coverage", "Loan", "1")] == 0.0  # rows arrived, nothing compared them


def test_reference_batches_sent_with_the_first_predictions_are_no_mismatch():
    from tests.unit.sidecar.test_sidecar_state import reference

    store, evaluator, tel, clock = make({})
    store.apply(item(inference_body(named_frame(300, seed=1))))  # overtook the reference batch
    store.apply(item(reference(named_frame(2_000, seed=2))))
    close(store, evaluator, clock)
    assert not mismatches(tel, "no_reference")


def test_live_reference_still_collecting_at_the_close_is_said():
    store, evaluator, tel, clock = make({"live_reference_rows": "1000"})
    store.apply(item(inference_body(named_frame(300, seed=1)), model="m"))
    close(store, evaluator, clock)
    (event,) = mismatches(tel, "live_reference")
    assert "taking the first 1000 live rows" in event["body"]
    assert tel.gauges[("coverage", "m", "1")] == 0.0


def test_live_reference_says_which_rows_it_took():
    store, evaluator, tel, clock = make({"live_reference_rows": "1000"})
    store.apply(item(inference_body(named_frame(600, seed=1)), model="m"))
    clock.ns += 5 * 10**9
    store.apply(item(inference_body(named_frame(600, seed=2)), model="m"))
    (event,) = mismatches(tel, "live_reference")  # taken within the first window: said when taken
    assert "first 1000 live rows (received " in event["body"]
    assert not mismatches(tel, "no_reference")  # no --reference at all: nothing was mistyped
    summary = store.models[("m", "1")].summary()
    live = summary["reference"]["live_rows"]
    assert summary["reference"]["source"] == "live" and live["rows"] == 1_000
    assert live["to_unix_nano"] - live["from_unix_nano"] == 5 * 10**9


def test_unknown_feature_in_drift_settings_is_reported_when_the_profile_loads(profile_file):
    drift = DriftConfig.from_mapping({"features": {"incme": {"threshold": 0.2}, "age": {"threshold": 0.2}}})
    store, evaluator, tel, clock = make({"reference": profile_file}, drift=drift)
    store.get_or_create("m", "1")
    (event,) = mismatches(tel, "unknown_drift_settings")
    assert event["attributes"]["mismatch.names"] == ["incme"]
    assert event["attributes"]["mismatch.suggestions"] == ["incme -> income"]


def test_verdict_messages_compare_like_with_like(profile_file, caplog):
    store, evaluator, tel, clock = make({"reference": profile_file})
    caplog.set_level(logging.INFO, logger="driftcar.sidecar")
    store.apply(item(inference_body(named_frame(600, seed=4, shift=1.0))))
    close(store, evaluator, clock)
    (event,) = [e for e in tel.events if e["event_name"] == "driftcar.drift.detected"
                and e["attributes"]["feature.name"] == "income"]
    attrs = event["attributes"]
    if attrs["drift.threshold.kind"] == "pvalue":
        assert f"p = {attrs['drift.pvalue']:.4g} < {attrs['drift.threshold']:.4g}" in event["body"]
    else:
        assert f"score {attrs['drift.score']:.4g} ≥ threshold {attrs['drift.threshold']:.4g}" in event["body"]
    assert "vs threshold" not in event["body"]
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("drift detected: ") and "income" in line for line in lines)
    (summary,) = [line for line in lines if line.startswith("window ")]
    assert "m@1: 600 rows" in summary and "drifting: income" in summary and "coverage 100%" in summary
    doc = summary_document(store.models[("m", "1")], 60.0)
    income = doc["features"]["income"]
    assert income["verdict"] is True and "histogram" not in income
    assert income["decision"] == describe(store.models[("m", "1")].last.report.deciding()["income"])


def test_describe_uses_the_quantity_that_decided():
    from driftcar.stats import DriftResult

    def R(method, statistic, pvalue, pvalue_adjusted, threshold):
        return DriftResult("x", method, statistic, pvalue, threshold, False, 500, 500, True, True,
                           pvalue_adjusted=pvalue_adjusted)

    ks = R(method="ks", statistic=0.25, pvalue=0.001, pvalue_adjusted=0.004, threshold=0.05)
    assert describe(ks) == "ks adjusted p = 0.004 < 0.05 (statistic 0.25)" and decision_kind(ks) == "pvalue"
    clean = R(method="ks", statistic=0.01, pvalue=0.6, pvalue_adjusted=None, threshold=0.05)
    assert describe(clean) == "ks p = 0.6 ≥ 0.05 (statistic 0.01)"
    # above large_sample a PCA test decides by distance (no p-value): a score, not "p = 1"
    pca = R(method="pca_reconstruction", statistic=0.12, pvalue=None, pvalue_adjusted=None, threshold=0.1)
    assert describe(pca) == "pca_reconstruction score 0.12 ≥ threshold 0.1" and decision_kind(pca) == "score"


def test_line_budget_caps_lines_per_minute_and_counts_the_rest():
    now = [0.0]
    budget = LineBudget(3, clock=lambda: now[0])
    assert [budget.take() for _ in range(5)] == [0, 0, 0, None, None]
    now[0] = 61.0
    assert budget.take() == 2 and budget.take() == 0


def test_pvalue_gauge_disappears_when_the_test_decides_by_score():
    tel = Telemetry(TelemetryConfig(export="none"))
    tel.set_drift("m", "1", "__multivariate__", "pca_reconstruction", "1m", 0.3, 0.001, 0.05, True)
    assert "driftcar_drift_pvalue_ratio{" in tel.prometheus_text()
    tel.set_drift("m", "1", "__multivariate__", "pca_reconstruction", "1m", 0.03, None, 0.1, False)
    assert "driftcar_drift_pvalue_ratio{" not in tel.prometheus_text()


def test_coverage_gauge_is_exported_and_validated():
    tel = Telemetry(TelemetryConfig(export="none"))
    tel.set_coverage("m", "1", 0.5)
    assert 'driftcar_reference_coverage_ratio{model_name="m",model_version="1"} 0.5' in tel.prometheus_text()
    with pytest.raises(ValueError):
        tel.set_coverage("m", "1", 1.5)


def test_an_engine_that_carries_its_rule_is_believed():
    """Results that say how they were decided (``by_pvalue``, ``describe()``) win over the inference from
    the fields: a p-value left on a result decided by distance is not exported as the compared one."""
    from types import SimpleNamespace as R

    from driftcar.sidecar.messages import decision_pvalue

    by_distance = R(method="pca_reconstruction", statistic=0.03, pvalue=0.2, pvalue_adjusted=None, threshold=0.1,
                    by_pvalue=False, describe=lambda: "score 0.03 < threshold 0.1")
    assert decision_kind(by_distance) == "score" and decision_pvalue(by_distance) is None
    assert describe(by_distance) == "pca_reconstruction score 0.03 < threshold 0.1"
    by_p = R(method="ks", statistic=0.2, pvalue=0.0003, pvalue_adjusted=0.0012, threshold=0.05, by_pvalue=True,
             describe=lambda: "adjusted p = 0.0012 < 0.05")
    assert decision_kind(by_p) == "pvalue" and decision_pvalue(by_p) == 0.0012
    assert describe(by_p) == "ks adjusted p = 0.0012 < 0.05 (statistic 0.2)"


def test_data_derived_names_cannot_forge_log_lines(profile_file, caplog):
    store, evaluator, tel, clock = make({"reference": f"loan={profile_file}"})
    caplog.set_level(logging.WARNING, logger="driftcar.sidecar")
    X = named_frame(200, seed=6)
    X["evil\n2026-01-01 INFO driftcar: forged" + "x" * 100] = X.pop("age")
    store.apply(item(inference_body(X), model="loan"))
    (line,) = [r.getMessage() for r in caplog.records if "unknown_features" in r.getMessage()]
    assert "\n" not in line and "evil\\n2026" in line and "x" * 100 not in line


def test_what_profiling_a_live_reference_inferred_is_logged_not_warned(caplog, recwarn):
    store, evaluator, tel, clock = make({"live_reference_rows": "300"})
    caplog.set_level(logging.WARNING, logger="driftcar.sidecar")
    X = named_frame(300, seed=8)
    X["row_id"] = np.arange(300)  # id-like: left out of the profile, with a note
    store.apply(item(inference_body(X), model="m"))
    assert store.models[("m", "1")].reference_source == "live"
    assert any("reference built from 300 live rows" in r.getMessage() and "row_id" in r.getMessage()
               for r in caplog.records)
    assert not [w for w in recwarn if "driftcar" in str(w.message)]
