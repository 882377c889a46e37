"""A new window keeps its numeric values unbinned while they take less memory than the grid, and any
read of the grid bins them: bit for bit what binning each batch as it came gives."""

from __future__ import annotations

import numpy as np
import pytest

from driftcar.stats import profile
from driftcar.stats.sketch import COUNT_LIMIT

RNG = np.random.default_rng(9)
PROFILE = profile({"a": RNG.normal(size=3_000), "b": RNG.exponential(size=3_000), "d": RNG.integers(0, 5, 3_000),
                   "c": [f"v{i % 6}" for i in range(3_000)]})


def _batches(n: int, rows: int) -> list[dict]:
    rng = np.random.default_rng(n * 1_000 + rows)
    out = []
    for _ in range(n):
        a = rng.normal(0.2, 1.5, rows)
        a[rng.random(rows) < 0.1] = np.nan
        a[rng.random(rows) < 0.05] = np.inf
        a[rng.random(rows) < 0.05] = -40.0  # below the reference's min
        out.append({"a": a, "b": list(rng.exponential(size=rows)) + ["x"] * 0, "d": rng.integers(0, 7, rows),
                    "c": [f"v{i % 8}" for i in range(rows)]})
    return out


def _dense_window():
    w = PROFILE.new_window()
    w.num_counts  # noqa: B018 -- a read makes the grid: every later batch is binned as it comes
    return w


@pytest.mark.parametrize("n, rows", [(1, 20), (15, 7), (3, 500)])
def test_buffered_values_bin_to_the_same_bytes(n, rows):
    lazy, dense = PROFILE.new_window(), _dense_window()
    for batch in _batches(n, rows):
        lazy.update(batch)
        dense.update(batch)
    held = lazy._pending_bytes
    assert held <= lazy._dense_bytes
    assert lazy._buffering == (n * rows * 8 * 4 < lazy._dense_bytes)  # a 500-row batch: dense at once
    assert lazy.to_bytes() == dense.to_bytes()
    assert not lazy._buffering and not lazy._pending


def test_any_grid_array_read_first_sees_every_value():
    for name in ("num_inf", "num_lo", "num_hi", "num_sums"):
        w = PROFILE.new_window()
        for batch in _batches(4, 30):
            w.update(batch)
        got = getattr(w, name).copy()
        ref = _dense_window()
        for batch in _batches(4, 30):
            ref.update(batch)
        assert np.array_equal(got, getattr(ref, name)), name
    assert w.feature("a").infinite == ref.feature("a").infinite > 0
    assert w.feature("a").low == -40.0


def test_a_caller_changing_its_array_later_changes_nothing():
    values = np.linspace(-1.0, 1.0, 20)
    w = PROFILE.new_window()
    w.update({"a": values})
    values[:] = 99.0
    assert w.feature("a").out_of_range == 0 and abs(w.feature("a").sum) < 1e-9


def test_merge_and_pack_of_a_buffered_window():
    a, b = PROFILE.new_window(), PROFILE.new_window()
    a.update(_batches(1, 10)[0])
    b.update(_batches(2, 10)[1])
    merged = a.merge(b)
    assert merged.rows == 20 and merged.feature("a").n + merged.feature("a").missing == 20
    c = PROFILE.new_window()
    c.update(_batches(1, 10)[0])
    assert c.pack() == a.pack()


def test_counts_past_the_int32_limit_while_buffered():
    w = PROFILE.new_window()
    w.update({"a": [0.5]})
    w.count_bound = COUNT_LIMIT  # as if 2**31 - 1 rows had been added
    w.update({"a": [0.25]})
    assert w._buffering and w.cat_counts.dtype == np.int64
    assert w.num_counts.dtype == np.int64 and w.feature("a").n == 2


def test_the_buffer_never_outgrows_the_grid():
    w = PROFILE.new_window()
    for _ in range(400):
        w.update({"a": [0.1]})  # one value per batch: each costs its array too
        assert w._pending_bytes <= w._dense_bytes
    assert not w._buffering  # passed the bound: binned, and dense since
    assert w.feature("a").n == 400


def test_a_window_read_back_then_updated_bins_into_its_arrays():
    w = PROFILE.new_window()
    w.update(_batches(1, 10)[0])
    again = type(w).from_bytes(w.to_bytes(), PROFILE)
    for batch in _batches(3, 5):
        again.update(batch)
        w.update(batch)
    assert again.to_bytes() == w.to_bytes() and again.feature("a").n + again.feature("a").missing == 25


def test_a_series_bins_a_window_when_it_closes_it():
    from driftcar.stats import WindowSeries

    series = WindowSeries(PROFILE, length_s=60, keep=3)
    series.update(_batches(1, 10)[0])
    assert series.current._buffering
    closed = series.close(0, 1)
    assert not closed._buffering and not series.closed[-1].sketch._buffering
    series.update({"a": [0.5]}, rows=0)  # a batch counted as no rows: not kept, binned all the same
    assert not series.close(1, 2)._buffering
    series.add({"a": [0.5]}, now=10.0)
    (rolled,) = series.add({"a": [0.5]}, now=70.0)
    assert not rolled.sketch._buffering and rolled.sketch.feature("a").n == 1
