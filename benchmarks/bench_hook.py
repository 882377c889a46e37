"""Hook overhead per call, in one process: what ``driftcar.instrument`` adds on the model's thread.

What a user pays (each variant in its own process, background threads and a real sidecar
included) is ``bench_hookproc.py``; this one isolates the wrapper and compares spans with
the classic span-per-step instrumentation.

Model: ``Pipeline(StandardScaler(), LogisticRegression())`` on 20 float features.
Variants, each on its own fitted copy of the same model, timed call by call and
interleaved (every round calls each variant once, in a rotating order) so machine
noise hits all of them alike; figures are medians of per-call
``time.perf_counter_ns`` deltas.

- bare: the un-instrumented pipeline.
- capture: ``instrument(spans=False)`` with a real ``Shipper`` pointed at a closed
  port on 127.0.0.1, its batch thresholds above the run size, so its worker stays
  asleep: this is the model thread's cost (wrapper, snapshot, ``offer_raw``).
  The worker's cost (columns, encoding, export) is measured in bench_shipping.
- capture+spans: the same plus driftcar's spans (outer ``Pipeline.predict`` and one
  per step) through an SDK ``TracerProvider`` whose processor drops every span.
- span-per-step: the classic instrumentor's approach with the OTel SDK alone, same
  provider: a wrapper per method that calls ``get_tracer()`` on every call and
  opens ``start_as_current_span`` per step.
- spans, no SDK / no-op API spans: driftcar spans (capture off) with no provider
  configured, against the same span-per-step wrapper with a cached no-op tracer.

Also a 1,000-row predict: bare, capture, copy=False, and raw numpy copies of the
input (no driftcar) that show what a kept 160 KB snapshot costs on this machine. Targets (issue 2): capture <= 5 us
median over bare on 1 row; capture+spans < span-per-step; capture <= 2% on 1,000 rows.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

TARGET_US = 5.0
TARGET_PCT = 2.0


class _DropAll:
    """A span processor that keeps nothing (the SDK still builds every span)."""

    def on_start(self, span, parent_context=None):
        pass

    def on_end(self, span):
        pass

    def _on_ending(self, span):
        pass

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


def _naive_span_per_step(pipe, provider):
    """Instance-level wrappers the way the classic sklearn instrumentor did it; returns an undo."""
    from opentelemetry import trace

    wrapped = []

    def wrap(obj, name):
        original = getattr(obj, name)
        span_name = f"{type(obj).__name__}.{name}"

        def wrapper(*args, **kwargs):
            tracer = trace.get_tracer("naive.sklearn", tracer_provider=provider)  # per call
            with tracer.start_as_current_span(span_name):
                return original(*args, **kwargs)

        setattr(obj, name, wrapper)
        wrapped.append((obj, name))

    for _, step in pipe.steps:
        wrap(step, "transform" if hasattr(step, "transform") else "predict")
    wrap(pipe, "predict")

    def undo():
        for obj, name in wrapped:
            del obj.__dict__[name]

    return undo


def _pipelines(n: int, X, y):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return [make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y) for _ in range(n)]


def _blocks(pipe, variants: dict, X, cycles: int, block: int) -> dict[str, tuple[float, float]]:
    """``{name: (median µs per call, Δ µs over "bare")}`` for ``pipe.predict(X)`` under each variant,
    all on ONE model instance.

    ``variants`` maps a name to ``setup() -> undo``. Variants take turns in short blocks of
    ``block`` calls, order rotating every cycle, so no variant gets a luckier memory layout or
    a quieter moment of the machine than another. Δ is the median over cycles of (this
    variant's block median − bare's block median in the same cycle): load that changes
    over seconds cancels out.
    """
    names = list(variants)
    samples: dict[str, list[int]] = {n: [] for n in names}
    per_cycle: dict[str, list[float]] = {n: [] for n in names}
    clock = time.perf_counter_ns
    for c in range(cycles + 1):
        shift = c % len(names)
        for name in names[shift:] + names[:shift]:
            undo = variants[name]()
            try:
                predict = pipe.predict
                times = []
                for _ in range(block):
                    t0 = clock()
                    predict(X)
                    times.append(clock() - t0)
            finally:
                undo()
            if c:  # the first cycle is warm-up
                samples[name].extend(times)
                per_cycle[name].append(statistics.median(times))
    bare = per_cycle["bare"]
    return {
        n: (statistics.median(samples[n]) / 1e3, statistics.median(a - b for a, b in zip(per_cycle[n], bare)) / 1e3)
        for n in names
    }


def _copy_baselines(pipe) -> dict:
    """Raw numpy snapshots of predict's input, no driftcar: where the 1,000-row copy cost comes from.

    Each installs an instance-level wrapper (like the naive instrumentor) that calls predict, then
    does nothing (what any wrapper costs this call), or copies its input: freed at once (the copy lands on memory predict just freed, cache-hot),
    kept in a deque of the last 100 (fresh memory every call, as a queue that holds them),
    into a ring of 100 preallocated, already page-faulted blocks (an arena: warm pages, cold
    cache), or into one preallocated block.
    """
    from collections import deque

    def install(after):
        def setup():
            original = pipe.predict

            def wrapper(X):
                result = original(X)
                after(X)
                return result

            pipe.__dict__["predict"] = wrapper
            return lambda: pipe.__dict__.pop("predict")
        return setup

    kept: deque = deque(maxlen=100)
    ring = [np.ones((1_000, 20)) for _ in range(100)]
    turn = [0]
    one = np.ones((1_000, 20))

    def to_ring(X):
        turn[0] = (turn[0] + 1) % len(ring)
        np.copyto(ring[turn[0]], X)

    return {
        "pass-through wrapper (no driftcar)": install(lambda X: None),
        "numpy copy, freed at once": install(lambda X: X.copy()),
        "numpy copy, last 100 kept": install(lambda X: kept.append(X.copy())),
        "copy into a ring of 100 preallocated blocks": install(to_ring),
        "copy into one preallocated block": install(lambda X: np.copyto(one, X)),
    }


def _conversion(quick: bool) -> list[str]:
    """Worker-side cost: to_columns on many 1-row items, combined vs one item at a time."""
    import pandas as pd

    from driftcar.hook.columns import to_columns
    from driftcar.hook.records import Captured

    rng = np.random.default_rng(1)
    n = 2_000 if quick else 10_000
    frame = pd.DataFrame(rng.normal(size=(1, 20)), columns=[f"f{i}" for i in range(20)])
    frame["city"] = ["Paris"]
    cases = {
        "numpy 1×20 + prediction": [
            Captured("inference", "predict", 0, 1e-4, 1, None, 0, rng.normal(size=(1, 20)), np.array([1]))
            for _ in range(n)
        ],
        "DataFrame 1×21 (one str column)": [
            Captured("inference", "predict", 0, 1e-4, 1, None, 0, frame.copy(), np.array([1])) for _ in range(n // 5)
        ],
        "river dict row (20 floats) + label": [
            Captured("inference", "predict_one", 0, 1e-4, 1, None, 0,
                     {f"f{i}": float(v) for i, v in enumerate(rng.normal(size=20))}, True)
            for _ in range(n)
        ],
    }
    lines = [
        "",
        f"**Conversion on the shipper's thread** (`to_columns`, rows/s; best of 3): many 1-row items combined",
        "by layout before converting, against converting each item on its own (same code, one item per call).",
        "",
        "| items | combined rows/s | one by one rows/s | × |",
        "|---|---:|---:|---:|",
    ]
    for name, items in cases.items():
        combined = min(_timed(lambda: to_columns(items)) for _ in range(3))
        single = min(_timed(lambda: [to_columns([i]) for i in items[: len(items) // 4]]) for _ in range(3)) * 4
        lines.append(f"| {name} | {len(items) / combined:,.0f} | {len(items) / single:,.0f} | {single / combined:.1f} |")
    return lines


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class _NullShipper:
    """offer() does nothing: isolates the capture side's own share of the cost."""

    stats: dict = {}

    def offer(self, captured):
        pass

    def offer_raw(self, raw, rows, nbytes):
        pass

    def flush(self, timeout=0.0):
        return True

    def shutdown(self, timeout=0.0):
        return True


def run(quick: bool) -> str:
    import logging

    hook_log = logging.getLogger("driftcar.hook")
    level = hook_log.level
    hook_log.setLevel(logging.ERROR)  # the closed port's export failures are expected here
    try:
        return _run(quick)
    finally:
        hook_log.setLevel(level)


def _run(quick: bool) -> str:
    import driftcar
    from driftcar.hook.shipping import Shipper, ShipperConfig
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import NoOpTracerProvider
    from tests.support.waiting import free_port

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2_000, 20))
    y = (X[:, :3].sum(axis=1) > 0).astype(int)
    [pipe] = _pipelines(1, X, y)
    provider = TracerProvider()
    provider.add_span_processor(_DropAll())
    # a real Shipper, nothing listening at its endpoint, thresholds above the run: its worker sleeps
    shipper = Shipper(ShipperConfig("bench", "1", endpoint=f"http://127.0.0.1:{free_port()}",
                                    max_batch_rows=10**9, max_batch_age_s=3600.0))

    def instrumented(**options):
        def setup():
            driftcar.instrument(pipe, name="bench", **options)
            return lambda: driftcar.uninstrument(pipe)
        return setup

    variants = {
        "bare": lambda: (lambda: None),
        "capture": instrumented(spans=False, shipper=shipper),
        "capture, offer() a no-op": instrumented(spans=False, shipper=_NullShipper()),
        "capture+spans": instrumented(shipper=shipper, tracer_provider=provider),
        "span-per-step (SDK alone)": lambda: _naive_span_per_step(pipe, provider),
        "spans, no SDK (driftcar)": instrumented(capture=False),
        "no-op API spans (naive)": lambda: _naive_span_per_step(pipe, NoOpTracerProvider()),
    }
    cycles, block = (10, 20) if quick else (150, 20)
    one = _blocks(pipe, variants, X[:1], cycles, block)
    big_cycles, big_block = (4, 10) if quick else (60, 10)
    # one Shipper per variant (no variant pays for another's buffer); a 16 MiB bound keeps about
    # 100 items alive and releases older ones, as a worker draining every 1 s would
    shippers = [Shipper(ShipperConfig("bench", "1", endpoint=shipper.config.endpoint, max_batch_rows=10**9,
                                      max_batch_age_s=3600.0, max_buffer_bytes=16 * 1024 * 1024)) for _ in range(2)]
    big_variants = {
        "bare": variants["bare"],
        "capture": instrumented(spans=False, shipper=shippers[0]),
        "capture, offer() a no-op": variants["capture, offer() a no-op"],
        "capture, copy=False": instrumented(spans=False, shipper=shippers[1], copy=False),
        **_copy_baselines(pipe),
    }
    big = _blocks(pipe, big_variants, X[:1_000], big_cycles, big_block)
    stats = shipper.stats
    for s in [shipper, *shippers]:
        s.shutdown(0.2)

    base = one["bare"][0]
    cap_delta = one["capture"][1]
    own_delta = one["capture, offer() a no-op"][1]
    spans_vs_naive = one["capture+spans"][0] / one["span-per-step (SDK alone)"][0]
    pct = {k: d / big["bare"][0] * 100.0 for k, (_, d) in big.items()}
    big_pct = pct["capture"]
    lines = [
        "## hook: per-call overhead",
        "",
        "`Pipeline(StandardScaler(), LogisticRegression())`, 20 float features, one fitted instance for every",
        f"variant (instrumented and restored in turn, blocks of {block} calls, {cycles} cycles, order rotating).",
        "Δ = median over cycles of the block-median difference to bare in the same cycle. Capture ships through a real Shipper pointed at a closed port with batch thresholds",
        "above the run, so its worker sleeps (its cost is in bench_shipping); default 64 MiB buffer. Spans go to",
        "an SDK TracerProvider whose processor drops them.",
        "",
        "| 1-row predict | median µs | Δ over bare µs | × bare |",
        "|---|---:|---:|---:|",
    ]
    for name, (value, delta) in one.items():
        lines.append(f"| {name} | {value:,.1f} | {delta:+,.1f} | {(base + delta) / base:.3f} |")
    lines += [
        "",
        f"| 1,000-row predict ({big_cycles} cycles × {big_block}) | median µs | Δ over bare |",
        "|---|---:|---:|",
        *[f"| {k} | {v:,.1f} | {pct[k]:+.2f}% |" for k, (v, _) in big.items()],
        "",
        "On 1,000 rows the capture cost is the snapshot copy of the input (1,000 × 20 float64 = 160 KB). With",
        "offer() a no-op each copy is freed at once and the next one reuses the same cache-hot memory; a real",
        "buffer (here a 16 MiB bound, so ~100 items stay alive and older ones are released as a draining worker",
        "would) makes every copy land on memory that is not in the CPU cache. The raw numpy rows (no driftcar)",
        "show it is the cache, not page faults: a ring of preallocated, already-faulted blocks costs what fresh",
        "copies cost; only a destination still in cache is cheap, and a kept snapshot cannot stay there.",
        "`copy=False` keeps references instead (correct when the caller never mutates its arrays after the call).",
        "",
        f"- capture adds **{cap_delta:+.1f} µs** per 1-row call (target ≤ {TARGET_US:.0f} µs): "
        f"{'met' if cap_delta <= TARGET_US else 'NOT met'}; the capture side alone (offer() a no-op) "
        f"{own_delta:+.1f} µs, the Shipper's offer() the rest.",
        f"- capture+spans costs **{spans_vs_naive:.2f}×** span-per-step with the SDK alone "
        f"(target < 1): {'met' if spans_vs_naive < 1 else 'NOT met'}.",
        f"- with no SDK provider, driftcar's spans add {one['spans, no SDK (driftcar)'][1]:+.1f} µs over bare vs "
        f"{one['no-op API spans (naive)'][1]:+.1f} µs for plain no-op API spans (target: no more).",
        f"- capture adds **{big_pct:+.2f}%** on 1,000 rows (target ≤ {TARGET_PCT:.0f}%): "
        f"{'met' if big_pct <= TARGET_PCT else 'NOT met'}; with offer() a no-op {pct['capture, offer() a no-op']:+.2f}%, "
        f"with copy=False {pct['capture, copy=False']:+.2f}% (a pass-through wrapper alone "
        f"{pct['pass-through wrapper (no driftcar)']:+.2f}%); a bare numpy copy kept for later costs "
        f"{pct['numpy copy, last 100 kept']:+.2f}% (into preallocated blocks "
        f"{pct['copy into a ring of 100 preallocated blocks']:+.2f}%), freed at once "
        f"{pct['numpy copy, freed at once']:+.2f}%: with copy=True the target needs a cache-hot destination.",
        f"- Shipper at the end: queued_rows={stats.get('queued_rows')}, dropped_rows={stats.get('dropped_rows')}.",
        *_conversion(quick),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root / "agent"), str(root)]
    print(run(quick="--quick" in sys.argv))
