"""A closed window's packed bytes restore it bit for bit (every array, NaN payloads and -0.0 alike),
the earlier packed form still reads, and bad bytes are refused with ProfileError."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from driftcar.stats import ProfileError, WindowSketch, profile

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
    assert blob.startswith(b"DCW\x02")
    _same(WindowSketch.unpack(blob, PROFILE), w)


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


@pytest.mark.parametrize("rows", [0, 60, 2_000])
def test_earlier_forms_still_restore(rows):
    w = _window(rows, 7)
    _same(WindowSketch.unpack(_pack_v1(w), PROFILE), w)
    _same(WindowSketch.unpack(zlib.compress(w.to_bytes(), 1), PROFILE), w)


def test_packed_sums_take_less_than_raw_ones():
    w = _window(50, 8)
    assert len(w.pack()) < 0.9 * len(_pack_v1(w))


def test_bad_bytes_are_refused():
    blob = _window(50, 9).pack()
    body = zlib.decompress(blob[4:])
    cases = [blob[:-5], b"DCW\x02" + b"junk", b"nothing at all",
             b"DCW\x02" + zlib.compress(body + b"extra"), b"DCW\x02" + zlib.compress(body[:-3])]
    n_frame, n, cs, gs = struct.unpack_from("<QQBB", body)
    cases.append(b"DCW\x02" + zlib.compress(struct.pack("<QQBB", n_frame, n, 3, gs) + body[18:]))  # no 3-byte ints
    for bad in cases:
        with pytest.raises(ProfileError):
            WindowSketch.unpack(bad, PROFILE)
    other = profile({"a": RNG.normal(size=1_000)})
    with pytest.raises(ProfileError):
        WindowSketch.unpack(blob, other)
