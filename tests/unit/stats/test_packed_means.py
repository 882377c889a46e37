"""The v5 packed form (``WindowSketch.pack(exact=False, bits=..., totals=...)``): counts, the frame,
the open-ended bins and the atom test exact; each fine bin's mean within width / (2 * (2**bits - 1))
of the exact one; with ``totals`` each feature's sum exact to rounding; sliding views of 3-bit
windows (what a series keeps) against the exact view and scipy; edge cases; bad bytes refused."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from scipy import stats

from driftcar.stats import DriftConfig, ProfileError, WindowSeries, WindowSketch, evaluate_drift, methods, profile
from driftcar.stats.windows import MEAN_BITS

RNG = np.random.default_rng(17)
REF = {"a": RNG.normal(size=5_000), "d": RNG.integers(0, 6, 5_000).astype(float),
       "e": RNG.exponential(size=5_000), "c": [f"v{i % 7}" for i in range(5_000)]}
PROFILE = profile(REF, multivariate=False)
L = PROFILE.layout
F = L.F
CONFIG = DriftConfig(methods=("ks", "wasserstein", "psi", "chisquare"), multivariate=False)


def _window(columns: dict) -> WindowSketch:
    w = PROFILE.new_window()
    if columns:
        w.update(columns)
    return w


def _batch(rows: int, seed: int, shift: float = 0.0) -> dict:
    rng = np.random.default_rng(seed)
    a = rng.normal(shift, 1.0, rows)
    if rows > 30:  # out of range, infinite, missing, -0.0 ride along
        a[::11], a[1::13], a[2::17], a[3::19] = -0.0, np.inf, np.nan, 1e300
    return {"a": a, "d": rng.integers(0, 7, rows).astype(float), "e": rng.exponential(1.0 + shift, rows),
            "c": [f"v{i % 9}" for i in range(rows)]}


def _mean_errors(exact: WindowSketch, back: WindowSketch) -> tuple[np.ndarray, np.ndarray]:
    """(|mean error| / bin width, counts) over the inner fine bins."""
    counts = exact.num_counts[:, 1:F + 1].astype(float)
    width = np.diff(L.fine_edges, axis=1)
    with np.errstate(all="ignore"):
        err = np.abs(back.num_sums[:, 1:F + 1] - exact.num_sums[:, 1:F + 1]) / counts / width
    return np.where(counts > 0, err, 0.0), counts


EDGE_CASES = {
    "empty": {},
    "one value": {"a": [0.3], "d": [2.0], "e": [1.0], "c": ["v1"]},
    "all in one bin": {"a": np.full(500, 0.123456789), "d": np.full(500, 3.0), "e": np.full(500, 0.5),
                       "c": ["v2"] * 500},
    "nan and inf only": {"a": [np.nan, np.inf, -np.inf, np.nan], "d": [np.nan] * 4, "e": [np.inf] * 4,
                         "c": [None] * 4},
    "200 rows": _batch(200, 1),
    "3,000 rows": _batch(3_000, 2),
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
@pytest.mark.parametrize("bits", [0, 1, 3, 4, 8])
def test_round_trip_exact_but_for_inner_means_within_their_cell(case, bits):
    w = _window(EDGE_CASES[case])
    blob = w.pack(exact=False, bits=bits)
    assert blob.startswith(b"DCW\x05" if bits < 8 else b"DCW\x04")
    back = WindowSketch.unpack(blob, PROFILE)
    for name in WindowSketch._ARRAYS + WindowSketch._EXTREMES:
        if name != "num_sums":
            assert np.array_equal(getattr(back, name), getattr(w, name)), name
    for s in WindowSketch._SCALARS:
        assert getattr(back, s) == getattr(w, s)
    for col in (0, F + 1, F + 2):  # the open-ended bins and the missing one bit for bit
        assert np.array_equal(back.num_sums[:, col].view(np.uint64), w.num_sums[:, col].view(np.uint64))
    err, counts = _mean_errors(w, back)
    if bits:
        assert err.max(initial=0) <= 1 / (2 * ((1 << bits) - 1)) * (1 + 1e-9) + 1e-12
        lower = L.lower[:, : F + 2]
        assert np.array_equal(methods.atoms(w.num_counts[:, : F + 2], back.num_sums[:, : F + 2], lower),
                              methods.atoms(w.num_counts[:, : F + 2], w.num_sums[:, : F + 2], lower))
    else:  # no place kept: the mean anywhere in its bin, read at the centre
        assert err.max(initial=0) <= 0.5 * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_totals_keep_each_feature_sum(case):
    w = _window(EDGE_CASES[case])
    back = WindowSketch.unpack(w.pack(exact=False, bits=0, totals=True), PROFILE)
    assert np.array_equal(back.num_counts, w.num_counts)
    for name in L.num_names:
        row = L.where[name][1]
        scale = max(np.abs(w.num_sums[row][np.isfinite(w.num_sums[row])]).sum(), 1.0)
        got, want = back.feature(name).sum, w.feature(name).sum
        assert got == want or abs(got - want) <= 1e-12 * scale, (name, got, want)


def test_three_bit_means_worst_error_on_full_precision_values():
    """The form a series keeps: measured worst mean error 1/14 of the bin's width (7 cells: the bound)."""
    assert MEAN_BITS == 3
    w = _window(_batch(5_000, 3))
    err, counts = _mean_errors(w, WindowSketch.unpack(w.pack(exact=False, bits=MEAN_BITS), PROFILE))
    assert 0.06 < err.max() <= 1 / 14 * (1 + 1e-9)  # attained, never passed


@pytest.mark.parametrize("rows, shift", [(20, 0.0), (200, 0.0), (200, 0.5), (1_000, 1.0)])
def test_sliding_view_of_three_bit_windows_against_the_exact_view_and_scipy(rows, shift):
    series = WindowSeries(PROFILE, length_s=60, keep=60)
    exact = PROFILE.new_window()
    raw = {"a": [], "d": [], "e": []}
    for k in range(60):
        batch = _batch(rows, 500 + k, shift)
        series.update(batch)
        exact = exact.merge(series.close(k, k + 1))
        series.compact()
        for name in raw:
            raw[name].append(np.asarray(batch[name], dtype=float))
    assert all(c._blob.startswith(b"DCW\x05") for c in series.closed)
    view = series.sliding(60)
    assert np.array_equal(view.num_counts, exact.num_counts)
    got, want = evaluate_drift(PROFILE, view, CONFIG), evaluate_drift(PROFILE, exact, CONFIG)
    for name in ("a", "d", "e", "c"):
        for method in ("psi", "chisquare") + (("ks",) if name != "c" else ()):
            assert got.result(name, method).statistic == want.result(name, method).statistic, (name, method)
            assert got.result(name, method).detected == want.result(name, method).detected
    for name in ("a", "d", "e"):
        w_got, w_want = got.result(name, "wasserstein"), want.result(name, "wasserstein")
        # each mean within width / 14: at most 1/7 of the current side (half of each bin's width)
        assert abs(w_got.statistic - w_want.statistic) <= w_want.bound / 7 + 1e-12, name
        values = np.concatenate(raw[name])
        values = values[np.isfinite(values) & (np.abs(values) < 1e6)]
        if name != "a" or rows <= 30:  # 1e300 outliers aside, as scipy cannot hold them
            scipy_w = stats.wasserstein_distance(REF[name], values) / np.std(REF[name])
            assert abs(w_got.statistic - scipy_w) <= w_got.bound + 1e-9, name


def test_smaller_than_the_byte_form():
    w = _window({"a": np.random.default_rng(8).normal(size=200)})
    bins = np.count_nonzero(w.num_counts)
    assert len(w.pack(exact=False)) - len(w.pack(exact=False, bits=3)) >= 0.5 * bins  # 5 of 8 bits a bin


def test_bits_out_of_range_are_refused():
    for bits in (-1, 9, 2.5):
        with pytest.raises(ValueError):
            _window({"a": [1.0]}).pack(exact=False, bits=bits)


def test_bad_bytes_are_refused():
    blob = _window(_batch(50, 10)).pack(exact=False, bits=3, totals=True)
    body = zlib.decompress(blob[4:])
    head = struct.Struct("<QQBBIBI")
    n_frame, n, cs, gs, n_exact, bits, n_totals = head.unpack_from(body)
    assert n_exact > 0 and n_totals == len(L.num_names)
    rest = body[head.size:]
    cases = [blob[:-5], b"DCW\x05junk", b"DCW\x05" + zlib.compress(body + b"x"), b"DCW\x05" + zlib.compress(body[:-3]),
             b"DCW\x05" + zlib.compress(head.pack(n_frame, n, cs, gs, n_exact, 9, n_totals) + rest),
             b"DCW\x05" + zlib.compress(head.pack(n_frame, n, cs, gs, n_exact, bits, n_totals - 1) + rest[:-8])]
    for bad in cases:
        with pytest.raises(ProfileError):
            WindowSketch.unpack(bad, PROFILE)
