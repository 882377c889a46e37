"""Degenerate inputs give defined, finite answers (issue 3, point 4): empty windows, all-missing
columns, constant features, categories never seen in the reference, infinities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from driftcar.stats import DriftConfig, evaluate_drift, profile

RNG = np.random.default_rng(8)
N = 2_000
REF = {
    "normal": RNG.normal(size=N),
    "constant": np.full(N, 3.0),
    "all_missing": np.full(N, np.nan),
    "with_inf": np.concatenate([RNG.normal(size=N - 4), [np.inf, -np.inf, np.inf, np.nan]]),
    "colour": list(RNG.choice(["red", "green"], N)),
    "all_none": [None] * N,
}
PROFILE = profile(REF, predictions=RNG.normal(size=N), keep=["all_missing", "all_none"])  # empty: kept on purpose


def _check(report, expect_ok: bool | None = None):
    features = {r.feature for r in report.results}
    deciding = [r for r in report.results if r.deciding]
    assert sorted(r.feature for r in deciding) == sorted(features)  # exactly one verdict per feature
    for r in report.results:
        assert math.isfinite(r.statistic) and math.isfinite(r.threshold) and math.isfinite(r.bound)
        assert r.pvalue is None or (math.isfinite(r.pvalue) and 0.0 <= r.pvalue <= 1.0)
        assert r.pvalue_adjusted is None or 0.0 <= r.pvalue_adjusted <= 1.0
        assert isinstance(r.detected, bool) and isinstance(r.ok, bool)
        if not r.ok:
            assert r.detected is False
        if expect_ok is not None:
            assert r.ok is expect_ok
    return {r.feature: r for r in deciding}


def test_profile_of_degenerate_columns():
    f = PROFILE.features
    assert (f["constant"].kind, f["constant"].std, len(f["constant"].edges)) == ("numeric", 0.0, 1)
    assert (f["all_missing"].n, f["all_missing"].missing, f["all_missing"].missing_rate) == (0, N, 1.0)
    assert (f["with_inf"].infinite, f["with_inf"].missing) == (3, 1)
    assert np.isfinite(f["with_inf"].mean) and np.isfinite(f["with_inf"].std)
    assert f["all_none"].kind == "numeric" and f["all_none"].n == 0  # nothing to type it by


def test_empty_window():
    dec = _check(evaluate_drift(PROFILE, PROFILE.new_window()), expect_ok=False)
    assert all(r.statistic == 0.0 and r.n_current == 0 for r in dec.values())


def test_window_of_only_missing_values():
    w = PROFILE.new_window()
    w.update({k: [None] * 500 for k in REF})
    dec = _check(evaluate_drift(PROFILE, w), expect_ok=False)
    assert w.feature("normal").missing == 500 and w.feature("colour").missing == 500
    assert dec["normal"].n_current == 0


def test_constant_feature_same_and_moved():
    same = PROFILE.new_window()
    same.update({"constant": np.full(500, 3.0)})
    moved = PROFILE.new_window()
    moved.update({"constant": np.full(500, 4.0)})
    cfg = DriftConfig(methods=("ks", "wasserstein", "psi", "jensenshannon", "hellinger", "chisquare"))
    a = evaluate_drift(PROFILE, same, cfg)
    b = evaluate_drift(PROFILE, moved, cfg)
    _check(a)
    _check(b)
    for m in ("ks", "wasserstein", "psi", "jensenshannon", "hellinger"):
        assert a.result("constant", m).statistic == pytest.approx(0.0, abs=1e-12)
        assert a.result("constant", m).detected is False
    assert b.result("constant", "ks").statistic == 1.0 and b.result("constant", "ks").detected
    # the reference spread is 0: Wasserstein is then in the feature's own units (documented)
    assert b.result("constant", "wasserstein").statistic == pytest.approx(1.0)
    assert b.deciding()["constant"].detected


def test_unseen_category_and_infinities():
    w = PROFILE.new_window()
    w.update({
        "colour": ["blue"] * 400 + ["red"] * 100,
        "normal": np.concatenate([np.full(250, np.inf), np.full(250, -np.inf)]),
        "with_inf": np.full(500, np.inf),
    })
    dec = _check(evaluate_drift(PROFILE, w))
    assert w.feature("colour").category_counts == {"red": 100, "green": 0, "__other__": 400}
    assert dec["colour"].detected
    s = w.feature("normal")
    assert (s.infinite, s.out_of_range, s.n, s.sum) == (500, 500, 500, 0.0)
    assert dec["normal"].detected  # all mass in the open ends: the KS distance is large


def test_infinite_threshold_values_never_leak():
    w = PROFILE.new_window()
    w.update({"normal": np.array([1e308, -1e308] * 300)})
    _check(evaluate_drift(PROFILE, w, DriftConfig(methods=("ks", "wasserstein"))))


def test_min_samples_gate_and_override():
    w = PROFILE.new_window()
    w.update({"normal": RNG.normal(5, 1, 50)})
    r = evaluate_drift(PROFILE, w).deciding()["normal"]
    assert (r.ok, r.detected, r.n_current) == (False, False, 50)
    cfg = DriftConfig(features={"normal": {"min_samples": 20}})
    r = evaluate_drift(PROFILE, w, cfg).deciding()["normal"]
    assert (r.ok, r.detected) == (True, True)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none(), st.integers(-10**12, 10**12),
                    st.text(max_size=3), st.booleans())


@settings(max_examples=150, deadline=None)
@given(num=st.lists(_values, min_size=1, max_size=40), cat=st.lists(_values, min_size=1, max_size=40))
def test_any_input_gives_finite_results(num, cat):
    n = min(len(num), len(cat))
    w = PROFILE.new_window()
    w.update({"normal": num[:n], "constant": num[:n], "with_inf": num[:n], "colour": cat[:n], "all_none": cat[:n]})
    w.update_predictions(num[:n])
    w.update({"colour": [[1, 2], {"a": 1}, b"x"][: n] if n >= 1 else []})  # unhashable / bytes: counted as text
    _check(evaluate_drift(PROFILE, w, DriftConfig(min_samples=1)))
    _check(evaluate_drift(PROFILE, w.merge(w)))
