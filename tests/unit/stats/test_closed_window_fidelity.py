"""Closed windows packed with each fine bin's mean as one byte (``pack(exact=False)``): counts, the
frame and the atom test exact; each bin's mean within 1/510 of its width; Wasserstein of a series'
views (its windows keep 3 bits: test_packed_means.py) within 1/7 of the bound it reports of the exact
view, and within that bound of scipy on the raw values; KS and the bin tests unchanged; earlier forms
still read; bad bytes refused."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from scipy import stats

from driftcar.stats import DriftConfig, ProfileError, WindowSeries, WindowSketch, evaluate_drift, methods, profile

RNG = np.random.default_rng(5)
REF = {"a": RNG.normal(size=5_000), "d": RNG.integers(0, 6, 5_000).astype(float),
       "h": np.round(RNG.normal(50.0, 10.0, 5_000), 2), "c": [f"v{i % 7}" for i in range(5_000)]}
PROFILE = profile(REF, multivariate=False)
L = PROFILE.layout
CONFIG = DriftConfig(methods=("ks", "wasserstein", "psi", "chisquare"), multivariate=False)


def _batch(rows: int, seed: int, shift: float = 0.0, odd: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    a = rng.normal(shift, 1.0 + shift, rows)
    if odd and rows > 30:  # out of range, infinite, missing, -0.0: the bins kept exact
        a[::11], a[1::13], a[2::17], a[3::19], a[4::23] = -0.0, np.inf, np.nan, 1e300, -7.5
    return {"a": a, "d": rng.integers(0, 7, rows).astype(float), "h": np.round(rng.normal(50.0 + shift, 10.0, rows), 2),
            "c": [f"v{i % 9}" for i in range(rows)]}


def _window(rows: int, seed: int, shift: float = 0.0) -> WindowSketch:
    w = PROFILE.new_window()
    w.update(_batch(rows, seed, shift))
    return w


@pytest.mark.parametrize("rows", [0, 1, 50, 3_000])
def test_everything_but_inner_sums_is_exact_and_means_stay_in_their_cell(rows):
    w = _window(rows, rows)
    blob = w.pack(exact=False)
    assert blob.startswith(b"DCW\x04")
    back = WindowSketch.unpack(blob, PROFILE)
    for name in WindowSketch._ARRAYS + WindowSketch._EXTREMES:
        if name != "num_sums":
            assert np.array_equal(getattr(back, name), getattr(w, name)), name
    F = L.F
    counts, exact, approx = w.num_counts[:, : F + 2], w.num_sums[:, : F + 2], back.num_sums[:, : F + 2]
    # the open-ended bins (and the missing one) bit for bit
    for col in (0, F + 1, F + 2):
        assert np.array_equal(back.num_sums[:, col].view(np.uint64), w.num_sums[:, col].view(np.uint64))
    width = np.zeros_like(L.lower)
    width[:, 1:F + 1] = np.diff(L.fine_edges, axis=1)
    with np.errstate(all="ignore"):
        err = np.abs(approx / counts - exact / counts)
    inner = counts[:, 1:F + 1] > 0
    assert (err[:, 1:F + 1][inner] <= width[:, 1:F + 1][inner] / 510 * (1 + 1e-9) + 1e-12).all()
    lower = L.lower
    assert np.array_equal(methods.atoms(counts, approx, lower), methods.atoms(counts, exact, lower))
    assert WindowSketch.unpack(back.pack(exact=False), PROFILE).to_bytes() == back.to_bytes()  # stable


def test_discrete_values_keep_their_atoms():
    w = _window(400, 3)
    back = WindowSketch.unpack(w.pack(exact=False), PROFILE)
    row = L.where["d"][1]
    fine = slice(1, L.F + 1)  # 6 (above the reference's max) lands in the open-ended bin, kept exact
    single = methods.atoms(w.num_counts[row, fine], w.num_sums[row, fine], L.lower[row, fine])
    assert single[w.num_counts[row, fine] > 0].all()  # integers sit on lower edges
    assert np.array_equal(back.num_sums[row, fine], w.num_counts[row, fine] * L.lower[row, fine])
    assert back.num_sums[row, L.F + 1] == w.num_sums[row, L.F + 1] == 6.0 * w.num_counts[row, L.F + 1] > 0


@pytest.mark.parametrize("rows, shift", [(20, 0.0), (50, 0.0), (50, 0.4), (200, 1.0)])
def test_a_sliding_view_of_packed_windows_against_the_exact_view_and_scipy(rows, shift):
    series = WindowSeries(PROFILE, length_s=60, keep=60)
    exact = PROFILE.new_window()
    raw = {"a": [], "d": [], "h": []}
    for k in range(60):
        batch = _batch(rows, 100 + k, shift, odd=k % 2 == 0)  # odd values in half the windows
        series.update(batch)
        exact = exact.merge(series.close(k, k + 1))
        series.compact()
        for name in raw:
            raw[name].append(batch[name])
    view = series.sliding(60)
    assert np.array_equal(view.num_counts, exact.num_counts)
    got, want = evaluate_drift(PROFILE, view, CONFIG), evaluate_drift(PROFILE, exact, CONFIG)
    for name in ("a", "d", "h", "c"):
        for method in ("ks", "psi", "chisquare"):
            if name == "c" and method == "ks":
                continue
            assert got.result(name, method).statistic == want.result(name, method).statistic, (name, method)
            assert got.result(name, method).detected == want.result(name, method).detected
    for name in ("a", "d", "h"):
        w_got, w_want = got.result(name, "wasserstein"), want.result(name, "wasserstein")
        assert abs(w_got.statistic - w_want.statistic) <= w_want.bound / 7 + 1e-12, name
        if name != "a" or rows <= 30:  # against scipy on the raw values (1e300 aside): within the bound
            values = np.concatenate(raw[name])
            values = values[np.isfinite(values) & (np.abs(values) < 1e6)]
            ref = REF[name]
            assert abs(w_got.statistic - stats.wasserstein_distance(ref, values) / np.std(ref)) <= w_got.bound + 1e-9


def test_packed_means_are_much_smaller_than_exact_sums():
    w = PROFILE.new_window()
    w.update({"a": np.random.default_rng(8).normal(size=200)})  # full-precision floats
    bins = np.count_nonzero(w.num_counts)
    assert len(w.pack()) - len(w.pack(exact=False)) >= 5 * bins  # of the ~6.3 bytes an exact sum takes


def test_earlier_exact_form_still_reads_and_series_restore_either():
    w = _window(60, 9)
    series = WindowSeries(PROFILE, length_s=60, keep=3)
    from driftcar.stats.windows import ClosedWindow

    series.restore([ClosedWindow(0, 1, 60, profile=PROFILE, blob=w.pack()),
                    ClosedWindow(1, 2, 60, profile=PROFILE, blob=w.pack(exact=False))], w.pack())
    first, second = (c.sketch for c in series.closed)
    assert first.to_bytes() == w.to_bytes()
    assert np.array_equal(second.num_counts, w.num_counts)
    assert np.array_equal(series.cumulative.num_counts, w.num_counts)  # (no fine means: test_windows_compact.py)
    assert np.allclose(series.cumulative.num_sums.sum(axis=1), w.num_sums.sum(axis=1), rtol=1e-12, atol=1e-9)


def test_bad_bytes_are_refused():
    blob = _window(50, 10).pack(exact=False)
    body = zlib.decompress(blob[4:])
    n_frame, n, cs, gs, n_exact = struct.unpack_from("<QQBBI", body)
    assert n_exact > 0  # the out-of-range bins
    cases = [blob[:-5], b"DCW\x04junk", b"DCW\x04" + zlib.compress(body + b"x"),
             b"DCW\x04" + zlib.compress(body[:-3]),
             b"DCW\x04" + zlib.compress(struct.pack("<QQBBI", n_frame, n, cs, gs, n_exact + 1) + body[22:]),
             b"DCW\x03" + blob[4:]]
    at = len(body) - 12 * n_exact  # the exact sums' indices: one beyond the non-empty bins
    cases.append(b"DCW\x04" + zlib.compress(body[:at] + struct.pack("<I", n) + body[at + 4:]))
    for bad in cases:
        with pytest.raises(ProfileError):
            WindowSketch.unpack(bad, PROFILE)
