"""The grid-lookup binner equals np.searchsorted exactly (property test), whichever binner is chosen."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from driftcar.stats._binning import LookupBinner, SearchBinner, make_binner

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(edges=st.lists(finite, min_size=16, max_size=120), xs=st.lists(finite, max_size=60), seed=st.integers(0, 99))
def test_lookup_equals_searchsorted(edges, xs, seed):
    e = np.sort(np.array(edges))
    rng = np.random.default_rng(seed)
    picks = e[rng.integers(0, len(e), 10)]
    x = np.concatenate([np.array(xs), picks, np.nextafter(picks, -np.inf), np.nextafter(picks, np.inf),
                        [np.nan, np.inf, -np.inf, e[0], e[-1]], rng.uniform(e[0], e[-1], 30)])
    expected = np.searchsorted(np.concatenate([e, [np.nan]]), x, "right")
    np.testing.assert_array_equal(make_binner(e)(x), expected)
    np.testing.assert_array_equal(SearchBinner(e)(x), expected)


def test_choice_follows_the_data():
    rng = np.random.default_rng(0)
    levels = np.linspace(0, 1, 401)
    normal = np.quantile(rng.normal(size=20_000), levels)
    cauchy = np.quantile(rng.standard_cauchy(20_000), levels)
    assert isinstance(make_binner(normal), LookupBinner) and make_binner(normal).steps <= 3
    assert isinstance(make_binner(cauchy), SearchBinner)  # heavy tails: cells would hold too many edges
    assert isinstance(make_binner(np.zeros(50)), SearchBinner)  # constant: no span


def _edges_ext(rows):
    return np.hstack([np.array(rows), np.full((len(rows), 2), np.nan)])


def test_binners_build_a_table_only_for_large_batches_and_equal_searchsorted():
    from driftcar.stats._binning import LOOKUP_MIN, Binners

    rng = np.random.default_rng(1)
    levels = np.linspace(0, 1, 401)
    ext = _edges_ext([np.quantile(rng.normal(size=5_000), levels), np.quantile(rng.standard_cauchy(5_000), levels)])
    binners = Binners(ext)
    for size in (0, 1, 50, LOOKUP_MIN - 1):
        for row in (0, 1):
            x = rng.normal(size=size) * 3
            np.testing.assert_array_equal(binners(row, x), np.searchsorted(ext[row, :-1], x, "right"))
    assert binners.tables == 0  # small batches never build a table
    x = np.concatenate([rng.normal(size=LOOKUP_MIN) * 3, [np.nan, np.inf, -np.inf], ext[0, :401]])
    np.testing.assert_array_equal(binners(0, x), np.searchsorted(ext[0, :-1], x, "right"))
    np.testing.assert_array_equal(binners(1, x), np.searchsorted(ext[1, :-1], x, "right"))
    assert binners.tables == 2
    assert isinstance(binners._lookup[0], LookupBinner) and isinstance(binners._lookup[1], SearchBinner)
    # the binners read the caller's edges, no copies
    assert np.shares_memory(binners._lookup[0].ext, ext) and np.shares_memory(binners._lookup[1].ext, ext)


def test_a_binner_copies_edges_that_are_not_followed_by_nan():
    e = np.linspace(0, 1, 40)
    ext = np.concatenate([e, [np.nan, 5.0]])  # second pad is not NaN: not usable as is
    b = make_binner(e, ext=ext)
    assert not np.shares_memory(b.ext, ext)
    x = np.array([-1, 0, 0.5, 1, 2, np.nan])
    np.testing.assert_array_equal(b(x), np.searchsorted(np.concatenate([e, [np.nan]]), x, "right"))


def _columns(rng, n):
    """Columns that take each binner: normal-like (lookup), heavy-tailed (searchsorted), integers,
    a constant, with NaN, +-inf and values beyond the reference range mixed in."""
    cols = {"normal": rng.normal(0, 1, n), "skewed": rng.lognormal(0, 1, n), "cauchy": rng.standard_cauchy(n),
            "ints": rng.integers(0, 7, n).astype(float), "const": np.full(n, 3.0), "wide": rng.normal(50, 10, n)}
    return cols


def test_a_batch_binned_as_one_block_equals_its_columns_binned_one_by_one(monkeypatch):
    from driftcar.stats import profile
    from driftcar.stats._binning import Binners

    rng = np.random.default_rng(4)
    prof = profile(_columns(rng, 5_000), multivariate=False)
    blocks = []
    block = Binners.block
    monkeypatch.setattr(Binners, "block", lambda self, rows, x: blocks.append(len(rows)) or block(self, rows, x))
    for n in (1_000, 100):  # lookup tables, and searchsorted below LOOKUP_MIN
        live = _columns(rng, n)
        for name, col in live.items():
            col[rng.integers(0, n, 5)] = np.nan
            col[rng.integers(0, n, 3)] = np.inf
            col[rng.integers(0, n, 3)] = -np.inf
            col[rng.integers(0, n, 3)] *= 1e3  # beyond the reference range, both sides
            edges = prof.layout.fine_edges[prof.layout.where[name][1]]
            col[rng.integers(0, n, 20)] = rng.choice(edges, 20)  # on an edge: the bin above it
        together, alone = prof.new_window(), prof.new_window()
        together.num_counts  # noqa: B018 -- the grid made up front: each batch is binned as it comes
        alone.num_counts  # noqa: B018
        for _ in range(2):
            together.update(live)
            for name, col in live.items():
                alone.update({name: col})
        for arr in ("num_counts", "num_sums", "num_inf", "num_lo", "num_hi"):
            np.testing.assert_array_equal(getattr(together, arr), getattr(alone, arr), err_msg=arr)
        assert together.num_inf.sum() > 0 and np.isfinite(together.num_hi).any()
    assert blocks == [len(prof.layout.num_names)] * 4
    kinds = {prof.layout.binners._built(row).kind for row in range(len(prof.layout.num_names))}
    assert kinds == {"lookup", "searchsorted"}
