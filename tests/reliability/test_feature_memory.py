"""Memory per feature with 60 kept windows (``FEATURE_MEMORY`` features: 2,000 in CI, 50,000 long).

The figures are tracemalloc counts of the sidecar's own state objects (see ``feature_memory.py``),
so they hold on a loaded machine; taken in a fresh interpreter, so no other test's threads count. The bound is the 20 KiB-per-feature goal at 200 rows per window
(benchmarks/results.md, "Memory per feature": what each byte is).
"""

from __future__ import annotations

import pytest

from tests.reliability.feature_memory import KIB, measure_alone
from tests.reliability.sizes import size

FEATURES = size("FEATURE_MEMORY")
pytestmark = pytest.mark.timeout(120 + FEATURES // 50)

#: KiB per feature at 200 rows per window, 60 windows (measured ~19.3 at 5,000 features: the loaded profile +
#: layout ~7.9, open window ~1.9 (its values, not yet binned), 60 closed windows (means in 3 bits, ~150 B
#: each) + the cumulative (exact counts and sums per feature) ~9.5; ~31 with 8-bit means, an exact
#: cumulative and a lookup table per feature)
BOUND_KIB = 20


def test_memory_per_feature_with_60_windows():
    got = measure_alone(FEATURES, rows_per_window=200, windows=60)
    print(f"\n{FEATURES} features x 60 windows of 200 rows: {got['total'] / KIB:.1f} KiB per feature (profile "
          f"+ layout {got['profile'] / KIB:.1f}, open window {got['open'] / KIB:.1f}, 60 closed windows "
          f"+ cumulative {got['closed'] / KIB:.1f}; {got['blob']:.0f} B per feature per closed window)")
    assert got["total"] <= BOUND_KIB * KIB, got
    # a closed window is kept sparse + compressed: ~155 B per feature at 200 rows (8-bit means: ~245 B;
    # exact sums: ~980 B; live: ~4.8 KB)
    assert got["blob"] < 180, got


@pytest.mark.parametrize("rows", [0, 1, 50, 5_000])
def test_a_closed_window_decompresses_exact_but_for_its_means(rows):
    import zlib

    import numpy as np

    from driftcar.sidecar.state import ClosedWindow
    from driftcar.stats import profile

    rng = np.random.default_rng(rows)
    prof = profile({"a": rng.normal(size=2_000), "b": rng.exponential(size=2_000),
                    "c": [f"v{i % 7}" for i in range(2_000)]})
    sketch = prof.new_window()
    if rows:
        a = rng.normal(size=rows) * 3
        a[:: 11] = -0.0  # negative zeros, infinities, NaNs and far outliers ride along
        a[1:: 13] = np.inf
        a[2:: 17] = np.nan
        a[3:: 19] = 1e300
        sketch.update({"a": a, "b": rng.exponential(size=rows), "c": [f"v{i % 9}" for i in range(rows)]})
    window = ClosedWindow(0, 1, rows, sketch, profile=prof)
    original = sketch.to_bytes()
    window.compact()
    for name in ("num_counts", "num_lo", "num_hi", "num_inf", "cat_counts"):
        assert np.array_equal(getattr(window.sketch, name).view(np.uint8), getattr(sketch, name).view(np.uint8))
    counts = sketch.num_counts.astype(float)
    F = prof.layout.F
    width = np.zeros_like(counts)
    width[:, 1:F + 1] = np.diff(prof.layout.fine_edges, axis=1)
    with np.errstate(all="ignore"):  # each inner bin's mean within its bin's width / 14 (3 bits)
        err = np.where(counts > 0, np.abs(window.sketch.num_sums - sketch.num_sums) / counts / width, 0.0)
    assert np.nan_to_num(err[:, 1:F + 1]).max(initial=0) <= 1 / 14 * (1 + 1e-9)
    # the out-of-range bins (1e300) bit for bit
    assert np.array_equal(window.sketch.num_sums[:, -2], sketch.num_sums[:, -2])
    # checkpoints written before (exact packed form v3; zlib of the dense bytes) still restore, and
    # 8-bit means (v4) keep theirs
    assert np.array_equal(ClosedWindow(0, 1, rows, profile=prof, blob=sketch.pack(exact=False)).sketch.num_counts,
                          sketch.num_counts)
    for blob in (sketch.pack(), zlib.compress(original, 1)):
        assert ClosedWindow(0, 1, rows, profile=prof, blob=blob).sketch.to_bytes() == original
