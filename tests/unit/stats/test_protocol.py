"""Generic checks run over every drift test and over the sketch: one interface, same answers as
the vectorized evaluator, empty input, identical data, seeded determinism, pickling."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from driftcar.stats import TESTS, DriftConfig, DriftTest, evaluate_drift, profile

RNG = np.random.default_rng(12)
REF = {"num": RNG.gamma(2.0, 1.0, 8_000), "cat": list(RNG.choice(["a", "b", "c"], 8_000, p=[0.5, 0.3, 0.2]))}
PROF = profile(REF, multivariate=False)


def _window(seed: int, shift: float = 0.0, rows: int = 3_000):
    rng = np.random.default_rng(seed)
    w = PROF.new_window()
    w.update({"num": rng.gamma(2.0, 1.0, rows) + shift,
              "cat": list(rng.choice(["a", "b", "c", "d"], rows, p=[0.5 - shift / 4, 0.3, 0.2, shift / 4]))})
    return w


@pytest.mark.parametrize("name", sorted(TESTS))
def test_every_test_has_the_interface_and_matches_the_evaluator(name):
    test = TESTS[name]()
    assert isinstance(test, DriftTest) and test.name == name
    for shift in (0.0, 0.6):
        w = _window(1, shift)
        report = evaluate_drift(PROF, w, DriftConfig(methods=(name,), multivariate=False))
        for feature in ("num", "cat"):
            if PROF.features[feature].kind not in test.kinds:
                with pytest.raises(ValueError, match="does not apply"):
                    test.evaluate(PROF.features[feature], w.feature(feature))
                continue
            r = test.evaluate(PROF.features[feature], w.feature(feature))
            ref = report.result(feature, name)
            assert (r.feature, r.method, r.n_reference, r.n_current) == (feature, name, ref.n_reference, ref.n_current)
            assert r.statistic == pytest.approx(ref.statistic, abs=1e-12)
            assert r.bound == pytest.approx(ref.bound, abs=1e-12)
            assert (r.pvalue is None) == (not test.has_pvalue)
            if r.pvalue is not None:
                assert r.pvalue == pytest.approx(ref.pvalue, abs=1e-12)
            assert r.detected == (shift > 0)  # flags the shift, not the same distribution


@pytest.mark.parametrize("name", sorted(TESTS))
def test_every_test_on_empty_identical_and_repeated_input(name):
    test = TESTS[name]()
    feature = "num" if "numeric" in test.kinds else "cat"
    empty = test.evaluate(PROF.features[feature], PROF.new_window().feature(feature))
    assert (empty.ok, empty.detected, empty.statistic) == (False, False, 0.0)
    same = PROF.new_window()
    same.update({k: v for k, v in REF.items()})  # the reference itself
    r = test.evaluate(PROF.features[feature], same.feature(feature))
    assert r.statistic == pytest.approx(0.0, abs=1e-9) and not r.detected
    a = test.evaluate(PROF.features[feature], _window(7).feature(feature))
    b = test.evaluate(PROF.features[feature], _window(7).feature(feature))
    assert a == b and all(math.isfinite(x) for x in (a.statistic, a.bound))


def test_thresholds_are_validated():
    with pytest.raises(ValueError):
        TESTS["psi"](threshold=-1)
    assert TESTS["ks"]().threshold == 0.05 and TESTS["wasserstein"]().threshold == 0.1


def test_profile_and_window_pickle():
    w = _window(3)
    prof2 = pickle.loads(pickle.dumps(PROF))
    w2 = pickle.loads(pickle.dumps(w))
    assert prof2.fingerprint == PROF.fingerprint
    a = evaluate_drift(PROF, w)
    b = evaluate_drift(PROF, w2)
    assert [(r.feature, r.method, r.statistic) for r in a.results] == [
        (r.feature, r.method, r.statistic) for r in b.results]
