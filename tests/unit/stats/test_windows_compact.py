"""A series keeps its closed windows and its cumulative sketch packed between closes, and reads the
cumulative back exactly (closed windows: test_closed_window_fidelity.py); checkpoint bytes of any
earlier form restore, bad ones are refused."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from driftcar.stats import ProfileError, WindowSeries, profile

RNG = np.random.default_rng(21)
PROFILE = profile({"x": RNG.normal(size=2_000), "y": RNG.exponential(size=2_000),
                   "c": [f"v{i % 5}" for i in range(2_000)]})


def _batch(rows: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=rows), "y": rng.exponential(size=rows), "c": [f"v{i % 7}" for i in range(rows)]}


def _series(closes: int) -> tuple[WindowSeries, object]:
    s = WindowSeries(PROFILE, length_s=60, keep=3)
    expected = None
    for k in range(closes):
        s.update(_batch(40 + k, k))
        closed = s.close(k, k + 1)
        expected = closed if expected is None else expected.merge(closed)
        s.compact()
    return s, expected


def test_cumulative_is_packed_after_compact_and_reads_back_exactly():
    s, expected = _series(5)
    assert isinstance(s._cumulative, bytes)  # packed between closes
    assert s.cumulative.to_bytes() == expected.to_bytes()
    assert all(c._sketch is None for c in s.closed)
    s.update(_batch(10, 99))
    newest = s.close(5, 6)
    assert not isinstance(s._cumulative, bytes)  # live from the close until the next compact
    assert s.cumulative.to_bytes() == expected.merge(newest).to_bytes()


@pytest.mark.parametrize("form", ["packed", "zlib of to_bytes (earlier checkpoints)"])
def test_cumulative_checkpoint_bytes_restore(form):
    s, expected = _series(4)
    blob = s.cumulative_blob() if form == "packed" else zlib.compress(expected.to_bytes(), 1)
    restored = WindowSeries(PROFILE, length_s=60, keep=3)
    restored.restore(list(s.closed), blob)
    assert restored.cumulative.to_bytes() == expected.to_bytes()
    assert restored.cumulative_blob() == restored.cumulative.pack()


def test_bad_cumulative_bytes_are_refused_and_change_nothing():
    s, _ = _series(2)
    restored = WindowSeries(PROFILE, length_s=60, keep=3)
    with pytest.raises(ProfileError):
        restored.restore([], s.cumulative_blob()[:-7])
    assert restored.cumulative is None
