"""Reference profiles: inputs, quantile bins, top-K, files (versioned, checksummed), chunked building."""

from __future__ import annotations

import struct

import numpy as np
import pandas as pd
import pytest

from driftcar.stats import FeatureProfile, Profile, ProfileBuilder, ProfileError, profile

RNG = np.random.default_rng(5)


def _data(n=4_000):
    return {
        "age": RNG.normal(40, 12, n),
        "score": RNG.exponential(2.0, n),
        "plan": list(RNG.choice(["free", "pro", "team"], n, p=[0.6, 0.3, 0.1])),
        "zip": RNG.integers(0, 80, n),  # numeric ids that are really categories
    }


def test_numeric_bins_are_reference_quantiles_with_open_ends():
    x = RNG.normal(size=50_000)
    f = profile({"x": x}).features["x"]
    assert len(f.edges) == 19 and np.all(np.diff(f.edges) > 0)
    np.testing.assert_allclose(f.edges, np.quantile(x, np.arange(1, 20) / 20), atol=0.01)
    assert f.counts.sum() == 50_000
    np.testing.assert_allclose(f.counts / 50_000, 1 / 20, atol=0.001)  # equal-mass bins
    assert (f.min, f.max) == (x.min(), x.max())
    assert f.mean == pytest.approx(x.mean()) and f.std == pytest.approx(x.std())


def test_discrete_edges_are_deduplicated_for_exporters():
    f = profile({"b": (RNG.random(1_000) < 0.3).astype(float)}).features["b"]
    assert f.edges.tolist() == [0.0, 1.0]
    assert f.counts.tolist()[0] == 0 and f.counts.sum() == 1_000
    assert len(f.counts) == len(f.edges) + 1


def test_categorical_top_k_and_other():
    values = [f"c{i}" for i in range(10) for _ in range(10 - i)]  # c0 x10, c1 x9, ...
    f = profile({"c": values}, top_k=3).features["c"]
    assert f.categories == ("c0", "c1", "c2")
    assert f.category_counts == {"c0": 10, "c1": 9, "c2": 8, "__other__": sum(range(1, 8))}


def test_inputs_dataframe_array_dict_agree():
    d = _data()
    df = pd.DataFrame(d)
    a = profile(df, categorical=["zip"])
    b = profile(d, categorical=["zip"])
    assert list(a.features) == ["age", "score", "plan", "zip"]
    assert a.features["zip"].kind == "categorical" and a.features["plan"].kind == "categorical"
    for name in a.features:
        np.testing.assert_array_equal(a.features[name].counts, b.features[name].counts)
    arr = profile(np.column_stack([d["age"], d["score"]]))
    assert list(arr.features) == ["x0", "x1"]
    np.testing.assert_array_equal(arr.features["x0"].counts, a.features["age"].counts)


def test_pandas_nullable_and_missing_values():
    df = pd.DataFrame({"n": pd.array([1, None, 3, 4] * 50, dtype="Int64"),
                       "s": pd.Series(["a", None, "b", "a"] * 50)})
    prof = profile(df)
    assert (prof.features["n"].kind, prof.features["n"].missing) == ("numeric", 50)
    assert (prof.features["s"].kind, prof.features["s"].missing) == ("categorical", 50)


def test_prediction_and_label_kinds():
    n = 1_000
    prof = profile({"x": RNG.normal(size=n)}, y=RNG.normal(size=n), predictions=RNG.integers(0, 3, n))
    assert prof.prediction.kind == "categorical" and prof.label.kind == "numeric"
    assert sorted(prof.prediction.categories) == ["0", "1", "2"]
    with pytest.raises(ProfileError, match="1-D"):
        profile({"x": RNG.normal(size=n)}, predictions=RNG.random((n, 2)))


def test_bad_inputs_have_clear_errors():
    with pytest.raises(ValueError, match="different lengths"):
        profile({"a": [1.0, 2.0], "b": [1.0]})
    with pytest.raises(ProfileError, match="no rows"):
        profile({"a": np.array([])})
    with pytest.raises(ProfileError, match="reserved"):
        profile({"__prediction__": [1.0, 2.0]})
    with pytest.raises(ValueError, match="bins"):
        profile({"a": [1.0]}, bins=1)


def test_roundtrip_bytes_and_file(tmp_path):
    prof = profile(_data(), y=RNG.integers(0, 2, 4_000), predictions=RNG.random(4_000))
    back = Profile.from_bytes(prof.to_bytes())
    assert back.to_bytes() == prof.to_bytes()  # deterministic and lossless
    assert back.fingerprint == prof.fingerprint
    path = tmp_path / "ref.driftcar"
    prof.save(path)
    loaded = Profile.load(path)
    for name, f in prof.features.items():
        g = loaded.features[name]
        assert (g.kind, g.n, g.missing) == (f.kind, f.n, f.missing)
        np.testing.assert_array_equal(g.counts, f.counts)
    assert loaded.pca is not None and loaded.prediction.kind == "numeric" and loaded.label.kind == "categorical"


def _corruptions(good: bytes):
    yield "empty", b"", "bad magic"
    yield "not ours", b'{"json": true}' + b"\0" * 20, "bad magic"
    yield "truncated", good[: len(good) // 2], "corrupt or truncated"
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x40
    yield "bit flip", bytes(flipped), "corrupt or truncated"
    magic, _, crc = struct.unpack_from("<8sHI", good)
    yield "version 2", struct.pack("<8sHI", magic, 2, crc) + good[14:], "version 2 is not supported"


@pytest.mark.parametrize("case", ["empty", "not ours", "truncated", "bit flip", "version 2"])
def test_bad_files_raise_profile_error_with_reason(tmp_path, case):
    good = profile(_data(500)).to_bytes()
    _, data, reason = next(c for c in _corruptions(good) if c[0] == case)
    path = tmp_path / "bad.driftcar"
    path.write_bytes(data)
    with pytest.raises(ProfileError, match=reason) as err:
        Profile.load(path)
    assert str(path) in str(err.value)
    with pytest.raises(ProfileError):
        Profile.from_bytes(data)


def test_well_framed_but_inconsistent_payload_is_rejected():
    from driftcar.stats import _codec

    payload = {"source": "training", "bins": 20, "fine_bins": 400, "top_k": 50, "rows": 1,
               "features": [{"name": "x", "kind": "numeric", "n": 1, "missing": 0, "bins": 20}]}
    data = _codec.frame(b"DCPROF\x00\x01", 1, payload)
    with pytest.raises(ProfileError, match=r"profile.features\[0\]: missing field 'fine_edges'"):
        Profile.from_bytes(data)
    with pytest.raises(ProfileError, match="cannot read profile"):
        Profile.load("/nonexistent/ref.driftcar")


def test_chunked_builder_equals_one_shot():
    d = _data(6_000)
    whole = profile(d, max_rows_kept=10_000)
    b = ProfileBuilder(max_rows_kept=10_000)
    chunks = [slice(0, 1_000), slice(1_000, 3_500), slice(3_500, 6_000)]
    for sl in chunks:
        b.observe({k: v[sl] for k, v in d.items()})
    b.fix()
    for sl in chunks:
        b.count({k: v[sl] for k, v in d.items()})
    chunked = b.finish()
    for name, f in whole.features.items():
        g = chunked.features[name]
        np.testing.assert_array_equal(g.counts, f.counts)
        if f.kind == "numeric":
            np.testing.assert_array_equal(g.fine_edges, f.fine_edges)
            assert g.std == pytest.approx(f.std)


def test_sampled_edges_keep_exact_counts():
    x = RNG.normal(size=30_000)
    prof = profile({"x": x, "y": RNG.normal(size=30_000)}, max_rows_kept=2_000)
    f = prof.features["x"]
    assert f.counts.sum() == 30_000 and (f.min, f.max) == (x.min(), x.max())
    np.testing.assert_allclose(f.counts / 30_000, 1 / 20, atol=0.02)  # edges from a 2k sample


def test_feature_profile_is_a_value_object():
    f = profile({"x": RNG.normal(size=100)}).features["x"]
    assert isinstance(f, FeatureProfile)
    with pytest.raises(AttributeError):
        f.n = 3
