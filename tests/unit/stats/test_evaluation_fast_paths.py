"""The faster evaluation and profiling paths give exactly what the plain ones give: the reference
counted per calibration chunk from one binning of each column (one ``count`` call spanning the
chunks) against one ``count`` call per chunk (``update_chunks`` against plain updates:
test_update_chunks.py), and evaluations whose plan is remembered per config
against evaluations with a config seen for the first time (equal results, bit for bit)."""

from __future__ import annotations

import numpy as np
import pytest

from driftcar.stats import DriftConfig, Profile, ProfileBuilder, evaluate_drift, evaluate_label_drift, profile

RNG = np.random.default_rng(23)
N = 6_000


def _data(n: int = N) -> dict:
    return {
        "x": RNG.normal(size=n),
        "nan": np.where(RNG.random(n) < 0.05, np.nan, RNG.exponential(size=n)),
        "inf": np.where(RNG.random(n) < 0.01, np.inf, RNG.normal(size=n)),  # open-ended bins
        "const": np.full(n, 3.0),
        "ints": RNG.integers(0, 7, n),
        "text": list(RNG.choice(["a", "b", "c", None], n, p=[0.5, 0.3, 0.15, 0.05])),
        "obj": np.array([f"k{j:02d}" for j in range(20)], dtype=object)[RNG.integers(0, 20, n)],
    }


@pytest.mark.parametrize("kept", [100_000, 1_000])  # every row kept for the edges, or a sample
def test_one_count_call_over_every_chunk_equals_one_update_per_chunk(kept):
    data = _data()
    y, pred = RNG.integers(0, 2, N), RNG.normal(size=N)
    opts = dict(categorical={"text", "obj"}, max_rows_kept=kept, seed=4)
    one = ProfileBuilder(**opts)
    one.observe(data, y, pred)
    one.count(data, y, pred)  # spans all calibration chunks: the split path
    per = ProfileBuilder(**opts)
    per.observe(data, y, pred)
    per.fix()
    cuts = per._cuts
    assert len(cuts) > 2
    for a, b in zip(cuts[:-1], cuts[1:]):  # one chunk per call: one update each
        per.count({k: v[a:b] for k, v in data.items()}, y[a:b], pred[a:b])
    for w1, w2 in zip(one._windows, per._windows):
        for name in w1._ARRAYS + w1._EXTREMES + w1._SCALARS:
            np.testing.assert_array_equal(getattr(w1, name), getattr(w2, name), err_msg=name)
        assert w1.num_counts.dtype == w2.num_counts.dtype
    p1, p2 = one.finish(), per.finish()
    p1.created = p2.created = 0.0
    assert p1.to_bytes() == p2.to_bytes()


@pytest.fixture(scope="module")
def reference():
    data = _data(20_000)
    return profile(data, y=RNG.integers(0, 2, 20_000), predictions=RNG.normal(size=20_000),
                   categorical={"text", "obj"})


CONFIGS = [
    {},
    {"methods": ()},
    {"decision": "switch"},
    {"decision": "pvalue", "correction": "bonferroni"},
    {"decision": "distance", "multivariate": False},
    {"decision": "switch", "large_sample": 400, "thresholds": {"psi": 0.2}, "min_samples": 50,
     "features": {"x": {"threshold": 0.01}, "text": {"method": "jensenshannon"}, "nan": {"enabled": False},
                  "__multivariate__": {"threshold": 0.3, "decision": "switch"}, "ints": {"min_samples": 700},
                  "obj": {"decision": "pvalue", "min_effect": 0.2}}},
]


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_remembered_plans_equal_a_first_evaluation(reference, kwargs):
    config = DriftConfig(**kwargs)
    drifted = _data(6_000)
    drifted["x"] = drifted["x"] + 0.3
    windows = []
    for rows in (60, 300, 700, 6_000):  # both sides of large_sample, and below min_samples
        w = reference.new_window()
        w.update({k: v[:rows] for k, v in drifted.items()})
        w.update_labels(RNG.integers(0, 2, rows))
        w.update_predictions(RNG.normal(size=rows))
        windows.append(w)
    seen = [evaluate_drift(reference, w, config).results for w in windows * 2]  # second round: from memory
    labels = [evaluate_label_drift(reference, w, config) for w in windows]
    for k, w in enumerate(windows):
        fresh = Profile.from_bytes(reference.to_bytes())  # a new layout: nothing remembered
        copy = fresh.new_window().merge(_rebound(w, fresh))
        expected = evaluate_drift(fresh, copy, DriftConfig(**kwargs)).results
        assert seen[k] == expected
        assert seen[k + len(windows)] == expected
        assert labels[k] == evaluate_label_drift(fresh, copy, DriftConfig(**kwargs))
    assert any(r.detected for r in seen[-1])


def _rebound(window, prof):
    """``window``'s counts on an equal profile object."""
    return type(window).from_bytes(window.to_bytes(), prof)


def test_remembered_plans_are_read_only_and_bounded(reference):
    w = reference.new_window()
    w.update({k: v[:500] for k, v in _data(500).items()})
    for k in range(80):
        evaluate_drift(reference, w, DriftConfig(min_samples=k + 1))
    memo = reference.layout.drift_memo
    assert 0 < len(memo) <= 64
    for _, plan in memo.values():
        arrays = plan.values() if isinstance(plan, dict) else plan
        for a in arrays:
            if isinstance(a, np.ndarray):
                assert not a.flags.writeable


def test_a_finished_profile_reuses_the_counting_pass_bin_tables_with_its_own_edges():
    data = {"x": RNG.normal(size=N), "skew": RNG.lognormal(0, 2, N), "steps": RNG.integers(0, 30, N).astype(float)}
    prof = profile(data)
    binners = prof.layout.binners
    assert binners.tables == 3  # from the counting pass, not rebuilt
    fresh = Profile.from_bytes(prof.to_bytes()).layout.binners  # built here from the edges
    x = np.concatenate([RNG.normal(size=2_000) * 5, RNG.lognormal(0, 3, 2_000), [np.nan, np.inf, -np.inf, 1e308]])
    for row in range(3):
        np.testing.assert_array_equal(binners(row, x), fresh(row, x))
        np.testing.assert_array_equal(binners(row, x), np.searchsorted(prof.layout.edges_ext[row, :-1], x, "right"))
        assert np.shares_memory(binners._lookup[row].ext, prof.layout.edges_ext)  # not the draft's copy


def test_one_plan_per_config_unless_the_switch_rule_reads_the_window_size():
    prof = profile({"a": RNG.normal(size=5_000), "b": RNG.choice(["x", "y"], 5_000)})
    sizes = (200, 900, 1_100, 4_000)  # both sides of large_sample (1,000)
    for kwargs, plans in (({}, 3), ({"decision": "switch"}, 6), ({"features": {"a": {"decision": "switch"}}}, 6)):
        prof.layout.drift_memo.clear()
        config = DriftConfig(**kwargs)
        for rows in sizes:
            w = prof.new_window()
            w.update({"a": RNG.normal(size=rows), "b": RNG.choice(["x", "y"], rows)})
            evaluate_drift(prof, w, config)
        assert len(prof.layout.drift_memo) == plans  # numeric, categorical and the report, per size class
