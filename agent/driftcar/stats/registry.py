"""The drift methods: one entry per method, the single home of what a method is.

An entry says what the method computes (a vectorised function over aligned count rows, or
the fine quantile grid the engine shares between KS and Wasserstein), whether its result
is a p-value or a distance, its default threshold, the calibrated band it can decide
under, and the kinds of row it applies to. :func:`~driftcar.stats.drift.evaluate_drift`,
its config checks, the one-feature tests of :mod:`driftcar.stats.drift_tests`, the
sidecar's ``drift.method`` attribute values and the unit tests all read this table, so a
method computed on bins is added by one :func:`register` call:

>>> import numpy as np
>>> def total_variation(ref, cur):   # vectorised: one value per row of count pairs
...     p = ref / np.maximum(ref.sum(axis=-1, keepdims=True), 1)
...     q = cur / np.maximum(cur.sum(axis=-1, keepdims=True), 1)
...     return 0.5 * np.abs(p - q).sum(axis=-1)
>>> m = register(Method("total_variation", total_variation, frozenset(BIN_KINDS), pvalue=False))
>>> "total_variation" in names("categorical"), "total_variation" in names("multivariate")
(True, False)
>>> unregister("total_variation")
>>> names()
('psi', 'ks', 'wasserstein', 'jensenshannon', 'chisquare', 'hellinger', 'pca_reconstruction')

Kinds: ``numeric`` and ``categorical`` features, ``prediction`` (the model's output, judged
by its own kind with the methods that also list ``prediction``), ``multivariate`` (the PCA
reconstruction-error row). Thread safety: read freely; register at import time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from driftcar.stats import methods as M

__all__ = ["KINDS", "BIN_KINDS", "Method", "register", "unregister", "get", "names", "pvalue_methods",
           "calibrated_method", "version"]

KINDS = ("numeric", "categorical", "multivariate", "prediction")
BIN_KINDS = ("numeric", "categorical", "prediction")
#: where a method's statistic comes from: "bins" = ``function(ref, cur)`` on aligned count rows
#: (categories, or a numeric feature's coarse reference-quantile bins); "fine" = the fine
#: quantile grid (computed in :func:`driftcar.stats.drift.numeric_statistics`); "pca" = the
#: reconstruction-error distribution, judged like a numeric feature
SOURCES = ("bins", "fine", "pca")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")  # a metric attribute value and a config key as is


@dataclass(frozen=True)
class Method:
    """One drift method.

    function: for source "bins", ``(ref, cur) -> statistic`` or ``(statistic, pvalue)``,
    float arrays with one finite value per row. pvalue: True when the result is decided by
    a p-value (threshold is a significance level), False for a distance. threshold: the
    default (None: the config's ``pvalue_threshold`` / ``distance_threshold``). calibrated:
    the kinds for which this method decides under the calibrated rule
    (:mod:`driftcar.stats.calibration`); one method per kind.
    """

    name: str
    function: Callable | None
    kinds: frozenset[str]
    pvalue: bool
    source: str = "bins"
    threshold: float | None = None
    calibrated: frozenset[str] = frozenset()

    def problems(self) -> list[str]:
        out = []
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            out.append(f"name {self.name!r} must match {_NAME.pattern}")
        if not self.kinds or not set(self.kinds) <= set(KINDS):
            out.append(f"kinds {sorted(self.kinds)} must be a non-empty subset of {KINDS}")
        if self.source not in SOURCES:
            out.append(f"source {self.source!r} is not one of {SOURCES}")
        if self.source == "bins" and not callable(self.function):
            out.append("a method on bins needs a function(ref, cur)")
        if self.source == "bins" and "multivariate" in self.kinds:
            out.append("the multivariate row is judged by pca_reconstruction alone")
        if self.threshold is not None and not (isinstance(self.threshold, (int, float)) and self.threshold > 0):
            out.append("threshold must be a number > 0")
        if not set(self.calibrated) <= {"numeric", "categorical"} & set(self.kinds):
            out.append("calibrated must name kinds the method applies to (numeric, categorical)")
        return out

    def __call__(self, ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(statistic, p-value or None) on aligned count rows (source "bins")."""
        out = self.function(ref, cur)
        return out if isinstance(out, tuple) else (out, None)


_REGISTRY: dict[str, Method] = {}
_version = [0]


def register(method: Method) -> Method:
    """Add ``method`` (ValueError naming every problem, or when the name or a calibrated kind is taken)."""
    problems = method.problems()
    if method.name in _REGISTRY:
        problems.append(f"{method.name!r} is registered already")
    for kind in method.calibrated:
        if calibrated_method(kind, missing_ok=True) is not None:
            problems.append(f"the calibrated {kind} method is {calibrated_method(kind)!r} already")
    if problems:
        raise ValueError(f"drift method {method.name!r}: " + "; ".join(problems))
    _REGISTRY[method.name] = method
    _version[0] += 1
    return method


def unregister(name: str) -> None:
    """Remove a method (KeyError when unknown)."""
    del _REGISTRY[name]
    _version[0] += 1


def get(name: str) -> Method:
    return _REGISTRY[name]


def version() -> int:
    """Changes whenever the table does (for caches of derived arrays)."""
    return _version[0]


def names(kind: str | None = None) -> tuple[str, ...]:
    """Method names in registration order (the order results are listed in), of one kind or all."""
    return tuple(n for n, m in _REGISTRY.items() if kind is None or kind in m.kinds)


def pvalue_methods() -> frozenset[str]:
    """Methods decided by a p-value (``pca_reconstruction`` only in small windows under the switch rule:
    how one result was decided travels with it, ``DriftResult.decided_by``)."""
    return frozenset(n for n, m in _REGISTRY.items() if m.pvalue)


def calibrated_method(kind: str, missing_ok: bool = False) -> str | None:
    """The method that decides rows of ``kind`` ('numeric' or 'categorical') under the calibrated rule."""
    for n, m in _REGISTRY.items():
        if kind in m.calibrated:
            return n
    if missing_ok:
        return None
    raise KeyError(f"no calibrated method for {kind!r}")


for _m in (
    Method("psi", M.psi, frozenset(BIN_KINDS), pvalue=False),
    Method("ks", None, frozenset({"numeric", "prediction"}), pvalue=True, source="fine",
           calibrated=frozenset({"numeric"})),
    Method("wasserstein", None, frozenset({"numeric", "prediction"}), pvalue=False, source="fine"),
    Method("jensenshannon", M.jensenshannon, frozenset(BIN_KINDS), pvalue=False),
    Method("chisquare", M.chisquare, frozenset(BIN_KINDS), pvalue=True, calibrated=frozenset({"categorical"})),
    Method("hellinger", M.hellinger, frozenset(BIN_KINDS), pvalue=False),
    Method("pca_reconstruction", None, frozenset({"multivariate"}), pvalue=True, source="pca"),
):
    register(_m)
del _m
