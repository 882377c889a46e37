"""Bin-based drift statistics equal scipy / the textbook formula on the same bins (tolerance 1e-9),
and the sketch's bins equal numpy's histogram of the raw data (exact integer counts)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from driftcar.stats import DriftConfig, evaluate_drift, methods, profile

TOL = 1e-9


def _pairs(seed: int):
    rng = np.random.default_rng(seed)
    for k in (2, 5, 20, 60):
        ref = rng.multinomial(rng.integers(50, 20_000), rng.dirichlet(np.ones(k)))
        cur = rng.multinomial(rng.integers(50, 20_000), rng.dirichlet(np.ones(k)))
        yield ref, cur
    # empty bins on one side and on both sides
    yield np.array([10, 0, 5, 0, 7]), np.array([0, 3, 5, 0, 9])


def _props(c):
    c = np.asarray(c, dtype=float)
    return c / c.sum()


@pytest.mark.parametrize("seed", range(5))
def test_psi_matches_formula(seed):
    for ref, cur in _pairs(seed):
        used = (ref + cur) > 0
        p = np.maximum(_props(ref), methods.PSI_EPS)[used]
        q = np.maximum(_props(cur), methods.PSI_EPS)[used]
        expected = np.sum((q - p) * np.log(q / p))
        assert methods.psi(ref[None], cur[None])[0] == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("seed", range(5))
def test_jensenshannon_matches_scipy(seed):
    for ref, cur in _pairs(seed):
        expected = distance.jensenshannon(ref, cur)
        assert methods.jensenshannon(ref[None], cur[None])[0] == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("seed", range(5))
def test_hellinger_matches_formula(seed):
    for ref, cur in _pairs(seed):
        expected = np.sqrt(np.sum((np.sqrt(_props(ref)) - np.sqrt(_props(cur))) ** 2) / 2)
        assert methods.hellinger(ref[None], cur[None])[0] == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("seed", range(5))
def test_chisquare_matches_scipy_contingency(seed):
    for ref, cur in _pairs(seed):
        used = (ref + cur) > 0
        res = stats.chi2_contingency(np.vstack([ref[used], cur[used]]), correction=False)
        stat, p = methods.chisquare(ref[None], cur[None])
        assert stat[0] == pytest.approx(res.statistic, abs=TOL, rel=TOL)
        assert p[0] == pytest.approx(res.pvalue, abs=TOL)


def test_vectorized_rows_equal_one_by_one():
    rng = np.random.default_rng(9)
    ref = rng.multinomial(5_000, np.ones(12) / 12, size=40)
    cur = rng.multinomial(3_000, rng.dirichlet(np.ones(12), size=40)[0], size=40)
    for fn in (methods.psi, methods.jensenshannon, methods.hellinger):
        many = fn(ref, cur)
        one = np.array([fn(ref[i : i + 1], cur[i : i + 1])[0] for i in range(40)])
        np.testing.assert_allclose(many, one, atol=TOL)


def test_degenerate_counts_are_finite():
    empty = np.zeros((1, 4))
    full = np.array([[1.0, 2.0, 3.0, 4.0]])
    for fn in (methods.psi, methods.jensenshannon, methods.hellinger):
        for a, b in ((empty, full), (full, empty), (empty, empty)):
            assert np.isfinite(fn(a, b)).all()
    stat, p = methods.chisquare(empty, full)
    assert (stat[0], p[0]) == (0.0, 1.0)
    stat, p = methods.chisquare(np.array([[5.0, 0, 0]]), np.array([[7.0, 0, 0]]))  # one used bin: dof 0
    assert (stat[0], p[0]) == (0.0, 1.0)


def test_sketch_bins_equal_numpy_histogram_and_report_uses_them():
    rng = np.random.default_rng(3)
    ref = rng.gamma(2.0, 3.0, 30_000)
    cur = np.concatenate([rng.gamma(2.2, 3.0, 8_000), [-5.0, 1e9, np.nan, np.inf, -np.inf]])
    prof = profile({"g": ref})
    f = prof.features["g"]
    bounds = np.concatenate([[-np.inf], f.edges, [np.inf]])
    # bins are [edge_i, edge_i+1): numpy's histogram is right-closed except the last, so use searchsorted
    ref_counts = np.bincount(np.searchsorted(f.edges, ref, "right"), minlength=len(bounds) - 1)
    np.testing.assert_array_equal(f.counts, ref_counts)
    w = prof.new_window()
    w.update({"g": cur})
    finite_or_inf = cur[~np.isnan(cur)]
    cur_counts = np.bincount(np.searchsorted(f.edges, finite_or_inf, "right"), minlength=len(bounds) - 1)
    s = w.feature("g")
    np.testing.assert_array_equal(s.counts, cur_counts)
    outside = int(np.sum((finite_or_inf < ref.min()) | (finite_or_inf > ref.max())))
    assert outside >= 4
    assert (s.missing, s.infinite, s.out_of_range, s.n) == (1, 2, outside, len(finite_or_inf))
    report = evaluate_drift(prof, w, DriftConfig(methods=("psi", "jensenshannon", "hellinger", "chisquare")))
    ours = {r.method: r.statistic for r in report.results if r.feature == "g"}
    assert ours["jensenshannon"] == pytest.approx(distance.jensenshannon(ref_counts, cur_counts), abs=TOL)
    used = (ref_counts + cur_counts) > 0
    chi = stats.chi2_contingency(np.vstack([ref_counts[used], cur_counts[used]]), correction=False)
    assert ours["chisquare"] == pytest.approx(chi.statistic, rel=TOL)
    assert ours["psi"] == pytest.approx(methods.psi(ref_counts[None], cur_counts[None])[0], abs=TOL)


def test_categorical_counts_and_statistics():
    rng = np.random.default_rng(4)
    cats = np.array(["a", "b", "c", "d"])
    ref = list(rng.choice(cats, 10_000, p=[0.4, 0.3, 0.2, 0.1]))
    cur = list(rng.choice(cats, 4_000, p=[0.25, 0.25, 0.25, 0.25])) + ["never-seen"] * 7 + [None] * 3
    prof = profile({"c": ref})
    w = prof.new_window()
    w.update({"c": cur})
    s = w.feature("c")
    assert s.category_counts["__other__"] == 7 and s.missing == 3
    ref_counts = prof.features["c"].counts
    cur_counts = s.counts
    report = evaluate_drift(prof, w, DriftConfig(methods=("jensenshannon", "chisquare")))
    js = report.result("c", "jensenshannon").statistic
    assert js == pytest.approx(distance.jensenshannon(ref_counts, cur_counts), abs=TOL)
    used = (ref_counts + cur_counts) > 0
    chi = stats.chi2_contingency(np.vstack([ref_counts[used], cur_counts[used]]), correction=False)
    r = report.result("c", "chisquare")
    assert r.statistic == pytest.approx(chi.statistic, rel=TOL)
    assert r.pvalue == pytest.approx(chi.pvalue, abs=TOL)
