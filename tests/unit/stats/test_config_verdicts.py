"""Drift configuration (validation, per-feature overrides), multiple-testing correction, hysteresis."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from driftcar.stats import (
    DriftConfig,
    DriftReport,
    DriftResult,
    FeatureDriftConfig,
    VerdictTracker,
    adjust_pvalues,
    evaluate_drift,
    profile,
)

RNG = np.random.default_rng(6)
PROF = profile({"a": RNG.normal(size=5_000), "b": RNG.normal(size=5_000), "c": list(RNG.choice(["x", "y"], 5_000))})


def test_switch_rule_by_sample_size_and_kind():
    small, large = PROF.new_window(), PROF.new_window()
    small.update({"a": RNG.normal(size=500), "b": RNG.normal(size=500), "c": ["x"] * 500})
    large.update({"a": RNG.normal(size=3_000), "b": RNG.normal(size=3_000), "c": ["x"] * 3_000})
    switch = DriftConfig(decision="switch")
    s = evaluate_drift(PROF, small, switch).deciding()
    lg = evaluate_drift(PROF, large, switch).deciding()
    assert (s["a"].method, s["c"].method, s["__multivariate__"].method) == ("ks", "chisquare", "pca_reconstruction")
    assert (lg["a"].method, lg["c"].method) == ("wasserstein", "jensenshannon")
    assert (s["a"].threshold, lg["a"].threshold) == (0.05, 0.1)


def test_per_feature_overrides_and_method_subset():
    w = PROF.new_window()
    w.update({"a": RNG.normal(0.3, 1, 2_000), "b": RNG.normal(size=2_000), "c": ["x"] * 2_000})
    cfg = DriftConfig(methods=("psi",), multivariate=False, decision="switch",
                      features={"a": FeatureDriftConfig(method="ks", threshold=0.01), "b": {"enabled": False}})
    report = evaluate_drift(PROF, w, cfg)
    got = {(r.feature, r.method, r.deciding) for r in report.results}
    assert got == {("a", "psi", False), ("a", "ks", True), ("c", "psi", False), ("c", "jensenshannon", True)}
    assert report.result("a", "ks").threshold == 0.01
    assert report.deciding()["a"].detected


def test_invalid_config_lists_every_problem():
    with pytest.raises(ValueError) as err:
        DriftConfig(methods=("nope",), min_samples=0, pvalue_threshold=2, correction="magic",
                    features={"a": {"method": "bogus", "threshold": -1}})
    msg = str(err.value)
    for part in ("methods", "min_samples", "pvalue_threshold", "correction", "features.a.method",
                 "features.a.threshold"):
        assert part in msg


def test_from_mapping_rejects_unknown_keys_with_paths():
    cfg = DriftConfig.from_mapping({"min_samples": 50, "correction": "bonferroni",
                                    "features": {"a": {"method": "psi", "threshold": 0.2}}})
    assert cfg.min_samples == 50 and cfg.features["a"].method == "psi"
    with pytest.raises(ValueError, match=r"drift.typo: unknown key.*drift.features.a.thresh: unknown key"):
        DriftConfig.from_mapping({"typo": 1, "features": {"a": {"thresh": 1}}})


@pytest.mark.parametrize("seed", range(5))
def test_bh_matches_scipy(seed):
    p = np.random.default_rng(seed).random(30) ** 3
    np.testing.assert_allclose(adjust_pvalues(p), stats.false_discovery_control(p, method="bh"), atol=1e-12)
    np.testing.assert_allclose(adjust_pvalues(p, "bonferroni"), np.minimum(p * 30, 1))
    np.testing.assert_array_equal(adjust_pvalues(p, "none"), p)


def test_correction_is_applied_across_features():
    names = [f"f{i}" for i in range(10)]
    prof = profile({n: RNG.normal(size=5_000) for n in names}, multivariate=False)
    w = prof.new_window()
    w.update({n: RNG.normal(0.12 if n == "f0" else 0.0, 1, 600) for n in names})
    raw = evaluate_drift(prof, w, DriftConfig(correction="none")).deciding()
    bonf = evaluate_drift(prof, w, DriftConfig(correction="bonferroni")).deciding()
    for n in names:
        assert bonf[n].pvalue == raw[n].pvalue
        assert bonf[n].pvalue_adjusted == pytest.approx(min(1.0, raw[n].pvalue * 10))
        assert bonf[n].detected == (bonf[n].pvalue_adjusted < 0.05)


def test_verdicts_are_one_family_across_kinds():
    rng = np.random.default_rng(9)
    prof = profile({"n": rng.normal(size=5_000), "c": list(rng.choice(["x", "y", "z"], 5_000))}, multivariate=False)
    w = prof.new_window()
    w.update({"n": rng.normal(0.1, 1, 600), "c": list(rng.choice(["x", "y", "z"], 600, p=[0.4, 0.3, 0.3]))})
    dec = evaluate_drift(prof, w, DriftConfig(correction="bonferroni")).deciding()
    assert (dec["n"].method, dec["c"].method) == ("ks", "chisquare")
    for f in ("n", "c"):  # two verdicts in the family, whatever their tests
        assert dec[f].pvalue_adjusted == pytest.approx(min(1.0, 2 * dec[f].pvalue))


def _report(score: float, ok: bool = True, method: str = "wasserstein", p: float | None = None) -> DriftReport:
    detected = ok and (score >= 0.1 if p is None else p < 0.05)
    return DriftReport([DriftResult("x", method, score, p, 0.05 if p is not None else 0.1, detected, 1000, 1000,
                                    True, ok, p)])


def test_hysteresis_enter_and_exit():
    t = VerdictTracker(DriftConfig(enter_windows=2, exit_windows=2, exit_factor=0.8))
    seq = [0.2, 0.05, 0.2, 0.2, 0.09, 0.05, 0.2, 0.05, 0.05, 0.2]
    changes = [[(c.feature, c.detected) for c in t.update(_report(s))] for s in seq]
    # enters after two consecutive detections (window 3); 0.09 is above 0.08 = exit level: holds;
    # a detection (window 6) resets the exit streak; leaves after two clean windows (window 8)
    assert changes == [[], [], [], [("x", True)], [], [], [], [], [("x", False)], []]
    assert t.drifted == []


def test_hysteresis_pvalue_exit_level_and_insufficient_windows_hold():
    t = VerdictTracker(DriftConfig(exit_windows=1, exit_factor=0.5))
    assert [c.detected for c in t.update(_report(0.3, method="ks", p=0.001))] == [True]
    assert t.update(_report(0.1, method="ks", p=0.07)) == []  # not significant, but below 0.05 / 0.5
    assert t.update(_report(0.0, ok=False)) == []  # too few rows: no evidence either way
    assert t.state("x")
    assert [c.detected for c in t.update(_report(0.01, method="ks", p=0.5))] == [False]


def test_restored_verdict_does_not_alert_again_and_leaves_as_usual():
    t = VerdictTracker(DriftConfig(enter_windows=1, exit_windows=1))
    t.restore(["x"])
    assert t.state("x") and t.drifted == ["x"]
    assert t.update(_report(0.2)) == []  # already drifted: no second alert
    assert [(c.feature, c.detected) for c in t.update(_report(0.01))] == [("x", False)]


@pytest.mark.parametrize("decision", ["calibrated", "switch"])
def test_no_methods_computes_the_deciding_test_alone_with_the_same_verdicts(decision):
    w = PROF.new_window()
    w.update({"a": RNG.normal(0.2, 1, 3_000), "b": RNG.normal(size=3_000), "c": list(RNG.choice(["x", "y"], 3_000))})
    every = evaluate_drift(PROF, w, DriftConfig(decision=decision))
    alone = evaluate_drift(PROF, w, DriftConfig(decision=decision, methods=()))
    assert len(every.results) > len(alone.results) == len(alone.deciding()) == 4  # a, b, c, __multivariate__
    assert alone.deciding() == every.deciding()
