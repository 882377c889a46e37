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
