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
from driftcar.stats._binning import Binners
from driftcar.stats._columns import CodeTable

if TYPE_CHECKING:  # imports run one way: profile -> sketch -> _layout
    from driftcar.stats.profile import FeatureProfile, Profile

OTHER = "__other__"
PREDICTION = "__prediction__"
LABEL = "__label__"
MULTIVARIATE = "__multivariate__"


def narrowest(counts: np.ndarray) -> np.ndarray:
    """``counts`` in the narrowest signed integer type that holds each of them (int8 ... int64)."""
    top = max(int(counts.max(initial=0)), -int(counts.min(initial=0)))
    for dtype in (np.int8, np.int16, np.int32):
        if top <= np.iinfo(dtype).max:
            return counts.astype(dtype)
    return counts


def coarse_counts(fine: np.ndarray, bins: int) -> np.ndarray:
    """Coarse (rows, bins) counts from fine (rows, F + 3) counts; open ends absorb out-of-range."""
    fine = np.asarray(fine)
    F = fine.shape[1] - 3
    body = fine[:, 1 : F + 1].reshape(fine.shape[0], bins, F // bins).sum(axis=2)
    body[:, 0] += fine[:, 0]
    body[:, -1] += fine[:, F + 1]
    return body


def coarse_inner_edges(fine_edges: np.ndarray, bins: int) -> np.ndarray:
    """(..., bins - 1) coarse inner edges of (..., F + 1) fine edges, duplicates kept (views)."""
    step = (fine_edges.shape[-1] - 1) // bins
    return fine_edges[..., step : fine_edges.shape[-1] - 1 : step][..., : bins - 1]


def coarse_keep(fine_edges: np.ndarray, bins: int) -> np.ndarray:
    """(..., bins): which coarse bins survive de-duplication of the coarse inner edges."""
    e = coarse_inner_edges(fine_edges, bins)
    keep = np.ones(fine_edges.shape[:-1] + (bins,), dtype=bool)
    if bins > 2:
        keep[..., 1:-1] = e[..., :-1] < e[..., 1:]
    return keep


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
        self.num_names = [f.name for f in num]
        self.cat_names = [f.name for f in cat]
        self.where: dict[str, tuple[str, int]] = {}
        for i, f in enumerate(num):
            self.where[f.name] = ("numeric", i)
        for i, f in enumerate(cat):
            self.where[f.name] = ("categorical", i)
        # one pass per kind: the numeric grids, the categorical tables, then what joins them
        self.num_profiles = num
        self.cat_profiles = cat
        self._numeric(num)
        self._categorical(cat)
        self._joins(prof)
        # what evaluations against this profile are judged by, per config (driftcar.stats.drift._memo)
        self.drift_memo: dict = {}

    def _numeric(self, num: list[FeatureProfile]) -> None:
        F = self.F
        # numeric: the reference arrays are stacked once and the profile's features adopt their
        # rows (see _adopt), so each is held once; arrays derived from them are recomputed per
        # evaluation (properties below) rather than kept: at 400 fine bins each would cost 3.2 KB
        # per feature for the life of the model, against one whole-array pass per evaluation
        n = len(num)
        # edges + two NaN: NaN as the edge after the last sends NaN values to the missing bin
        # (F + 2) and +inf to above-max (F + 1); the binners read these rows (no copies)
        self.edges_ext = np.full((n, F + 3), np.nan)
        self.edges_ext[:, : F + 1] = np.array([f.fine_edges for f in num]).reshape(n, F + 1)
        self.fine_edges = self.edges_ext[:, : F + 1]
        # per feature, the faster exact way to find bins (grid lookup on large batches unless heavy-tailed)
        self.binners = Binners(self.edges_ext)
        # the reference's counts never change: kept in the narrowest signed type that holds them
        # (int8/int16 for references up to ~10^5 rows: 0.4-0.8 KB per feature instead of 3.2 KB);
        # every use widens (sums accumulate in int64, tests take floats), files still carry int64
        self.ref_fine = narrowest(np.array([f.fine_counts for f in num], dtype=np.int64).reshape(n, F + 3))
        self.ref_sums = np.array([f.fine_sums for f in num], dtype=np.float64).reshape(n, F + 3)
        _adopt(num, self.edges_ext, self.ref_fine, self.ref_sums)
        std = np.array([f.std for f in num])
        self.spread = np.where(std > 0, std, 1.0)
        self.ref_inf = np.array([[f.neg_infinite, f.infinite - f.neg_infinite] for f in num],
                                dtype=np.int64).reshape(n, 2)
        # constant reference-side pieces of the evaluation, computed once
        self.ref_fine2 = self.ref_fine[:, : F + 2]
        self.ref_sums2 = self.ref_sums[:, : F + 2]
        self.ref_has_inf = bool(self.ref_inf.any())
        self.ks_n = self.ref_fine2.sum(axis=1).astype(np.float64)
        self.w_n = self.ks_n - self.ref_inf.sum(axis=1)
        lower, upper = self.lower, self.upper
        with np.errstate(invalid="ignore"):
            # non-empty reference bins holding a single value (discrete atoms sit on lower edges),
            # kept as bits: 51 bytes per feature instead of 403
            single = (self.ref_fine2 > 0) & (self.ref_sums2 <= self.ref_fine2 * lower)
        self._single_bits = np.packbits(single, axis=1)
        self.atom_rows = np.nonzero(single.any(axis=1))[0]
        self.ref_w_bound = methods.spread_bound(self.ref_fine_w, self.ref_sums2, lower, upper)
        del lower, upper, single
        self.keep = coarse_keep(self.fine_edges, self.B)  # one pass, nothing cached on the features

    def _categorical(self, cat: list[FeatureProfile]) -> None:
        self.Kmax = max((len(f.categories) for f in cat), default=0)
        self.cat_maps = [{c: j for j, c in enumerate(f.categories)} for f in cat]
        self.cat_codes = [CodeTable(m, self.Kmax) for m in self.cat_maps]  # other: the last column
        self.ref_cat = np.zeros((len(cat), self.Kmax + 1), dtype=np.int64)
        for i, f in enumerate(cat):
            k = len(f.categories)
            self.ref_cat[i, :k] = f.category_array[:k]
            self.ref_cat[i, -1] = f.category_array[-1]

    def _joins(self, prof: Profile) -> None:
        """What ties the tracked rows to the profile's calibration, PCA, prediction and label."""
        num, cat = self.num_profiles, self.cat_profiles
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

    def centres(self, flat: np.ndarray) -> np.ndarray:
        """The middle of the fine bin at each flat position of a (rows, F + 3) grid; 0 for the
        open-ended and missing bins (a guess that makes packed sums compress, see _codec)."""
        row, col = np.divmod(flat, self.F + 3)
        inner = (col >= 1) & (col <= self.F)
        col = np.where(inner, col, 1)
        return np.where(inner, self.edges_ext[row, col - 1] * 0.5 + self.edges_ext[row, col] * 0.5, 0.0)

    # ---------------------------------------------------------------- derived, per evaluation
    @property
    def search_edges(self) -> list[np.ndarray]:
        """Per feature, the edges + NaN for ``np.searchsorted(..., "right")`` (views)."""
        return list(self.edges_ext[:, : self.F + 2])

    def _edges_with(self, first: float | None, last: float | None) -> np.ndarray:
        """(n, F + 2): ``first`` (None: the first edge again), the fine edges, ``last`` (None: none)."""
        n, F = len(self.num_names), self.F
        out = np.empty((n, F + 2))
        if last is None:
            out[:, 1:] = self.fine_edges
            out[:, 0] = self.fine_edges[:, 0] if first is None else first
        else:
            out[:, : F + 1] = self.fine_edges
            out[:, F + 1] = last
        return out

    @property
    def lower(self) -> np.ndarray:
        """(n, F + 2) lower edge of each bin: below-min, fine bins, above-max."""
        return self._edges_with(-np.inf, None)

    @property
    def upper(self) -> np.ndarray:
        """(n, F + 2) upper edge of each bin."""
        return self._edges_with(None, np.inf)

    @property
    def ref_fine_w(self) -> np.ndarray:
        """Reference counts per bin without infinities (float), as Wasserstein weighs them."""
        w = self.ref_fine2.astype(np.float64)
        if self.ref_has_inf:
            w[:, 0] -= self.ref_inf[:, 0]
            w[:, self.F + 1] -= self.ref_inf[:, 1]
        return w

    @property
    def ks_props(self) -> np.ndarray:
        return self.ref_fine2 / np.maximum(self.ks_n, 1.0)[:, None]

    @property
    def w_props(self) -> np.ndarray:
        return self.ref_fine_w / np.maximum(self.w_n, 1.0)[:, None] if self.ref_has_inf else self.ks_props

    @property
    def ref_pos(self) -> np.ndarray:
        """Each bin's mean, empty bins at their finite lower edge (the below-min bin: the first
        edge): :func:`methods.bin_positions` of the reference, in two passes instead of six."""
        w = self.ref_fine_w
        pos = self._edges_with(None, None)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(self.ref_sums2, w, out=pos, where=w > 0)
        return pos

    @property
    def ref_coarse(self) -> np.ndarray:
        """(n, bins) int64 reference counts per coarse bin (one reshape-sum of the fine counts)."""
        return coarse_counts(self.ref_fine, self.B) if len(self.ref_fine) else np.zeros((0, self.B), np.int64)

    @property
    def ref_empty(self) -> np.ndarray:
        return self.ref_fine_w == 0

    @property
    def ref_single(self) -> np.ndarray:
        """Non-empty reference bins holding a single value (on its lower edge)."""
        return np.unpackbits(self._single_bits, axis=1, count=self.F + 2).view(bool)

    @property
    def half_width(self) -> np.ndarray:
        """Half of each bin's width; 0 for the open-ended bins (and any infinite width)."""
        out = np.zeros((len(self.num_names), self.F + 2))
        mid = out[:, 1:-1]
        with np.errstate(over="ignore"):
            np.subtract(self.fine_edges[:, 1:], self.fine_edges[:, :-1], out=mid)
        mid *= 0.5
        if not np.isfinite(mid).all():
            mid[~np.isfinite(mid)] = 0.0
        return out


def _adopt(num: list, edges_ext: np.ndarray, counts: np.ndarray, sums: np.ndarray) -> None:
    """Point each numeric feature profile's arrays at its row of the stacked ones (equal values),
    so a profile and its layout hold one copy. Read-only: a profile never changes."""
    F1 = edges_ext.shape[1] - 2
    for arr in (edges_ext, counts, sums):
        arr.flags.writeable = False
    for i, f in enumerate(num):
        object.__setattr__(f, "fine_edges", edges_ext[i, :F1])
        object.__setattr__(f, "fine_counts", counts[i])
        object.__setattr__(f, "fine_sums", sums[i])
