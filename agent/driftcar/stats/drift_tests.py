"""The drift tests as small objects with one interface, for one feature at a time.

``test.evaluate(reference, current)`` takes a :class:`FeatureProfile` and the
matching window snapshot (``window.feature(name)``) and returns a
:class:`DriftResult` (statistic, p-value where defined, threshold, decision,
sample sizes, error bound). It runs exactly the code :func:`evaluate_drift`
runs for many features at once, without the correction across features
(there is only one). Use it to test one column by hand, or to add a test to
a notebook; the sidecar uses :func:`evaluate_drift`.

>>> import numpy as np
>>> from driftcar.stats import profile
>>> rng = np.random.default_rng(0)
>>> prof = profile({"x": rng.normal(size=10_000)})
>>> w = prof.new_window()
>>> w.update({"x": rng.normal(0.3, 1, 2_000)})
>>> r = KS().evaluate(prof.features["x"], w.feature("x"))
>>> r.method, round(r.statistic, 2), r.detected, r.n_current
('ks', 0.12, True, 2000)
>>> sorted(TESTS)
['chisquare', 'hellinger', 'jensenshannon', 'ks', 'psi', 'wasserstein']
>>> for_method("psi")
PSI(threshold=0.1, min_samples=100)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from driftcar.stats.drift import DriftConfig, DriftResult, categorical_statistics, numeric_statistics
from driftcar.stats import registry
from driftcar.stats.profile import FeatureProfile, Profile
from driftcar.stats.sketch import CategoricalSketch, NumericSketch

__all__ = ["DriftTest", "PSI", "KS", "Wasserstein", "JensenShannon", "ChiSquare", "Hellinger", "TESTS",
           "for_method"]


_DEFAULTS = DriftConfig()  # thresholds and min_samples: the same defaults as evaluate_drift


class DriftTest:
    """Base: ``name``, ``has_pvalue``, ``kinds`` (feature kinds it applies to),
    ``threshold`` (p-value level or distance), ``min_samples``; ``evaluate``."""

    name = ""

    def __init__(self, threshold: float | None = None, min_samples: int = _DEFAULTS.min_samples):
        threshold = _DEFAULTS.threshold(self.name) if threshold is None else threshold
        if not (isinstance(threshold, (int, float)) and threshold > 0):
            raise ValueError(f"threshold must be a number > 0, got {threshold!r}")
        if not (isinstance(min_samples, int) and min_samples >= 1):
            raise ValueError(f"min_samples must be an int >= 1, got {min_samples!r}")
        self.threshold = float(threshold)
        self.min_samples = min_samples

    @property
    def has_pvalue(self) -> bool:
        return registry.get(self.name).pvalue

    @property
    def kinds(self) -> tuple[str, ...]:
        """The feature kinds the method applies to (from its registry entry)."""
        return tuple(k for k in ("numeric", "categorical") if k in registry.get(self.name).kinds)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold}, min_samples={self.min_samples})"

    def evaluate(self, reference: FeatureProfile, current: NumericSketch | CategoricalSketch) -> DriftResult:
        """One feature's result; ValueError when the test does not apply to its kind."""
        if reference.kind not in self.kinds or current.kind != reference.kind:
            raise ValueError(f"{self.name} does not apply to a {reference.kind} reference "
                             f"with a {current.kind} window")
        if reference.kind == "numeric":
            L = _layout(reference)
            inf = np.array([[current.neg_infinite, current.infinite - current.neg_infinite]])
            fine_sums = current.fine_sums if current.fine_sums is not None else np.zeros_like(current.fine_counts)
            stats = numeric_statistics(L, current.fine_counts[None, :], fine_sums[None, :].astype(np.float64), inf,
                                       np.array([current.low]), np.array([current.high]), {self.name})
            n_ref = int(reference.fine_counts[:-1].sum())
        else:
            if current.categories != reference.categories:
                raise ValueError("window categories do not match the reference's")
            stats = categorical_statistics(reference.category_array[None, :], current.counts[None, :], {self.name})
            n_ref = int(reference.category_array.sum())
        stat, p, bound = stats[self.name]
        stat = float(np.nan_to_num(stat[0]))
        pvalue = None if p is None else float(np.clip(np.nan_to_num(p[0], nan=1.0), 0.0, 1.0))
        n_cur = int(current.n)
        ok = n_ref >= self.min_samples and n_cur >= self.min_samples
        detected = ok and (pvalue < self.threshold if pvalue is not None else stat >= self.threshold)
        return DriftResult(reference.name, self.name, stat, pvalue, self.threshold, bool(detected), n_ref, n_cur,
                           True, ok, pvalue, 0.0 if bound is None else float(np.nan_to_num(bound[0])),
                           reference.kind, "pvalue" if pvalue is not None else "distance")


@lru_cache(maxsize=64)
def _layout(reference: FeatureProfile):
    """The one-feature layout the vectorized statistics take (cached per reference)."""
    return Profile({reference.name: reference}, bins=reference.bins,
                   fine_bins=len(reference.fine_edges) - 1).layout


class PSI(DriftTest):
    """Population stability index on the coarse reference-quantile bins / categories."""

    name = "psi"


class JensenShannon(DriftTest):
    """Jensen–Shannon distance (natural log) on the coarse bins / categories."""

    name = "jensenshannon"


class Hellinger(DriftTest):
    """Hellinger distance on the coarse bins / categories."""

    name = "hellinger"


class ChiSquare(DriftTest):
    """Two-sample chi-square test of homogeneity on the coarse bins / categories."""

    name = "chisquare"


class KS(DriftTest):
    """Kolmogorov–Smirnov on the fine bins (statistic within ``bound`` of the raw data's)."""

    name = "ks"


class Wasserstein(DriftTest):
    """Wasserstein-1 normalised by the reference standard deviation (1 when it is 0)."""

    name = "wasserstein"


TESTS: dict[str, type[DriftTest]] = {t.name: t for t in (PSI, KS, Wasserstein, JensenShannon, ChiSquare, Hellinger)}


def for_method(name: str, **options) -> DriftTest:
    """The one-feature test of any registered method applying to features (KeyError when unknown)."""
    spec = registry.get(name)
    if spec.source == "pca":
        raise KeyError(f"{name} judges the multivariate row, not one feature")
    cls = TESTS.get(name) or type(f"DriftTest_{name}", (DriftTest,), {"name": name})
    return cls(**options)
