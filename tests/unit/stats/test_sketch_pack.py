"""A closed window's packed bytes restore it bit for bit (every array, NaN payloads and -0.0 alike),
the earlier packed forms still read, counts keep their dtype limits, and bad bytes are refused with
ProfileError."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from driftcar.stats import ProfileError, WindowSketch, _codec, profile
from driftcar.stats.sketch import COUNT_LIMIT

RNG = np.random.default_rng(3)
PROFILE = profile({"a": RNG.normal(size=3_000), "b": RNG.exponential(size=3_000),
                   "d": RNG.integers(0, 4, 3_000).astype(float), "c": [f"v{i % 7}" for i in range(3_000)]},
                  predictions=RNG.integers(0, 2, 3_000))
ARRAYS = WindowSketch._ARRAYS + WindowSketch._EXTREMES


def _window(rows: int, seed: int) -> WindowSketch:
    rng = np.random.default_rng(seed)
    w = PROFILE.new_window()
    if rows:
        a = rng.normal(size=rows) * 3
        a[::11], a[1::13], a[2::17], a[3::19], a[4::23] = -0.0, np.inf, np.nan, 1e300, -1e308
        w.update({"a": a, "b": rng.exponential(size=rows) * 1e-300, "d": rng.integers(0, 6, rows).astype(float),
                  "c": [f"v{i % 9}" for i in range(rows)], "new": np.zeros(rows)})
        w.update_predictions(rng.integers(0, 3, rows))
    return w


def _same(a: WindowSketch, b: WindowSketch) -> None:
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x.view(np.uint8), y.view(np.uint8)), name
    assert a.to_bytes() == b.to_bytes()


@pytest.mark.parametrize("rows", [0, 1, 50, 5_000])
def test_packed_window_restores_bit_for_bit(rows):
    w = _window(rows, rows)
    blob = w.pack()
    assert blob.startswith(b"DCW\x03")
    _same(WindowSketch.unpack(blob, PROFILE), w)
    if rows:  # sparse: the bins a window touched, never more
        assert len(_codec.unpack_sparse(blob[4:])[1]) == np.count_nonzero(w.num_counts) <= 3 * rows + 3


def test_merged_windows_pack_too():
    w = _window(300, 1).merge(_window(40, 2)).merge(_window(7, 3))
    _same(WindowSketch.unpack(w.pack(), PROFILE), w)


def test_a_sum_in_an_empty_bin_falls_back_to_the_dense_form():
    w = _window(20, 4)
    empty = np.flatnonzero(w.num_counts == 0)[0]
    w.num_sums.reshape(-1)[empty] = 2.5
    blob = w.pack()
    assert not blob.startswith(b"DCW")
    _same(WindowSketch.unpack(blob, PROFILE), w)


def _pack_v1(w: WindowSketch) -> bytes:
    """The first packed form, written as it was (uint32 gaps, narrowest counts, raw float64 sums)."""
    pos = np.flatnonzero(w.num_counts)
    rest = w.copy()
    rest.num_counts, rest.num_sums = np.zeros_like(w.num_counts), np.zeros_like(w.num_sums)
    frame = rest.to_bytes()
    values = w.num_counts.reshape(-1)[pos]
    dtype = np.min_scalar_type(int(values.max(initial=0)))
    head = np.array([len(frame), len(pos), dtype.itemsize], dtype=np.uint64).tobytes()
    body = b"".join([head, frame, np.diff(pos, prepend=0).astype(np.uint32).tobytes(), values.astype(dtype).tobytes(),
                     w.num_sums.reshape(-1)[pos].tobytes()])
    return b"DCW\x01" + zlib.compress(body, 1)


def _pack_v2(w: WindowSketch) -> bytes:
    """The second packed form, written as it was (sums XOR count x bin centre, a zero grid in the frame)."""
    pos = np.flatnonzero(w.num_counts)
    rest = w.copy()
    rest.num_counts, rest.num_sums = np.zeros_like(w.num_counts), np.zeros_like(w.num_sums)
    values = w.num_counts.reshape(-1)[pos].astype(np.int64)
    guess = values * PROFILE.layout.centres(pos)
    bits = w.num_sums.reshape(-1)[pos].view(np.uint64) ^ guess.view(np.uint64)
    return b"DCW\x02" + _codec.pack_sparse(rest.to_bytes(), pos, values, bits)


@pytest.mark.parametrize("rows", [0, 60, 2_000])
def test_earlier_forms_still_restore(rows):
    w = _window(rows, 7)
    _same(WindowSketch.unpack(_pack_v2(w), PROFILE), w)
    _same(WindowSketch.unpack(_pack_v1(w), PROFILE), w)
    _same(WindowSketch.unpack(zlib.compress(w.to_bytes(), 1), PROFILE), w)


def test_packed_sums_take_less_than_raw_ones():
    w = _window(50, 8)
    assert len(w.pack()) < 0.9 * len(_pack_v1(w))
    assert len(w.pack()) < len(_pack_v2(w))  # no zero grid in the frame, zigzag differences


def test_zigzag_residuals_round_trip_every_bit_pattern():
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 2**63, 20_000, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 20_000,
                                                                                           dtype=np.uint64)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1.7976931348623157e308])
    values = np.concatenate([bits.view(np.float64), special, -special])
    guess = np.concatenate([rng.permutation(values[:20_000]), special[::-1], special])
    back = _codec.from_zigzag(_codec.zigzag_residuals(values, guess), guess)
    assert np.array_equal(back.view(np.uint64), values.view(np.uint64))
    base = np.array([1.5, -1.5, 1e-300, -1e300, 3.0])
    near = np.nextafter(base, np.inf)  # one ulp apart (same sign): a residual of 1 or 2
    assert (_codec.zigzag_residuals(near, base) <= 2).all() and (_codec.zigzag_residuals(base, base) == 0).all()


def test_counts_stay_int32_up_to_the_limit_then_promote_without_loss():
    w = _window(30, 12)
    # the bound: the batch's 30 rows, then its 30 predictions
    assert w.num_counts.dtype == w.cat_counts.dtype == np.int32 and w.count_bound == 60
    assert w.feature("a").fine_counts.dtype == w.feature("c").counts.dtype == np.int64  # snapshots: int64
    big = w.copy()
    big.num_counts = big.num_counts.astype(np.int64)
    big.num_counts[0, 5] = COUNT_LIMIT  # the largest count int32 holds: still int32 when read back
    big._narrow()
    assert big.num_counts.dtype == np.int32 and big.count_bound == COUNT_LIMIT
    for restored in (WindowSketch.unpack(big.pack(), PROFILE), WindowSketch.from_bytes(big.to_bytes(), PROFILE)):
        _same(restored, big)
    twice = big.merge(big)  # 2 * (2**31 - 1): past int32, promoted before the add
    assert twice.num_counts.dtype == twice.cat_counts.dtype == np.int64
    assert int(twice.num_counts[0, 5]) == 2 * COUNT_LIMIT
    assert np.array_equal(twice.num_counts, 2 * big.num_counts.astype(np.int64))
    for restored in (WindowSketch.unpack(twice.pack(), PROFILE), WindowSketch.from_bytes(twice.to_bytes(), PROFILE)):
        _same(restored, twice)
    assert int(twice.feature("a").fine_counts[5]) == 2 * COUNT_LIMIT  # snapshots are int64


def test_an_update_past_the_limit_promotes_first():
    w = _window(30, 13)
    before = w.num_counts.astype(np.int64)
    w.count_bound = COUNT_LIMIT - 10  # as if 2**31 - 11 rows had been added
    w.update({"a": np.full(10, 0.1)})
    assert w.num_counts.dtype == np.int32  # exactly at the limit: still fits
    w.update({"a": np.full(1, 0.1)})
    assert w.num_counts.dtype == w.cat_counts.dtype == np.int64
    assert w.num_counts.sum() - before.sum() == 11
    w2 = _window(0, 0)
    w2.count_bound = COUNT_LIMIT
    w2.update_predictions([1])
    assert w2.num_counts.dtype == np.int64 and w2.feature("__prediction__").n == 1


def test_bad_bytes_are_refused():
    blob = _window(50, 9).pack()
    body = zlib.decompress(blob[4:])
    cases = [blob[:-5], b"DCW\x03" + b"junk", b"nothing at all",
             b"DCW\x03" + zlib.compress(body + b"extra"), b"DCW\x03" + zlib.compress(body[:-3]),
             b"DCW\x02" + blob[4:],  # a frame without the grid read as the form that has one
             b"DCW\x03" + _pack_v2(_window(50, 9))[4:]]  # and the other way round
    n_frame, n, cs, gs = struct.unpack_from("<QQBB", body)
    cases.append(b"DCW\x03" + zlib.compress(struct.pack("<QQBB", n_frame, n, 3, gs) + body[18:]))  # no 3-byte ints
    for bad in cases:
        with pytest.raises(ProfileError):
            WindowSketch.unpack(bad, PROFILE)
    other = profile({"a": RNG.normal(size=1_000)})
    with pytest.raises(ProfileError):
        WindowSketch.unpack(blob, other)
