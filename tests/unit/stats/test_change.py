"""ADWIN against river's (the anchor: same defaults) on the same seeded streams."""

from __future__ import annotations

import numpy as np
import pytest

from driftcar.stats import ADWIN

river_drift = pytest.importorskip("river.drift")


def _streams(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "abrupt integers": np.concatenate([rng.integers(0, 2, 1_000), rng.integers(4, 8, 1_000)]).astype(float),
        "small mean drop": np.concatenate([rng.normal(0.9, 0.05, 3_000), rng.normal(0.85, 0.05, 3_000)]),
        "gradual": np.concatenate([rng.normal(0, 1, 2_000), rng.normal(np.linspace(0, 1, 3_000), 1)]),
        "bernoulli 20 -> 30 %": (rng.random(8_000) < np.r_[np.full(4_000, 0.2), np.full(4_000, 0.3)]).astype(float),
        "no change": rng.normal(0, 1, 5_000),
    }


def _detections(detector, xs) -> list[int]:
    out = []
    for i, x in enumerate(xs):
        detector.update(x)
        if detector.drift_detected:
            out.append(i)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_detections_equal_rivers(seed):
    """Tolerance: none — the same indices on every stream (checked on 100 streams while writing)."""
    for name, xs in _streams(seed).items():
        ours = _detections(ADWIN(), xs)
        theirs = _detections(river_drift.ADWIN(), xs.tolist())
        assert ours == theirs, (name, ours, theirs)
        if name == "no change":
            assert ours == []
        else:
            assert ours, name


def test_bad_arguments_and_non_finite_values():
    with pytest.raises(ValueError):
        ADWIN(delta=0)
    with pytest.raises(ValueError):
        ADWIN(clock=0)
    a = ADWIN()
    assert a.update(float("nan")) is False and a.width == 0
    a.update(1.0)
    assert a.estimation == 1.0
