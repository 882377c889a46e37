"""Every verdict can leave the drifted state by the rule that put it there.

Walks every (method, window size on both sides of ``large_sample``, kind) through
drift -> clean -> resolved with generated data, ``evaluate_drift`` and ``VerdictTracker``.
Parametrised over the methods the engine lists, so a new method is covered by itself.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from driftcar.stats import DriftConfig, DriftResult, VerdictTracker, evaluate_drift, profile
from driftcar.stats import registry
from driftcar.stats.profile import MULTIVARIATE, PREDICTION

LARGE = DriftConfig().large_sample
SIZES = (LARGE - 100, 3 * LARGE)  # one window size on each side of the switch
REF_ROWS = 20_000
CLEAN_WINDOWS = 12  # at most this many undrifted windows to leave (exit needs 3 clean in a row)
CATS = np.array(["a", "b", "c", "d", "e"])
P_REF = [0.3, 0.25, 0.2, 0.15, 0.1]
P_DRIFT = [0.05, 0.1, 0.15, 0.3, 0.4]


def _numeric(rng, n, drift):
    return rng.normal(1.5 if drift else 0.0, 1.0, n)


def _categorical(rng, n, drift):
    return list(rng.choice(CATS, n, p=P_DRIFT if drift else P_REF))


def _correlated(rng, n, drift):
    """Three columns sharing one factor; drift keeps each marginal but breaks the correlation."""
    z = rng.normal(size=n)
    cols = {}
    for k in range(3):
        base = rng.normal(size=n) if drift else z
        cols[f"m{k}"] = (base + 0.2 * rng.normal(size=n)) / np.sqrt(1.04)
    return cols


def _cases():
    """(kind, method) for every registered method and kind it applies to, plus each kind's default."""
    out = []
    for kind in ("numeric", "categorical", "prediction-numeric", "prediction-categorical", "multivariate"):
        if kind.startswith("prediction"):
            methods = [m for m in registry.names("prediction") if m in registry.names(kind.split("-")[1])]
        else:
            methods = list(registry.names(kind))
        out += [(kind, m) for m in methods + ["default"]]
    return out


def _setup(kind: str, rng):
    """(profile, feature watched, window maker(n, drift) -> (columns, roles))."""
    if kind == "numeric":
        prof = profile({"x": _numeric(rng, REF_ROWS, False)}, multivariate=False)
        return prof, "x", lambda n, d: ({"x": _numeric(rng, n, d)}, None)
    if kind == "categorical":
        prof = profile({"c": _categorical(rng, REF_ROWS, False)}, multivariate=False)
        return prof, "c", lambda n, d: ({"c": _categorical(rng, n, d)}, None)
    if kind.startswith("prediction"):
        gen = _numeric if kind.endswith("numeric") else _categorical
        prof = profile({"x": _numeric(rng, REF_ROWS, False)}, predictions=gen(rng, REF_ROWS, False),
                       multivariate=False)
        assert prof.prediction.kind == kind.split("-")[1]
        return prof, PREDICTION, lambda n, d: ({"x": _numeric(rng, n, False), "pred": gen(rng, n, d)},
                                               {"x": "feature", "pred": "prediction"})
    prof = profile(_correlated(rng, REF_ROWS, False))
    assert prof.pca is not None
    return prof, MULTIVARIATE, lambda n, d: (_correlated(rng, n, d), None)


def _config(feature: str, method: str) -> DriftConfig:
    if method == "default" or feature == MULTIVARIATE:
        return DriftConfig()
    return DriftConfig(features={feature: {"method": method}})


@pytest.mark.parametrize("rows", SIZES, ids=lambda n: f"{n}rows")
@pytest.mark.parametrize("kind,method", _cases(), ids=lambda v: str(v))
def test_drift_then_clean_windows_resolve(kind, method, rows):
    rng = np.random.default_rng(zlib.crc32(f"{kind}/{method}/{rows}".encode()))  # stable across runs
    prof, feature, window = _setup(kind, rng)
    config = _config(feature, method)
    tracker = VerdictTracker(config)

    def step(drift: bool) -> tuple[DriftResult, list]:
        w = prof.new_window()
        w.update(*window(rows, drift))
        report = evaluate_drift(prof, w, config)
        return report.deciding()[feature], [c for c in tracker.update(report) if c.feature == feature]

    result, changes = step(True)
    if method not in ("default", "pca_reconstruction"):
        assert result.method == method
    assert result.ok and result.detected, result.describe()
    assert [c.detected for c in changes] == [True]
    for _ in range(CLEAN_WINDOWS):
        result, changes = step(False)  # a p-value test may still flag ~5 % of clean windows
        if changes:
            assert [c.detected for c in changes] == [False]
            assert not tracker.state(feature)
            return
    pytest.fail(f"{feature} ({result.method}, {result.threshold_kind}) still drifted after {CLEAN_WINDOWS} "
                f"clean windows of {rows} rows; last: {result.describe()}")


def test_every_listed_method_is_walked():
    """A method the engine lists but this walk forgets fails here."""
    walked = {m for _, m in _cases()}
    assert set(registry.names()) <= walked


@pytest.mark.parametrize("rows,rule", [(SIZES[0], "pvalue"), (SIZES[1], "distance")])
def test_multivariate_decides_by_pvalue_then_distance(rows, rule):
    """Under the switch rule the same method decides by different rules on either side of
    large_sample: the result says which."""
    rng = np.random.default_rng(3)
    prof = profile(_correlated(rng, REF_ROWS, False))
    w = prof.new_window()
    w.update(_correlated(rng, rows, False))
    r = evaluate_drift(prof, w, DriftConfig(decision="switch")).deciding()[MULTIVARIATE]
    assert (r.method, r.decided_by, r.threshold_kind) == ("pca_reconstruction", rule, {"pvalue": "pvalue", "distance": "score"}[rule])
    assert (r.pvalue is None) == (rule == "distance")
    assert r.threshold == (0.05 if rule == "pvalue" else 0.1)
