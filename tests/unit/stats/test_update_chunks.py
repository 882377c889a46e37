"""``update_chunks`` (one batch split over several window sketches, each column binned once) gives
every sketch exactly what one ``update`` of its rows gives: every array, extreme, scalar and
unknown name, bit for bit, and the same count dtype."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftcar.stats import profile, sketch
from driftcar.stats.sketch import WindowSketch, update_chunks

N = 4_000
ROLES = {"__prediction__": "prediction", "__label__": "label", "p0": "probability", "p1": "probability",
         "rid": "id"}


def _reference(multivariate: bool):
    rng = np.random.default_rng(3)
    data = {
        "normal": rng.normal(size=N), "heavy": rng.standard_t(1.2, N), "ints": rng.integers(0, 9, N),
        "binary": rng.integers(0, 2, N).astype(float), "naninf": rng.exponential(size=N),
        "const": np.full(N, 2.0), "numtext": rng.normal(size=N),
        "cat3": rng.choice(["a", "b", "c"], N), "cat20": np.array([f"k{j}" for j in range(20)], object)[
            rng.integers(0, 20, N)],
        "pdcat": pd.Categorical(rng.choice(["x", "y", "z"], N)),
    }
    return profile(data, y=rng.integers(0, 3, N), predictions=rng.normal(size=N), multivariate=multivariate,
                   categorical={"cat3", "cat20", "pdcat"})


REFERENCES = {False: _reference(False), True: _reference(True)}


def _batch(n: int, seed: int) -> dict:
    """Every edge case at once: out of range both ways, +-inf, NaN, invalid text, a list column, integers,
    unseen categories and None, a pandas categorical, unknown and id columns, labels, predictions and
    class probabilities."""
    rng = np.random.default_rng(seed)
    naninf = rng.exponential(size=n) * 1.5
    naninf[rng.random(n) < 0.05] = np.nan
    naninf[rng.random(n) < 0.03] = np.inf
    naninf[rng.random(n) < 0.03] = -np.inf
    heavy = rng.standard_t(1.0, n) * 3  # beyond the reference's min and max
    normal = rng.normal(0.3, 1.2, n)
    normal[rng.random(n) < 0.05] = np.nan  # missing values without infinities
    numtext = [str(v) if rng.random() > 0.03 else "n/a" for v in rng.normal(size=n)]
    p0 = rng.random(n)
    return {
        "normal": normal, "heavy": heavy, "ints": rng.integers(-2, 12, n).astype(np.int32),
        "binary": list(rng.integers(0, 2, n).astype(float)), "naninf": naninf, "const": np.full(n, 2.0),
        "numtext": numtext, "cat3": list(rng.choice(["a", "b", "c", "d", None], n)),
        "cat20": np.array([f"k{j}" for j in range(25)], object)[rng.integers(0, 25, n)],
        "pdcat": pd.Categorical(rng.choice(["x", "y", "w"], n)), "unseen": rng.normal(size=n),
        "rid": np.arange(n), "__prediction__": rng.normal(0.5, 1, n), "__label__": rng.integers(0, 4, n),
        "p0": p0, "p1": 1 - p0,
    }


def _sliced(columns: dict, a: int, b: int) -> dict:
    return {k: v[a:b] for k, v in columns.items()}


def _assert_same(got, want) -> None:
    for name in got._ARRAYS + got._EXTREMES + got._SCALARS:
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert got.unknown == want.unknown
    assert got.count_bound == want.count_bound
    assert got.num_counts.dtype == want.num_counts.dtype
    assert got.to_bytes() == want.to_bytes()


@pytest.mark.parametrize("multivariate", [False, True])  # True: PCA errors, one update per chunk
@pytest.mark.parametrize("cuts", [[0, 4_000], [0, 1_000, 2_000, 4_000], [0, 0, 150, 150, 3_999, 4_000],
                                  [0, 7, 13, 400, 1_200, 2_500, 3_100, 3_999, 4_000]])
def test_chunks_equal_one_update_per_chunk(multivariate, cuts):
    prof = REFERENCES[multivariate]
    batch = _batch(cuts[-1], seed=len(cuts))
    got = [prof.new_window() for _ in cuts[1:]]
    want = [prof.new_window() for _ in cuts[1:]]
    got[0].update(_batch(50, seed=1), ROLES)  # a sketch with earlier (buffered) values
    want[0].update(_batch(50, seed=1), ROLES)
    update_chunks(got, batch, cuts, ROLES)
    for w, a, b in zip(want, cuts[:-1], cuts[1:]):
        w.update(_sliced(batch, a, b), ROLES)
    for g, w in zip(got, want):
        _assert_same(g, w)
    big = max(got, key=lambda g: g.rows)  # the edge cases are there: the comparison is not vacuous
    assert big.feature("naninf").infinite > 0 and big.feature("heavy").out_of_range > 0
    assert big.feature("numtext").invalid > 0 and big.estimated_accuracy is not None
    assert sum(g.unknown.get("unseen", 0) for g in got) == 50 + cuts[-1]


def test_columns_in_several_blocks_and_without_roles(monkeypatch):
    monkeypatch.setattr(sketch, "_BLOCK_VALUES", 3_000)  # one numeric column per block
    prof = REFERENCES[False]
    batch = {k: v for k, v in _batch(N, seed=8).items() if not k.startswith("p")}
    cuts = [0, 1_000, 2_500, 4_000]
    got = [WindowSketch(prof, pca_errors=False) for _ in cuts[1:]]
    want = [WindowSketch(prof, pca_errors=False) for _ in cuts[1:]]
    update_chunks(got, batch, cuts)  # no roles: every column a feature (dunder names unknown)
    for w, a, b in zip(want, cuts[:-1], cuts[1:]):
        w.update(_sliced(batch, a, b))
    for g, w in zip(got, want):
        _assert_same(g, w)
    assert "__label__" in got[0].unknown


def test_bad_cuts_or_profiles_change_nothing():
    prof = REFERENCES[False]
    ws = [prof.new_window(), prof.new_window()]
    before = [w.to_bytes() for w in ws]
    batch = {"normal": np.zeros(10)}
    for cuts in ([0, 10], [0, 5, 9], [1, 5, 10], [0, 7, 3], [0, 6, 5, 10]):
        with pytest.raises(ValueError, match="cuts"):
            update_chunks(ws, batch, cuts)
    with pytest.raises(ValueError, match="different lengths"):
        update_chunks(ws, {"normal": np.zeros(10), "ints": np.zeros(9)}, [0, 5, 10])
    with pytest.raises(ValueError, match="different profiles"):
        update_chunks([ws[0], REFERENCES[True].new_window()], batch, [0, 5, 10])
    assert [w.to_bytes() for w in ws] == before
