"""Memory per feature with 60 kept windows (``FEATURE_MEMORY`` features: 2,000 in CI, 50,000 long).

The figures are tracemalloc counts of the sidecar's own state objects (see ``feature_memory.py``),
so they hold on a loaded machine. The bound is today's measured figure plus a margin: a guard
against growth; the 20 KiB-per-feature goal needs the stats layout and exact per-bin sums to
shrink first (tests/reliability/README.md, "Memory per feature").
"""

from __future__ import annotations

import pytest

from tests.reliability.feature_memory import KIB, measure
from tests.reliability.sizes import size

FEATURES = size("FEATURE_MEMORY")
pytestmark = pytest.mark.timeout(120 + FEATURES // 50)

#: KiB per feature at 50 rows per window, 60 windows (measured ~115; profile ~13, layout + open window ~53)
BOUND_KIB = 140


def test_memory_per_feature_with_60_windows():
    got = measure(FEATURES, rows_per_window=50, windows=60)
    print(f"\n{FEATURES} features x 60 windows of 50 rows: {got['total'] / KIB:.1f} KiB per feature (profile "
          f"{got['profile'] / KIB:.1f}, layout + open window {got['layout_and_open'] / KIB:.1f}, 60 closed windows "
          f"+ cumulative {got['closed'] / KIB:.1f}; {got['blob']:.0f} B per feature per closed window)")
    assert got["total"] <= BOUND_KIB * KIB, got
    # a closed window is kept compressed: far below the 6.5 KB per feature of a live sketch
    assert got["blob"] < 1_000, got
