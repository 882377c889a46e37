"""Model quality: label join (TTL, bounds, counters), scores vs scikit-learn, estimated accuracy,
Page–Hinkley on score streams, PCA multivariate drift with a real scikit-learn model's inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics

from driftcar.stats import (
    DriftConfig,
    LabelJoiner,
    PageHinkley,
    Profile,
    classification_scores,
    estimated_accuracy,
    evaluate_drift,
    profile,
    regression_scores,
)


def test_joiner_matches_expires_evicts_and_counts():
    j = LabelJoiner(ttl_s=10, max_rows=3)
    j.add_predictions(np.array([1, 2, 3]), np.array(["a", "b", "a"]), now=0.0)
    y_true, y_pred = j.add_labels([2, 99], ["b", "a"], now=5.0)
    assert (y_true.tolist(), y_pred.tolist()) == (["b"], ["b"])
    assert (j.matched, j.unmatched_labels, len(j)) == (1, 1, 2)
    j.add_predictions([4, 5, 6], ["c", "c", "c"], now=6.0)  # 3 pending max: 1 and 3 evicted
    assert (j.evicted, len(j)) == (2, 3)
    y_true, _ = j.add_labels([4], ["c"], now=17.0)  # 4,5,6 were made at t=6, ttl 10: expired
    assert len(y_true) == 0 and j.expired == 3 and j.unmatched_labels == 2
    with pytest.raises(ValueError):
        j.add_labels([1, 2], ["x"], now=18.0)
    with pytest.raises(ValueError):
        LabelJoiner(ttl_s=0)


def test_joiner_checkpoint_roundtrip_and_expire():
    j = LabelJoiner(ttl_s=100, max_rows=10)
    j.add_predictions(np.array([7, 8]), np.array([0.5, 1.5]), now=0.0, probabilities=[[0.1, 0.9], [0.6, 0.4]])
    j.add_predictions(["s"], ["x"], now=50.0)
    j.add_labels([99], [1], now=51.0)
    back = LabelJoiner.from_bytes(j.to_bytes())
    assert (back.unmatched_labels, len(back), back.ttl_s) == (1, 3, 100)
    y_true, y_pred = back.add_labels([8], [2.0], now=60.0)
    assert (y_true.tolist(), y_pred.tolist()) == ([2.0], [1.5])
    np.testing.assert_allclose(back.last_probabilities, [[0.6, 0.4]])
    assert back.add_labels(["s"], ["x"], now=60.0)[1].tolist() == ["x"]
    assert back.expire(now=120.0) == 1 and len(back) == 0  # 7 was made at t=0
    with pytest.raises(Exception, match="corrupt|magic"):
        LabelJoiner.from_bytes(b"nope")


def test_joiner_consumes_each_prediction_once_and_keeps_probabilities():
    j = LabelJoiner()
    j.add_predictions(["r1", "r2"], [1, 0], now=0.0, probabilities=[[0.2, 0.8], [0.9, 0.1]])
    y_true, y_pred = j.add_labels(["r2", "r1", "r1"], [0, 0, 1], now=1.0)
    assert (y_true.tolist(), y_pred.tolist(), j.unmatched_labels) == ([0, 0], [0, 1], 1)
    np.testing.assert_allclose(j.last_probabilities, [[0.9, 0.1], [0.2, 0.8]])


@pytest.mark.parametrize("seed", range(4))
def test_classification_scores_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    classes = ["cat", "dog", "emu", "fox"][: 2 + seed % 3]
    y_true = rng.choice(classes, 300)
    y_pred = np.where(rng.random(300) < 0.7, y_true, rng.choice(classes + ["yak"], 300))
    s = classification_scores(y_true, y_pred)
    assert s["accuracy"] == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    p, r, f, sup = metrics.precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    labels = sorted(set(y_true) | set(y_pred))
    assert s["precision"] == pytest.approx(p.mean()) and s["recall"] == pytest.approx(r.mean())
    assert s["f1"] == pytest.approx(f.mean())
    for k, lab in enumerate(labels):
        assert s["per_class"][lab]["f1"] == pytest.approx(f[k])
        assert s["per_class"][lab]["support"] == sup[k]


def test_scores_of_empty_and_mixed_types():
    assert classification_scores([], []) == {"accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0,
                                             "per_class": {}, "n": 0}
    s = classification_scores([1, 0, 1], ["1", "0", "0"])  # labels as text vs ints: same classes
    assert s["accuracy"] == pytest.approx(2 / 3)
    assert regression_scores([], []) == {"mae": 0.0, "rmse": 0.0, "n": 0}


def test_regression_scores_equal_sklearn_and_skip_nan():
    rng = np.random.default_rng(1)
    y = rng.normal(size=500)
    yhat = y + rng.normal(0, 0.3, 500)
    s = regression_scores(y, yhat)
    assert s["mae"] == pytest.approx(metrics.mean_absolute_error(y, yhat))
    assert s["rmse"] == pytest.approx(np.sqrt(metrics.mean_squared_error(y, yhat)))
    yhat[:10] = np.nan
    assert regression_scores(y, yhat)["n"] == 490


def test_estimated_accuracy_tracks_real_accuracy_of_a_calibrated_model():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    X = rng.normal(size=(6_000, 3))
    y = (X @ [1.0, -2.0, 0.5] + rng.logistic(size=6_000) > 0).astype(int)
    model = LogisticRegression().fit(X[:3_000], y[:3_000])
    proba = model.predict_proba(X[3_000:])
    real = float((model.predict(X[3_000:]) == y[3_000:]).mean())
    assert estimated_accuracy(proba) == pytest.approx(real, abs=0.02)
    assert estimated_accuracy(np.empty((0, 2))) == 0.0
    assert estimated_accuracy([[np.nan, np.nan], [0.3, 0.7]]) == pytest.approx(0.7)


def test_page_hinkley_flags_slow_degradation_but_not_noise():
    rng = np.random.default_rng(3)
    quiet = PageHinkley(delta=0.005, threshold=0.5, mode="down")
    assert not any(quiet.update(v) for v in rng.normal(0.9, 0.02, 2_000))
    slow = PageHinkley(delta=0.005, threshold=0.5, mode="down")
    decay = np.concatenate([rng.normal(0.9, 0.02, 300), 0.9 - 0.001 * np.arange(300) + rng.normal(0, 0.02, 300)])
    hits = [i for i, v in enumerate(decay) if slow.update(v)]
    assert hits and 300 < hits[0] < 450
    up = PageHinkley(threshold=0.5, mode="up")
    assert not any(up.update(v) for v in decay)  # a decrease is not an increase
    assert PageHinkley().update(float("nan")) is False
    with pytest.raises(ValueError):
        PageHinkley(mode="sideways")


def test_pca_flags_a_broken_correlation_that_marginal_tests_miss():
    rng = np.random.default_rng(4)
    n = 20_000
    z = rng.normal(size=n)
    ref = {"a": z, "b": z + 0.2 * rng.normal(size=n), "c": rng.normal(size=n)}
    prof = profile(ref)
    assert prof.pca is not None and prof.pca.features == ("a", "b", "c")
    w_same, w_broken = prof.new_window(), prof.new_window()
    z2 = rng.normal(size=5_000)
    w_same.update({"a": z2, "b": z2 + 0.2 * rng.normal(size=5_000), "c": rng.normal(size=5_000)})
    b_marg = rng.normal(size=5_000) * np.sqrt(1.04)  # same marginal as b, no longer tied to a
    w_broken.update({"a": z2, "b": b_marg, "c": rng.normal(size=5_000)})
    switch = DriftConfig(decision="switch")
    same = evaluate_drift(prof, w_same, switch).deciding()
    broken = evaluate_drift(prof, w_broken, switch).deciding()
    assert not same["__multivariate__"].detected
    assert broken["__multivariate__"].detected and broken["__multivariate__"].method == "pca_reconstruction"
    assert not any(broken[f].detected for f in ("a", "b", "c"))
    assert broken["__multivariate__"].pvalue is None  # 5,000 rows: a distance (normalised Wasserstein)
    assert broken["__multivariate__"].threshold == 0.1
    small = prof.new_window()
    small.update({"a": z2[:400], "b": b_marg[:400], "c": rng.normal(size=400)})
    r = evaluate_drift(prof, small, switch).deciding()["__multivariate__"]
    assert r.pvalue is not None and r.threshold == 0.05 and r.detected  # 400 rows: KS with a p-value
    off = evaluate_drift(prof, w_broken, DriftConfig(multivariate=False)).deciding()
    assert "__multivariate__" not in off


def test_pca_no_false_alarms_on_undrifted_correlated_data():
    rng = np.random.default_rng(5)
    mix = rng.normal(size=(10, 10)) * 0.3 + np.eye(10)
    prof = profile({f"f{i}": c for i, c in enumerate((rng.normal(size=(4_000, 10)) @ mix).T)})
    alarms = 0
    for rows in [300] * 100 + [3_000] * 100:
        w = prof.new_window()
        w.update({f"f{i}": c for i, c in enumerate((rng.normal(size=(rows, 10)) @ mix).T)})
        alarms += evaluate_drift(prof, w).deciding()["__multivariate__"].detected
    assert alarms <= 2  # <= 1 % of windows


def test_pca_sees_a_categorical_relation_on_a_seeded_shuffle():
    """A numeric feature tied to a category; live traffic keeps both marginals but breaks the tie."""
    rng = np.random.default_rng(14)
    n = 20_000
    cats = np.array(["a", "b", "c"], dtype=object)
    z = np.sort(rng.integers(0, 3, n))  # the file sorted by the category: a time split would see only "c"
    prof = profile({"x": rng.normal(size=n) + 2 * z, "y": rng.normal(size=n), "c": list(cats[z])})
    assert prof.pca.onehot == (("c", prof.features["c"].categories[1:]),) and prof.pca.columns == 4
    back = Profile.from_bytes(prof.to_bytes())
    assert back.pca.onehot == prof.pca.onehot
    z2, z3 = rng.integers(0, 3, 5_000), rng.integers(0, 3, 5_000)
    same, broken = prof.new_window(), prof.new_window()
    same.update({"x": rng.normal(size=5_000) + 2 * z2, "y": rng.normal(size=5_000), "c": list(cats[z2])})
    broken.update({"x": rng.normal(size=5_000) + 2 * z2, "y": rng.normal(size=5_000), "c": list(cats[z3])})
    assert evaluate_drift(prof, same).detected() == []
    assert evaluate_drift(prof, broken).detected() == ["__multivariate__"]
