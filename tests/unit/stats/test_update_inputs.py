"""WindowSketch.update() takes what profile() takes: a DataFrame, a 2-D array (with names), a dict."""

from __future__ import annotations

import numpy as np
import pytest

from driftcar.stats import profile

pd = pytest.importorskip("pandas")


def _frame(rng, n):
    age = rng.normal(40, 10, n)
    age[::17] = np.nan
    return pd.DataFrame({
        "age": age,
        "visits": pd.array(np.where(np.arange(n) % 11 == 0, None, rng.integers(0, 9, n)), dtype="Int64"),
        "city": pd.Series(rng.choice(["paris", "rome", None], n)).astype("category"),
        "plan": rng.choice(["free", "pro"], n),
    })


def _same(a, b):
    for arr in ("num_counts", "num_sums", "cat_counts", "cat_missing", "num_invalid"):
        np.testing.assert_array_equal(getattr(a, arr), getattr(b, arr), err_msg=arr)
    assert (a.rows, a.unknown) == (b.rows, b.unknown)


def test_dataframe_counts_like_its_columns():
    rng = np.random.default_rng(0)
    ref = _frame(rng, 4_000)
    prof = profile(ref)
    live = _frame(rng, 700)
    from_df, from_dict = prof.new_window(), prof.new_window()
    from_df.update(live)
    from_dict.update({c: list(live[c]) if live[c].dtype.kind not in "f" else live[c].to_numpy() for c in live})
    _same(from_df, from_dict)  # pandas.NA in a list is missing, as NaN is, not an invalid value
    assert from_df.feature("visits").invalid == 0
    assert from_df.rows == 700 and from_df.feature("age").missing == len(range(0, 700, 17))
    assert from_df.feature("visits").missing == len(range(0, 700, 11))
    assert from_df.feature("city").n + from_df.feature("city").missing == 700


def test_dataframe_with_roles_sends_predictions_to_their_sketch():
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"a": rng.normal(size=2_000)})
    prof = profile(X, predictions=rng.integers(0, 2, 2_000))
    w = prof.new_window()
    w.update(pd.DataFrame({"a": rng.normal(size=300), "pred": rng.integers(0, 2, 300)}), {"pred": "prediction"})
    assert w.feature("__prediction__").n == 300 and w.unknown == {}


def test_array_with_names_and_without():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(3_000, 3))
    names = ["age", "income", "score"]
    prof = profile(X, feature_names=names)
    assert list(prof.features) == names
    named, as_dict = prof.new_window(), prof.new_window()
    batch = rng.normal(size=(250, 3))
    named.update(batch, feature_names=names)
    as_dict.update(dict(zip(names, batch.T)))
    _same(named, as_dict)
    unnamed = prof.new_window()
    unnamed.update(batch)  # x0, x1, x2: not the profile's names, and said so
    assert unnamed.unknown == {"x0": 250, "x1": 250, "x2": 250}
    assert unnamed.feature("age").n == 0


def test_bad_tables_are_refused_and_change_nothing():
    rng = np.random.default_rng(3)
    prof = profile(rng.normal(size=(500, 2)))
    w = prof.new_window()
    with pytest.raises(ValueError, match="3 feature_names for 2 columns"):
        w.update(np.zeros((4, 2)), feature_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="duplicates"):
        w.update(np.zeros((4, 2)), feature_names=["a", "a"])
    with pytest.raises(ValueError, match="own names"):
        w.update(pd.DataFrame({"x0": [1.0]}), feature_names=["a"])
    with pytest.raises(ValueError, match="2-D array"):
        w.update(np.zeros((2, 2, 2)))
    assert w.rows == 0 and w.num_counts.sum() == 0


def test_coded_columns_count_exactly_as_their_values():
    from driftcar.stats import Encoded

    rng = np.random.default_rng(3)
    n = 5_000
    ref = {"x": rng.normal(0, 1, n), "plan": list(rng.choice(["free", "pro", "team"], n)),
           "city": list(rng.choice(["paris", "rome"], n)), "level": list(rng.choice(["1", "2.5", "3"], n))}
    prof = profile(ref)
    live = {"x": rng.normal(0, 1, 3_000), "plan": list(rng.choice(["free", "pro", "gold", None], 3_000)),
            "city": list(rng.choice(["rome", "oslo", None], 3_000)), "level": list(rng.choice(["1", "x", None], 3_000))}
    coded = dict(live)
    for name in ("plan", "city", "level"):
        keys = list(dict.fromkeys(live[name])) + ["rome", None]  # a key may repeat, None anywhere
        index = {k: i for i, k in enumerate(keys[:-2])}
        coded[name] = Encoded(np.array([index[v] for v in live[name]], np.int32), keys)
    by_values, by_codes = prof.new_window(), prof.new_window()
    by_values.update(live)
    by_codes.update(coded)
    _same(by_values, by_codes)  # "level" is numeric in the profile: its coded values are read as numbers
    assert by_codes.feature("plan").missing == live["plan"].count(None) > 0
    assert by_codes.feature("level").invalid == live["level"].count("x") > 0
