"""A series keeps its closed windows and its cumulative sketch packed between closes, and reads back
what the exported histograms take from the cumulative (counts exact, each feature's sum to
rounding; closed windows: test_closed_window_fidelity.py); checkpoint bytes of any earlier form
restore, bad ones are refused."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from driftcar.stats import ProfileError, WindowSeries, WindowSketch, profile

RNG = np.random.default_rng(21)
PROFILE = profile({"x": RNG.normal(size=2_000), "y": RNG.exponential(size=2_000),
                   "c": [f"v{i % 5}" for i in range(2_000)]})


def _batch(rows: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=rows), "y": rng.exponential(size=rows), "c": [f"v{i % 7}" for i in range(rows)]}


def assert_same_histograms(got, want) -> None:
    """Every array but the fine sums bit for bit; each feature's coarse counts, n and sum (the
    exported histogram) equal, the sum to 1e-12 of the values' scale."""
    for name in got._ARRAYS + got._EXTREMES:
        if name != "num_sums":
            assert np.array_equal(getattr(got, name), getattr(want, name)), name
    for s in got._SCALARS:
        assert getattr(got, s) == getattr(want, s), s
    for name in PROFILE.layout.num_names:
        g, w = got.feature(name), want.feature(name)
        assert np.array_equal(g.counts, w.counts) and g.n == w.n
        scale = np.abs(want.num_sums[PROFILE.layout.where[name][1]]).sum()
        assert abs(g.sum - w.sum) <= 1e-12 * max(scale, 1.0), name


def _series(closes: int) -> tuple[WindowSeries, object]:
    s = WindowSeries(PROFILE, length_s=60, keep=3)
    expected = None
    for k in range(closes):
        s.update(_batch(40 + k, k))
        closed = s.close(k, k + 1)
        expected = closed if expected is None else expected.merge(closed)
        s.compact()
    return s, expected


def test_cumulative_is_packed_after_compact_and_reads_back_its_histograms():
    s, expected = _series(5)
    assert isinstance(s._cumulative, bytes)  # packed between closes
    assert_same_histograms(s.cumulative, expected)
    assert all(c._sketch is None for c in s.closed)
    s.update(_batch(10, 99))
    newest = s.close(5, 6)
    assert not isinstance(s._cumulative, bytes)  # live from the close until the next compact
    assert_same_histograms(s.cumulative, expected.merge(newest))


@pytest.mark.parametrize("form", ["packed", "zlib of to_bytes (earlier checkpoints)"])
def test_cumulative_checkpoint_bytes_restore(form):
    s, expected = _series(4)
    blob = s.cumulative_blob() if form == "packed" else zlib.compress(expected.to_bytes(), 1)
    restored = WindowSeries(PROFILE, length_s=60, keep=3)
    restored.restore(list(s.closed), blob)
    assert_same_histograms(restored.cumulative, expected)
    assert_same_histograms(WindowSketch.unpack(restored.cumulative_blob(), PROFILE), expected)


def test_bad_cumulative_bytes_are_refused_and_change_nothing():
    s, _ = _series(2)
    restored = WindowSeries(PROFILE, length_s=60, keep=3)
    with pytest.raises(ProfileError):
        restored.restore([], s.cumulative_blob()[:-7])
    assert restored.cumulative is None
