"""Memory per feature with 60 kept windows (``FEATURE_MEMORY`` features: 2,000 in CI, 50,000 long).

The figures are tracemalloc counts of the sidecar's own state objects (see ``feature_memory.py``),
so they hold on a loaded machine. The bound is today's measured figure plus a margin: a guard
against growth; the 20 KiB-per-feature goal is not met (tests/reliability/README.md, "Memory per
feature": what each byte is and what is left).
"""

from __future__ import annotations

import pytest

from tests.reliability.feature_memory import KIB, measure
from tests.reliability.sizes import size

FEATURES = size("FEATURE_MEMORY")
pytestmark = pytest.mark.timeout(120 + FEATURES // 50)

#: KiB per feature at 50 rows per window, 60 windows (measured ~34: the loaded profile + layout ~7.9, open
#: window ~4.9, closed windows + packed cumulative ~21; ~47 with int64 counts, a dense cumulative and
#: packed form v2; ~99 before that)
BOUND_KIB = 40


def test_memory_per_feature_with_60_windows():
    got = measure(FEATURES, rows_per_window=50, windows=60)
    print(f"\n{FEATURES} features x 60 windows of 50 rows: {got['total'] / KIB:.1f} KiB per feature (profile "
          f"+ layout {got['profile'] / KIB:.1f}, open window {got['open'] / KIB:.1f}, 60 closed windows "
          f"+ cumulative {got['closed'] / KIB:.1f}; {got['blob']:.0f} B per feature per closed window)")
    assert got["total"] <= BOUND_KIB * KIB, got
    # a closed window is kept sparse + compressed: ~315 B per feature at 50 rows (v2: ~330 B; raw sparse
    # sums: ~440 B; zlib of the dense sketch: ~620 B; live: ~4.8 KB)
    assert got["blob"] < 340, got


@pytest.mark.parametrize("rows", [0, 1, 50, 5_000])
def test_a_closed_window_decompresses_bit_for_bit(rows):
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
    assert window.sketch.to_bytes() == original
    for name in ("num_counts", "num_sums", "num_lo", "num_hi", "cat_counts"):
        assert np.array_equal(getattr(window.sketch, name).view(np.uint8), getattr(sketch, name).view(np.uint8))
    # a checkpoint written before the sparse form (zlib of the dense bytes) still restores
    old = ClosedWindow(0, 1, rows, profile=prof, blob=zlib.compress(original, 1))
    assert old.sketch.to_bytes() == original
