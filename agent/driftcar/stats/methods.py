"""Drift statistics on binned counts, vectorized over many features at once.

Every function takes ``ref`` and ``cur``: 2-D arrays of counts, one row per
feature, one column per bin (the same bins on both sides; bins that are empty
on both sides contribute nothing, so padded rows are allowed). They return
float64 arrays with one value per row, always finite.

The bin-based tests (PSI, Jensen–Shannon, Hellinger, chi-square) are exact on
the given bins: they equal the textbook formula / scipy on those counts to
floating-point precision. KS and Wasserstein-1 work on the fine
reference-quantile grid of a sketch and carry an error bound (see
:func:`ks` and :func:`wasserstein`).

Each test is also a small object with one interface, for one feature at a
time: see :mod:`driftcar.stats.drift_tests`.

Thread safety: all functions are pure.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = [
    "PSI_EPS",
    "psi",
    "jensenshannon",
    "hellinger",
    "chisquare",
    "ks",
    "ks_pvalue",
    "wasserstein",
]

#: proportions are floored at this value inside PSI so that a bin empty on one
#: side gives a large but finite contribution (the customary 1e-4)
PSI_EPS = 1e-4


def _proportions(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def _both(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proportions p (ref) and q (cur), and where either side is empty."""
    p = _proportions(ref)
    q = _proportions(cur)
    return p, q, (p.sum(axis=-1) == 0) | (q.sum(axis=-1) == 0)


def psi(ref: np.ndarray, cur: np.ndarray, eps: float = PSI_EPS) -> np.ndarray:
    """Population stability index: sum over bins of (q - p) * ln(q / p).

    p, q are the reference and current bin proportions, floored at ``eps``
    (bins empty on both sides are skipped; an empty side gives 0). Customary reading: < 0.1 stable,
    0.1–0.25 moderate, > 0.25 large shift.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.multinomial(10_000, [0.25] * 4, size=1)
    >>> cur = rng.multinomial(10_000, [0.4, 0.3, 0.2, 0.1], size=1)
    >>> round(float(psi(ref, cur)[0]), 3)
    0.21
    """
    p, q, empty = _both(ref, cur)
    used = (np.asarray(ref) + np.asarray(cur)) > 0
    pe = np.maximum(p, eps)
    qe = np.maximum(q, eps)
    terms = np.where(used, (qe - pe) * np.log(qe / pe), 0.0)
    return np.where(empty, 0.0, terms.sum(axis=-1))


def jensenshannon(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Jensen–Shannon distance (natural log, as ``scipy.spatial.distance.jensenshannon``).

    sqrt((KL(p||m) + KL(q||m)) / 2) with m = (p + q) / 2; in [0, sqrt(ln 2)].
    An empty side gives 0.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.multinomial(10_000, [0.25] * 4, size=1)
    >>> cur = rng.multinomial(10_000, [0.4, 0.3, 0.2, 0.1], size=1)
    >>> round(float(jensenshannon(ref, cur)[0]), 3)
    0.16
    """
    p, q, empty = _both(ref, cur)
    m = (p + q) / 2
    left = special.rel_entr(p, m)
    right = special.rel_entr(q, m)
    div = np.maximum((left + right).sum(axis=-1) / 2, 0.0)
    return np.where(empty, 0.0, np.sqrt(div))


def hellinger(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Hellinger distance sqrt(1 - sum(sqrt(p * q))), in [0, 1]. An empty side gives 0.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.multinomial(10_000, [0.25] * 4, size=1)
    >>> cur = rng.multinomial(10_000, [0.4, 0.3, 0.2, 0.1], size=1)
    >>> round(float(hellinger(ref, cur)[0]), 3)
    0.161
    """
    p, q, empty = _both(ref, cur)
    bc = np.sqrt(p * q).sum(axis=-1)
    return np.where(empty, 0.0, np.sqrt(np.maximum(1.0 - bc, 0.0)))


def chisquare(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-sample chi-square test of homogeneity on a 2 x bins contingency table.

    Returns (statistic, pvalue). Bins empty on both sides are dropped; the
    degrees of freedom are (bins used - 1). Equals
    ``scipy.stats.chi2_contingency([ref, cur], correction=False)`` on the used
    bins. It treats the reference as a sample too, which matters because the
    reference is finite. An empty side or a single used bin gives (0, 1).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.multinomial(1_000, [0.25] * 4, size=1)
    >>> cur = rng.multinomial(1_000, [0.3, 0.25, 0.25, 0.2], size=1)
    >>> stat, p = chisquare(ref, cur)
    >>> round(float(stat[0]), 2), bool(p[0] < 0.05)   # a small shift, not significant
    (3.71, False)
    """
    r = np.asarray(ref, dtype=np.float64)
    c = np.asarray(cur, dtype=np.float64)
    col = r + c
    nr = r.sum(axis=-1, keepdims=True)
    nc = c.sum(axis=-1, keepdims=True)
    total = nr + nc
    er = np.divide(col * nr, total, out=np.zeros_like(col), where=total > 0)
    ec = np.divide(col * nc, total, out=np.zeros_like(col), where=total > 0)
    used = col > 0
    tr = np.divide((r - er) ** 2, er, out=np.zeros_like(col), where=used & (er > 0))
    tc = np.divide((c - ec) ** 2, ec, out=np.zeros_like(col), where=used & (ec > 0))
    stat = (tr + tc).sum(axis=-1)
    dof = used.sum(axis=-1) - 1
    valid = (dof >= 1) & (nr[..., 0] > 0) & (nc[..., 0] > 0)
    stat = np.where(valid, stat, 0.0)
    pvalue = np.where(valid, special.chdtrc(np.maximum(dof, 1), stat), 1.0)
    return stat, pvalue


def ks_pvalue(d: np.ndarray, n_ref: np.ndarray, n_cur: np.ndarray) -> np.ndarray:
    """Two-sided KS p-value: the Kolmogorov limit with Stephens' finite-n correction.

    p = ``scipy.special.kolmogorov((sqrt(en) + 0.12 + 0.11 / sqrt(en)) * d)``,
    en = n*m / (n + m) (Stephens 1970). ``scipy.stats.ks_2samp(method="asymp")``
    uses ``kstwo.sf(d, round(en))``, which costs ~0.1 ms per value, ~36 ms at en = 50,000
    (too slow for 1,000 features per tick; ``benchmarks/bench_stats.py``); at the same d the two differ by < 0.015 absolute
    for en >= 50 and < 0.005 for en >= 500 (checked in tests). Empty sides give 1.

    >>> round(float(ks_pvalue(0.02, 5_000, 50_000)), 4)
    0.052
    """
    d = np.asarray(d, dtype=np.float64)
    n = np.asarray(n_ref, dtype=np.float64)
    m = np.asarray(n_cur, dtype=np.float64)
    total = n + m
    en = np.divide(n * m, total, out=np.zeros(np.broadcast(d, total).shape), where=total > 0)
    root = np.sqrt(en)
    scale = root + 0.12 + np.divide(0.11, root, out=np.zeros_like(root), where=root > 0)
    p = special.kolmogorov(scale * d)
    return np.where(en > 0, np.clip(p, 0.0, 1.0), 1.0)


def atoms(counts: np.ndarray, sums: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Bins whose values all equal the bin's lower edge (empty, or sum <= count * lower edge,
    i.e. mean == lower edge since no value is below it)."""
    counts = np.asarray(counts, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (counts == 0) | (sums <= counts * lower)


def spread_bound(counts: np.ndarray, sums: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per row: sum over bins of p * MAD_max, MAD_max = 2 (m - a)(b - m) / (b - a) being the
    largest mean absolute deviation values in [a, b] with mean m can have (0 for empty,
    single-value or unbounded bins)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    with np.errstate(all="ignore"):  # overflow on extreme values: not finite, dropped below
        mean = sums / counts
        width = hi - lo
        mad = 2.0 * (mean - lo) * (hi - mean) / width
    mad = np.where((counts > 0) & (width > 0) & np.isfinite(mad), np.maximum(mad, 0.0), 0.0)
    out = (counts * mad).sum(axis=-1)
    return np.divide(out, total[..., 0], out=np.zeros_like(out), where=total[..., 0] > 0)


def bin_positions(counts: np.ndarray, sums: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Each bin's mean (sums / counts); empty bins get a point inside the bin (its finite
    lower edge, else its upper edge), which keeps positions ordered across bins."""
    counts = np.asarray(counts, dtype=np.float64)
    lo = np.broadcast_to(lower, counts.shape)
    fallback = np.where(np.isfinite(lo), lo, np.broadcast_to(upper, counts.shape))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, sums / counts, fallback)


class FineComparison:
    """Reference vs current on ordered fine bins (rows = features): the pieces KS and
    Wasserstein share (proportions, CDF difference), computed once. The reference side
    may be given precomputed (``ref_props``, ``ref_n``). Internal."""

    def __init__(self, ref: np.ndarray | None, cur: np.ndarray, ref_props: np.ndarray | None = None,
                 ref_n: np.ndarray | None = None):
        if ref_props is None:
            r = np.asarray(ref, dtype=np.float64)
            ref_n = r.sum(axis=-1)
            ref_props = r / np.maximum(ref_n, 1.0)[..., None]
        self.c = np.asarray(cur, dtype=np.float64)
        self.nr = ref_n
        self.nc = self.c.sum(axis=-1)
        self.p = ref_props
        self.q = self.c / np.maximum(self.nc, 1.0)[..., None]
        self.diff = self.p - self.q
        self.cum = np.cumsum(self.diff, axis=-1)
        self.both = (self.nr > 0) & (self.nc > 0)

    def ks(self, exact: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(D, p-value, bound); ``exact`` marks bins known to hold one value on both sides."""
        d = np.where(self.both, np.abs(self.cum).max(axis=-1), 0.0)
        inside = np.minimum(self.p, self.q)
        if exact is not None:
            inside[exact] = 0.0
        bound = np.where(self.both, inside.max(axis=-1), 0.0)
        return d, ks_pvalue(d, self.nr, self.nc), bound

    def wasserstein(self, ref_pos: np.ndarray, ref_empty: np.ndarray, cur_sums: np.ndarray) -> np.ndarray:
        """Exact W1 between the two distributions with each bin's mass at its mean.

        ``ref_pos``: :func:`bin_positions` of the reference; ``ref_empty``: its empty bins.
        """
        with np.errstate(all="ignore"):  # overflow of extreme values ends as 0 via nan_to_num
            ar = ref_pos.copy()
            ac = cur_sums / self.c
            np.copyto(ac, ar, where=self.c == 0)  # empty current bin: at the reference position
            np.copyto(ar, ac, where=ref_empty)  # empty reference bin: at the current one
            first = np.minimum(ar, ac)
            last = np.maximum(ar, ac, out=ac)
            mid = np.where(ar < last, self.p, -self.q)  # the bin's first atom is the reference's
            mid += self.cum
            mid -= self.diff  # the CDF difference just before the bin, plus the first atom
            np.abs(mid, out=mid)
            last -= first
            dist = _rowdot(mid, last)
            gap = first[..., 1:] - (first[..., :-1] + last[..., :-1])
            dist += _rowdot(np.abs(self.cum[..., :-1]), gap)
        return np.where(self.both, np.nan_to_num(dist), 0.0)


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b) if a.ndim == 2 else (a * b).sum(axis=-1)


def ks(ref: np.ndarray, cur: np.ndarray, ref_sums: np.ndarray | None = None, cur_sums: np.ndarray | None = None,
       lower: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kolmogorov–Smirnov statistic on ordered fine bins: (statistic, pvalue, bound).

    The empirical CDFs are exact at every bin edge, so the returned statistic D
    satisfies D <= D_true <= D + bound, where bound = max over bins of
    min(p_ref, p_cur) (the CDFs can only move that much inside a bin). On
    reference-quantile bins p_ref <= 1/bins for continuous data, so the bound is
    at most 1/bins. With per-bin sums and lower edges, bins holding a single
    value on both sides (the atoms of discrete data, which sit on edges) are
    known exactly and drop out of the bound. The p-value is :func:`ks_pvalue`
    of D, hence conservative (never smaller than that of D_true).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> edges = np.quantile(rng.normal(size=10_000), np.linspace(0, 1, 201))
    >>> ref = np.bincount(np.searchsorted(edges, rng.normal(size=10_000), "right"), minlength=202)
    >>> cur = np.bincount(np.searchsorted(edges, rng.normal(0.25, 1, 5_000), "right"), minlength=202)
    >>> d, p, bound = ks(ref[None], cur[None])
    >>> round(float(d[0]), 2), bool(p[0] < 1e-6), bool(bound[0] <= 0.01)
    (0.11, True, True)
    """
    exact = None
    if ref_sums is not None and cur_sums is not None and lower is not None:
        exact = atoms(ref, ref_sums, lower) & atoms(cur, cur_sums, lower)
    return FineComparison(ref, cur).ks(exact)


def wasserstein(
    ref: np.ndarray,
    cur: np.ndarray,
    ref_sums: np.ndarray,
    cur_sums: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    cur_lower: np.ndarray | None = None,
    cur_upper: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Wasserstein-1 distance from per-bin counts and sums: (distance, bound).

    Each bin's mass is placed at its mean (sum / count), on both sides, and the
    exact W1 between the two resulting discrete distributions is returned.
    By the triangle inequality the error against W1 of the raw data is at most
    sum over bins of p * MAD_max, on each side, where MAD_max = 2 (m - a)(b - m)
    / (b - a) is the largest mean absolute deviation a bin [a, b] with mean m
    allows (0 for single-value bins). That sum is returned as ``bound``.
    ``lower``/``upper`` are each bin's bounds; ``cur_lower``/``cur_upper``
    optionally replace infinite ones for the current side (its observed
    min/max), else open-ended bins are not covered by the bound.

    >>> import numpy as np
    >>> e = np.array([[0.0, 1.0]])            # one bin [0, 1)
    >>> w, b = wasserstein(np.array([[2.0]]), np.array([[2.0]]), np.array([[0.4]]),
    ...                    np.array([[1.4]]), e[:, :1], e[:, 1:])
    >>> round(float(w[0]), 12), round(float(b[0]), 12)   # means 0.2 and 0.7; MAD_max 0.32 + 0.42
    (0.5, 0.74)
    """
    fc = FineComparison(ref, cur)
    ref_counts = np.asarray(ref, dtype=np.float64)
    dist = fc.wasserstein(bin_positions(ref_counts, np.asarray(ref_sums, dtype=np.float64), lower, upper),
                          ref_counts == 0, np.asarray(cur_sums, dtype=np.float64))
    clo = lower if cur_lower is None else cur_lower
    chi = upper if cur_upper is None else cur_upper
    bound = spread_bound(ref, ref_sums, lower, upper) + spread_bound(cur, cur_sums, clo, chi)
    return dist, np.where(fc.both, np.nan_to_num(bound), 0.0)
