"""Sensitivity and false alarms of the drift decision rules, on generated streams and bundled real data.

Run: ``.venv/bin/python benchmarks/run.py verdicts`` (``--quick`` for a smoke run). Counts, not
timings: the figures do not depend on the machine's load (a seed fixes every stream); except the
last section, the speed against NannyML, which runs alone with
``.venv/bin/python benchmarks/bench_verdicts.py --speed`` (its driftcar side in instructions, steady
on a busy machine: ``benchmarks/callgrind_verdicts.py``).

Rules compared on the same windows: the calibrated default (``decision="calibrated"``), the
former default (``"switch"``: KS / chi-square up to 1,000 values, normalised Wasserstein /
Jensen–Shannon >= 0.1 above), KS / chi-square with Benjamini–Hochberg at every size
(``"pvalue"``), and the peers that install next to driftcar (Evidently 0.7, NannyML 0.13; run
with their own interpreter, ``PEERS_PYTHON``, default ``.venv-peers/bin/python`` (``make bench``
makes it),
through ``benchmarks/peers_runner.py``; left out with a note when absent).

Generated data: a 60,000-row reference of 8 N(0, 1) features, a binary feature (share 40 %),
a 3-category and a 20-category (Zipf) feature. driftcar's windows are drawn as multinomial counts
over the profile's bins from the true window distribution — exactly the distribution of the
sketch of n independent rows, so windows of 200,000 rows cost no more than small ones; per-bin
sums sit at the bin's conditional mean (used by Wasserstein only). The peers get raw rows from the
same distributions (fewer windows: they are slower).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "agent"))  # this tree's driftcar, also when run as a script

from driftcar.stats import DriftConfig, evaluate_drift, profile  # noqa: E402
# the deciding test is always computed; methods=("psi",) only skips the other exported ones
RULES = {"new": DriftConfig(multivariate=False, methods=("psi",)),
         "current": DriftConfig(decision="switch", multivariate=False, methods=("psi",)),
         "ks/chi2+BH": DriftConfig(decision="pvalue", multivariate=False, methods=("psi",))}
NUMERIC = [f"num{i}" for i in range(8)]
CATS = {"bin": (["yes", "no"], np.array([0.4, 0.6])),
        "cat3": (["a", "b", "c"], np.array([0.5, 0.3, 0.2])),
        "cat20": ([f"k{j:02d}" for j in range(20)], (1 / np.arange(1, 21)) / (1 / np.arange(1, 21)).sum())}
FEATURES = NUMERIC + list(CATS)
REF_ROWS = 60_000
# not DRIFTCAR_*: a driftcar sidecar refuses unknown DRIFTCAR_ variables, and the benchmarks start sidecars
PEERS_PYTHON = os.environ.get("PEERS_PYTHON", str(HERE.parent / ".venv-peers" / "bin" / "python"))


@dataclass(frozen=True)
class Scenario:
    """One planted change: ``feature`` gets ``numeric`` (mean, sd) or categorical probabilities."""

    name: str
    feature: str | None = None
    mean: float = 0.0
    sd: float = 1.0
    probs: tuple | None = None


def _moved(feature: str, src: int, dst: int, points: float) -> tuple:
    p = CATS[feature][1].copy()
    p[src] -= points / 100
    p[dst] += points / 100
    return tuple(p)


def scenarios() -> list[Scenario]:
    out = [Scenario(f"mean +{d} sd", "num0", mean=d) for d in (0.05, 0.1, 0.25, 0.5)]
    out += [Scenario(f"sd x{s}", "num1", sd=s) for s in (1.1, 1.25)]
    out += [Scenario(f"binary +{p} pts", "bin", probs=_moved("bin", 1, 0, p)) for p in (2, 5, 10, 20)]
    out += [Scenario(f"3-cat {p} pts a->c", "cat3", probs=_moved("cat3", 0, 2, p)) for p in (2, 5)]
    out += [Scenario(f"20-cat {p} pts k00->k19", "cat20", probs=_moved("cat20", 0, 19, p)) for p in (2, 5)]
    return out


def reference(seed: int = 0):
    rng = np.random.default_rng(seed)
    data = {n: rng.standard_normal(REF_ROWS) for n in NUMERIC}
    for name, (labels, p) in CATS.items():
        data[name] = np.asarray(labels, dtype=object)[rng.choice(len(labels), REF_ROWS, p=p)]
    return data, profile(data, multivariate=False)


class WindowMaker:
    """Windows as multinomial counts over the profile's bins (see the module docstring)."""

    def __init__(self, prof):
        self.prof = prof
        self.L = prof.layout
        self._cache: dict = {}

    def _probs(self, kind: str, row: int, *key):
        if (kind, row, key) not in self._cache:
            fn = self._numeric if kind == "numeric" else self._categorical
            self._cache[(kind, row, key)] = fn(row, *key)
        return self._cache[(kind, row, key)]

    def _numeric(self, row: int, mean: float, sd: float) -> tuple[np.ndarray, np.ndarray]:
        e = self.L.fine_edges[row]
        z = np.concatenate([[-np.inf], (e - mean) / sd, [np.inf]])
        cdf = stats.norm.cdf(z)
        p = np.maximum(np.diff(cdf), 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            cmean = mean + sd * (stats.norm.pdf(z[:-1]) - stats.norm.pdf(z[1:])) / np.diff(cdf)
        cmean = np.where(np.isfinite(cmean), cmean, np.clip(mean, e[0], e[-1]))
        return p / p.sum(), cmean

    def _categorical(self, row: int, probs) -> np.ndarray:
        prof = self.L.cat_profiles[row]
        labels, base = CATS[prof.name]
        probs = base if probs is None else np.asarray(probs)
        out = np.zeros(self.L.Kmax + 1)
        for lab, p in zip(labels, probs):
            j = prof.categories.index(lab) if lab in prof.categories else self.L.Kmax
            out[j] += p
        return out / out.sum()

    def window(self, rng, n: int, parts: list[tuple[float, Scenario]]):
        """A window of ``n`` rows: ``parts`` = [(share of rows, scenario)] (a mixture for late onset)."""
        w = self.prof.new_window()
        F = self.L.F
        for share, sc in parts:
            m = int(round(n * share))
            for i, name in enumerate(self.L.num_names):
                mean, sd = (sc.mean, sc.sd) if sc.feature == name else (0.0, 1.0)
                p, cmean = self._probs("numeric", i, mean, sd)
                c = rng.multinomial(m, p)
                w.num_counts[i, : F + 2] += c
                w.num_sums[i, : F + 2] += c * cmean
            for j, name in enumerate(self.L.cat_names):
                probs = self._probs("categorical", j, sc.probs if sc.feature == name else None)
                w.cat_counts[j] += rng.multinomial(m, probs)
        w.rows = n
        return w


def _flags(report) -> dict[str, bool]:
    return {f: r.detected for f, r in report.deciding().items()}


def detection_table(maker, sizes, windows: int, fa_windows: int, seed: int = 1) -> tuple[str, dict]:
    rng = np.random.default_rng(seed)
    none = Scenario("no drift")
    fa = {rule: np.zeros(len(sizes)) for rule in RULES}
    lines = ["| scenario | " + " | ".join(f"{n:,}" for n in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for k, n in enumerate(sizes):
        for _ in range(fa_windows):
            w = maker.window(rng, n, [(1.0, none)])
            for rule, cfg in RULES.items():
                fa[rule][k] += sum(_flags(evaluate_drift(maker.prof, w, cfg)).values())
    fa_rates = {rule: v / (fa_windows * len(FEATURES)) for rule, v in fa.items()}
    lines.append("| **false alarms / feature-window** | " + " | ".join(
        " · ".join(f"{100 * fa_rates[r][k]:.2f}" for r in RULES) for k in range(len(sizes))) + " |")
    found = {}
    for sc in scenarios():
        cells = []
        for n in sizes:
            hits = dict.fromkeys(RULES, 0)
            for _ in range(windows):
                w = maker.window(rng, n, [(1.0, sc)])
                for rule, cfg in RULES.items():
                    hits[rule] += _flags(evaluate_drift(maker.prof, w, cfg))[sc.feature]
            found[(sc.name, n)] = {r: h / windows for r, h in hits.items()}
            cells.append(" · ".join(f"{100 * h / windows:.0f}" for h in hits.values()))
        lines.append(f"| {sc.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines), {"fa": fa_rates, "found": found}


def late_onset(maker, runs: int, n: int = 5_000, seed: int = 2) -> str:
    """10 windows of ``n`` rows; the change starts halfway through window 5."""
    rng = np.random.default_rng(seed)
    none = Scenario("no drift")
    lines = ["| change | rule | alarms before (feature-windows) | flagged in window 5 (half) | by window 6 |",
             "|---|---|---:|---:|---:|"]
    for sc in (Scenario("mean +0.1 sd", "num0", mean=0.1), Scenario("binary +5 pts", "bin",
                                                                    probs=_moved("bin", 1, 0, 5))):
        before = dict.fromkeys(RULES, 0)
        at5 = dict.fromkeys(RULES, 0)
        by6 = dict.fromkeys(RULES, 0)
        for _ in range(runs):
            seen = dict.fromkeys(RULES, False)
            for k in range(7):
                parts = [(1.0, none)] if k < 5 else ([(0.5, none), (0.5, sc)] if k == 5 else [(1.0, sc)])
                w = maker.window(rng, n, parts)
                for rule, cfg in RULES.items():
                    fl = _flags(evaluate_drift(maker.prof, w, cfg))
                    if k < 5:
                        before[rule] += sum(fl.values())
                    else:
                        at5[rule] += k == 5 and fl[sc.feature]
                        seen[rule] |= fl[sc.feature]
            for rule in RULES:
                by6[rule] += seen[rule]
        for rule in RULES:
            lines.append(f"| {sc.name}, {n:,}-row windows | {rule} | {before[rule]} of {runs * 5 * len(FEATURES)} | "
                         f"{at5[rule]} of {runs} | {by6[rule]} of {runs} |")
    return "\n".join(lines)


def real_data(quick: bool) -> str:
    """Bundled data sets (no download): no planted change, then x0 shifted by 0.5 of its sd.

    scikit-learn's sets have no time order (some are sorted by class): shuffled with a seed, windows
    resampled from the whole set. river's streams keep their file order; TrumpApproval is a time
    series whose reference drifts within itself (dispersion >> 1), so the calibrated bands widen and
    its later windows count as ordinary variation."""
    lines = ["| data set (rows, features) | reference rows | windows x rows | no change: new · current · "
             "ks/chi2+BH (alarms / feature-windows) | x0 + 0.5 sd: windows flagging x0 | reference chunk "
             "dispersion, median (max) |", "|---|---:|---:|---|---|---|"]
    for name, X, order, ref_rows, win_rows, n_win in _datasets(quick):
        prof = profile({c: X[:ref_rows, j] for j, c in enumerate(_names(X))}, multivariate=False)
        rng = np.random.default_rng(3)
        alarms, found = dict.fromkeys(RULES, 0), dict.fromkeys(RULES, 0)
        for k in range(n_win):
            if order == "time":  # consecutive rows after the reference, in file order
                part = X[ref_rows + k * win_rows: ref_rows + (k + 1) * win_rows]
            else:  # resampled from the whole data set: the population the reference samples
                part = X[rng.integers(0, len(X), win_rows)]
            for planted in (False, True):
                cols = {c: part[:, j] for j, c in enumerate(_names(X))}
                if planted:
                    cols["x0"] = cols["x0"] + 0.5 * X[:ref_rows, 0].std()
                w = prof.new_window()
                w.update(cols)
                for rule, cfg in RULES.items():
                    flags = _flags(evaluate_drift(prof, w, cfg))
                    if planted:
                        found[rule] += flags["x0"]
                    else:
                        alarms[rule] += sum(flags.values())
        total = n_win * X.shape[1]
        lines.append(f"| {name} ({len(X):,}, {X.shape[1]}) | {ref_rows:,} | {n_win} x {win_rows:,} | "
                     + " · ".join(f"{alarms[r]}" for r in RULES) + f" of {total} | "
                     + " · ".join(f"{found[r]}" for r in RULES) + f" of {n_win} | {_dispersion(prof)} |")
    return "\n".join(lines)


def _dispersion(prof) -> str:
    """How much the reference's consecutive chunks differ (1: like independent rows)."""
    if prof.calibration is None:
        return "n/a"
    d = np.array(list(prof.calibration.dispersion.values()))
    return f"{np.median(d):.1f} ({d.max():.1f})"


def _names(X) -> list[str]:
    return [f"x{j}" for j in range(X.shape[1])]


def _datasets(quick: bool):
    """(name, rows x features array, "time" | "bootstrap", reference rows, window rows, windows)."""
    from sklearn import datasets as skd

    rng = np.random.default_rng(0)
    out = []
    for loader in (skd.load_diabetes, skd.load_breast_cancer, skd.load_wine, skd.load_digits):
        X = loader().data
        X = X[rng.permutation(len(X))]  # some are sorted by class in the file: a seeded shuffle
        ref_rows = 265 if loader is skd.load_diabetes else len(X) // 2
        out.append((f"sklearn {loader.__name__[5:]}, resampled windows", X, "bootstrap", ref_rows, 1_200, 10))
    try:
        from river import datasets as rd

        for ds in (rd.Bananas(), rd.Phishing(), rd.TrumpApproval()):
            rows = list(ds)
            keys = sorted(rows[0][0])
            X = np.array([[float(x[k]) for k in keys] for x, _ in rows])
            win = max(100, len(X) // 20)
            out.append((f"river {type(ds).__name__}, file order", X, "time", len(X) // 2, win,
                        (len(X) - len(X) // 2) // win))
    except ImportError:
        pass
    return out


def peers(quick: bool, sizes) -> str:
    """The same generated scenarios, raw rows, judged by Evidently and NannyML in their own venv."""
    if not Path(PEERS_PYTHON).exists():
        return f"_peers: not run ({PEERS_PYTHON} not found; set PEERS_PYTHON)_"
    data, _ = reference()
    rng = np.random.default_rng(4)
    cases = [("no drift", Scenario("no drift"))] + [
        (sc.name, sc) for sc in scenarios() if sc.name in ("mean +0.1 sd", "mean +0.25 sd", "binary +5 pts",
                                                           "20-cat 5 pts k00->k19")]
    windows = 3 if quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        job = {"reference": _save(tmp, "ref", data), "categorical": list(CATS), "windows": []}
        for name, sc in cases:
            for n in sizes:
                for i in range(windows):
                    job["windows"].append({"case": name, "rows": n, "file": _save(tmp, f"w{len(job['windows'])}",
                                                                                   _raw(rng, n, sc))})
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        proc = subprocess.run([PEERS_PYTHON, str(HERE / "peers_runner.py"), str(Path(tmp) / "job.json")],
                              capture_output=True, text=True, timeout=3_600)
        if proc.returncode:
            return f"_peers failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}_"
        res = json.loads(proc.stdout)
    return _peer_table(res, job, cases, sizes)


def _peer_table(res: dict, job: dict, cases, sizes) -> str:
    lines = [f"Versions: {res['versions']}. Cells: % of windows flagged (feature-windows for no drift).", "",
             "| peer | case | " + " | ".join(f"{n:,}" for n in sizes) + " |", "|---|---|" + "---:|" * len(sizes)]
    for peer in res["flags"]:
        for name, sc in cases:
            cells = []
            for n in sizes:
                idx = [i for i, w in enumerate(job["windows"]) if w["case"] == name and w["rows"] == n]
                flags = [f for f in (res["flags"][peer][i] for i in idx) if f is not None]
                if not flags:
                    cells.append("n/a")
                    continue
                if sc.feature is None:
                    rate = np.mean([np.mean(list(f.values())) for f in flags])
                else:
                    rate = np.mean([f[sc.feature] for f in flags])
                cells.append(f"{100 * rate:.1f}" if sc.feature is None else f"{100 * rate:.0f}")
            lines.append(f"| {peer} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speed(quick: bool, rounds: int | None = None) -> str:
    """Profile + 11 window evaluations (10 windows of a tenth of the rows, then their merge) against
    NannyML's univariate drift (fit + 10 chunks) on the same rows. The two run interleaved, one
    after the other in each round, and each figure is the median of the per-round ratios (a busy
    machine slows both alike within a round), in wall time and in process CPU time (steadier when
    other work shares the cores). NannyML computes one method per column (Jensen–Shannon by
    default), so driftcar is timed with the deciding test alone (``methods=()``) and, beside it,
    with every method the sidecar can export (``methods=None``)."""
    rng = np.random.default_rng(6)
    rounds = rounds or (3 if quick else 7)
    lines = ["| rows (reference = analysis) | driftcar, deciding test, ms (CPU ms) | driftcar, every method, ms "
             "(CPU ms) | NannyML fit + 10 chunks, ms (CPU ms) | ratio, deciding: wall · CPU | ratio, every "
             "method: wall · CPU |", "|---:|---:|---:|---:|---:|---:|"]
    for rows in (50_000,) if quick else (50_000, 200_000):
        ref, ana = _raw(rng, rows, Scenario("none")), _raw(rng, rows, Scenario("none"))
        with tempfile.TemporaryDirectory() as tmp:
            job = _timing_job(tmp, ref, ana)
            t: dict[str, list[tuple[float, float]]] = {"deciding": [], "every": [], "nannyml": []}
            for _ in range(rounds):
                t["deciding"].append(_timed(lambda: _ours(ref, ana, rows, DriftConfig(methods=()))))
                t["every"].append(_timed(lambda: _ours(ref, ana, rows, DriftConfig())))
                peer = _nannyml_seconds(job)
                if peer is None:
                    break
                t["nannyml"].append(peer)
        cells = [" (".join(f"{1e3 * float(np.median([r[i] for r in t[k]])):.0f}" for i in (0, 1)) + ")"
                 if t[k] else "n/a" for k in ("deciding", "every", "nannyml")]
        k = len(t["nannyml"])
        ratios = [" · ".join(f"{np.median([t['nannyml'][j][i] / t[ours][j][i] for j in range(k)]):.1f}x"
                             for i in (0, 1)) if k else "n/a (NannyML not found)" for ours in ("deciding", "every")]
        lines.append(f"| {rows:,} | " + " | ".join(cells) + f" | **{ratios[0]}** | {ratios[1]} |")
    lines += ["", f"{rounds} interleaved rounds; target >= 10x. Workload: 8 N(0,1) features, a binary, a 3- and a "
              "20-category (text) feature; driftcar builds the default profile (PCA included) from the rows."]
    return "\n".join(lines)


def _ours(ref: dict, ana: dict, rows: int, cfg: DriftConfig) -> None:
    _windows(profile(ref), ana, rows, cfg)


def _windows(prof, ana: dict, rows: int, cfg: DriftConfig) -> None:
    """The 10 chunks of ``ana`` as windows, each evaluated, then their merge: 11 evaluations."""
    merged = prof.new_window()
    for k in range(10):
        w = prof.new_window()
        w.update({c: v[k * rows // 10:(k + 1) * rows // 10] for c, v in ana.items()})
        evaluate_drift(prof, w, cfg)
        merged = merged.merge(w)
    evaluate_drift(prof, merged, cfg)


def _timed(fn) -> tuple[float, float]:
    """(wall, process CPU) seconds of one call."""
    import time

    started, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - started, time.process_time() - cpu


def _timing_job(tmp: str, ref: dict, ana: dict) -> str:
    job = {"timing": {"reference": _save(tmp, "ref", ref), "analysis": _save(tmp, "ana", ana), "chunks": 10,
                      "repeat": 1}, "categorical": list(CATS)}
    path = Path(tmp) / "job.json"
    path.write_text(json.dumps(job))
    return str(path)


def _nannyml_seconds(job: str) -> tuple[float, float] | None:
    """(wall, CPU) seconds of one NannyML run in the peers' interpreter (import and file reading not timed)."""
    if not Path(PEERS_PYTHON).exists():
        return None
    proc = subprocess.run([PEERS_PYTHON, str(HERE / "peers_runner.py"), job], capture_output=True, text=True,
                          timeout=1_800)
    if proc.returncode:
        return None
    out = json.loads(proc.stdout)
    return out["seconds"], out["cpu_seconds"]


def _raw(rng, n: int, sc: Scenario) -> dict:
    out = {}
    for name in NUMERIC:
        mean, sd = (sc.mean, sc.sd) if sc.feature == name else (0.0, 1.0)
        out[name] = rng.normal(mean, sd, n)
    for name, (labels, p) in CATS.items():
        probs = np.asarray(sc.probs) if sc.feature == name else p
        out[name] = np.asarray(labels, dtype=object)[rng.choice(len(labels), n, p=probs)]
    return out


def _save(tmp: str, stem: str, data: dict) -> str:
    path = str(Path(tmp) / f"{stem}.npz")
    np.savez(path, **{k: (v.astype(str) if v.dtype == object else v) for k, v in data.items()})
    return path


def run(quick: bool) -> str:
    sizes = (500, 5_000, 20_000, 200_000) if quick else (500, 2_000, 5_000, 20_000, 50_000, 200_000)
    windows, fa_windows = (20, 100) if quick else (100, 1_000)
    _, prof = reference()
    maker = WindowMaker(prof)
    table, figures = detection_table(maker, sizes, windows, fa_windows)
    fa_new = max(figures["fa"]["new"])
    parts = [
        "## Drift verdicts: sensitivity and false alarms",
        "",
        f"Reference {REF_ROWS:,} rows ({len(NUMERIC)} N(0,1), binary 40 %, 3- and 20-category); one feature "
        f"changed per scenario. Cells: % of {windows} windows whose changed feature is flagged, as "
        "**new · current · ks/chi2+BH**; the first row: % of no-drift feature-windows flagged "
        f"({fa_windows:,} windows x {len(FEATURES)} features per size). Largest false-alarm rate of the new "
        f"default at any size: {100 * fa_new:.2f} %.",
        "",
        table,
        "",
        "### Late onset (change from the middle of window 5)",
        "",
        late_onset(maker, 10 if quick else 50),
        "",
        "### Bundled real data (scikit-learn, river; no download)",
        "",
        real_data(quick),
        "",
        "### Peers on the same scenarios (raw rows)",
        "",
        peers(quick, (500, 5_000, 20_000) if quick else (500, 5_000, 20_000, 200_000)),
        "",
        "### Speed against NannyML (wall time: rerun on a quiet machine before quoting)",
        "",
        speed(quick),
    ]
    return "\n".join(parts)


if __name__ == "__main__":  # --speed: only the speed comparison (a few minutes)
    quick = "--quick" in sys.argv
    print(speed(quick) if "--speed" in sys.argv else run(quick))
