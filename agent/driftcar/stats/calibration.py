"""The calibrated decision: a threshold that adapts to both sample sizes and to the reference's own variation.

A window's deciding statistic is compared with the band that no-drift traffic stays in:

- numeric (and ``__multivariate__``): the two-sample KS distance D. With independent rows,
  ``s * D`` follows the Kolmogorov distribution, s = sqrt(en) + 0.12 + 0.11 / sqrt(en) and
  en = n_ref * n_win / (n_ref + n_win) (Stephens 1970): the reference's sampling noise counts
  as much as the window's, so a 265-row reference against 1,200-row windows gets a wide band
  and a 60,000-row reference against 200,000-row windows a narrow one. The band is
  ``sqrt((q / s)^2 + z^2 * tau2)``, q = the Kolmogorov quantile at the per-feature level;
- categorical: the two-sample chi-square statistic (categories whose expected count is
  under 5 on either side pooled, so the chi-square tail holds in small windows); band
  ``crit + en * z^2 * tau2``, crit = the chi-square quantile at the per-feature level.

``tau2`` is the reference's own variation beyond independent sampling, measured when the
profile is built: the reference is cut into chunks in its own (file) order and each chunk is
scored against the rest. If the chunk scores exceed what independent rows give (a one-sided
test at 3 standard errors, passed by chance by about 0.5 % of references of independent rows:
measured in ``tests/unit/stats/test_calibration.py``), ``tau2`` is the mean per-chunk excess
(D^2 - E[K^2] / s^2, or (chi2 - df) / en), else 0: the variance of a window's true distance from
the reference, modelled as normal, hence the factor z^2, z = the two-sided normal quantile at
the per-feature level.
That term does not shrink with the window's size: it keeps a reference that varies within itself
from alarming on every large window (and makes changes of the size it varies by go unflagged).

The per-feature level is ``alpha / m`` (Bonferroni over the m features judged in the window),
so the chance that a no-drift window flags any feature is at most ``alpha``. A floor on the
effect (KS D for numeric, Cohen's w = sqrt(chi2 / en) for categorical) keeps huge windows
from flagging trivia. Detected exactly when statistic >= threshold; the p-value reported is
the one of the statistic under the calibrated null (``alpha / m`` at the band's edge).

Thread safety: pure functions.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from driftcar.stats import methods as M

__all__ = ["numeric_band", "chisquare_band", "pooled_chisquare", "numeric_heterogeneity",
           "categorical_heterogeneity", "KOLMOGOROV_M2", "KOLMOGOROV_SD2", "MIN_EXPECTED"]

#: E[K^2] and sd(K^2) of the Kolmogorov distribution (pi^2 / 12; E[K^4] = 7 pi^4 / 720)
KOLMOGOROV_M2 = np.pi**2 / 12
KOLMOGOROV_SD2 = float(np.sqrt(7 * np.pi**4 / 720 - KOLMOGOROV_M2**2))
#: categories with a smaller expected count on either side are pooled for chi-square
MIN_EXPECTED = 5.0
#: the heterogeneity pre-test: chunk scores this many standard errors above independence
_PRETEST_Z = 3.0


def _en(n_ref: np.ndarray, n_cur: np.ndarray) -> np.ndarray:
    n = np.asarray(n_ref, dtype=np.float64)
    m = np.asarray(n_cur, dtype=np.float64)
    total = n + m
    return np.divide(n * m, total, out=np.zeros(np.broadcast(n, m).shape), where=total > 0)


def _stephens(en: np.ndarray) -> np.ndarray:
    root = np.sqrt(en)
    return root + 0.12 + np.divide(0.11, root, out=np.zeros_like(root), where=root > 0)


def _spread(tau2: np.ndarray, level: np.ndarray) -> np.ndarray:
    """z^2 * tau2: the heterogeneity term at the per-feature level."""
    z = special.ndtri(np.asarray(level, dtype=np.float64) / 2)  # -norm.isf(level / 2): squared below
    return z**2 * np.asarray(tau2, dtype=np.float64)


def numeric_band(d: np.ndarray, n_ref: np.ndarray, n_cur: np.ndarray, tau2: np.ndarray, level: np.ndarray,
                 floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(threshold on D, calibrated p-value) per row; ``level`` is the per-feature alpha.

    With ``tau2 = 0`` and no floor the p-value is :func:`methods.ks_pvalue`'s.

    >>> import numpy as np
    >>> thr, p = numeric_band(np.array([0.05]), 60_000, 20_000, 0.0, 0.01 / 20, 0.0)
    >>> round(float(thr[0]), 4), bool(p[0] < 1e-10)     # 0.1 sd shift: D ~ 0.04 > 0.0166
    (0.0166, True)
    >>> round(float(numeric_band(0.05, 265, 1_200, 0.0, 0.01 / 10, 0.0)[0][0]), 3)   # small reference
    0.131
    """
    d = np.atleast_1d(np.asarray(d, dtype=np.float64))
    s = _stephens(_en(n_ref, n_cur))
    q = special.kolmogi(np.asarray(level, dtype=np.float64))
    noise = np.divide(q, s, out=np.full(np.broadcast(q, s).shape, np.inf), where=s > 0)
    band = np.sqrt(noise**2 + _spread(tau2, level)) + np.zeros_like(d)
    threshold = np.maximum(band, floor)
    z = np.divide(np.asarray(d, dtype=np.float64) * q, band, out=np.zeros(np.broadcast(d, band).shape),
                  where=np.isfinite(band) & (band > 0))
    return threshold, np.clip(special.kolmogorov(z), 0.0, 1.0)


def chisquare_band(stat: np.ndarray, df: np.ndarray, n_ref: np.ndarray, n_cur: np.ndarray, tau2: np.ndarray,
                   level: np.ndarray, floor_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(threshold on the chi-square statistic, calibrated p-value) per row.

    >>> thr, p = chisquare_band(40.0, 1, 60_000, 20_000, 0.0, 0.01 / 20, 0.05)
    >>> round(float(thr[0]), 1), round(float(p[0]), 12) < 1e-6   # floor: 15,000 * 0.05^2 = 37.5
    (37.5, True)
    """
    stat = np.atleast_1d(np.asarray(stat, dtype=np.float64))
    en = _en(n_ref, n_cur)
    df = np.maximum(np.asarray(df, dtype=np.float64), 1.0)
    crit = special.chdtri(df, level)  # = scipy.stats.chi2.isf(level, df), without its per-call overhead
    band = crit + en * _spread(tau2, level) + np.zeros_like(stat)
    threshold = np.maximum(band, en * np.asarray(floor_w, dtype=np.float64) ** 2)
    scaled = np.asarray(stat, dtype=np.float64) * crit / band
    return threshold, np.clip(special.chdtrc(df, scaled), 0.0, 1.0)


def pooled_chisquare(ref: np.ndarray, cur: np.ndarray, min_expected: float = MIN_EXPECTED
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-sample chi-square (statistic, p-value, degrees of freedom) with every category whose
    expected count is under ``min_expected`` on either side pooled into one cell (Cochran's rule)."""
    r = np.asarray(ref, dtype=np.float64)
    c = np.asarray(cur, dtype=np.float64)
    nr = r.sum(axis=-1, keepdims=True)
    nc = c.sum(axis=-1, keepdims=True)
    total = nr + nc
    share = np.divide(r + c, total, out=np.zeros_like(r), where=total > 0)
    small = share * np.minimum(nr, nc) < min_expected
    rp = np.concatenate([np.where(small, 0.0, r), (r * small).sum(axis=-1, keepdims=True)], axis=-1)
    cp = np.concatenate([np.where(small, 0.0, c), (c * small).sum(axis=-1, keepdims=True)], axis=-1)
    stat, p = M.chisquare(rp, cp)
    df = np.maximum(((rp + cp) > 0).sum(axis=-1) - 1, 0)
    return stat, p, df


def _split(chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each chunk, the rest) as (K * rows, bins) float arrays from (K, rows, bins) counts."""
    chunks = np.asarray(chunks, dtype=np.float64)
    rest = chunks.sum(axis=0, keepdims=True) - chunks
    K, rows, bins = chunks.shape
    return chunks.reshape(K * rows, bins), rest.reshape(K * rows, bins)


def numeric_heterogeneity(chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tau2, dispersion) per row from (K, rows, bins) ordered-bin counts of K reference chunks.

    dispersion = mean over chunks of (s * D)^2 / E[K^2]: about 1 for independent rows.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> iid = np.stack([np.bincount(rng.integers(0, 50, 2_000), minlength=50)[None] for _ in range(10)])
    >>> trend = np.stack([np.bincount(np.clip(rng.normal(20 + k, 8, 2_000), 0, 49).astype(int),
    ...                               minlength=50)[None] for k in range(10)])
    >>> [round(float(np.sqrt(numeric_heterogeneity(x)[0][0])), 3) for x in (iid, trend)]
    [0.0, 0.157]
    """
    K, rows, _ = np.shape(chunks)
    if K < 2 or rows == 0:
        return np.zeros(rows), np.ones(rows)
    c, r = _split(chunks)
    fc = M.FineComparison(r, c)
    d = np.where(fc.both, np.abs(fc.cum).max(axis=-1), 0.0).reshape(K, rows)
    s = _stephens(_en(fc.nr, fc.nc)).reshape(K, rows)
    z2 = (s * d) ** 2
    excess = d**2 - np.divide(KOLMOGOROV_M2, s**2, out=np.zeros_like(s), where=s > 0)
    dispersion = z2.mean(axis=0) / KOLMOGOROV_M2
    shows = z2.mean(axis=0) > KOLMOGOROV_M2 + _PRETEST_Z * KOLMOGOROV_SD2 / np.sqrt(K)
    return np.where(shows, np.maximum(excess.mean(axis=0), 0.0), 0.0), dispersion


def categorical_heterogeneity(chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tau2 on Cohen's w^2 scale, dispersion = mean chi2 / df) per row from (K, rows, categories)."""
    K, rows, _ = np.shape(chunks)
    if K < 2 or rows == 0:
        return np.zeros(rows), np.ones(rows)
    c, r = _split(chunks)
    stat, _, df = pooled_chisquare(r, c)
    stat, df = stat.reshape(K, rows), np.maximum(df.reshape(K, rows), 1)
    en = _en(r.sum(axis=-1), c.sum(axis=-1)).reshape(K, rows)
    z = (stat - df) / np.sqrt(2.0 * df)
    excess = np.divide(stat - df, en, out=np.zeros_like(en), where=en > 0)
    shows = z.mean(axis=0) > _PRETEST_Z / np.sqrt(K)
    return np.where(shows, np.maximum(excess.mean(axis=0), 0.0), 0.0), (stat / df).mean(axis=0)
