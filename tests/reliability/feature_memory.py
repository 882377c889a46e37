"""Memory per feature of a model's state with a full window history, split by part (tracemalloc).

Shared by ``test_feature_memory.py`` and ``benchmarks/bench_sidecar.py``. Built in-process on the
sidecar's own ``StateStore`` (the same objects a running sidecar holds): the reference profile, read
from its bytes as a sidecar reads its file, with its binning layout (the layout adopts the profile's
arrays, so the two are counted together), the model's state and an open window (what
``set_profile`` and the first batch build), then ``windows`` closed windows compacted as the
evaluator compacts them, plus the cumulative sketch.
tracemalloc counts Python and numpy allocations exactly, so the figures do not depend on the load
of the machine (RSS does, through the allocator).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np

KIB = 1024


#: how values are drawn: full-precision floats (the worst case for exact sums), or fewer significant digits
VALUES = {
    "normal": lambda rng, n: rng.normal(size=n),
    "2 decimals": lambda rng, n: np.round(rng.normal(50.0, 10.0, size=n), 2),
    "integers": lambda rng, n: np.round(rng.normal(50.0, 10.0, size=n)),
}


def measure(features: int, rows_per_window: int, windows: int = 60, seed: int = 0,
            values: str = "normal") -> dict[str, float]:
    """Bytes per feature: ``profile`` (profile + its layout), ``open`` (state + open window),
    ``closed`` (closed windows + cumulative), ``total``; and ``blob`` bytes per feature per window.
    ``values``: a key of :data:`VALUES`."""
    from driftcar.sidecar.config import load_config
    from driftcar.sidecar.state import ClosedWindow, StateStore
    from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig
    from driftcar.stats import Profile, profile

    rng = np.random.default_rng(seed)
    draw = VALUES[values]
    names = [f"f{i}" for i in range(features)]
    tel = Telemetry(TelemetryConfig(export="none"))
    store = StateStore(load_config(env={}, flags={"live_reference_rows": "0", "windows_kept": str(windows)}).store_config(),
                       tel)
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        data = profile({n: draw(rng, 1_000) for n in names}).to_bytes()
        gc.collect()  # the profiling's reference cycles, freed now rather than inside the measurement
        base = tracemalloc.get_traced_memory()[0]
        prof = Profile.from_bytes(data)  # as a sidecar reads its profile file (data: freed after the count)
        prof.layout  # noqa: B018 -- built as set_profile builds it: it adopts the profile's arrays
        after_profile = tracemalloc.get_traced_memory()[0]
        state = store.get_or_create("m", "1")
        state.set_profile(prof, "file")
        state.window.update({n: draw(rng, rows_per_window) for n in names})
        after_layout = tracemalloc.get_traced_memory()[0]
        blobs = 0
        for w in range(windows):
            sketch = prof.new_window()
            sketch.update({n: draw(rng, rows_per_window) for n in names})
            window = ClosedWindow(w, w + 1, rows_per_window, sketch, profile=prof)
            state.series.keep_closed(window)  # kept and added to the cumulative sketch
            state.compact_closed()  # as the evaluator does after evaluating: the window and the cumulative
            blobs += len(window.blob())
            del sketch, window
        end = tracemalloc.get_traced_memory()[0]
    finally:
        if started:
            tracemalloc.stop()
    return {"profile": (after_profile - base) / features, "open": (after_layout - after_profile) / features,
            "closed": (end - after_layout) / features, "total": (end - base) / features,
            "blob": blobs / windows / features}


def measure_alone(features: int, rows_per_window: int, windows: int = 60, timeout: float = 600) -> dict[str, float]:
    """:func:`measure` in a fresh interpreter: tracemalloc counts every thread's allocations, so
    threads other tests left running in this process (a shipper, an exporter) would be counted too
    (a run after three other reliability modules read +2 KiB per feature that way)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = ("import json, sys; from tests.reliability.feature_memory import measure; "
            f"print(json.dumps(measure({int(features)}, rows_per_window={int(rows_per_window)}, windows={int(windows)})))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.path.join(root, "agent"), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"the measurement failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
