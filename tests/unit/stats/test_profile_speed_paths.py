"""The faster profiling paths give what the straightforward ones gave: categorical columns encoded
once (``Encoded``), fine edges from one sort (numpy's "inverted_cdf" quantiles), the PCA residual
through the components' complement, and the profile built from encoded columns equal to one built
from the raw values by the chunked builder (which encodes chunk by chunk)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from driftcar.stats import ProfileBuilder, profile
from driftcar.stats._columns import CodeTable, Encoded, count_labels
from driftcar.stats.pca import fit_pca
from driftcar.stats.profile import _edges

RNG = np.random.default_rng(11)
LABELS = np.array([f"k{j:02d}" for j in range(20)])


@pytest.mark.parametrize("make", [
    lambda idx: LABELS[idx].astype(object),  # object array of str
    lambda idx: list(LABELS[idx]),  # list of numpy str
    lambda idx: LABELS[idx],  # fixed-width unicode
    lambda idx: LABELS[idx].astype("S"),  # bytes
    lambda idx: idx - 5,  # small-range integers (negative too)
    lambda idx: idx * 1_000_003,  # wide-range integers: np.unique
    lambda idx: idx > 9,  # bools
    lambda idx: np.array([None if i == 3 else float(i) for i in idx], dtype=object),  # numbers + missing
])
def test_encoded_round_trips_and_counts_like_counter(make):
    values = make(RNG.integers(0, 20, 5_000))
    enc = Encoded.of(values)
    assert len(enc) == len(values)
    assert list(enc) == list(values)  # keys[codes] gives every value back
    assert dict(zip(enc.keys, enc.counts().tolist())) == dict(Counter(list(values)))
    assert count_labels(enc) == count_labels(values)
    part = enc[100:250]
    assert list(part) == list(values[100:250])


@pytest.mark.parametrize("values", [
    np.array([2**64 - 1, 3, 3], dtype=np.uint64), np.array([-2**62, 2**62, -2**62]), np.array([], dtype=np.int64),
    np.array([], dtype="U3"), np.array([True]), [], [[1, 2], [1, 2], [3]],  # the last: unhashable, by text
])
def test_encoded_edge_inputs(values):
    enc = Encoded.of(values)
    assert len(enc) == len(values)
    by_text = isinstance(values, list) and bool(values) and isinstance(values[0], list)
    expected = [str(v) for v in values] if by_text else list(values)
    assert list(enc) == expected


def test_fixed_width_text_with_keys_beyond_the_prefix():
    values = LABELS[RNG.integers(0, 3, 10_000)]
    values[-5:] = ["zz", "a", "k01x", "", "k19"]  # unseen in the first 1,000: found by the second round
    enc = Encoded.of(values)
    assert (np.asarray(enc.keys)[enc.codes] == values).all()
    assert sorted(enc.keys) == sorted(set(values.tolist()))


def test_code_table_reads_encoded_columns_like_raw_ones():
    values = np.array(["b", "a", None, "zz", "c", 1, 1.0, float("nan")], dtype=object)
    table = CodeTable({"a": 0, "b": 1, "1": 2}, other=9)
    assert table.codes(Encoded.of(values)).tolist() == CodeTable({"a": 0, "b": 1, "1": 2}, 9).codes(values).tolist()


@pytest.mark.parametrize("n", [1, 2, 7, 399, 400, 401, 4_321, 50_000])
@pytest.mark.parametrize("F", [20, 400, 1_000])
def test_edges_from_one_sort_equal_numpy_inverted_cdf(n, F):
    levels = np.arange(1, F) / F
    x = RNG.normal(size=n) if n % 2 else RNG.integers(0, 5, n).astype(float)  # ties too
    expected = np.quantile(x, levels, method="inverted_cdf")
    got = _edges(x, float(x.min()), float(x.max()), levels)
    assert got[0] == x.min() and got[-1] == np.nextafter(x.max(), np.inf)
    np.testing.assert_array_equal(got[1:-1], np.maximum.accumulate(np.clip(expected, x.min(), x.max())))


@pytest.mark.parametrize("latent", [1, 6, 11])
def test_residual_through_the_complement_equals_the_direct_residual(latent):
    """Both branches (complement when d - k < 2k, direct otherwise) against numpy on the same rows."""
    d = 12
    base = RNG.normal(size=(4_000, latent)) @ RNG.normal(size=(latent, d)) + 0.05 * RNG.normal(size=(4_000, d))
    model = fit_pca(base, tuple(f"x{i}" for i in range(d)), variance=0.9)
    rows = RNG.normal(size=(500, d)) * 2
    z = (rows - model.mean) / model.scale
    v = model.components
    direct = np.sqrt(np.mean((z - z @ v @ v.T) ** 2, axis=1))
    np.testing.assert_allclose(model.errors(rows), direct, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.column_errors(list(rows.T)), direct, rtol=1e-9, atol=1e-12)
    rows[3, 2] = np.nan
    assert np.isnan(model.column_errors(list(rows.T))[3])


def test_profile_from_encoded_columns_equals_the_chunked_builder_on_raw_values():
    n = 6_000
    data = {"x": RNG.normal(size=n), "y": RNG.exponential(size=n),
            "c": list(RNG.choice(["a", "b", "c", None], n, p=[0.5, 0.3, 0.15, 0.05])),
            "k": LABELS[RNG.integers(0, 20, n)].astype(object)}
    one = profile(data, infer=False)
    b = ProfileBuilder()
    chunks = [{k: v[i:i + 1_000] for k, v in data.items()} for i in range(0, n, 1_000)]
    for chunk in chunks:
        b.observe(chunk)
    for chunk in chunks:
        b.count(chunk)
    chunked = b.finish()
    for name in data:
        a, c = one.features[name], chunked.features[name]
        assert (a.kind, a.n, a.missing, a.categories) == (c.kind, c.n, c.missing, c.categories)
        if a.kind == "categorical":
            assert a.category_array.tolist() == c.category_array.tolist()
        else:
            np.testing.assert_array_equal(a.fine_counts, c.fine_counts)
    assert one.pca.onehot == chunked.pca.onehot
    assert one.calibration == chunked.calibration
