"""The view's cost: rendering a page and building a report, against the statistics they show.

Run: ``.venv/bin/python benchmarks/run.py view`` (``--quick`` for a smoke run).
Baselines measured in the same run: one ``evaluate_drift`` of one window (the work the sidecar
does per window anyway) for the page, and ``profile()`` of the reference for the report.
"""

from __future__ import annotations


import numpy as np
from _timing import best

from driftcar.stats import DriftConfig, evaluate_drift, profile
from driftcar.view import offline
from driftcar.view.document import current_of, distribution, feature_entry, history_point, reference_of
from driftcar.view.render import render_page




def _data(rows: int, n_num: int, n_cat: int, seed: int, shift: float = 0.0) -> dict:
    rng = np.random.default_rng(seed)
    cats = np.array([f"c{i}" for i in range(12)])
    X = {f"n{i}": rng.normal(shift if i < 3 else 0.0, 1, rows) for i in range(n_num)}
    X.update({f"k{i}": list(rng.choice(cats, rows)) for i in range(n_cat)})
    return X


def page(quick: bool) -> str:
    n_num, n_cat, windows = (40, 10, 5) if quick else (90, 10, 10)
    prof = profile(_data(20_000, n_num, n_cat, 0))
    sketches = []
    for k in range(windows):
        w = prof.new_window()
        w.update(_data(2_000, n_num, n_cat, k + 1, shift=0.5 if k >= windows // 2 else 0.0))
        sketches.append(w)
    config = DriftConfig()
    reports = [evaluate_drift(prof, w, config) for w in sketches]
    baseline = best(lambda: evaluate_drift(prof, sketches[-1], config), 5)

    def document() -> dict:
        features = []
        for name, result in reports[-1].deciding().items():
            history = [history_point(r.deciding()[name], 0, 0, 2_000) for r in reports]
            dist = distribution(reference_of(prof, name), current_of(sketches[-1], name))
            features.append(feature_entry(result, bool(result.detected), None, dist, history))
        model = {"name": "m", "version": "1", "reference": None, "rows_total": 0, "windows_kept": windows,
                 "window_seconds": 60.0, "last_window": None, "golden": None, "quality": {},
                 "estimated_accuracy": None, "drifted": [], "features": features}
        return {"title": "bench", "kind": "live", "generated_unix_nano": 0, "refresh_seconds": 5, "models": [model],
                "events": [], "notes": []}

    built = best(document, 5)
    doc = document()
    rendered = best(lambda: render_page(doc), 5)
    size = len(render_page(doc).encode())
    return (f"## View: one live page\n\n{n_num + n_cat} features, {windows} kept windows of 2,000 rows "
            f"(best of 5).\n\n| step | time | vs one evaluate_drift ({baseline * 1e3:.1f} ms) |\n|---|---|---|\n"
            f"| document from stats objects | {built * 1e3:.1f} ms | {built / baseline:.2f}x |\n"
            f"| HTML + SVG render | {rendered * 1e3:.1f} ms | {rendered / baseline:.2f}x |\n\n"
            f"Page size: {size / 1024:.0f} KiB (uncompressed).\n")


def report(quick: bool) -> str:
    rows = 20_000 if quick else 100_000
    ref, cur = _data(rows, 18, 2, 0), _data(rows, 18, 2, 1, shift=0.3)
    baseline = best(lambda: profile(ref), 3)
    built = best(lambda: offline.report(ref, cur, rows=rows // 10), 3)
    return (f"## View: a report\n\n{rows:,} x 20 reference vs {rows:,} x 20 current in 10 windows "
            f"(in memory, best of 3).\n\n| step | time | vs profile() of the reference |\n|---|---|---|\n"
            f"| profile() (baseline) | {baseline:.2f} s | 1.00x |\n"
            f"| driftcar.report() incl. its profile | {built:.2f} s | {built / baseline:.2f}x |\n")


def run(quick: bool = False) -> str:
    return page(quick) + "\n" + report(quick)
