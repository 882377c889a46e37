"""Judge windows with Evidently and NannyML, each with its defaults (run by bench_verdicts.py).

Runs under the peers' own interpreter (they pin other pandas / numpy versions than driftcar):
``python peers_runner.py job.json`` prints {"versions", "flags": {peer: [{feature: bool} | None]}}.
job.json: {"reference": npz, "categorical": [names], "windows": [{"rows", "file"}]}.
Evidently 0.7: ``DataDriftPreset`` (per column: p-value methods flag p < threshold, distances
value >= threshold). NannyML 0.13: ``UnivariateDriftCalculator`` defaults, ``chunk_size`` = the
window's rows, fitted on the reference; a window size the reference cannot chunk gives None.
"""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pandas as pd


def _frame(path: str) -> pd.DataFrame:
    with np.load(path, allow_pickle=False) as z:
        return pd.DataFrame({k: z[k] for k in z.files})


def evidently_flags(ref: pd.DataFrame, windows: list[pd.DataFrame], cats: list[str]) -> list[dict]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    dd = DataDefinition(numerical_columns=[c for c in ref.columns if c not in cats], categorical_columns=cats)
    ref_ds = Dataset.from_pandas(ref, data_definition=dd)
    out = []
    for cur in windows:
        snap = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur, data_definition=dd), ref_ds)
        flags = {}
        for m in snap.dict()["metrics"]:
            cfg = m.get("config", {})
            if "column" not in cfg:
                continue
            value, thr = float(m["value"]), float(cfg["threshold"])
            flags[cfg["column"]] = value < thr if "p_value" in cfg["method"] else value >= thr
        out.append(flags)
    return out


def nannyml_flags(ref: pd.DataFrame, windows: list[pd.DataFrame], cats: list[str]) -> list[dict | None]:
    import nannyml as nml

    out: list[dict | None] = [None] * len(windows)
    for rows in sorted({len(w) for w in windows}):
        idx = [i for i, w in enumerate(windows) if len(w) == rows]
        try:
            calc = nml.UnivariateDriftCalculator(column_names=list(ref.columns), treat_as_categorical=cats,
                                                 chunk_size=rows)
            calc.fit(ref)
            res = calc.calculate(pd.concat([windows[i] for i in idx], ignore_index=True))
            df = res.filter(period="analysis").to_df()
        except Exception as exc:  # a size the reference cannot chunk: reported as not run
            print(f"nannyml, {rows} rows: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        alerts = {c: df[(c, m, "alert")].to_numpy() for c, m, k in df.columns if k == "alert" and c != "chunk"}
        for j, i in enumerate(idx):
            out[i] = {c: bool(a[j]) for c, a in alerts.items()}
    return out


def nannyml_seconds(ref: pd.DataFrame, analysis: pd.DataFrame, cats: list[str], chunks: int) -> tuple[float, float]:
    """(wall, process CPU) seconds of NannyML's univariate drift with its defaults: fit + calculate
    on ``chunks`` chunks."""
    import time

    import nannyml as nml

    started, cpu = time.perf_counter(), time.process_time()
    calc = nml.UnivariateDriftCalculator(column_names=list(ref.columns), treat_as_categorical=cats,
                                         chunk_number=chunks)
    calc.fit(ref)
    calc.calculate(analysis).filter(period="analysis").to_df()
    return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    job = json.loads(open(sys.argv[1]).read())
    if "timing" in job:  # {"timing": {"reference", "analysis", "chunks"}, "categorical"}
        t = job["timing"]
        warnings.simplefilter("ignore")
        ref, ana = _frame(t["reference"]), _frame(t["analysis"])
        runs = [nannyml_seconds(ref, ana, job["categorical"], t["chunks"]) for _ in range(t.get("repeat", 1))]
        print(json.dumps({"versions": {"NannyML": __import__("nannyml").__version__},
                          "seconds": min(r[0] for r in runs), "cpu_seconds": min(r[1] for r in runs)}))
        return
    ref = _frame(job["reference"])
    windows = [_frame(w["file"]) for w in job["windows"]]
    versions, flags = {}, {}
    warnings.simplefilter("ignore")
    for name, module, fn in (("Evidently", "evidently", evidently_flags), ("NannyML", "nannyml", nannyml_flags)):
        try:
            versions[name] = __import__(module).__version__
        except ImportError:
            continue
        flags[name] = fn(ref, windows, job["categorical"])
    print(json.dumps({"versions": versions, "flags": flags}))


if __name__ == "__main__":
    main()
