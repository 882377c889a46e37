"""Window sketches merge by addition: any split of a stream gives the whole-stream sketch;
merge is associative and commutative; checkpoints round-trip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftcar.stats import ProfileError, WindowSketch, evaluate_drift, profile

_RNG = np.random.default_rng(11)
_N = 3_000
PROFILE = profile(
    {
        "a": _RNG.normal(size=_N),
        "b": _RNG.exponential(size=_N),
        "c": list(_RNG.choice(["x", "y", "z"], _N)),
    },
    predictions=_RNG.integers(0, 3, _N),
)


def _stream(seed: int, n: int) -> dict:
    rng = np.random.default_rng(seed)
    a = rng.normal(0.3, 1.2, n)
    a[rng.random(n) < 0.05] = np.nan
    a[rng.random(n) < 0.01] = np.inf
    b = rng.exponential(1.5, n)
    c = list(rng.choice(["x", "y", "z", "new"], n))
    c = [None if rng.random() < 0.03 else v for v in c]
    return {"a": a, "b": b, "c": c, "__pred": rng.integers(0, 4, n), "extra": np.zeros(n)}


def _feed(w: WindowSketch, data: dict, lo: int, hi: int) -> None:
    cols = {k: v[lo:hi] for k, v in data.items() if k != "__pred"}
    w.update(cols)
    w.update_predictions(data["__pred"][lo:hi])
    w.update_probabilities(np.full((hi - lo, 2), 0.5))


def _state(w: WindowSketch) -> tuple:
    # float sums depend on addition order: compared with a tolerance by _same()
    return (w.num_counts.tolist(), w.num_inf.tolist(), w.cat_counts.tolist(),
            w.cat_missing.tolist(), w.num_lo.tolist(), w.num_hi.tolist(), w.rows, w.unknown,
            w.proba_rows)


def _same(x: WindowSketch, y: WindowSketch) -> bool:
    return (_state(x) == _state(y) and np.allclose(x.num_sums, y.num_sums, rtol=1e-12, atol=1e-9)
            and abs(x.proba_sum - y.proba_sum) < 1e-9)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), cuts=st.lists(st.integers(0, 600), max_size=6))
def test_any_split_merges_to_the_whole(seed, cuts):
    data = _stream(seed, 600)
    whole = PROFILE.new_window()
    _feed(whole, data, 0, 600)
    bounds = [0] + sorted(cuts) + [600]
    merged = PROFILE.new_window()
    for lo, hi in zip(bounds, bounds[1:]):
        part = PROFILE.new_window()
        _feed(part, data, lo, hi)
        merged = merged.merge(part)
    assert _same(merged, whole)
    a = evaluate_drift(PROFILE, merged)
    b = evaluate_drift(PROFILE, whole)
    assert [(r.feature, r.method, r.detected, r.ok) for r in a.results] == [
        (r.feature, r.method, r.detected, r.ok) for r in b.results]
    np.testing.assert_allclose([r.statistic for r in a.results], [r.statistic for r in b.results], rtol=1e-9,
                               atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(seeds=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6)))
def test_merge_is_associative_and_commutative(seeds):
    ws = []
    for s in seeds:
        w = PROFILE.new_window()
        _feed(w, _stream(s, 200), 0, 200)
        ws.append(w)
    x, y, z = ws
    assert _same(x.merge(y).merge(z), x.merge(y.merge(z)))
    assert _same(x.merge(y), y.merge(x))
    before = _state(x)
    x.merge(y)
    assert _state(x) == before  # merge is pure


def test_merge_with_empty_is_identity_and_checkpoint_roundtrips():
    w = PROFILE.new_window()
    _feed(w, _stream(1, 500), 0, 500)
    assert _same(w.merge(PROFILE.new_window()), w)
    back = WindowSketch.from_bytes(w.to_bytes(), PROFILE)
    assert _same(back, w)
    assert back.feature("a").counts.tolist() == w.feature("a").counts.tolist()
    assert back.feature("c").category_counts == w.feature("c").category_counts


def test_checkpoint_rejects_other_profile_and_corruption():
    w = PROFILE.new_window()
    _feed(w, _stream(2, 100), 0, 100)
    other = profile({"a": np.arange(10.0)})
    with pytest.raises(ProfileError, match="different profile"):
        WindowSketch.from_bytes(w.to_bytes(), other)
    data = bytearray(w.to_bytes())
    data[-5] ^= 0xFF
    with pytest.raises(ProfileError, match="corrupt"):
        WindowSketch.from_bytes(bytes(data), PROFILE)
    with pytest.raises(ValueError, match="different profiles"):
        w.merge(other.new_window())


def test_update_validates_before_changing_anything():
    w = PROFILE.new_window()
    with pytest.raises(ValueError, match="different lengths"):
        w.update({"a": [1.0, 2.0], "b": [1.0]})
    with pytest.raises(ValueError, match="1-D"):
        w.update({"a": np.zeros((2, 2))})
    assert w.rows == 0 and w.num_counts.sum() == 0


def test_roles_route_columns_like_the_wire():
    w = PROFILE.new_window()
    w.update({"a": [0.1, 0.2], "c": ["x", "q"], "p": [1, 2], "id": ["r1", "r2"], "proba_0": [0.9, 0.4],
              "proba_1": [0.1, 0.6]},
             roles={"a": "feature", "c": "feature", "p": "prediction", "id": "id", "proba_0": "probability",
                    "proba_1": "probability"})
    assert w.rows == 2 and w.unknown == {}
    assert w.feature("__prediction__").category_counts["1"] == 1
    assert w.feature("c").category_counts == {"x": 1, "y": 0, "z": 0, "__other__": 1}
    assert w.estimated_accuracy == pytest.approx(0.75)


def test_unknown_names_are_capped():
    w = PROFILE.new_window()
    w.update({f"u{i}": [1.0] for i in range(150)})
    assert len(w.unknown) == 101 and w.unknown["__other__"] == 50
