"""PCA reconstruction error: the multivariate drift signal.

Fitted on the reference's numeric features that are at most half missing and
on one-hot indicators of each categorical feature's most frequent categories
(``onehot``: up to 10 per feature with at least 1 % of the rows, after the most
frequent one, which like a missing or rarer value is all zeros), all standardised by their reference mean and standard
deviation, using the rows where every numeric one is finite, with numpy's eigh of their Gram
matrix (the right singular vectors, for a fraction of an SVD's cost), keeping the fewest components that
explain ``variance`` of the variance (at least 1, at most d - 1 so that an
error remains). A row's error is the RMS of its standardised residual; live
rows with a missing or infinite value in these features are skipped (missing
values are watched per feature instead).
Correlation changes that leave every marginal intact raise the error, which
is what per-feature tests cannot see: between numeric features, between a
numeric feature and a frequent category, or between frequent categories of two
features. It cannot see changes among the categories it does not encode, or a
shift along the kept components that stays within their reference spread.

Thread safety: immutable after :func:`fit_pca`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["PCAModel", "fit_pca", "fit_pca_columns"]


@dataclass(frozen=True)
class PCAModel:
    """Fitted PCA: ``features`` (names in column order), ``mean``/``scale`` (d,),
    ``components`` (d, k), ``explained`` (share of variance kept), ``variance`` (the
    target share it was fitted for; None when not recorded)."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray
    explained: float
    variance: float | None = None
    onehot: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def columns(self) -> int:
        """Matrix columns: the numeric features, then one indicator per encoded category."""
        return len(self.features) + sum(len(labels) for _, labels in self.onehot)

    @property
    def capped(self) -> bool:
        """True when the variance target needed all d components and d - 1 were kept."""
        k, d = self.components.shape[1], self.columns
        return k == d - 1 and self.variance is not None and self.explained < self.variance - 1e-12

    def errors(self, matrix: np.ndarray) -> np.ndarray:
        """Per-row RMS reconstruction error of ``matrix`` (rows, d); finite for any input.

        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> z = rng.normal(size=(2_000, 1))
        >>> ref = np.hstack([z, z + 0.1 * rng.normal(size=(2_000, 1))])   # two correlated columns
        >>> model = fit_pca(ref, ("a", "b"), variance=0.9)
        >>> broken = np.hstack([z, rng.normal(size=(2_000, 1))])          # same marginals, no correlation
        >>> bool(model.errors(broken).mean() > 5 * model.errors(ref).mean())
        True
        """
        z = (np.asarray(matrix, dtype=np.float64) - self.mean) / self.scale
        z = np.where(np.isfinite(z), z, np.where(np.isnan(z), 0.0, np.sign(z) * 1e6))
        return self._rms_residual(np.ascontiguousarray(z.T))

    @cached_property
    def _residual_basis(self) -> tuple[np.ndarray, bool]:
        """(basis, True) of the components' orthogonal complement when projecting on it is the
        cheaper product (d - k < 2k; the residual's norm is then ||W^T z||, exact, no
        subtraction), else (components, False)."""
        v = self.components
        d, k = v.shape
        if d - k >= 2 * k:
            return v, False
        u = np.linalg.svd(v, full_matrices=True)[0]
        return np.ascontiguousarray(u[:, k:]), True

    def column_errors(self, columns) -> np.ndarray:
        """Per-row error from one float64 array per feature (in ``features`` order) or a (d, rows)
        array, the sketch's fast path: a row with a NaN or infinity gets NaN (the sketch counts
        it as missing)."""
        if isinstance(columns, np.ndarray):
            z = columns - self.mean[:, None]
        else:
            z = np.vstack(columns)  # (d, rows), contiguous per feature
            z -= self.mean[:, None]
        z *= (1.0 / self.scale)[:, None]
        return self._rms_residual(z)

    def _rms_residual(self, z: np.ndarray) -> np.ndarray:
        """Per-column RMS of the residual of standardised (d, rows) data."""
        with np.errstate(invalid="ignore", over="ignore"):
            # einsum, not matmul: these skinny products take a few ms of one core, and BLAS threads
            # waiting on a busy machine made them up to 10x slower in wall time
            # (benchmarks/bench_verdicts.py, speed: profile + 11 evaluations 0.63 s -> 0.19 s)
            w, complement = self._residual_basis
            if complement:
                resid = np.einsum("dk,dn->kn", w, z)
            else:
                resid = z - np.einsum("dk,kn->dn", w, np.einsum("dk,dn->kn", w, z))
            err = np.sqrt(np.einsum("ij,ij->j", resid, resid) / z.shape[0])
        err[np.isinf(err)] = np.nan  # an infinite input can come out inf rather than NaN: missing all the same
        return err


    def coded_errors(self, columns: list[np.ndarray], coded: list[tuple[np.ndarray, tuple[int, ...]]]) -> np.ndarray:
        """:meth:`column_errors` with the indicators given as codes: ``coded`` holds, per ``onehot``
        feature in order, each row's code and the code of each of its indicators. Same values up to
        rounding (the order of the additions differs: within 1e-12 relative of the indicator columns'
        route, ``tests/unit/stats/test_pca_column_errors.py``).

        Why: on the complement route an indicator's contribution is a column of U / scale picked by
        the row's code, so no indicator column is built or stacked (35 of the 55 rows at 20 numeric
        + 5 str features, ``benchmarks/bench_sidecar.py``); and the features' codes are folded into
        joint codes of a few features (:meth:`_code_tables`), so a row's whole categorical part is 2
        gathers rather than 5: ~43 -> ~20 µs per 1,000 rows of the ingest worker's 16,000-row batches,
        this call ~96-106 -> ~76-87 µs (the old and the new code in turn in one process on a shared
        machine, ``time.thread_time``, least of 200 calls, OPENBLAS_NUM_THREADS=1; callgrind: 24.7M ->
        17.9M instructions a 16,000-row call); the rest is the numeric product (~46 µs: einsum, see
        :meth:`_rms_residual`) and the norm (~10 µs).
        """
        tables = self._code_tables(tuple(cs for _, cs in coded))
        if tables is None:
            return self.column_errors(list(columns) + [(c == k).astype(np.float64) for c, cs in coded for k in cs])
        weights, offset, groups = tables
        n = len(columns[0]) if columns else len(coded[0][0])
        with np.errstate(invalid="ignore", over="ignore"):
            acc = np.einsum("dm,dn->mn", weights, np.vstack(columns)) if columns else np.zeros((len(offset), n))
            if not groups:
                acc -= offset[:, None]
            for members, table in groups:  # the offset is in the first group's table
                joint = 0
                for f, (shift, lut) in members:
                    codes = coded[f][0]
                    joint = lut.take(codes + 1 if shift else codes, mode="clip") + joint
                acc += table.take(joint, axis=1)  # (with out=, 1.6x slower)
            err = np.sqrt(np.einsum("ij,ij->j", acc, acc) / self.columns)
        err[np.isinf(err)] = np.nan
        return err

    def _code_tables(self, code_sets: tuple) -> tuple | None:
        """(U / scale of the numeric rows, U^T mean / scale, groups), cached per code sets; None off
        the complement route. A group is a few features whose codes make one joint code (at most
        ``_JOINT_CODES`` of them): ((feature, (shift, joint code per code + shift, clipped)), ...) and
        the (m, joint codes) table of their indicators' summed columns (the first also minus the offset).
        A code of -1 (missing) or beyond the encoded ones clips to a slot of zeros: with ``shift`` 0 (code 0
        not encoded: the most frequent category, dropped) -1 clips to code 0's, itself zeros."""
        cache = self.__dict__.setdefault("_tables", {})
        if code_sets not in cache:
            u, complement = self._residual_basis
            if not complement:
                cache[code_sets] = None
            else:
                w = u / self.scale[:, None]
                n = len(self.features)
                offset = w.T @ self.mean
                cache[code_sets] = (np.ascontiguousarray(w[:n]), offset, self._joint_groups(code_sets, w[n:], offset))
        return cache[code_sets]

    def _joint_groups(self, code_sets: tuple, w: np.ndarray, offset: np.ndarray) -> list:
        """The groups of :meth:`_code_tables` from the indicators' rows ``w`` of U / scale."""
        per_feature, row = [], 0
        for cs in code_sets:
            shift = int(0 in cs)
            table = np.zeros(((max(cs) if cs else 0) + 2 + shift, w.shape[1]))  # (slots, m)
            for k in cs:
                table[k + shift] = w[row]
                row += 1
            per_feature.append((shift, table))
        groups, f = [], 0
        while f < len(per_feature):
            members, table = [], -offset[None, :] if not groups else np.zeros((1, w.shape[1]))
            while f < len(per_feature) and (not members or len(table) * len(per_feature[f][1]) <= _JOINT_CODES):
                shift, t = per_feature[f]
                members.append((f, (shift, np.zeros(len(t), dtype=np.intp))))  # filled below
                table = (table[:, None, :] + t[None, :, :]).reshape(-1, w.shape[1])
                f += 1
            stride = 1
            for g, (shift, lut) in reversed(members):  # the last feature varies fastest
                size = len(per_feature[g][1])
                lut[:] = np.arange(size) * stride
                stride *= size
            groups.append((members, np.ascontiguousarray(table.T)))
        return groups


# joint codes per group: a (m, 1,000) table of float64 is ~80 KiB at m = 10, held in L2
_JOINT_CODES = 1_000


def fit_pca(matrix: np.ndarray, features: tuple[str, ...], variance: float = 0.9,
            onehot: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> PCAModel:
    """Fit on ``matrix`` (rows, d >= 2: ``features`` then ``onehot`` indicators); see the module docstring."""
    if not 0.0 < variance <= 1.0:
        raise ValueError(f"variance must be in (0, 1], got {variance}")
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"PCA needs a (rows, d >= 2) matrix, got shape {x.shape}")
    if len(x) and np.isfinite(x).all():  # (what the profile passes): no NaN-aware passes needed
        mean = x.mean(axis=0)
        zt = x.T - mean[:, None]  # (d, rows): contiguous when x is a transposed (d, rows) array
        scale = np.sqrt(np.einsum("ij,ij->i", zt, zt) / len(x))  # = x.std(axis=0), from zt
        return _fit(zt, mean, scale, features, variance, onehot, centred=True)
    finite = np.where(np.isfinite(x), x, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-missing columns: handled below
        mean = np.nan_to_num(np.nanmean(finite, axis=0)) if len(x) else np.zeros(x.shape[1])
        scale = np.nan_to_num(np.nanstd(finite, axis=0)) if len(x) else np.ones(x.shape[1])
    return _fit(finite, mean, scale, features, variance, onehot)


def fit_pca_columns(columns: np.ndarray, features: tuple[str, ...], variance: float = 0.9,
                    onehot: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> PCAModel:
    """:func:`fit_pca` of ``columns.T`` for a finite float64 (d, rows) array, which it overwrites
    (centred and scaled in place): the profile's path, one (d, rows) copy and one pass fewer."""
    if not 0.0 < variance <= 1.0:
        raise ValueError(f"variance must be in (0, 1], got {variance}")
    if columns.ndim != 2 or columns.shape[0] < 2 or columns.dtype != np.float64:
        raise ValueError(f"PCA needs a float64 (d >= 2, rows) array, got {columns.dtype} {columns.shape}")
    if not columns.shape[1]:
        return fit_pca(columns.T, features, variance, onehot)
    mean = columns.mean(axis=1)
    columns -= mean[:, None]
    scale = np.sqrt(np.einsum("ij,ij->i", columns, columns) / columns.shape[1])
    return _fit(columns, mean, scale, features, variance, onehot, centred=True)


def _fit(x: np.ndarray, mean: np.ndarray, scale: np.ndarray, features, variance: float, onehot,
         centred: bool = False) -> PCAModel:
    """``x``: the (rows, d) data, or with ``centred`` the finite (d, rows) data minus ``mean``
    (then scaled in place)."""
    scale = np.where(scale > 0, scale, 1.0)
    zt = x if centred else x.T - mean[:, None]  # (d, rows)
    zt *= (1.0 / scale)[:, None]
    if not centred:
        np.nan_to_num(zt, copy=False)
    d = zt.shape[0]
    if zt.shape[1] < 2:
        comps = np.eye(d)[:, :1]
        return PCAModel(tuple(features), mean, scale, comps, 0.0, variance, tuple(onehot))
    # the right singular vectors of z are the eigenvectors of its Gram matrix (d x d): 12x less
    # CPU than an SVD of the rows on 25,000 x 110 (benchmarks/bench_stats.py, "PCA fit")
    var, vecs = np.linalg.eigh(zt @ zt.T)
    var, vt = np.maximum(var[::-1], 0.0), vecs[:, ::-1].T
    total = var.sum()
    share = np.cumsum(var) / total if total > 0 else np.ones_like(var)
    k = int(np.searchsorted(share, variance - 1e-12) + 1)
    k = max(1, min(k, d - 1))
    return PCAModel(tuple(features), mean, scale, np.ascontiguousarray(vt[:k].T), float(share[k - 1]),
                    variance, tuple(onehot))
