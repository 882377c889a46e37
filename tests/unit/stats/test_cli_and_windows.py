"""``driftcar profile`` (CSV, gzip, Parquet, chunked streaming, progress only on a TTY, clear errors)
and tumbling/sliding windows."""

from __future__ import annotations

import csv
import gzip

import numpy as np
import pytest

from driftcar.cli import main
from driftcar.stats import Profile, WindowSeries, profile


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def _table(n=3_000, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "id": np.arange(n),
        "age": np.round(rng.normal(40, 10, n), 3),
        "plan": rng.choice(["free", "pro"], n),
        "y": rng.integers(0, 2, n),
    }


def _write_csv(path, t, opener=open):
    with opener(path, "wt", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(t))
        for i in range(len(t["id"])):
            row = [t[k][i] for k in t]
            if i % 50 == 0:
                row[1] = ""  # a missing age
            w.writerow(row)


def test_csv_profile_streams_in_chunks_and_equals_in_memory(tmp_path, capsys):
    t = _table()
    src = tmp_path / "train.csv"
    _write_csv(src, t)
    out = tmp_path / "ref.driftcar"
    code, stdout, stderr = _run(["profile", str(src), "--out", str(out), "--label", "y", "--exclude", "id",
                                 "--chunk-rows", "700"], capsys)
    assert code == 0, stderr
    assert "\r" not in stderr  # stderr is not a terminal: no progress bar
    assert "3000 rows, 2 features" in stdout and "wrote" in stdout
    prof = Profile.load(out)
    age = t["age"].astype(float)
    age[::50] = np.nan
    expected = profile({"age": age, "plan": list(t["plan"])}, y=t["y"])
    assert list(prof.features) == ["age", "plan"] and prof.label.kind == "categorical"
    for name in prof.features:
        np.testing.assert_array_equal(prof.features[name].counts, expected.features[name].counts)
    assert prof.features["age"].missing == 60


def test_gzip_csv_two_files_and_progress_when_forced(tmp_path, capsys):
    a, b = tmp_path / "a.csv.gz", tmp_path / "b.csv"
    _write_csv(a, _table(1_000, 1), gzip.open)
    _write_csv(b, _table(500, 2))
    out = tmp_path / "ref.driftcar"
    code, _, stderr = _run(["profile", str(a), str(b), "-o", str(out), "--progress", "always", "-q"], capsys)
    assert code == 0, stderr
    assert "pass 2/2" in stderr and "100.0%" in stderr
    assert Profile.load(out).rows == 1_500


def test_parquet(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    t = _table(2_000, 3)
    src = tmp_path / "train.parquet"
    age = pa.array([None if i % 50 == 0 else float(v) for i, v in enumerate(t["age"])])
    pq.write_table(pa.table({"age": age, "plan": pa.array(t["plan"].tolist()), "y": pa.array(t["y"])}), src,
                   row_group_size=600)
    out = tmp_path / "ref.driftcar"
    code, _, stderr = _run(["profile", str(src), "--out", str(out), "--prediction", "y", "--chunk-rows", "512"],
                           capsys)
    assert code == 0, stderr
    prof = Profile.load(out)
    assert prof.rows == 2_000 and prof.features["age"].missing == 40 and prof.prediction.kind == "categorical"


def test_errors_are_clear_and_exit_2(tmp_path, capsys):
    src = tmp_path / "train.csv"
    _write_csv(src, _table(100))
    bad = tmp_path / "ragged.csv"
    bad.write_text("a,b\n1,2\n3\n")
    cases = [
        (["profile", str(src)], "--out is required"),
        (["profile", "--out", "x"], "no input files"),
        (["profile", str(tmp_path / "missing.csv"), "--out", "x"], "No such file"),
        (["profile", str(bad), "--out", str(tmp_path / "x")], "ragged.csv:3: 1 fields, header has 2"),
        (["profile", str(src), "--out", str(tmp_path / "x"), "--label", "nope"], "no column 'nope'"),
        (["profile", "--show", str(src)], "not a driftcar profile"),
    ]
    for argv, message in cases:
        code, _, stderr = _run(argv, capsys)
        assert code == 2 and message in stderr, (argv, stderr)


def test_show_prints_a_summary(tmp_path, capsys):
    path = tmp_path / "ref.driftcar"
    profile({"x": np.linspace(0.0, 1.0, 100), "c": ["a", "b"] * 50}).save(path)
    code, out, _ = _run(["profile", "--show", str(path)], capsys)
    assert code == 0 and "100 rows, 2 features" in out and "categorical" in out


def test_env_defaults(tmp_path, capsys, monkeypatch):
    src = tmp_path / "train.csv"
    _write_csv(src, _table(500))
    monkeypatch.setenv("DRIFTCAR_PROFILE_BINS", "5")
    out = tmp_path / "ref.driftcar"
    code, _, stderr = _run(["profile", str(src), "--out", str(out), "-q"], capsys)
    assert code == 0, stderr
    assert Profile.load(out).bins == 5


def test_yaml_config_env_and_flag_precedence(tmp_path, capsys, monkeypatch):
    src = tmp_path / "train.csv"
    _write_csv(src, _table(500))
    cfg = tmp_path / "profile.yaml"
    cfg.write_text("bins: 4\ntop-k: 1\nexclude: [id]\nmultivariate: false\nout: %s\n" % (tmp_path / "a.driftcar"))
    code, _, stderr = _run(["profile", str(src), "--config", str(cfg), "-q"], capsys)
    assert code == 0, stderr
    prof = Profile.load(tmp_path / "a.driftcar")
    assert (prof.bins, prof.top_k, "id" in prof.features, prof.pca) == (4, 1, False, None)
    monkeypatch.setenv("DRIFTCAR_PROFILE_BINS", "5")  # environment beats the file, the flag beats both
    code, _, _ = _run(["profile", str(src), "--config", str(cfg), "-q"], capsys)
    assert Profile.load(tmp_path / "a.driftcar").bins == 5
    code, _, _ = _run(["profile", str(src), "--config", str(cfg), "--bins", "6", "--multivariate", "-q"], capsys)
    prof = Profile.load(tmp_path / "a.driftcar")
    assert (prof.bins, prof.pca is not None) == (6, True)


def test_bad_option_values_are_reported_where_they_come_from(tmp_path, capsys, monkeypatch):
    src = tmp_path / "train.csv"
    _write_csv(src, _table(100))
    cfg = tmp_path / "profile.yaml"
    cfg.write_text("bogus: 1\ntop_k: -3\n")
    monkeypatch.setenv("DRIFTCAR_PROFILE_BINS", "many")
    code, _, stderr = _run(["profile", str(src), "--out", str(tmp_path / "x"), "--config", str(cfg)], capsys)
    assert code == 2
    for part in ("unknown key 'bogus'", "top_k: expected an integer >= 1", "DRIFTCAR_PROFILE_BINS: expected an integer"):
        assert part in stderr
    code, out, _ = _run(["--help"], capsys)  # a bad variable never breaks other commands
    assert code == 0 and "profile" in out


def test_tumbling_windows_and_sliding_views():
    prof = profile({"x": np.linspace(0.0, 10.0, 1_000)})
    s = WindowSeries(prof, length_s=10, keep=3)
    assert s.add({"x": [1.0, 2.0]}, now=100.0) == []
    s.add({"x": [3.0]}, now=105.0)
    closed = s.add({"x": [4.0]}, now=112.0)
    assert [(c.start, c.end, c.sketch.rows) for c in closed] == [(100.0, 110.0, 3)]
    s.add({"x": [5.0]}, now=108.0)  # late: goes to the open window, counted
    assert s.late == 1 and s.current.rows == 2
    closed = s.roll(now=145.0)  # closes 110-120 and the two empty windows of the gap
    assert [(c.start, c.sketch.rows) for c in closed] == [(110.0, 2), (120.0, 0), (130.0, 0)]
    assert [c.start for c in s.closed] == [110.0, 120.0, 130.0]  # at most keep=3 closed windows
    assert s.sliding(3).rows == sum(c.sketch.rows for c in s.closed)
    with pytest.raises(ValueError):
        WindowSeries(prof, length_s=0)
