"""Column kinds are inferred by stated rules and said out loud: `driftcar profile` and `profile()`."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest
from scipy import stats

from driftcar.cli import main
from driftcar.stats import Profile, profile
from driftcar.stats.infer import MIN_RELIABLE_ROWS, InferenceReport, KindInference, detectable_shift
from driftcar.stats.profile import ProfileWarning

pd = pytest.importorskip("pandas")
N = 20_000


def _ages(rng, n=N):
    ages = rng.integers(18, 80, n).astype(object)
    ages[[n // 200, n // 4]] = "unknown"
    ages[n * 9 // 20] = "n/a"  # a spelling of "no value": missing, not a stray
    return ages


def _kinds(prof) -> dict:
    return {c.name: c for c in prof.inference.columns}


def test_mostly_numeric_column_stays_numeric_and_strays_are_reported():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"age": _ages(rng), "income": rng.normal(50, 10, N)})
    with pytest.warns(ProfileWarning) as caught:
        prof = profile(df)
    assert len(caught) == 1  # said once, everything in it
    assert "'age': 2 non-numeric value(s) treated as missing (e.g. 'unknown')" in str(caught[0].message)
    age = prof.features["age"]
    assert age.kind == "numeric" and age.missing == 3 and age.n == N - 3
    k = _kinds(prof)["age"]
    assert (k.kind, k.invalid, k.missing, k.examples) == ("numeric", 2, 1, ("unknown",))
    assert "99.99% of 19,999 values parse as numbers" in k.reason  # of the non-missing ones
    # the numbers are the numbers: the same bins as the clean column with the strays as NaN
    clean = pd.to_numeric(pd.Series(_ages(np.random.default_rng(0))), errors="coerce").to_numpy()
    ref = profile({"age": clean}, infer=False)
    np.testing.assert_array_equal(age.fine_counts, ref.features["age"].fine_counts)


def test_a_column_of_mostly_words_stays_categorical_with_its_reason():
    rng = np.random.default_rng(1)
    words = rng.choice(["a", "b", "c", "7"], 2_000, p=[0.3, 0.3, 0.3, 0.1])
    prof = profile({"w": list(words), "x": rng.normal(size=2_000)})
    k = _kinds(prof)["w"]
    assert prof.features["w"].kind == "categorical" and k.kind == "categorical"
    assert "strings" in k.reason and "4 distinct" in k.reason


@pytest.mark.parametrize("column,why", [
    (lambda rng, n: [None] * n, "empty"),
    (lambda rng, n: np.full(n, np.nan), "empty"),
    (lambda rng, n: rng.permutation(np.arange(1_000, 1_000 + n)), "id-like"),  # an integer sequence, any order
    (lambda rng, n: np.arange(n, dtype=np.float64), "id-like"),  # as a CSV reader hands it over
    (lambda rng, n: [f"cust-{rng.integers(1 << 40):x}-{i}" for i in range(n)], "id-like"),
    (lambda rng, n: pd.date_range("2024-01-01", periods=n, freq="h"), "timestamp-like"),
    (lambda rng, n: [f"2024-03-{i % 28 + 1:02d} 12:00:00" for i in range(n)], "timestamp-like"),
    (lambda rng, n: [f"{i % 28 + 1:02d}/03/2024" for i in range(n)], "timestamp-like"),
])
def test_empty_id_and_timestamp_columns_are_left_out_unless_kept(column, why):
    rng = np.random.default_rng(2)
    n = 1_500
    df = pd.DataFrame({"odd": column(rng, n), "x": rng.normal(size=n)})
    with pytest.warns(ProfileWarning, match=f"column 'odd' excluded: {why}"):
        prof = profile(df)
    assert list(prof.features) == ["x"] and prof.inference.excluded == ["odd"]
    assert "--keep odd" in _kinds(prof)["odd"].note
    kept = profile(df, keep=["odd"])
    assert "odd" in kept.features and _kinds(kept)["odd"].kept
    assert f"kept although {why}" in _kinds(kept)["odd"].reason


@pytest.mark.parametrize("values", [
    lambda rng, n: rng.integers(0, 50, n),  # repeated integers: a count, not an id
    lambda rng, n: rng.normal(size=n),  # unique floats: continuous, not an id
    lambda rng, n: np.arange(n) * 2,  # unique integers with gaps: not a sequence
    lambda rng, n: list(rng.choice(["x", "y"], n)),
])
def test_ordinary_columns_are_not_excluded(values):
    rng = np.random.default_rng(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about
        prof = profile({"v": values(rng, 1_500)})
    assert prof.inference.excluded == [] and "v" in prof.features


def test_every_column_left_out_is_a_clear_error():
    from driftcar.stats import ProfileError

    with pytest.raises(ProfileError, match="every column was left out .*id: id-like"):
        profile({"id": np.arange(500)})


def test_detectable_shift_matches_scipy_and_has_the_stated_power():
    n, m = 265, 1_000
    s = detectable_shift(n)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert s["window"] == m
    assert s["mean_shift_sd"] == pytest.approx(z * np.sqrt(1 / n + 1 / m), rel=1e-9)
    assert s["share_change"] == pytest.approx(s["mean_shift_sd"] / 2, rel=1e-12)
    # Welch t-tests on normal samples shifted by exactly that much reject at 5 % in ~80 % of trials
    # (4,000 trials: the estimate's sd is 0.0063; tolerance 0.03 covers it and the z approximation)
    rng = np.random.default_rng(4)
    a = rng.normal(size=(4_000, n))
    b = rng.normal(s["mean_shift_sd"], 1.0, size=(4_000, m))
    power = np.mean(stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue < 0.05)
    assert power == pytest.approx(0.8, abs=0.03)
    # the same for a 50 % share against share + change
    p = rng.binomial(n, 0.5, 4_000) / n
    q = rng.binomial(m, 0.5 + s["share_change"], 4_000) / m
    pooled = (p * n + q * m) / (n + m)
    zstat = (q - p) / np.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    assert np.mean(np.abs(zstat) > stats.norm.ppf(0.975)) == pytest.approx(0.8, abs=0.03)
    with pytest.raises(ValueError):
        detectable_shift(0)


def test_a_small_reference_is_reported_with_what_it_can_detect():
    rng = np.random.default_rng(5)
    with pytest.warns(ProfileWarning, match=r"265 rows, fewer than 1,000: .* mean shift of >= 0.194 sd"):
        small = profile({"x": rng.normal(size=265)})
    assert small.inference.too_small
    big = profile({"x": rng.normal(size=MIN_RELIABLE_ROWS)})
    assert not big.inference.too_small and big.inference.warnings() == []


def test_the_report_is_saved_with_the_profile_and_old_files_still_load():
    rng = np.random.default_rng(6)
    df = pd.DataFrame({"age": _ages(rng, 3_000), "id": np.arange(3_000), "x": rng.normal(size=3_000)})
    prof = profile(df)
    back = Profile.from_bytes(prof.to_bytes())
    assert back.inference == prof.inference and back.inference.rows == 3_000
    assert back.to_bytes() == prof.to_bytes()  # same fingerprint: checkpointed windows still match
    assert _kinds(back)["age"].examples == ("unknown",)
    plain = profile({"x": rng.normal(size=3_000)}, infer=False)  # no report: the bytes have no such key
    assert plain.inference is None and b"inference" not in plain.to_bytes()
    assert Profile.from_bytes(plain.to_bytes()).inference is None
    with pytest.raises(ValueError):
        InferenceReport.from_dict({"columns": [{"name": "a", "kind": "bogus"}]})


def test_names_given_for_no_column_are_reported_with_the_closest():
    rng = np.random.default_rng(9)
    with pytest.warns(ProfileWarning, match=r"no column 'agee' to keep.*did you mean 'age'"):
        prof = profile({"age": rng.normal(size=2_000), "city": list(rng.choice(["a", "b"], 2_000))}, keep=["agee"])
    assert prof.inference.unmatched == ("agee",)
    assert Profile.from_bytes(prof.to_bytes()).inference.unmatched == ("agee",)


def test_bools_and_unhashable_values():
    inf = KindInference()
    out = inf.apply({"b": [True, False, None] * 10, "l": [[1], [2], None] * 10})
    kinds = {c.name: (c.kind, c.reason) for c in inf.report().columns}
    assert kinds["b"] == ("categorical", "bool values") and out["b"][0] is True
    assert kinds["l"][0] == "categorical"  # keyed by text, not a crash


def test_kinds_are_decided_once_and_strays_counted_in_every_chunk():
    inf = KindInference()
    first = inf.apply({"a": ["1", "2", "x"] + ["3"] * 97})
    later = inf.apply({"a": ["4", "y", None]})
    inf.apply({"a": ["4", "y", None]}, count=False)  # a second pass counts nothing
    assert first["a"].dtype == np.float64 and np.isnan(later["a"][1:]).all()
    r = inf.report()
    assert (r.rows, r.columns[0].invalid, r.columns[0].missing, r.columns[0].examples) == (103, 2, 1, ("x", "y"))


# ---------------------------------------------------------------------------- the command


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def _csv(path, n, seed=7):
    rng = np.random.default_rng(seed)
    ages = _ages(rng, n)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "age", "income", "debt", "when", "empty", "y"])
        for i in range(n):
            inc = rng.normal(50, 10)
            w.writerow([i + 1, ages[i], f"{inc:.4f}", f"{inc + rng.normal(0, 30):.4f}", f"2024-02-{i % 28 + 1:02d}",
                        "", int(rng.integers(0, 2))])


def test_cli_says_what_it_inferred_and_why(tmp_path, capsys):
    src, out = tmp_path / "train.csv", tmp_path / "ref.driftcar"
    _csv(src, N)
    code, stdout, stderr = _run(["profile", str(src), "--out", str(out), "--label", "y", "--chunk-rows", "8000"],
                                capsys)
    assert code == 0, stderr
    lines = {ln.split()[0]: ln for ln in stdout.splitlines() if ln.startswith("  ") and len(ln.split()) > 2}
    assert "columns, as inferred from the first 8,000 rows" in stdout
    assert "numeric" in lines["age"] and "2 invalid values treated as missing (e.g. 'unknown')" in lines["age"]
    assert "excluded    id-like: 8,000 distinct integers 1..8000" in lines["id"]
    assert "excluded    timestamp-like" in lines["when"] and "excluded    empty" in lines["empty"]
    assert "sensitivity: 20,000 reference rows" in stdout
    for name in ("id", "when", "empty"):
        assert f"warning: column {name!r} excluded" in stderr
    prof = Profile.load(out)
    assert list(prof.features) == ["age", "income", "debt"] and prof.features["age"].missing == 3
    # kept on request; a small reference warns with what it can detect; -q keeps the warnings
    small = tmp_path / "small.driftcar"
    code, stdout, stderr = _run(["profile", str(src), "--out", str(small), "--label", "y", "--keep", "id,when",
                                 "--max-rows-kept", "300", "-q"], capsys)
    assert code == 0 and stdout == "" and "id" in Profile.load(small).features
    assert "warning: column 'empty' excluded" in stderr and "'id'" not in stderr


def test_cli_small_reference_and_show(tmp_path, capsys):
    src, out = tmp_path / "train.csv", tmp_path / "ref.driftcar"
    _csv(src, 400)
    code, stdout, stderr = _run(["profile", str(src), "--out", str(out), "--label", "y"], capsys)
    assert code == 0
    assert "warning: reference has 400 rows, fewer than 1,000" in stderr and "mean shift of >=" in stderr
    code, shown, _ = _run(["profile", "--show", str(out)], capsys)
    assert code == 0 and shown.endswith("\n") and "columns, as inferred" in shown and "sensitivity: 400" in shown
    # age, income, debt are nearly unrelated: 90 % of the variance needs all three components
    assert "PCA 2 of 3 components" in shown and "capped at 2 = features - 1" in shown
    assert "the 90% target needs all 3" in shown


def test_pca_summary_when_the_target_is_reached(tmp_path, capsys):
    rng = np.random.default_rng(8)
    z = rng.normal(size=(3_000, 1))
    path = tmp_path / "ref.driftcar"
    profile(z + 0.05 * rng.normal(size=(3_000, 3))).save(path)
    code, shown, _ = _run(["profile", "--show", str(path)], capsys)
    assert code == 0 and "PCA 1 of 3 components" in shown and "the fewest that reach the 90% target" in shown
