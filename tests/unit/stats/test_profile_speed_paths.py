"""The faster profiling paths give what the straightforward ones gave: categorical columns encoded
once (``Encoded``), object columns coded by object identity, fine edges from one sort or a counting
pass (numpy's "inverted_cdf" quantiles), the PCA residual
through the components' complement, and the profile built from encoded columns equal to one built
from the raw values by the chunked builder (which encodes chunk by chunk)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from driftcar.stats import ProfileBuilder, profile
from driftcar.stats._columns import CodeTable, Encoded, count_labels, identity_codes
from driftcar.stats._select import SORT_BELOW, _grid, order_statistics
from driftcar.stats.pca import fit_pca, fit_pca_columns
from driftcar.stats.profile import _edges

RNG = np.random.default_rng(11)
LABELS = np.array([f"k{j:02d}" for j in range(20)])
OBJECTS = LABELS.astype(object)  # one str object per label, shared by every row that indexes it


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


def _ranks(n: int, F: int = 400) -> np.ndarray:
    return (n * np.arange(1, F, dtype=np.int64) + F - 1) // F - 1


@pytest.mark.parametrize("make, counted", [
    (lambda n: RNG.normal(size=n), True),
    (lambda n: RNG.exponential(size=n), True),
    (lambda n: RNG.standard_t(3, size=n), True),  # tails beyond the grid: clipped into its end cells
    (lambda n: np.concatenate([RNG.normal(size=n - 2), [1e308, -1e308]]), True),  # products overflow
    (lambda n: RNG.random(n).round(3), True),  # ties inside cells
    (lambda n: RNG.lognormal(0, 2.5, n), False),  # too skewed for a uniform grid: sorted
    (lambda n: np.where(RNG.random(n) < 0.3, 0.0, RNG.normal(size=n)), False),  # a point mass
    (lambda n: RNG.integers(0, 5, n).astype(float), False),  # few distinct values
    (lambda n: np.full(n, 2.5), False),
])
@pytest.mark.parametrize("n", [4_095, 4_096, 50_000, 200_001])
def test_order_statistics_equal_a_full_sort(make, counted, n):
    x = make(n)
    np.testing.assert_array_equal(order_statistics(x, _ranks(n)), np.sort(x)[_ranks(n)])
    if n >= 50_000:  # the path the sample predicts (both must be exercised to be tested)
        assert (_grid(x, 399) is not None) == counted


def test_order_statistics_when_the_sample_misjudges_the_column():
    """A column whose strided sample looks smooth but whose wanted cells are crowded is sorted."""
    x = RNG.normal(size=50_000)
    stride = len(x) // 1_024
    x[np.arange(len(x)) % stride > stride // 2] = 0.125  # half the rows, none of them in the sample
    assert _grid(x, 399) is not None
    np.testing.assert_array_equal(order_statistics(x, _ranks(len(x))), np.sort(x)[_ranks(len(x))])


@pytest.mark.parametrize("n", [4_321, 50_001])
def test_edges_equal_numpy_inverted_cdf_off_exact_levels(n):
    """Odd n with normal data (no level times n is a whole number here, where numpy's float
    level arithmetic can round up a rank)."""
    x = RNG.normal(size=n)
    levels = np.arange(1, 400) / 400
    got = _edges(x, float(x.min()), float(x.max()), levels)[1:-1]
    np.testing.assert_array_equal(got, np.quantile(x, levels, method="inverted_cdf"))


@pytest.mark.parametrize("make, shared", [
    (lambda idx: OBJECTS[idx], True),  # shared objects (numpy fancy indexing)
    (lambda idx: LABELS[idx].astype(object), False),  # one new str per element
    (lambda idx: list(OBJECTS[idx]), True),  # a list of shared objects
    (lambda idx: np.array([str(s) for s in LABELS[idx]], dtype=object), False),  # equal text, distinct objects
    (lambda idx: np.array([LABELS[i] if i % 3 else "k%02d" % i for i in idx], dtype=object), False),  # mixed
    (lambda idx: np.array([None if i == 0 else 0.5 if i == 1 else OBJECTS[i] for i in idx],
                          dtype=object), True),
])
def test_identity_codes_equal_one_lookup_per_value(make, shared):
    idx = RNG.integers(0, 20, 30_000)
    values = make(idx)
    values[-1] = "new-at-the-end"  # beyond the first 1,024 rows: found by a second round
    table = CodeTable({f"k{j:02d}": j for j in range(0, 20, 2)}, other=99)
    expected = [CodeTable(dict(table), 99)[v] for v in values]
    assert table.codes(values).tolist() == expected
    numbering: dict = {}
    got = identity_codes(values, lambda v: numbering.setdefault(v, len(numbering)))
    assert (got is not None) == shared
    keys = list(dict.fromkeys(values))  # first-seen order, as a dict numbers them
    if shared:
        assert [keys[c] for c in got.tolist()] == list(values)
        assert list(numbering) == keys
    enc = Encoded.of(values)
    assert list(enc) == list(values) and enc.keys == keys


def test_identity_codes_give_up_on_many_distinct_objects():
    values = np.array([f"v{i}" for i in range(10_000)], dtype=object)
    assert identity_codes(values, lambda v: 0) is None
    assert identity_codes(values[:100], lambda v: 0) is None  # short: per value is as fast
    assert Encoded.of(values).keys == values.tolist()


def test_fit_in_place_on_columns_equals_fit_pca():
    """The profile's in-place fit on a (d, rows) array against fit_pca on the same rows."""
    z = RNG.normal(size=(6_000, 2))
    rows = np.hstack([z @ RNG.normal(size=(2, 5)) + 0.1 * RNG.normal(size=(6_000, 5)) + 1e3,
                      (RNG.random((6_000, 2)) < 0.3).astype(float)])
    names, onehot = tuple(f"x{i}" for i in range(5)), (("c", ("a", "b")),)
    expected = fit_pca(rows, names, 0.9, onehot)
    columns = np.ascontiguousarray(rows.T)
    got = fit_pca_columns(columns, names, 0.9, onehot)
    assert not np.array_equal(columns, rows.T)  # overwritten: centred and scaled
    np.testing.assert_allclose(got.mean, expected.mean, rtol=1e-12)
    np.testing.assert_allclose(got.scale, expected.scale, rtol=1e-10)
    assert got.components.shape == expected.components.shape and got.onehot == onehot
    np.testing.assert_allclose(np.abs(got.components.T @ expected.components), np.eye(got.components.shape[1]),
                               atol=1e-8)  # the same directions (up to sign)
    np.testing.assert_allclose(got.errors(rows[:500]), expected.errors(rows[:500]), rtol=1e-8)


def test_code_table_memo_across_batches():
    """Batches repeating the same objects reuse the memo; fresh objects (whose addresses may be
    those of freed ones) and new labels still get their own codes."""
    table = CodeTable({f"k{j:02d}": j for j in range(20)}, other=99)
    for batch in range(6):
        if batch % 2:  # fresh str objects every other batch, some labels unknown
            objects = np.array(["k%02d" % j if j < 20 else f"x{batch}{j}" for j in range(24)], dtype=object)
        else:
            objects = OBJECTS
        idx = RNG.integers(0, len(objects), 5_000)
        values = objects[idx]
        assert table.codes(values).tolist() == [j if j < 20 else 99 for j in idx.tolist()]
        del objects, values  # the batch's objects may be freed: the memo keeps the ones it refers to
    assert table._identity[0] is not None
