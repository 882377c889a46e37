"""A profile's columns stacked into arrays (internal; built once per profile).

Tracked columns are the features, ``__prediction__``, ``__label__`` and
``__multivariate__`` (the PCA error). Numeric ones share one (rows, F + 3)
layout — below-min, F fine bins, above-max, missing — so sketch updates and
drift evaluation are whole-array numpy operations. Categorical ones are padded
to (rows, Kmax + 1) with ``__other__`` in the last column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from driftcar.stats import methods
from driftcar.stats._binning import make_binner
from driftcar.stats._columns import CodeTable

if TYPE_CHECKING:  # imports run one way: profile -> sketch -> _layout
    from driftcar.stats.profile import FeatureProfile, Profile

OTHER = "__other__"
PREDICTION = "__prediction__"
LABEL = "__label__"
MULTIVARIATE = "__multivariate__"


def coarse_counts(fine: np.ndarray, bins: int) -> np.ndarray:
    """Coarse (rows, bins) counts from fine (rows, F + 3) counts; open ends absorb out-of-range."""
    fine = np.asarray(fine)
    F = fine.shape[1] - 3
    body = fine[:, 1 : F + 1].reshape(fine.shape[0], bins, F // bins).sum(axis=2)
    body[:, 0] += fine[:, 0]
    body[:, -1] += fine[:, F + 1]
    return body


class Layout:
    def __init__(self, prof: Profile):
        tracked: list[FeatureProfile] = list(prof.features.values())
        for extra in (prof.prediction, prof.label, prof.pca_error):
            if extra is not None:
                tracked.append(extra)
        num = [f for f in tracked if f.kind == "numeric"]
        cat = [f for f in tracked if f.kind == "categorical"]
        self.F = prof.fine_bins
        self.B = prof.bins
        F = self.F
        self.num_names = [f.name for f in num]
        self.cat_names = [f.name for f in cat]
        self.where: dict[str, tuple[str, int]] = {}
        for i, f in enumerate(num):
            self.where[f.name] = ("numeric", i)
        for i, f in enumerate(cat):
            self.where[f.name] = ("categorical", i)
        self.num_profiles = num
        self.cat_profiles = cat
        # numeric
        n = len(num)
        self.fine_edges = np.array([f.fine_edges for f in num]).reshape(n, F + 1)
        nan = np.full((n, 1), np.nan)
        # NaN as last edge sends NaN values to the missing bin (F + 2), +inf to above-max (F + 1)
        self.search_edges = [np.ascontiguousarray(r) for r in np.hstack([self.fine_edges, nan])]
        # per feature, the faster exact way to find bins (grid lookup unless heavy-tailed)
        self.binners = [make_binner(r) for r in self.fine_edges]
        self.ref_fine = np.array([f.fine_counts for f in num], dtype=np.int64).reshape(n, F + 3)
        self.ref_sums = np.array([f.fine_sums for f in num], dtype=np.float64).reshape(n, F + 3)
        inf = np.full((n, 1), np.inf)
        self.lower = np.hstack([-inf, self.fine_edges])  # (n, F + 2): bins below, fine..., above
        self.upper = np.hstack([self.fine_edges, inf])
        std = np.array([f.std for f in num])
        self.spread = np.where(std > 0, std, 1.0)
        self.ref_inf = np.array([[f.neg_infinite, f.infinite - f.neg_infinite] for f in num],
                                dtype=np.int64).reshape(n, 2)
        # constant reference-side pieces of the evaluation, computed once
        self.ref_fine2 = self.ref_fine[:, : F + 2]
        self.ref_sums2 = self.ref_sums[:, : F + 2]
        self.ref_coarse = coarse_counts(self.ref_fine, self.B) if n else np.zeros((0, self.B), np.int64)
        self.ref_fine_w = self.ref_fine2.astype(np.float64)
        self.ref_fine_w[:, 0] -= self.ref_inf[:, 0]
        self.ref_fine_w[:, F + 1] -= self.ref_inf[:, 1]
        self.ref_has_inf = bool(self.ref_inf.any())
        self.ks_n = self.ref_fine2.sum(axis=1).astype(np.float64)
        self.ks_props = self.ref_fine2 / np.maximum(self.ks_n, 1.0)[:, None]
        self.w_n = self.ref_fine_w.sum(axis=1)
        self.w_props = self.ref_fine_w / np.maximum(self.w_n, 1.0)[:, None]
        self.ref_pos = methods.bin_positions(self.ref_fine_w, self.ref_sums2, self.lower, self.upper)
        self.ref_empty = self.ref_fine_w == 0
        with np.errstate(invalid="ignore"):
            # non-empty reference bins holding a single value (discrete atoms sit on lower edges)
            self.ref_single = (self.ref_fine2 > 0) & (self.ref_sums2 <= self.ref_fine2 * self.lower)
            width = self.upper - self.lower
        self.atom_rows = np.nonzero(self.ref_single.any(axis=1))[0]
        self.half_width = np.where(np.isfinite(width), width / 2, 0.0)
        self.ref_w_bound = methods.spread_bound(self.ref_fine_w, self.ref_sums2, self.lower, self.upper)
        self.keep = np.array([f.coarse_keep for f in num], dtype=bool).reshape(n, self.B)
        # categorical
        self.Kmax = max((len(f.categories) for f in cat), default=0)
        self.cat_maps = [{c: j for j, c in enumerate(f.categories)} for f in cat]
        self.cat_codes = [CodeTable(m, self.Kmax) for m in self.cat_maps]  # other: the last column
        self.ref_cat = np.zeros((len(cat), self.Kmax + 1), dtype=np.int64)
        for i, f in enumerate(cat):
            k = len(f.categories)
            self.ref_cat[i, :k] = f.category_array[:k]
            self.ref_cat[i, -1] = f.category_array[-1]
        # the calibrated rule's reference variation per row (0: none measured; older profiles)
        tau2 = prof.calibration.tau2 if prof.calibration is not None else {}
        self.num_tau2 = np.array([tau2.get(f.name, 0.0) for f in num], dtype=np.float64)
        self.cat_tau2 = np.array([tau2.get(f.name, 0.0) for f in cat], dtype=np.float64)
        self.feature_names = list(prof.features)
        self.pca = prof.pca if prof.pca_error is not None else None
        self.pca_rows = [self.where[name][1] for name in self.pca.features] if self.pca else []
        # encoded categories of the PCA: (categorical row, their codes in that row's table)
        self.pca_cats = [(self.where[name][1], np.array([self.cat_maps[self.where[name][1]][lab] for lab in labels]))
                         for name, labels in (self.pca.onehot if self.pca else ())]
        self.mv_row = self.where[MULTIVARIATE][1] if self.pca else None
        self.pred = self.where.get(PREDICTION)
        self.label = self.where.get(LABEL)
