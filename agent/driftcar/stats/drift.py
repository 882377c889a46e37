"""Drift evaluation: a profile vs one window -> one verdict per feature.

:func:`evaluate_drift` computes every configured test for every feature in
whole-array numpy passes, then picks one *deciding* test per feature:

- numeric, current window <= ``large_sample`` values: KS (p-value);
  larger: Wasserstein-1 normalised by the reference standard deviation;
- categorical, small: chi-square (p-value); large: Jensen–Shannon distance;
- ``__prediction__``: the same rules by its kind; ``__multivariate__``:
  ``pca_reconstruction``, the window's PCA reconstruction-error distribution
  against the reference's: KS (p-value) up to ``large_sample`` values,
  normalised Wasserstein (distance, threshold ``distance_threshold``) above.

The verdicts' p-values form one family across features, corrected with
Benjamini–Hochberg by default (or Bonferroni / none); a verdict flags drift
when its adjusted p-value is below the threshold (0.05). Non-deciding
p-value results are corrected per method across features. Distances flag
drift at or above their threshold (0.1). Below
``min_samples`` values (either side) a result is ``ok=False`` and never
detected. These defaults were chosen by measurement: see
``benchmarks/bench_stats.py`` (detection-quality table) — they flag a
0.25 sd mean shift in the first 5,000-row window while keeping false alarms
well under 1 % per feature-window.

Every number in a result is finite (no NaN/inf reaches an exporter).
Thread safety: pure; safe to run in a worker thread while the window is not mutated.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any, Mapping, NamedTuple

import numpy as np

from driftcar.stats import calibration
from driftcar.stats import methods as M
from driftcar.stats import registry
from driftcar.stats.profile import LABEL, MULTIVARIATE, PREDICTION, Profile, coarse_counts
from driftcar.stats.sketch import WindowSketch

__all__ = [
    "DriftConfig",
    "FeatureDriftConfig",
    "DriftResult",
    "Comparison",
    "DriftReport",
    "evaluate_drift",
    "evaluate_label_drift",
    "adjust_pvalues",
    "NUMERIC_METHODS",
    "CATEGORICAL_METHODS",
    "METHODS",
]


def __getattr__(name: str):
    """NUMERIC_METHODS, CATEGORICAL_METHODS, METHODS: read from :mod:`driftcar.stats.registry` when asked."""
    if name in _LISTS:
        return registry.names(_LISTS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_LISTS = {"NUMERIC_METHODS": "numeric", "CATEGORICAL_METHODS": "categorical", "METHODS": None}
CORRECTIONS = ("benjamini-hochberg", "bonferroni", "none")
#: how the deciding test is judged: "calibrated" (band from both sizes and the reference's own
#: variation, with an effect floor), "switch" (p-value up to large_sample values, distance
#: above), "pvalue" (the small-sample test at every size), "distance" (the large one at every size)
DECISIONS = ("calibrated", "switch", "pvalue", "distance")
_CORRECTION_ALIASES = {"bh": "benjamini-hochberg", "fdr_bh": "benjamini-hochberg", "holm": None}


def _problems_to_error(problems: list[str]) -> None:
    if problems:
        raise ValueError("invalid drift config: " + "; ".join(problems))


@dataclass(frozen=True)
class FeatureDriftConfig:
    """Per-feature overrides; None keeps the global default. ``enabled=False`` skips the feature.

    A ``method`` that does not apply to the feature's kind (e.g. ``ks`` on a categorical
    feature) is ignored and the default for the kind is used (configs are validated before
    the profile, hence the kinds, are known). A ``method`` judges the feature by that test's
    fixed rule (p-value or distance threshold); ``decision`` picks the rule (:data:`DECISIONS`);
    under the calibrated rule ``min_effect`` (or ``threshold``) replaces the effect floor.
    """

    method: str | None = None
    threshold: float | None = None
    min_samples: int | None = None
    enabled: bool = True
    decision: str | None = None
    min_effect: float | None = None

    def problems(self, path: str) -> list[str]:
        out = []
        if self.method is not None and self.method not in registry.names():
            out.append(f"{path}.method: {self.method!r} is not one of {registry.names()}")
        if self.threshold is not None and not (isinstance(self.threshold, (int, float)) and self.threshold > 0):
            out.append(f"{path}.threshold: must be a number > 0")
        if self.min_samples is not None and not (isinstance(self.min_samples, int) and self.min_samples >= 1):
            out.append(f"{path}.min_samples: must be an int >= 1")
        if self.decision is not None and self.decision not in DECISIONS:
            out.append(f"{path}.decision: {self.decision!r} is not one of {DECISIONS}")
        if self.min_effect is not None and not (isinstance(self.min_effect, (int, float)) and self.min_effect >= 0):
            out.append(f"{path}.min_effect: must be a number >= 0")
        return out


@dataclass(frozen=True)
class DriftConfig:
    """How drift is decided. Frozen; validated on construction (ValueError lists every problem).

    methods: tests to compute beside the deciding one (None = all that apply: the sidecar
    exports each as a ``driftcar.drift.score`` series; ``()`` = the deciding test alone).
    The deciding test per kind and size: ``numeric_small`` / ``numeric_large`` /
    ``categorical_small`` / ``categorical_large``, switching
    when the window has more than ``large_sample`` values. ``thresholds`` maps a
    method to its threshold (default: ``pvalue_threshold`` for p-value tests,
    ``distance_threshold`` for distances). Hysteresis (for VerdictTracker):
    enter after ``enter_windows`` consecutive detections, leave after
    ``exit_windows`` consecutive windows clearly under the threshold (distance <
    threshold * exit_factor, or adjusted p >= threshold / exit_factor).

    ``decision`` (:data:`DECISIONS`, default ``"calibrated"``): KS (numeric) or chi-square
    (categorical) against the band no-drift windows of this size stay in, given the
    reference's size and its own chunk-to-chunk variation (:mod:`driftcar.stats.calibration`);
    at most ``alpha`` of no-drift windows flag any feature (Bonferroni over the features), and
    a feature is flagged only when its effect reaches ``min_effect`` (KS D, numeric) or
    ``min_effect_categorical`` (Cohen's w): both about a 2.5-point share change on a balanced
    binary feature; ``min_effect`` 0.025 is about a 0.06 sd mean shift of a normal feature.
    The other rules use the size switch and thresholds above.
    """

    methods: tuple[str, ...] | None = None
    numeric_small: str = "ks"
    numeric_large: str = "wasserstein"
    categorical_small: str = "chisquare"
    categorical_large: str = "jensenshannon"
    large_sample: int = 1_000
    pvalue_threshold: float = 0.05
    distance_threshold: float = 0.1
    thresholds: Mapping[str, float] = field(default_factory=dict)
    min_samples: int = 100
    correction: str = "benjamini-hochberg"
    enter_windows: int = 1
    exit_windows: int = 3
    exit_factor: float = 0.8
    multivariate: bool = True
    prediction: bool = True
    features: Mapping[str, FeatureDriftConfig] = field(default_factory=dict)
    decision: str = "calibrated"
    alpha: float = 0.01
    min_effect: float = 0.025
    min_effect_categorical: float = 0.05

    def __post_init__(self) -> None:
        corr = _CORRECTION_ALIASES.get(self.correction, self.correction)
        object.__setattr__(self, "correction", corr)
        if self.methods is not None:
            object.__setattr__(self, "methods", tuple(self.methods))
        feats = {}
        for name, fc in dict(self.features).items():
            feats[name] = FeatureDriftConfig(**fc) if isinstance(fc, Mapping) else fc
        object.__setattr__(self, "features", feats)
        object.__setattr__(self, "thresholds", dict(self.thresholds))
        _problems_to_error(self.problems())

    def problems(self) -> list[str]:
        out = []
        every, numeric, categorical = registry.names(), registry.names("numeric"), registry.names("categorical")
        for m in self.methods or ():
            if m not in every:
                out.append(f"methods: {m!r} is not one of {every}")
        for key, allowed in (("numeric_small", numeric), ("numeric_large", numeric),
                             ("categorical_small", categorical), ("categorical_large", categorical)):
            if getattr(self, key) not in allowed:
                out.append(f"{key}: {getattr(self, key)!r} is not one of {allowed}")
        for key in ("large_sample", "min_samples", "enter_windows", "exit_windows"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                out.append(f"{key}: must be an int >= 1, got {v!r}")
        if not (isinstance(self.pvalue_threshold, (int, float)) and 0 < self.pvalue_threshold < 1):
            out.append(f"pvalue_threshold: must be in (0, 1), got {self.pvalue_threshold!r}")
        if not (isinstance(self.distance_threshold, (int, float)) and self.distance_threshold > 0):
            out.append(f"distance_threshold: must be > 0, got {self.distance_threshold!r}")
        if not (isinstance(self.exit_factor, (int, float)) and 0 < self.exit_factor <= 1):
            out.append(f"exit_factor: must be in (0, 1], got {self.exit_factor!r}")
        if self.decision not in DECISIONS:
            out.append(f"decision: must be one of {DECISIONS}, got {self.decision!r}")
        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha < 1):
            out.append(f"alpha: must be in (0, 1), got {self.alpha!r}")
        for key in ("min_effect", "min_effect_categorical"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0):
                out.append(f"{key}: must be a number >= 0, got {v!r}")
        if self.correction not in CORRECTIONS:
            out.append(f"correction: must be one of {CORRECTIONS}, got {self.correction!r}")
        for m, t in self.thresholds.items():
            if m not in every:
                out.append(f"thresholds.{m}: unknown method")
            elif not (isinstance(t, (int, float)) and t > 0):
                out.append(f"thresholds.{m}: must be a number > 0")
        for name, fc in self.features.items():
            if not isinstance(fc, FeatureDriftConfig):
                out.append(f"features.{name}: expected a mapping or FeatureDriftConfig")
            else:
                out.extend(fc.problems(f"features.{name}"))
        return out

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], path: str = "drift") -> "DriftConfig":
        """From a YAML/JSON mapping; unknown keys are rejected and every problem reported at once."""
        known = {f.name for f in fields(cls)}
        problems = [f"{path}.{k}: unknown key" for k in data if k not in known]
        feats = data.get("features", {}) or {}
        fknown = {f.name for f in fields(FeatureDriftConfig)}
        if isinstance(feats, Mapping):
            for name, fc in feats.items():
                if not isinstance(fc, Mapping):
                    problems.append(f"{path}.features.{name}: expected a mapping")
                    continue
                problems += [f"{path}.features.{name}.{k}: unknown key" for k in fc if k not in fknown]
        _problems_to_error(problems)
        try:
            return cls(**dict(data))
        except ValueError as exc:
            raise ValueError(str(exc).replace("invalid drift config: ", f"invalid drift config at {path}: ")) from None

    def threshold(self, method: str, feature: str | None = None) -> float:
        fc = self.features.get(feature) if feature else None
        if fc is not None and fc.threshold is not None:
            return float(fc.threshold)
        if method in self.thresholds:
            return float(self.thresholds[method])
        spec = registry.get(method)
        if spec.threshold is not None:
            return float(spec.threshold)
        return float(self.pvalue_threshold if spec.pvalue else self.distance_threshold)


class Comparison(NamedTuple):
    """How one result was decided, like with like: ``kind`` 'pvalue' (``value`` is the adjusted
    p-value where there is one, else the raw one; drift when ``value < threshold``) or 'score'
    (``value`` is the statistic, a distance; drift when ``value >= threshold``); ``op`` is '<' or '≥' as the
    values stand; ``adjusted`` says whether ``value`` is a corrected p-value."""

    kind: str
    value: float
    op: str
    threshold: float
    adjusted: bool = False

    def __str__(self) -> str:
        if self.kind == "pvalue":
            return f"{'adjusted ' if self.adjusted else ''}p = {self.value:.4g} {self.op} {self.threshold:.4g}"
        return f"score {self.value:.4g} {self.op} threshold {self.threshold:.4g}"


class DriftResult(NamedTuple):
    """One test on one feature in one window.

    statistic: the test's value (distances; KS D; chi-square; for
    ``pca_reconstruction`` the KS D between error distributions); threshold: on the
    p-value's scale for the "pvalue" rule, on the statistic's otherwise (for "calibrated": the band for these
    sample sizes, or the effect floor if higher); pvalue: raw (for "calibrated", the
    p-value under the calibrated null, adjusted = Bonferroni across the window's features)
    or None for distances; pvalue_adjusted: after the correction
    across features; detected: the raw decision for this window (before
    hysteresis); deciding: True for exactly one result per feature; ok: False
    below the minimum sample size (then detected is False); bound: the
    statistic's worst-case error against the same test on the raw data
    (KS, Wasserstein; 0 for tests exact on the bins); decided_by: 'pvalue'
    (``threshold`` is a significance level), 'distance' (``threshold`` is on
    the statistic's scale) or 'calibrated' (statistic >= a band set by both sample
    sizes and the reference's own variation, on the statistic's scale: read as a
    distance by :attr:`by_pvalue` and :attr:`comparison`) — set by whoever decided, because one method may
    decide either way (``pca_reconstruction`` is a distance above
    ``large_sample``); None is read as 'pvalue' when there is a p-value.
    An immutable named tuple (cheap to build by the thousand on every tick).

    >>> r = DriftResult("age", "ks", 0.21, 0.0003, 0.05, True, 5000, 800, True, True, 0.0012,
    ...                 decided_by="pvalue")
    >>> r.describe(), r.threshold_kind
    ('adjusted p = 0.0012 < 0.05', 'pvalue')
    >>> DriftResult("age", "wasserstein", 0.03, None, 0.1, False, 5000, 3000, True, True,
    ...             decided_by="distance").describe()
    'score 0.03 < threshold 0.1'
    """

    feature: str
    method: str
    statistic: float
    pvalue: float | None
    threshold: float
    detected: bool
    n_reference: int
    n_current: int
    deciding: bool
    ok: bool
    pvalue_adjusted: float | None = None
    bound: float = 0.0
    kind: str = "numeric"
    decided_by: str | None = None

    @property
    def by_pvalue(self) -> bool:
        """True when the decision compares a p-value with ``threshold`` (else a distance)."""
        if self.decided_by is not None:
            return self.decided_by == "pvalue"
        return self.pvalue is not None

    @property
    def threshold_kind(self) -> str:
        """'pvalue' or 'score': the scale ``threshold`` is on (exported as ``drift.threshold.kind``)."""
        return "pvalue" if self.by_pvalue else "score"

    @property
    def comparison(self) -> Comparison:
        """The deciding comparison in structured form; ``str()`` of it is :meth:`describe`."""
        if self.by_pvalue:
            adjusted = self.pvalue_adjusted is not None and self.pvalue_adjusted != self.pvalue
            p = self.pvalue_adjusted if self.pvalue_adjusted is not None else self.pvalue
            p = 1.0 if p is None else float(p)
            return Comparison("pvalue", p, "<" if p < self.threshold else "≥", self.threshold, adjusted)
        s = float(self.statistic)
        return Comparison("score", s, "≥" if s >= self.threshold else "<", self.threshold)

    def describe(self) -> str:
        """The decision as text, like with like: ``p = 0.0012 < 0.05`` or ``score 0.21 ≥ threshold 0.1``."""
        return str(self.comparison)


@dataclass
class DriftReport:
    """All results of one evaluation, features in profile order then __prediction__, __multivariate__."""

    results: list[DriftResult]
    rows: int = 0

    def deciding(self) -> dict[str, DriftResult]:
        """feature -> its deciding result (the verdict)."""
        return {r.feature: r for r in self.results if r.deciding}

    def detected(self) -> list[str]:
        """Features whose deciding test detected drift in this window."""
        return [r.feature for r in self.results if r.deciding and r.detected]

    def result(self, feature: str, method: str) -> DriftResult:
        for r in self.results:
            if r.feature == feature and r.method == method:
                return r
        raise KeyError((feature, method))


def adjust_pvalues(pvalues: np.ndarray, correction: str = "benjamini-hochberg") -> np.ndarray:
    """Adjusted p-values for a family of tests (BH step-up or Bonferroni), capped at 1.

    Equals ``scipy.stats.false_discovery_control(p, method="bh")`` for BH.

    >>> import numpy as np
    >>> adjust_pvalues(np.array([0.01, 0.04, 0.03, 0.5])).round(3).tolist()
    [0.04, 0.053, 0.053, 0.5]
    >>> adjust_pvalues(np.array([0.01, 0.04]), "bonferroni").tolist()
    [0.02, 0.08]
    """
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    if m == 0 or correction == "none":
        return p.copy()
    if correction == "bonferroni":
        return np.minimum(p * m, 1.0)
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    return out


def evaluate_drift(prof: Profile, window: WindowSketch, config: DriftConfig | None = None) -> DriftReport:
    """Compare ``window`` with ``prof``; see the module docstring. Pure.

    >>> import numpy as np
    >>> from driftcar.stats import profile
    >>> rng = np.random.default_rng(0)
    >>> prof = profile({"a": rng.normal(size=20_000), "b": rng.normal(size=20_000)})
    >>> w = prof.new_window()
    >>> w.update({"a": rng.normal(0.25, 1, 5_000), "b": rng.normal(0, 1, 5_000)})
    >>> {f: (r.method, r.detected) for f, r in evaluate_drift(prof, w).deciding().items()}
    {'a': ('ks', True), 'b': ('ks', False), '__multivariate__': ('pca_reconstruction', False)}
    >>> r = evaluate_drift(prof, w).deciding()["a"]
    >>> r.decided_by, round(r.statistic, 3), round(r.threshold, 3)   # the band for 20,000 vs 5,000 rows
    ('calibrated', 0.096, 0.028)
    """
    return _evaluate(prof, window, config or DriftConfig(), False)


def evaluate_label_drift(prof: Profile, window: WindowSketch, config: DriftConfig | None = None
                         ) -> DriftResult | None:
    """The label distribution of ``window`` (labels joined as they arrive, ``update_labels``)
    against the profile's, by the same rules as features, as a family of its own; None when
    the profile has no label distribution. Pure.

    >>> import numpy as np
    >>> from driftcar.stats import profile
    >>> rng = np.random.default_rng(0)
    >>> prof = profile({"a": rng.normal(size=5_000)}, y=rng.choice(["no", "yes"], 5_000, p=[0.8, 0.2]))
    >>> w = prof.new_window()
    >>> w.update_labels(rng.choice(["no", "yes"], 2_000, p=[0.7, 0.3]))
    >>> r = evaluate_label_drift(prof, w)
    >>> r.feature, r.method, r.decided_by, r.detected
    ('__label__', 'chisquare', 'calibrated', True)
    """
    if prof.label is None:
        return None
    report = _evaluate(prof, window, config or DriftConfig(), True)
    return report.deciding().get(LABEL)


def _evaluate(prof: Profile, window: WindowSketch, config: DriftConfig, label: bool) -> DriftReport:
    if window.profile is not prof and window.profile.fingerprint != prof.fingerprint:
        raise ValueError("window does not belong to this profile")
    L = prof.layout
    blocks = []
    if L.num_names:
        blocks.append(_numeric_block(L, window, config, label))
    if L.cat_names:
        blocks.append(_categorical_block(L, window, config, label))
    return _assemble(L, blocks, config, window.rows)


_new_result = partial(tuple.__new__, DriftResult)  # skips namedtuple's Python-level _make
_TABLE: list = [-1, None]


def _table() -> tuple[tuple[str, ...], dict[str, int], np.ndarray, frozenset[str]]:
    """(method names, name -> position, has-p-value per position, p-value methods) of the registry now."""
    if _TABLE[0] != registry.version():
        every = registry.names()
        pv = registry.pvalue_methods()
        _TABLE[:] = [registry.version(), (every, {m: k for k, m in enumerate(every)},
                                           np.array([m in pv for m in every]), pv)]
    return _TABLE[1]


def _plan(names: list[str], kind: str, n_cur: np.ndarray, config: DriftConfig, label: bool = False):
    """(enabled mask, deciding method per row, rule per row, effect floor per row, base method set)."""
    small, large = ((config.numeric_small, config.numeric_large) if kind == "numeric"
                    else (config.categorical_small, config.categorical_large))
    applicable = registry.names(kind)
    n = len(names)
    decision = np.full(n, config.decision, dtype=object)
    floor = np.full(n, config.min_effect if kind == "numeric" else config.min_effect_categorical)
    method = np.full(n, None, dtype=object)
    enabled = np.ones(n, dtype=bool)
    index = {name: i for i, name in enumerate(names)}
    for name in (LABEL, PREDICTION, MULTIVARIATE):
        if name in index and (name == LABEL or (name == PREDICTION and not config.prediction)
                              or (name == MULTIVARIATE and not config.multivariate)):
            enabled[index[name]] = False
    for name, fc in config.features.items():
        i = index.get(name, -1)
        if i < 0:
            continue
        enabled[i] &= fc.enabled
        decision[i] = fc.decision or decision[i]
        effect = fc.min_effect if fc.min_effect is not None else fc.threshold
        floor[i] = floor[i] if effect is None else effect
        if fc.method is not None and fc.method in applicable and name != MULTIVARIATE:
            method[i] = fc.method
    if label:  # the label distribution alone (evaluate_label_drift)
        enabled = np.array([name == LABEL for name in names]) & (
            getattr(config.features.get(LABEL), "enabled", True))
    calibrated = (decision == "calibrated") & (method == None)  # noqa: E711 (elementwise)
    size_small = (decision == "pvalue") | ((decision == "switch") & (n_cur <= config.large_sample))
    deciding = np.where(calibrated, registry.calibrated_method(kind),
                        np.where(size_small, small, large)).astype(object)
    deciding = np.where(method == None, deciding, method)  # noqa: E711
    if MULTIVARIATE in index:
        deciding[index[MULTIVARIATE]] = "pca_reconstruction"
    rule = np.where(calibrated, "calibrated",
                    np.where([m in _table()[3] for m in deciding], "pvalue", "distance")).astype(object)
    base = [m for m in (applicable if config.methods is None else config.methods) if m in applicable]
    return enabled, deciding, rule, floor, base


def _memo(L, config: DriftConfig, key: tuple, build):
    """``build()``, remembered on the layout ``L`` for this config object and ``key``.

    Why: what a window is judged by (which rows, which tests, in what order, with what fixed
    thresholds) depends on the config, the profile and, under the switch rule, whether each row's
    window is small, not on the counts; rebuilding it in Python on every evaluation cost more than
    the statistics (``benchmarks/callgrind_verdicts.py``). A config is frozen; the registry's
    version is part of the key. Values are shared between evaluations: never mutated (read-only).
    """
    memo = L.drift_memo
    full = (id(config), registry.version()) + key
    hit = memo.get(full)
    if hit is not None and hit[0] is config:
        return hit[1]
    value = build()
    if len(memo) >= 64:  # a few configs x size classes in practice; bounded whatever the caller does
        memo.clear()
    memo[full] = (config, value)  # (the config is held, so its id is not reused while cached)
    return value


def _size_class(config: DriftConfig, n_cur: np.ndarray) -> bytes:
    """Which rows' windows are small (at most ``large_sample`` values), as a memo key: only the
    switch rule decides by it, so under the others every window is of one class (b"")."""
    if config.decision != "switch" and all(fc.decision != "switch" for fc in config.features.values()):
        return b""
    return (n_cur <= config.large_sample).tobytes()


def _frozen(*arrays):
    for a in arrays:
        if isinstance(a, np.ndarray):
            a.flags.writeable = False
    return arrays


def _numeric_plan(L, n_cur: np.ndarray, config: DriftConfig, label: bool):
    """(enabled, deciding, rule, floor, base, is_mv, need, mv_large) of the numeric rows."""
    names = L.num_names
    enabled, deciding, rule, floor, base = _plan(names, "numeric", n_cur, config, label)
    is_mv = np.array([n == MULTIVARIATE for n in names], dtype=bool)
    need = set(base) | set(deciding[enabled & ~is_mv].tolist())
    # the PCA error row decides by KS (p-value or calibrated) or normalised Wasserstein (distance)
    mv_large = np.zeros(len(names), dtype=bool)
    if is_mv.any():
        i = int(np.nonzero(is_mv)[0][0])
        dec = getattr(config.features.get(MULTIVARIATE), "decision", None) or config.decision
        if rule[i] != "calibrated":
            large = dec == "distance" or (dec == "switch" and n_cur[i] > config.large_sample)
            rule[i] = "distance" if large else "pvalue"
        mv_large[i] = rule[i] == "distance"
        need.add("wasserstein" if mv_large[i] else "ks")
    return _frozen(enabled, deciding, rule, floor, base, is_mv, frozenset(need), mv_large)


def _numeric_block(L, window: WindowSketch, config: DriftConfig, label: bool = False) -> dict:
    C = window.num_counts[:, : L.F + 2]
    n_cur = C.sum(axis=1)
    names = L.num_names
    small = _size_class(config, n_cur)
    enabled, deciding, rule, floor, base, is_mv, need, mv_large = _memo(
        L, config, ("numeric", label, small), lambda: _numeric_plan(L, n_cur, config, label))
    stats = numeric_statistics(L, window.num_counts, window.num_sums, window.num_inf, window.num_lo,
                               window.num_hi, need)
    if is_mv.any():
        # the PCA error distribution vs the reference's: KS (p-value) in small windows, normalised
        # Wasserstein (distance) in large ones, like a numeric feature; NaN p-value = distance rule
        mv = np.nonzero(is_mv)[0]
        source = stats["wasserstein"] if mv_large.any() else stats["ks"]
        stat, pv, bd = (np.zeros(len(names)), np.full(len(names), np.nan), np.zeros(len(names)))
        stat[mv] = source[0][mv]
        bd[mv] = source[2][mv]
        if source[1] is not None:
            pv[mv] = source[1][mv]
        stats["pca_reconstruction"] = (stat, pv, bd)
    return {"names": names, "kind": "numeric", "enabled": enabled, "deciding": deciding, "base": base,
            "stats": stats, "n_ref": L.ref_fine2.sum(axis=1), "n_cur": n_cur, "is_mv": is_mv, "rule": rule,
            "floor": floor, "tau2": L.num_tau2, "df": np.zeros(len(names)), "small": small, "label": label}


def numeric_statistics(L, counts: np.ndarray, sums: np.ndarray, inf: np.ndarray, lo: np.ndarray,
                       hi: np.ndarray, need: set[str]) -> dict[str, tuple]:
    """method -> (statistic, pvalue or None, bound or None), one value per numeric row of ``L``.

    ``counts``/``sums`` are (rows, F + 3) window arrays in the layout of ``L``; ``inf`` the
    (rows, 2) counts of -inf/+inf; ``lo``/``hi`` the window's out-of-range extremes. The
    reference side comes precomputed from ``L``, so this is a few whole-array passes. Internal.
    """
    F = L.F
    C = counts[:, : F + 2]
    stats: dict[str, tuple] = {}
    if need & set(_on_bins()):
        stats.update(categorical_statistics(L.ref_coarse, coarse_counts(counts, L.B), need))
    if not need & {"ks", "wasserstein"}:
        return stats
    sums = sums[:, : F + 2]
    fine = M.FineComparison(None, C, L.ks_props, L.ks_n)
    atom_rows = L.atom_rows
    if atom_rows.size:  # features whose reference has single-value bins (discrete data): exact there
        c_sub = C[atom_rows]
        with np.errstate(invalid="ignore"):  # 0 * -inf in the below-min bin: NaN, and c == 0 there
            cur_single = (c_sub == 0) | (sums[atom_rows] <= c_sub * L.lower[atom_rows])
        exact_sub = L.ref_single[atom_rows] & cur_single
    if "ks" in need:
        d = np.where(fine.both, np.abs(fine.cum).max(axis=-1), 0.0)
        inside = np.minimum(fine.p, fine.q)
        if atom_rows.size:
            sub = inside[atom_rows]
            sub[exact_sub] = 0.0
            inside[atom_rows] = sub
        bound = np.where(fine.both, inside.max(axis=-1), 0.0)
        stats["ks"] = (d, M.ks_pvalue(d, fine.nr, fine.nc), bound)
    if "wasserstein" in need:
        wfine, Cw = fine, C
        if inf.any() or L.ref_has_inf:  # infinities are left out of W1
            Cw = C.astype(np.float64)
            Cw[:, 0] -= inf[:, 0]
            Cw[:, F + 1] -= inf[:, 1]
            wfine = M.FineComparison(None, Cw, L.w_props, L.w_n)
        dist = wfine.wasserstein(L.ref_pos, L.ref_empty, sums)
        # error bound: reference side precomputed; current side half the width of each finite bin
        # (the exact largest deviation for features with single-value bins), the open ends
        # against the window's own extremes
        cur_bound = M._rowdot(wfine.q, L.half_width)
        if atom_rows.size:
            cur_bound[atom_rows] = M.spread_bound(Cw[atom_rows], sums[atom_rows], L.lower[atom_rows],
                                                  L.upper[atom_rows])
        lo = np.where(np.isfinite(lo), lo, L.fine_edges[:, 0])
        hi = np.where(np.isfinite(hi), hi, L.fine_edges[:, F])
        ends = np.stack([Cw[:, 0], Cw[:, F + 1]], axis=1).astype(np.float64)
        end_sums = np.stack([sums[:, 0], sums[:, F + 1]], axis=1)
        end_bound = M.spread_bound(ends, end_sums, np.stack([lo, L.fine_edges[:, F]], axis=1),
                                   np.stack([L.fine_edges[:, 0], hi], axis=1))
        total = np.maximum(wfine.nc, 1.0)
        bound = L.ref_w_bound + cur_bound + end_bound * ends.sum(axis=1) / total
        bound = np.where(wfine.both, bound, 0.0)
        with np.errstate(over="ignore"):  # values near the float limit: clamped when assembled
            stats["wasserstein"] = (dist / L.spread, None, bound / L.spread)
    return stats


def categorical_statistics(R: np.ndarray, C: np.ndarray, need: set[str]) -> dict[str, tuple]:
    """The bin-based tests on aligned count rows (categories, or coarse numeric bins). Internal."""
    stats: dict[str, tuple] = {}
    for name in _on_bins():
        if name in need:
            stats[name] = (*registry.get(name)(R, C), None)
    return stats


def _on_bins() -> tuple[str, ...]:
    return tuple(n for n in registry.names() if registry.get(n).source == "bins")


def _categorical_block(L, window: WindowSketch, config: DriftConfig, label: bool = False) -> dict:
    R = L.ref_cat
    C = window.cat_counts
    n_cur = C.sum(axis=1)
    names = L.cat_names
    small = _size_class(config, n_cur)
    enabled, deciding, rule, floor, base, need, cal, plain = _memo(
        L, config, ("categorical", label, small), lambda: _categorical_plan(L, n_cur, config, label))
    df = np.zeros(len(names))
    stats = categorical_statistics(R, C, need if plain else need - {"chisquare"})
    if cal.any():  # chi-square with sparse categories pooled, so its tail holds in small windows
        s, p, df = calibration.pooled_chisquare(R, C)
        s0, p0, _ = stats["chisquare"] if plain else (s, p, None)
        stats["chisquare"] = (np.where(cal, s, s0), np.where(cal, p, p0), None)
    return {"names": names, "kind": "categorical", "enabled": enabled, "deciding": deciding, "base": base,
            "stats": stats, "n_ref": R.sum(axis=1), "n_cur": n_cur, "is_mv": np.zeros(len(names), dtype=bool),
            "rule": rule, "floor": floor, "tau2": L.cat_tau2, "df": df, "small": small, "label": label}


def _categorical_plan(L, n_cur: np.ndarray, config: DriftConfig, label: bool):
    """(enabled, deciding, rule, floor, base, need, calibrated rows, plain chi-square needed)."""
    enabled, deciding, rule, floor, base = _plan(L.cat_names, "categorical", n_cur, config, label)
    need = set(base) | set(deciding[enabled].tolist())
    cal = enabled & (rule == "calibrated")
    plain = "chisquare" in base or bool((enabled & ~cal & (deciding == "chisquare")).any())
    return _frozen(enabled, deciding, rule, floor, base, frozenset(need), cal, plain)


def _assemble(L, blocks: list[dict], config: DriftConfig, rows: int) -> DriftReport:
    # the blocks' plans, hence which statistics they hold, follow from the same key
    key = ("assemble",) + tuple((blk["kind"], blk["label"], blk["small"]) for blk in blocks)
    sk = _memo(L, config, key, lambda: _skeleton(L, blocks, config))
    if sk is None:
        return DriftReport([], rows=rows)
    n = len(sk["dec"])
    stat, pv, bound = np.empty(n), np.empty(n), np.empty(n)
    for b, m, idx, dest in sk["pieces"]:
        s, p, bd = blocks[b]["stats"][m]
        stat[dest] = s[idx]
        pv[dest] = np.nan if p is None else p[idx]
        bound[dest] = 0.0 if bd is None else bd[idx]
    n_cur = np.empty(n, dtype=np.int64)
    df = np.empty(n)
    for b, dest, rows_b in sk["rows"]:
        n_cur[dest] = blocks[b]["n_cur"][rows_b]
        df[dest] = blocks[b]["df"][rows_b]
    dec, cal, n_ref = sk["dec"], sk["cal"], sk["n_ref"]
    has_p = sk["has_pvalue"] & ~np.isnan(pv)  # pca_reconstruction is a distance in large windows
    thr = np.where(sk["is_pca"] & ~has_p, sk["thr_pca"], sk["thr"])
    ok = (n_ref >= sk["min_n"]) & (n_cur >= sk["min_n"])
    big = np.finfo(np.float64).max  # an overflowing distance stays "very large", and finite
    stat = _finite(stat, big)
    adj = np.where(has_p, np.nan_to_num(pv, nan=1.0), np.nan)
    # the verdicts form one family across features (whatever their p-value test); the other
    # p-value results are corrected per method across features
    verdicts = has_p & ok & dec & ~cal
    if verdicts.any():
        adj[verdicts] = adjust_pvalues(adj[verdicts], config.correction)
    for of_method in sk["pvalue_groups"]:
        sel = of_method & ok & has_p
        if sel.any():
            adj[sel] = adjust_pvalues(adj[sel], config.correction)
    if cal.any():
        _calibrated(cal, ok, sk["kinds"], stat, n_ref, n_cur, sk["tau2"], df, sk["floor"], config.alpha, thr, pv, adj)
    detected = ok & np.where(has_p & ~cal, adj < thr, stat >= thr)
    rule = np.where(cal, "calibrated", np.where(has_p, "pvalue", "distance"))
    bound = _finite(bound, big)
    pv_out = np.where(has_p, np.clip(np.nan_to_num(pv, nan=1.0), 0.0, 1.0), np.nan)
    pv_obj = pv_out.astype(object)
    pv_obj[~has_p] = None
    adj_obj = adj.astype(object)
    adj_obj[~has_p] = None
    results = list(map(_new_result, zip(
        sk["names"], sk["method_names"], stat.tolist(), pv_obj.tolist(), thr.tolist(),
        detected.tolist(), sk["n_ref_list"], n_cur.tolist(), sk["dec_list"], ok.tolist(), adj_obj.tolist(),
        bound.tolist(), sk["kinds_list"], rule.tolist())))
    return DriftReport(results, rows=rows)


def _finite(x: np.ndarray, big: float) -> np.ndarray:
    """``np.nan_to_num(x, nan=0.0, posinf=big, neginf=0.0)``; one pass when every value is finite."""
    return x if np.isfinite(x).all() else np.nan_to_num(x, nan=0.0, posinf=big, neginf=0.0)


def _skeleton(L, blocks: list[dict], config: DriftConfig) -> dict | None:
    """What an evaluation reports, whatever the window's counts: the (block, method, rows) pieces
    in the report's order (features in profile order, methods in registry order), with their
    names, kinds, fixed thresholds and minimum sizes; None when nothing is reported."""
    every, _, has_pvalue, pvalue_methods = _table()
    cols = _entries(L, blocks)
    if not cols["row"]:
        return None
    a = {k: np.concatenate(v) for k, v in cols.items()}
    sort = np.lexsort((a["method"], a["order"]))
    inverse = np.empty_like(sort)
    inverse[sort] = np.arange(len(sort))  # where each unsorted entry lands in the report
    a = {k: v[sort] for k, v in a.items()}
    n = len(a["row"])
    pieces, start = [], 0  # (the unsorted entries, piece by piece in the order built above)
    for idx, blk_arr, meth in zip(cols["row"], cols["block"], cols["method"]):
        b, m = int(blk_arr[0]), every[int(meth[0])]
        pieces.append((b, m, idx, inverse[start:start + len(idx)]))
        start += len(idx)
    n_ref = np.empty(n, dtype=np.int64)
    names = np.empty(n, dtype=object)
    kinds = np.empty(n, dtype=object)
    cal, floor, tau2 = np.zeros(n, dtype=bool), np.zeros(n), np.zeros(n)
    row_sets = []
    for b, blk in enumerate(blocks):
        dest = np.nonzero(a["block"] == b)[0]
        rows_b = a["row"][dest]
        row_sets.append((b, dest, rows_b))
        cal[dest] = a["dec"][dest] & (blk["rule"][rows_b] == "calibrated")
        floor[dest], tau2[dest] = blk["floor"][rows_b], blk["tau2"][rows_b]
        n_ref[dest] = blk["n_ref"][rows_b]
        names[dest] = np.asarray(blk["names"], dtype=object)[rows_b]
        kinds[dest] = np.where(blk["is_mv"][rows_b], "multivariate", blk["kind"])
    method_names = np.array(every, dtype=object)[a["method"]]
    # thresholds and minimum sample sizes, with per-feature overrides; the PCA row's threshold
    # when it is judged as a distance (no p-value: large windows under the switch rule)
    is_pca = method_names == "pca_reconstruction"
    thr, thr_pca, min_n = _fixed_thresholds(config, a["method"], is_pca, names)
    groups = [(method_names == m) & ~a["dec"] for m in sorted(pvalue_methods)]
    out = {"pieces": pieces, "rows": row_sets, "dec": a["dec"], "cal": cal, "n_ref": n_ref, "floor": floor,
           "tau2": tau2, "kinds": kinds, "has_pvalue": has_pvalue[a["method"]], "is_pca": is_pca, "thr": thr,
           "thr_pca": thr_pca, "min_n": min_n, "pvalue_groups": [g for g in groups if g.any()],
           "names": names.tolist(), "method_names": method_names.tolist(), "n_ref_list": n_ref.tolist(),
           "dec_list": a["dec"].tolist(), "kinds_list": kinds.tolist()}
    _frozen(*(v for v in out.values() if isinstance(v, np.ndarray)), *out["pvalue_groups"])
    return out


def _entries(L, blocks: list[dict]) -> dict[str, list]:
    """Per (block, method) piece of the report, unsorted: its rows in the block, block, method
    position, deciding flags and the features' profile order."""
    order = {name: k for k, name in enumerate(L.feature_names + [PREDICTION, MULTIVARIATE])}
    _, position, _, _ = _table()
    for_prediction = set(registry.names("prediction"))
    cols: dict[str, list] = {k: [] for k in ("row", "block", "method", "dec", "order")}
    for b, blk in enumerate(blocks):
        enabled, deciding, is_mv = blk["enabled"], blk["deciding"], blk["is_mv"]
        feat_order = np.array([order.get(n, len(order)) for n in blk["names"]], dtype=np.int64)
        methods = list(blk["base"]) + ["pca_reconstruction"]
        for m in dict.fromkeys(methods + sorted(set(deciding[enabled].tolist()))):
            if m not in blk["stats"]:
                continue
            if m == "pca_reconstruction":
                take = enabled & is_mv
            else:
                take = enabled & ~is_mv & ((deciding == m) | (m in blk["base"]))
                if m not in for_prediction:
                    take &= np.asarray(blk["names"], dtype=object) != PREDICTION
            idx = np.nonzero(take)[0]
            if not len(idx):
                continue
            cols["row"].append(idx)
            cols["block"].append(np.full(len(idx), b))
            cols["method"].append(np.full(len(idx), position[m]))
            cols["dec"].append(deciding[idx] == m)
            cols["order"].append(feat_order[idx])
    return cols


def _fixed_thresholds(config: DriftConfig, method: np.ndarray, is_pca: np.ndarray, names: np.ndarray):
    """(threshold, threshold of the PCA row judged as a distance, minimum size) per report entry,
    with the per-feature overrides."""
    every = _table()[0]
    n = len(method)
    thr = np.empty(n)
    for m in np.unique(method):
        thr[method == m] = config.threshold(every[m])
    thr_pca = np.where(is_pca, config.distance_threshold, thr)
    min_n = np.full(n, config.min_samples)
    for name, fc in config.features.items():
        if fc.threshold is None and fc.min_samples is None:
            continue
        sel = names == name
        if fc.threshold is not None:
            thr[sel] = float(fc.threshold)
            thr_pca[sel] = float(fc.threshold)
        if fc.min_samples is not None:
            min_n[sel] = fc.min_samples
    return thr, thr_pca, min_n


def _calibrated(cal, ok, kinds, stat, n_ref, n_cur, tau2, df, floor, alpha, thr, pv, adj) -> None:
    """Thresholds and p-values of the calibrated verdicts, in place (Bonferroni over the
    window's judged features: at most ``alpha`` of no-drift windows flag any)."""
    m = max(int((cal & ok).sum()), 1)
    level = alpha / m
    for is_cat in (False, True):
        sel = cal & ((kinds == "categorical") == is_cat)
        if not sel.any():
            continue
        if is_cat:
            t, p = calibration.chisquare_band(stat[sel], df[sel], n_ref[sel], n_cur[sel], tau2[sel], level, floor[sel])
        else:
            t, p = calibration.numeric_band(stat[sel], n_ref[sel], n_cur[sel], tau2[sel], level, floor[sel])
        thr[sel] = t
        pv[sel] = p
        adj[sel] = np.minimum(p * m, 1.0)
