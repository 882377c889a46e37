"""Lookup tables are kept only up to a layout's byte budget, except for batches of ``LOOKUP_WIDE``
values or more; rows past it bin by searchsorted, with exactly the same bins (one row at a time and
in blocks)."""

from __future__ import annotations

import numpy as np

from driftcar.stats._binning import LOOKUP_MIN, LOOKUP_WIDE, TABLE_BUDGET, Binners


def _edges(rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ext = np.full((rows, 403), np.nan)
    ext[:, :401] = np.sort(rng.normal(size=(rows, 401)), axis=1)
    return ext


def test_tables_stop_at_the_budget_and_bins_stay_exact():
    ext = _edges(12)
    binners = Binners(ext, budget=10_000)  # room for ~3 tables of 3.2 KB
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, LOOKUP_MIN + 8))
    x[:, ::7] = np.nan
    x[:, 1::9] = np.inf
    for row in range(12):
        np.testing.assert_array_equal(binners(row, x[row]), np.searchsorted(ext[row, :-1], x[row], "right"))
    assert 1 <= binners.tables <= 4 and binners.budget <= 0
    np.testing.assert_array_equal(binners.block(list(range(12)), x),
                                  np.stack([np.searchsorted(ext[r, :-1], x[r], "right") for r in range(12)]))
    assert binners.tables <= 4  # the block builds none past the budget either


def test_the_default_budget_keeps_a_few_hundred_tables_but_wide_batches_get_theirs():
    ext = _edges(400, seed=2)
    binners = Binners(ext)
    rng = np.random.default_rng(3)
    binners.block(list(range(400)), rng.normal(size=(400, LOOKUP_WIDE - 1)))
    held = sum(b.table.nbytes for b in binners._lookup.values() if hasattr(b, "table"))
    assert 20 <= binners.tables < 400 and held <= TABLE_BUDGET + 30_000
    x = rng.normal(size=(400, LOOKUP_WIDE))
    np.testing.assert_array_equal(binners.block(list(range(400)), x),
                                  np.stack([np.searchsorted(ext[r, :-1], x[r], "right") for r in range(400)]))
    assert binners.tables == 400  # where the table pays most (~2x at 1,000 values)


def test_adopt_respects_the_budget():
    ext = _edges(8)
    full = Binners(ext)
    full.block(list(range(8)), np.random.default_rng(4).normal(size=(8, 500)))
    assert full.tables == 8
    small = Binners(ext.copy(), budget=5_000)
    small.adopt(full)
    assert 1 <= small.tables < 8
