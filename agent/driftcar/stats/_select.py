"""Exact order statistics at a few hundred ranks without sorting every value (internal).

A profile's fine edges are ~400 order statistics per column. Sorting the column costs
n log n; this reads them off a counting pass instead: each value goes to one of ~n uniform
cells between two sample quantiles (values outside go to the end cells), the cumulative
cell counts say which cell holds each wanted rank, and only the values of those cells
(~1,500 of 50,000 on normal data) are sorted. Exact because the cell of a value is a monotone
function of it (subtraction, multiplication by a positive number, clipping and truncation all
preserve order under IEEE rounding): every value of a lower cell is <= every value of a higher
one, so the k-th smallest value is the (k - values in lower cells)-th of its own cell.
Measured 0.3 ms against 1.7 ms for ``np.sort`` at 50,000 normal values, 2 ms against 8.5 at
200,000 (``benchmarks/bench_verdicts.py``, speed). Columns whose wanted cells would hold many
values (a point mass, very heavy tails, few distinct values) are sorted as before: a sample
of 1,024 values predicts that before the counting pass.
"""

from __future__ import annotations

import numpy as np

__all__ = ["order_statistics"]

SORT_BELOW = 4_096  # fewer values: one sort is as fast
_SAMPLE = 1_024


def order_statistics(x: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """``np.sort(x)[ranks]`` for finite float64 ``x`` and sorted int ``ranks`` (exactly)."""
    n = len(x)
    grid = _grid(x, len(ranks)) if n >= SORT_BELOW else None
    if grid is None:
        return np.sort(x)[ranks]
    lo, scale, cells = grid
    with np.errstate(over="ignore"):  # an infinite product is clipped to the last cell like any large one
        g = x - lo
        g *= scale
    np.clip(g, 0, cells - 1, out=g)
    cell = g.astype(np.intp)
    del g
    cum = np.bincount(cell, minlength=cells)
    np.cumsum(cum, out=cum)
    at = np.searchsorted(cum, ranks, "right")  # the cell holding each rank
    need = np.zeros(cells, bool)
    need[at] = True
    chosen = x[need.take(cell)]
    if len(chosen) > n // 4:  # the sample misjudged the column: sorting everything is as fast
        return np.sort(x)[ranks]
    cells_kept = np.flatnonzero(need)
    size = cum[cells_kept] - np.where(cells_kept > 0, cum[cells_kept - 1], 0)
    start = np.cumsum(size) - size  # where each kept cell begins in the sorted selection
    below = np.where(at > 0, cum[at - 1], 0)  # values in the cells before each rank's cell
    return np.sort(chosen)[start[np.searchsorted(cells_kept, at)] + ranks - below]


def _grid(x: np.ndarray, targets: int) -> tuple[float, float, int] | None:
    """(low end, cells per unit, cells) of a grid whose wanted cells should hold at most an
    eighth of the values, or None. From a strided sample: its local spacing (over 8 sample steps)
    estimates how many values share one cell near each sample point."""
    n = len(x)
    s = np.sort(x[:: max(n // _SAMPLE, 1)])
    per = len(s)
    lo, hi = float(s[2]), float(s[-3])  # the outermost sample values left out: one outlier cannot stretch the grid
    if not hi > lo or not np.isfinite(hi - lo):
        return None
    cells = n
    scale = cells / (hi - lo)
    if not np.isfinite(scale):
        return None
    spacing = np.maximum((s[8:] - s[:-8]) / 8, np.finfo(np.float64).tiny)
    load = np.minimum(n / per / (scale * spacing), 8 * n / per)  # values per cell near each sample point
    return (lo, scale, cells) if float(load.mean()) * targets <= n / 8 else None
