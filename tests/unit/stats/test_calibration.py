"""The calibrated decision (the default): band math against scipy, false alarms over seeded
no-drift windows of every size, detection of planted shifts, a reference that varies within
itself, old profiles, and hysteresis by the same rule.

No-drift windows are drawn as multinomial counts over the profile's fine bins from the true
distribution (the exact distribution of the sketch of n independent rows), so 1,000 windows
of 200,000 rows cost milliseconds.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from driftcar.stats import DriftConfig, Profile, VerdictTracker, evaluate_drift, profile
from driftcar.stats import calibration as cal
from driftcar.stats import methods as M

REF_ROWS = 20_000


@pytest.fixture(scope="module")
def normal_profile():
    rng = np.random.default_rng(11)
    return profile({"x": rng.normal(size=REF_ROWS), "c": rng.choice(["a", "b", "c"], REF_ROWS, p=[.5, .3, .2])},
                   multivariate=False)


def _bin_probs(prof, mean: float = 0.0, sd: float = 1.0) -> np.ndarray:
    e = prof.layout.fine_edges[0]
    p = np.diff(stats.norm.cdf(np.concatenate([[-np.inf], (e - mean) / sd, [np.inf]])))
    return p / p.sum()


def test_band_equals_scipy_without_reference_variation():
    d = np.array([0.01, 0.03, 0.2])
    n_ref, n_cur = np.array([60_000, 265, 5_000]), np.array([200_000, 1_200, 500])
    level = 0.01 / 11
    thr, p = cal.numeric_band(d, n_ref, n_cur, 0.0, level, 0.0)
    np.testing.assert_allclose(p, M.ks_pvalue(d, n_ref, n_cur), rtol=1e-12)
    en = n_ref * n_cur / (n_ref + n_cur)
    s = np.sqrt(en) + 0.12 + 0.11 / np.sqrt(en)
    np.testing.assert_allclose(special.kolmogorov(s * thr), level, rtol=1e-9)  # the band's edge is the level
    chi = np.array([3.0, 30.0])
    thr, p = cal.chisquare_band(chi, np.array([1, 19]), 60_000, 20_000, 0.0, level, 0.0)
    np.testing.assert_allclose(p, stats.chi2.sf(chi, [1, 19]), rtol=1e-12)
    np.testing.assert_allclose(thr, stats.chi2.isf(level, [1, 19]), rtol=1e-12)


def test_pooled_chisquare_equals_scipy_on_the_pooled_table():
    ref = np.array([[5_000, 3_000, 2_000, 3, 1, 0]])
    cur = np.array([[260, 140, 95, 2, 0, 3]])
    stat, p, df = cal.pooled_chisquare(ref, cur)
    table = np.array([[5_000, 3_000, 2_000, 4], [260, 140, 95, 5]])  # expected < 5 in the window: pooled
    expect = stats.chi2_contingency(table, correction=False)
    assert abs(stat[0] - expect.statistic) < 1e-9 and abs(p[0] - expect.pvalue) < 1e-12 and df[0] == expect.dof


@pytest.mark.parametrize("rows", [500, 5_000, 200_000])
def test_no_drift_false_alarms_within_the_level_over_1000_windows(normal_profile, rows):
    """Per feature at level 0.01: at most 1 % of 1,000 windows, plus 3 binomial standard errors."""
    rng = np.random.default_rng(rows)
    L = normal_profile.layout
    counts = rng.multinomial(rows, _bin_probs(normal_profile), size=1_000)
    fc = M.FineComparison(None, counts, np.broadcast_to(L.ks_props[0], counts.shape), L.ks_n[0])
    d = np.abs(fc.cum).max(axis=-1)
    thr, _ = cal.numeric_band(d, L.ks_n[0], rows, L.num_tau2[0], 0.01, 0.0)
    alarms = int((d >= thr).sum())
    assert alarms <= 10 + 3 * np.sqrt(10), f"{alarms} of 1,000 no-drift windows of {rows:,} rows flagged"
    cat_probs = np.array([.5, .3, .2, 0.0])[None, :] * np.ones((1_000, 1))
    c = np.array([rng.multinomial(rows, p) for p in cat_probs])
    stat, _, df = cal.pooled_chisquare(np.broadcast_to(L.ref_cat[0], c.shape), c)
    thr, _ = cal.chisquare_band(stat, df, L.ref_cat[0].sum(), rows, L.cat_tau2[0], 0.01, 0.0)
    assert int((stat >= thr).sum()) <= 10 + 3 * np.sqrt(10)


def _window(prof, rng, rows, mean=0.0, share_a=0.5):
    w = prof.new_window()
    F = prof.layout.F
    w.num_counts[0, : F + 2] = rng.multinomial(rows, _bin_probs(prof, mean))
    e = prof.layout.fine_edges[0]
    mid = np.r_[e[0] - 0.5, (e[:-1] + e[1:]) / 2, e[-1] + 0.5]  # each bin's values at its middle
    w.num_sums[0, : F + 2] = w.num_counts[0, : F + 2] * mid
    p = np.array([share_a, .3, 1 - share_a - .3])
    order = [prof.layout.cat_profiles[0].categories.index(k) for k in "abc"]
    w.cat_counts[0, order] = rng.multinomial(rows, p)
    w.rows = rows
    return w


def test_end_to_end_false_alarms_and_detection(normal_profile):
    rng = np.random.default_rng(5)
    alarms = sum(any(evaluate_drift(normal_profile, _window(normal_profile, rng, n)).detected())
                 for n in (500, 20_000, 200_000) for _ in range(100))
    assert alarms <= 3 + 3 * np.sqrt(3)  # at most 1 % of windows flag any feature
    for _ in range(5):  # 0.1 sd mean shift and a 5-point share change, 20,000-row windows
        assert evaluate_drift(normal_profile, _window(normal_profile, rng, 20_000, 0.1)).detected() == ["x"]
        assert evaluate_drift(normal_profile, _window(normal_profile, rng, 20_000, share_a=0.45)).detected() == ["c"]
    # the effect floor: a real but trivial 0.03 sd shift is not flagged in 200,000-row windows
    r = evaluate_drift(normal_profile, _window(normal_profile, rng, 200_000, 0.03)).deciding()["x"]
    assert not r.detected and r.threshold == DriftConfig().min_effect and r.statistic > 0.005


def test_small_reference_is_not_flagged_against_large_windows():
    """A 265-row reference judged against 1,200-row windows of the same population."""
    rng = np.random.default_rng(8)
    pop = rng.normal(size=(442, 10))
    prof = profile({f"f{j}": pop[:265, j] for j in range(10)}, multivariate=False)
    flagged = 0
    for _ in range(50):
        w = prof.new_window()
        rows = pop[rng.integers(0, 442, 1_200)]
        w.update({f"f{j}": rows[:, j] for j in range(10)})
        flagged += len(evaluate_drift(prof, w).detected())
    assert flagged <= 2
    old = evaluate_drift(prof, w, DriftConfig(decision="switch")).deciding()["f0"]
    assert old.method == "wasserstein" and old.decided_by == "distance"


def test_reference_that_varies_within_itself():
    """Chunks whose mean wanders by 0.1 sd: calibrated on the reference, windows from the same
    wandering process stay quiet; the same reference without its calibration alarms."""
    rng = np.random.default_rng(9)
    ref = np.concatenate([rng.normal(rng.normal(0, 0.1), 1, 6_000) for _ in range(10)])
    prof = profile({"x": ref}, multivariate=False)
    assert prof.calibration.tau2["x"] > 0 and prof.calibration.dispersion["x"] > 2
    bare = Profile.from_bytes(prof.to_bytes())
    bare.calibration = None  # as a profile written before calibration existed
    assert bare.layout.num_tau2[0] == 0
    quiet = loud = 0
    for _ in range(200):
        w = prof.new_window()
        w.update({"x": rng.normal(rng.normal(0, 0.1), 1, 20_000)})
        quiet += evaluate_drift(prof, w).deciding()["x"].detected
        wb = bare.new_window()
        wb.update({"x": rng.normal(rng.normal(0, 0.1), 1, 20_000)})
        loud += evaluate_drift(bare, wb).deciding()["x"].detected
    assert quiet <= 200 * 0.03 and loud >= 200 * 0.3, (quiet, loud)
    w = prof.new_window()
    w.update({"x": rng.normal(1.0, 1, 20_000)})  # far beyond its own variation
    assert evaluate_drift(prof, w).deciding()["x"].detected


def test_calibration_round_trips_and_old_profiles_load(normal_profile):
    back = Profile.from_bytes(normal_profile.to_bytes())
    assert back.calibration == normal_profile.calibration and back.calibration.chunks == 10
    back.calibration = None
    legacy = Profile.from_bytes(back.to_bytes())  # no calibration key at all
    assert legacy.calibration is None
    w = legacy.new_window()
    w.update({"x": np.zeros(10) + 0.1, "c": ["a"] * 10})
    assert all(r.decided_by == "calibrated" for r in evaluate_drift(legacy, w).deciding().values())


# the fixed distance alone in 500-row windows: its noise (~0.08) sits at the exit level, so it
# may hold the state (why it is not a default below 1,000 values)
@pytest.mark.parametrize("decision, rows", [(d, n) for d in ("calibrated", "switch", "pvalue", "distance")
                                            for n in (500, 5_000) if (d, n) != ("distance", 500)])
def test_every_rule_enters_and_leaves_by_the_same_rule(normal_profile, decision, rows):
    rng = np.random.default_rng(3)
    cfg = DriftConfig(decision=decision, exit_windows=2)
    tracker = VerdictTracker(cfg)
    states = []
    for mean in (1.0, 0.0, 0.0, 0.0):
        tracker.update(evaluate_drift(normal_profile, _window(normal_profile, rng, rows, mean), cfg))
        states.append(tracker.state("x"))
    r = evaluate_drift(normal_profile, _window(normal_profile, rng, rows), cfg).deciding()["x"]
    assert states == [True, True, False, False], (decision, r)
    assert r.decided_by == {"calibrated": "calibrated", "pvalue": "pvalue", "distance": "distance",
                            "switch": "pvalue" if rows <= 1_000 else "distance"}[decision]


def test_per_feature_decision_and_floor(normal_profile):
    rng = np.random.default_rng(4)
    cfg = DriftConfig(features={"x": {"decision": "distance"}, "c": {"min_effect": 0.5}})
    dec = evaluate_drift(normal_profile, _window(normal_profile, rng, 5_000, 0.5, share_a=0.4), cfg).deciding()
    assert dec["x"].method == "wasserstein" and dec["x"].decided_by == "distance" and dec["x"].detected
    assert dec["c"].decided_by == "calibrated" and not dec["c"].detected  # w ~ 0.2 < the 0.5 floor
    with pytest.raises(ValueError, match="decision"):
        DriftConfig(decision="bogus")
    with pytest.raises(ValueError, match="features.x.decision"):
        DriftConfig(features={"x": {"decision": "bogus"}})


def test_heterogeneity_pretest_rarely_fires_on_independent_chunks():
    """References of independent rows get tau2 = 0 in all but about 0.5 % of cases (bound 1 %)."""
    rng = np.random.default_rng(12)
    num = rng.multinomial(2_000, np.full(400, 1 / 400), size=(2_000, 10)).transpose(1, 0, 2)
    cat = rng.multinomial(2_000, np.full(20, 1 / 20), size=(2_000, 10)).transpose(1, 0, 2)
    assert (cal.numeric_heterogeneity(num)[0] > 0).mean() <= 0.01
    assert (cal.categorical_heterogeneity(cat)[0] > 0).mean() <= 0.01
    disp = cal.numeric_heterogeneity(num)[1]
    assert abs(disp.mean() - 1.0) < 0.1  # E[(s D)^2] = pi^2 / 12 for independent rows


def test_label_drift_when_labels_arrive():
    from driftcar.stats import evaluate_label_drift

    rng = np.random.default_rng(15)
    prof = profile({"a": rng.normal(size=10_000)}, y=rng.choice(["no", "yes"], 10_000, p=[0.8, 0.2]))
    same, moved = prof.new_window(), prof.new_window()
    same.update_labels(rng.choice(["no", "yes"], 3_000, p=[0.8, 0.2]))
    moved.update_labels(rng.choice(["no", "yes"], 3_000, p=[0.72, 0.28]))
    assert not evaluate_label_drift(prof, same).detected
    r = evaluate_label_drift(prof, moved)
    row = prof.layout.where["__label__"][1]
    expect = stats.chi2_contingency([prof.label.category_array[:2], moved.cat_counts[row, :2]], correction=False)
    assert r.detected and abs(r.statistic - expect.statistic) < 1e-6 * expect.statistic
    assert "__label__" not in evaluate_drift(prof, moved).deciding()  # features only
    bare = profile({"a": rng.normal(size=500)})
    assert evaluate_label_drift(bare, bare.new_window()) is None
