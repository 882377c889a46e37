"""Detection quality of the size-switch rule (``decision="switch"``) on seeded synthetic streams.

20 N(0, 1) features, a finite reference (20,000 rows), 5 features shifted by 0.25 sd:
- with 5,000 rows per window the shifted features are flagged in the first window after the shift
  (and the VerdictTracker raises exactly then);
- over 1,000 undrifted windows the false-alarm rate per feature-window stays under 1 %,
  both on the large-window path (normalised Wasserstein) and the small-window path
  (KS with Benjamini–Hochberg across features).
The full table (shift x window size) is in ``benchmarks/bench_stats.py``; the calibrated
default rule has its own checks in ``test_calibration.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from driftcar.stats import DriftConfig, VerdictTracker, WindowSeries, evaluate_drift, profile

N_FEATURES, N_SHIFTED, REF_ROWS = 20, 5, 20_000
NAMES = [f"f{i}" for i in range(N_FEATURES)]
SWITCH = DriftConfig(decision="switch")


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(2024)
    return profile({n: rng.normal(size=REF_ROWS) for n in NAMES}, multivariate=False)


def _window(prof, rng, rows: int, shift: float = 0.0):
    data = rng.standard_normal((N_FEATURES, rows))
    data[:N_SHIFTED] += shift
    w = prof.new_window()
    w.update({n: data[i] for i, n in enumerate(NAMES)})
    return w


def test_shift_flagged_in_first_window_after_it(reference):
    rng = np.random.default_rng(1)
    series = WindowSeries(reference, length_s=60, keep=5)
    tracker = VerdictTracker(SWITCH)
    raised_at = {}
    for k in range(8):  # windows 0-4 undrifted, shift from window 5 on
        shift = 0.25 if k >= 5 else 0.0
        data = rng.standard_normal((N_FEATURES, 5_000))
        data[:N_SHIFTED] += shift
        closed = series.add({n: data[i] for i, n in enumerate(NAMES)}, now=60.0 * k + 1)
        for c in closed:
            report = evaluate_drift(reference, c.sketch, SWITCH)
            assert report.deciding()["f0"].method == "wasserstein"
            for change in tracker.update(report):
                raised_at.setdefault(change.feature, (c.start // 60, change.detected))
    assert {f: v for f, v in raised_at.items()} == {f"f{i}": (5.0, True) for i in range(N_SHIFTED)}


def test_shift_detection_rate_per_window(reference):
    rng = np.random.default_rng(2)
    flagged = np.zeros(N_FEATURES)
    for _ in range(20):
        dec = evaluate_drift(reference, _window(reference, rng, 5_000, 0.25), SWITCH).deciding()
        flagged += [dec[n].detected for n in NAMES]
    assert (flagged[:N_SHIFTED] == 20).all()  # every shifted feature, every window
    assert flagged[N_SHIFTED:].sum() == 0


@pytest.mark.parametrize("rows, method", [(5_000, "wasserstein"), (500, "ks")])
def test_false_alarms_under_one_percent_over_1000_windows(reference, rows, method):
    rng = np.random.default_rng(3 + rows)
    alarms = 0
    for _ in range(1_000):
        dec = evaluate_drift(reference, _window(reference, rng, rows), SWITCH).deciding()
        assert dec["f0"].method == method
        alarms += sum(dec[n].detected for n in NAMES)
    rate = alarms / (1_000 * N_FEATURES)
    assert rate < 0.01, f"false-alarm rate {rate:.2%} per feature-window"


def test_uncorrected_pvalues_raise_more_false_alarms(reference):
    """Why the correction is on by default: raw p < 0.05 on 20 features alarms ~5 % of feature-windows."""
    rng = np.random.default_rng(4)
    counts = {"benjamini-hochberg": 0, "none": 0}
    for _ in range(200):
        w = _window(reference, rng, 500)
        for corr in counts:
            dec = evaluate_drift(reference, w, DriftConfig(correction=corr, methods=("ks",), decision="switch")).deciding()
            counts[corr] += sum(dec[n].detected for n in NAMES)
    assert counts["none"] > 3 * max(counts["benjamini-hochberg"], 1)
    assert counts["none"] / (200 * N_FEATURES) > 0.02
