"""Reports from in-memory tables and files: verdicts equal driftcar.stats + VerdictTracker run
by hand, windows by rows and by time, a profile file equals profiling the data, bad input is a
clear ValueError."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import driftcar
from driftcar.stats import DriftConfig, VerdictTracker, evaluate_drift, profile
from driftcar.view import Report
from driftcar.view import offline


def _frames(seed: int = 0):
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({"a": rng.normal(0, 1, 5_000), "b": rng.normal(0, 1, 5_000),
                        "c": rng.choice(["x", "y"], 5_000)})
    cur = pd.DataFrame({"a": rng.normal(0, 1, 3_000), "b": rng.normal(0, 1, 3_000),
                        "c": rng.choice(["x", "y"], 3_000)})
    cur.loc[1_500:, "a"] += 1.0  # the second half of the current rows drifts in a
    return ref, cur


def test_row_windows_match_stats_and_the_tracker():
    ref, cur = _frames()
    rep = driftcar.report(ref, cur, rows=1_000)
    assert isinstance(rep, Report) and "<!DOCTYPE html>" in rep.html
    (model,) = rep.document["models"]
    assert model["windows_kept"] == 3 and model["rows_total"] == 3_000
    prof = profile(ref)
    tracker = VerdictTracker(DriftConfig())
    for k in range(3):
        window = prof.new_window()
        window.update({c: cur[c].to_numpy()[k * 1_000:(k + 1) * 1_000] for c in cur.columns})
        expected = evaluate_drift(prof, window, DriftConfig())
        tracker.update(expected)
        for f in model["features"]:
            assert f["history"][k]["score"] == pytest.approx(expected.deciding()[f["name"]].statistic, rel=1e-9)
    assert sorted(model["drifted"]) == sorted(tracker.drifted)
    assert "a" in model["drifted"] and "b" not in model["drifted"] and "c" not in model["drifted"]
    a = next(f for f in model["features"] if f["name"] == "a")
    assert a["since_window"] == 2  # window 2 holds rows 1000..1999, half of them shifted


def test_time_windows_align_to_the_epoch_and_skip_unreadable_times():
    ref, cur = _frames(1)
    cur["ts"] = [f"2026-01-0{1 + i // 1_000}T12:00:00Z" for i in range(3_000)]
    cur.loc[:9, "ts"] = "not a time"
    rep = offline.report(ref, cur, time_column="ts", window="1d")
    (model,) = rep.document["models"]
    assert model["windows_kept"] == 3 and model["window_seconds"] == 86_400
    assert model["last_window"]["start_unix_nano"] == 1_767_398_400 * 10**9  # 2026-01-03T00:00Z
    assert any("10 rows without a readable time" in n for n in rep.document["notes"])
    assert "ts" not in [f["name"] for f in model["features"]]


def test_profile_file_reference_equals_the_data(tmp_path):
    ref, cur = _frames(2)
    ref.to_csv(tmp_path / "ref.csv", index=False)
    cur.to_csv(tmp_path / "cur.csv", index=False)
    profile(ref).save(tmp_path / "ref.driftcar")
    from_file = offline.report(tmp_path / "ref.driftcar", tmp_path / "cur.csv")
    from_csv = offline.report(str(tmp_path / "ref.csv"), str(tmp_path / "cur.csv"))
    scores = [{f["name"]: f["score"] for f in r.document["models"][0]["features"]} for r in (from_file, from_csv)]
    assert scores[0] == pytest.approx(scores[1], rel=1e-9)
    path = from_file.save(tmp_path / "out.html")
    assert open(path, encoding="utf-8").read() == from_file.html
    assert from_file._repr_html_().startswith("<iframe srcdoc=") and "&lt;!DOCTYPE html&gt;" in from_file._repr_html_()


def test_quality_from_label_and_prediction_columns():
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"a": rng.normal(size=2_000), "y": rng.integers(0, 2, 2_000), "p": rng.integers(0, 2, 2_000)})
    cur = pd.DataFrame({"a": rng.normal(size=500), "y": rng.integers(0, 2, 500), "p": rng.integers(0, 2, 500)})
    rep = offline.report(ref, cur, label="y", prediction="p")
    quality = rep.document["models"][0]["quality"]
    assert quality["accuracy"] == pytest.approx(float(np.mean(cur["y"] == cur["p"])), abs=1e-12)
    assert {f["name"] for f in rep.document["models"][0]["features"]} >= {"a", "__prediction__"}


def test_bad_input_is_a_clear_error(monkeypatch):
    ref, cur = _frames(3)
    with pytest.raises(ValueError, match="go together"):
        offline.report(ref, cur, time_column="ts")
    with pytest.raises(ValueError, match="no time column 'ts'"):
        offline.report(ref, cur, time_column="ts", window="1h")
    with pytest.raises(ValueError, match="not both"):
        offline.report(ref, cur, time_column="a", window="1h", rows=10)
    monkeypatch.setattr(offline, "MAX_WINDOWS", 5)
    with pytest.raises(ValueError, match="more than 5 windows"):
        offline.report(ref, cur, rows=100)
