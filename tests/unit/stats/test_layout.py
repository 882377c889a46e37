"""The layout holds each reference array once (shared with the profile's features) and derives the
rest per evaluation: the derived arrays equal their definitions computed from the profile alone."""

from __future__ import annotations

import numpy as np

from driftcar.stats import Profile, methods, profile

RNG = np.random.default_rng(5)
N = 2_000


def _profile():
    x = RNG.normal(size=N)
    x[::97] = np.inf
    x[1::89] = -np.inf
    return profile({"normal": x, "discrete": RNG.integers(0, 5, N).astype(float),
                    "cat": list(RNG.choice(["a", "b"], N))})


def test_profile_features_share_the_layout_arrays_and_keep_their_values():
    prof = _profile()
    before = prof.to_bytes()
    copy = Profile.from_bytes(before)
    L = prof.layout
    for name, (kind, row) in L.where.items():
        if kind != "numeric":
            continue
        f, g = prof.features.get(name) or prof.pca_error, copy.features.get(name) or copy.pca_error
        for mine, stacked, fresh in ((f.fine_edges, L.fine_edges, g.fine_edges), (f.fine_counts, L.ref_fine, g.fine_counts),
                                     (f.fine_sums, L.ref_sums, g.fine_sums)):
            assert np.shares_memory(mine, stacked)
            assert np.array_equal(mine, fresh)
            # counts held in the narrowest signed type that fits (here int16: the discrete bins hold ~400)
            assert mine.dtype == (np.int16 if stacked is L.ref_fine else fresh.dtype)
            assert not mine.flags.writeable
        assert np.array_equal(f.edges, g.edges) and np.array_equal(f.counts, g.counts)
    assert prof.to_bytes() == before  # same bytes (counts written as int64), same fingerprint


def test_reference_counts_take_the_narrowest_type_that_holds_them():
    from driftcar.stats._layout import narrowest

    for top, dtype in ((0, np.int8), (127, np.int8), (128, np.int16), (32_767, np.int16), (32_768, np.int32),
                       (2**31 - 1, np.int32), (2**31, np.int64)):
        counts = np.array([[0, top, 1]], dtype=np.int64)
        got = narrowest(counts)
        assert got.dtype == dtype and np.array_equal(got.astype(np.int64), counts), top
        assert narrowest(-counts).dtype == dtype  # bad (negative) counts are kept exactly too


def test_derived_reference_arrays_equal_their_definitions():
    prof = _profile()
    L = prof.layout
    F = L.F
    edges = np.array([f.fine_edges for f in L.num_profiles])
    counts = np.array([f.fine_counts for f in L.num_profiles])[:, : F + 2]
    sums = np.array([f.fine_sums for f in L.num_profiles])[:, : F + 2]
    inf = np.array([[f.neg_infinite, f.infinite - f.neg_infinite] for f in L.num_profiles])
    n = len(edges)
    lower = np.hstack([np.full((n, 1), -np.inf), edges])
    upper = np.hstack([edges, np.full((n, 1), np.inf)])
    w = counts.astype(float)
    w[:, 0] -= inf[:, 0]
    w[:, -1] -= inf[:, 1]
    assert L.ref_has_inf
    np.testing.assert_array_equal(L.lower, lower)
    np.testing.assert_array_equal(L.upper, upper)
    np.testing.assert_array_equal(L.ref_fine_w, w)
    np.testing.assert_array_equal(L.ks_props, counts / np.maximum(counts.sum(axis=1), 1)[:, None])
    np.testing.assert_array_equal(L.w_props, w / np.maximum(w.sum(axis=1), 1)[:, None])
    np.testing.assert_array_equal(L.ref_pos, methods.bin_positions(w, sums, lower, upper))
    np.testing.assert_array_equal(L.ref_empty, w == 0)
    full = np.array([f.fine_counts for f in L.num_profiles], dtype=np.int64)
    coarse = full[:, 1: F + 1].reshape(n, L.B, F // L.B).sum(axis=2)
    coarse[:, 0] += full[:, 0]
    coarse[:, -1] += full[:, F + 1]
    assert L.ref_coarse.dtype == np.int64
    np.testing.assert_array_equal(L.ref_coarse, coarse)
    with np.errstate(over="ignore", invalid="ignore"):
        width = upper - lower
        single = (counts > 0) & (sums <= counts * lower)
    np.testing.assert_array_equal(L.half_width, np.where(np.isfinite(width), width / 2, 0.0))
    np.testing.assert_array_equal(L.ref_single, single)
    np.testing.assert_array_equal(L.atom_rows, np.nonzero(single.any(axis=1))[0])
    assert L.where["discrete"][1] in L.atom_rows
    np.testing.assert_array_equal(L.ref_w_bound, methods.spread_bound(w, sums, lower, upper))
    np.testing.assert_array_equal(L.search_edges[0], np.concatenate([edges[0], [np.nan]]))


def test_bin_centres_of_a_flat_grid():
    L = _profile().layout
    F, row = L.F, L.where["normal"][1]
    flat = row * (F + 3) + np.arange(F + 3)
    e = L.fine_edges[row]
    expected = np.concatenate([[0.0], e[:-1] * 0.5 + e[1:] * 0.5, [0.0, 0.0]])
    np.testing.assert_array_equal(L.centres(flat), expected)


def test_coarse_bins_kept_equal_their_definition_from_each_features_edges():
    # "discrete" has repeated fine edges, so some coarse bins are dropped; the layout finds them in one pass
    prof = _profile()
    L = prof.layout
    for name, (kind, row) in L.where.items():
        if kind != "numeric":
            continue
        f = prof.features.get(name) or prof.pca_error
        step = (len(f.fine_edges) - 1) // f.bins
        inner = f.fine_edges[step:-1:step][: f.bins - 1]
        expected = np.concatenate([[True], inner[:-1] < inner[1:], [True]])
        np.testing.assert_array_equal(L.keep[row], expected)
        np.testing.assert_array_equal(f.edges, np.unique(inner))
        assert len(f.counts) == len(f.edges) + 1 and f.counts.sum() == f.n
    assert not L.keep[L.where["discrete"][1]].all()


def test_feature_profiles_and_column_kinds_hold_no_per_instance_dict():
    # one of each per feature name: 50,000 names would hold 50,000 dicts
    prof = _profile()
    for obj in (prof.features["normal"], prof.inference.columns[0]):
        assert not hasattr(obj, "__dict__"), type(obj)


def test_a_loaded_profile_holds_one_string_per_column_name():
    # msgpack decodes each occurrence of a name on its own; loading shares one object per name
    prof = Profile.from_bytes(_profile().to_bytes())
    f = prof.features["normal"]
    key = next(k for k in prof.calibration.tau2 if k == "normal")
    col = next(c for c in prof.inference.columns if c.name == "normal")
    assert key is f.name and col.name is f.name
    assert f.kind is prof.features["discrete"].kind
