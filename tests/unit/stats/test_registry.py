"""A drift method is added in one place: its registry entry.

A toy method (total variation distance on bins) registered here, with no other edit, is
computed by ``evaluate_drift``, accepted by the config, decides when asked, is a valid
``drift.method`` value for the sidecar's telemetry, has a one-feature test object, and is
walked by the generic drift -> clean -> resolved lifecycle test.
"""

from __future__ import annotations

import numpy as np
import pytest

from driftcar.sidecar.telemetry import names as telemetry_names
from driftcar.stats import DriftConfig, evaluate_drift, profile, registry
from driftcar.stats.drift import CATEGORICAL_METHODS, METHODS, NUMERIC_METHODS
from driftcar.stats.drift_tests import for_method
from driftcar.stats.profile import PREDICTION

from . import test_verdict_lifecycle as lifecycle

TOY = "total_variation"


def _total_variation(ref, cur):
    p = ref / np.maximum(ref.sum(axis=-1, keepdims=True), 1)
    q = cur / np.maximum(cur.sum(axis=-1, keepdims=True), 1)
    return 0.5 * np.abs(p - q).sum(axis=-1)


@pytest.fixture
def toy():
    method = registry.register(registry.Method(TOY, _total_variation, frozenset(registry.BIN_KINDS),
                                               pvalue=False, threshold=0.08))
    try:
        yield method
    finally:
        registry.unregister(TOY)
    assert TOY not in registry.names()


def test_the_lists_are_the_registry():
    assert METHODS == registry.names() == telemetry_names.DRIFT_METHODS
    assert NUMERIC_METHODS == ("psi", "ks", "wasserstein", "jensenshannon", "chisquare", "hellinger")
    assert CATEGORICAL_METHODS == ("psi", "jensenshannon", "chisquare", "hellinger")
    assert registry.pvalue_methods() == {"ks", "chisquare", "pca_reconstruction"}
    assert (registry.calibrated_method("numeric"), registry.calibrated_method("categorical")) == ("ks", "chisquare")


def test_toy_method_is_evaluated_and_exportable(toy):
    assert TOY in telemetry_names.DRIFT_METHODS and TOY in _methods_now()
    rng = np.random.default_rng(5)
    cats = np.array(list("abcde"))
    ref_c = rng.choice(cats, 20_000, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    cur_c = rng.choice(cats, 4_000, p=[0.2, 0.2, 0.2, 0.2, 0.2])
    prof = profile({"x": rng.normal(size=20_000), "c": list(ref_c)}, predictions=rng.normal(size=20_000))
    w = prof.new_window()
    w.update({"x": rng.normal(size=4_000), "c": list(cur_c), "p": rng.normal(size=4_000)},
             {"x": "feature", "c": "feature", "p": "prediction"})
    report = evaluate_drift(prof, w)  # computed beside the others by default, for every kind it lists
    assert {r.feature for r in report.results if r.method == TOY} == {"x", "c", PREDICTION}
    # the statistic is the textbook one on the raw categorical counts (numpy, to 1e-12)
    p = np.array([(ref_c == k).mean() for k in cats])
    q = np.array([(cur_c == k).mean() for k in cats])
    assert report.result("c", TOY).statistic == pytest.approx(0.5 * np.abs(p - q).sum(), abs=1e-12)
    # it decides when asked, by its own default threshold and rule (a distance)
    decided = evaluate_drift(prof, w, DriftConfig(features={"c": {"method": TOY}})).deciding()["c"]
    assert (decided.method, decided.decided_by, decided.threshold, decided.detected) == (TOY, "distance", 0.08, True)
    # the one-feature test object runs the same code
    one = for_method(TOY).evaluate(prof.features["c"], w.feature("c"))
    assert one.statistic == pytest.approx(decided.statistic, abs=1e-12) and one.threshold == 0.08


def test_toy_method_is_walked_by_the_lifecycle_test(toy):
    cases = [c for c in lifecycle._cases() if c[1] == TOY]
    assert sorted(k for k, _ in cases) == ["categorical", "numeric", "prediction-categorical", "prediction-numeric"]
    for kind, method in cases:
        for rows in lifecycle.SIZES:
            lifecycle.test_drift_then_clean_windows_resolve(kind, method, rows)


def test_config_names_unknown_methods_from_the_registry(toy):
    DriftConfig(thresholds={TOY: 0.2}, categorical_large=TOY)  # accepted while registered
    registry.unregister(TOY)
    try:
        with pytest.raises(ValueError, match=f"'{TOY}' is not one of"):
            DriftConfig(categorical_large=TOY)
    finally:
        registry.register(toy)


@pytest.mark.parametrize("bad,message", [
    (dict(name="Bad Name"), "must match"),
    (dict(kinds=frozenset({"tabular"})), "subset of"),
    (dict(kinds=frozenset({"multivariate"})), "pca_reconstruction alone"),
    (dict(function=None), "needs a function"),
    (dict(name="ks"), "registered already"),
    (dict(calibrated=frozenset({"categorical"})), "chisquare"),
    (dict(threshold=-1), "threshold"),
])
def test_bad_entries_are_refused_with_the_reason(bad, message):
    entry = dict(name="toy", function=_total_variation, kinds=frozenset({"categorical"}), pvalue=False) | bad
    with pytest.raises(ValueError, match=message):
        registry.register(registry.Method(**entry))
    assert "toy" not in registry.names()


def _methods_now():
    from driftcar.stats import drift

    return drift.METHODS
