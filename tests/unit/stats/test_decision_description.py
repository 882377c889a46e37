"""DriftResult says how it was decided, like with like: a p-value against a significance level,
a distance against a threshold on its own scale."""

from __future__ import annotations

import numpy as np
import pytest

from driftcar.stats import KS, TESTS, Comparison, DriftConfig, DriftResult, evaluate_drift, profile


def _report(rows: int, shift: float = 0.0, seed: int = 0, decision: str = "switch"):
    rng = np.random.default_rng(seed)
    prof = profile({"a": rng.normal(size=10_000), "b": rng.normal(size=10_000),
                    "c": list(rng.choice(["x", "y", "z"], 10_000))})
    w = prof.new_window()
    w.update({"a": rng.normal(shift, 1, rows), "b": rng.normal(size=rows), "c": list(rng.choice(["x", "y", "z"], rows))})
    return evaluate_drift(prof, w, DriftConfig(methods=("psi", "ks", "wasserstein", "chisquare"), decision=decision))


@pytest.mark.parametrize("rows", [500, 3_000])
def test_comparison_agrees_with_the_decision_for_every_result(rows):
    for r in _report(rows, shift=0.3).results:
        c = r.comparison
        assert c.kind == r.threshold_kind == {"pvalue": "pvalue", "distance": "score"}[r.decided_by]
        assert c.threshold == r.threshold
        if c.kind == "pvalue":
            assert c.value == r.pvalue_adjusted  # the corrected p-value decides
            assert r.detected == (c.op == "<") == (c.value < r.threshold)
        else:
            assert r.pvalue is None and c.value == r.statistic
            assert r.detected == (c.op == "≥") == (r.statistic >= r.threshold)


@pytest.mark.parametrize("rows", [500, 3_000])
def test_calibrated_verdicts_read_as_score_against_their_band(rows):
    """The default rule: a statistic against a threshold on its scale, with a p-value beside it."""
    for r in _report(rows, shift=0.3, decision="calibrated").deciding().values():
        c = r.comparison
        assert r.decided_by == "calibrated" and c.kind == r.threshold_kind == "score"
        assert c.value == r.statistic and r.pvalue is not None
        assert r.detected == (c.op == "≥") == (r.statistic >= r.threshold)


def test_describe_reads_like_with_like():
    dec = _report(500, shift=0.5).deciding()
    a = dec["a"]  # KS, corrected across the verdicts' family
    assert a.decided_by == "pvalue" and a.detected
    assert a.describe() == f"adjusted p = {a.pvalue_adjusted:.4g} < 0.05"
    big = _report(3_000, shift=0.5).deciding()["a"]
    assert big.describe() == f"score {big.statistic:.4g} ≥ threshold 0.1"
    assert "threshold" not in a.describe() and "p =" not in big.describe()


def test_unadjusted_pvalue_and_unset_rule():
    r = DriftResult("x", "ks", 0.1, 0.2, 0.05, False, 1000, 1000, True, True, 0.2)
    assert r.decided_by is None and r.by_pvalue  # read from the p-value when nobody said
    assert r.comparison == Comparison("pvalue", 0.2, "≥", 0.05, False)
    assert r.describe() == "p = 0.2 ≥ 0.05"
    d = DriftResult("x", "psi", 0.12, None, 0.1, True, 1000, 1000, True, True)
    assert d.threshold_kind == "score" and d.describe() == "score 0.12 ≥ threshold 0.1"


def test_single_feature_tests_set_the_rule():
    rng = np.random.default_rng(1)
    prof = profile({"a": rng.normal(size=5_000)}, multivariate=False)
    w = prof.new_window()
    w.update({"a": rng.normal(0.4, 1, 800)})
    for name, cls in TESTS.items():
        r = cls().evaluate(prof.features["a"], w.feature("a"))
        assert r.decided_by == ("pvalue" if r.pvalue is not None else "distance"), name
        assert r.detected == (r.comparison.op == ("<" if r.by_pvalue else "≥"))
    assert KS().evaluate(prof.features["a"], w.feature("a")).describe().startswith("p = ")
