"""One hook-benchmark variant in a fresh process (run by ``bench_hookproc.py`` and ``callgrind_hook.py``).

``python benchmarks/hook_workload.py VARIANT --calls N [--rows R] [--model plain|pipeline]
[--provider none|sdk] [--endpoint URL] [--rate CALLS_PER_S] [--nocopy] [--settle S] [--cpu-budget SHARE]`` fits a seeded model,
warms up, times N ``predict`` calls and prints one JSON line: per-call latency quantiles, wall
time, the process's CPU seconds over the timed calls (every thread: ``resource.getrusage``; the
timing thread's own: ``time.thread_time``; both without the time ``--rate`` spent spinning to
the next due time, which is CPU time the calls did not use) and
driftcar's delivery counters after a bounded flush.

VARIANT:

- ``bare``: the model alone; driftcar is not even imported.
- ``floor``: the physical floor of capture: a plain wrapper that copies the input rows and the
  prediction into a preallocated ring (no driftcar).
- ``instrumented``: ``driftcar.instrument(model, spans=True)`` (spans cost nothing without an
  SDK provider), shipping to ``--endpoint``; the warm-up's rows are flushed (``--flush`` seconds)
  before the timed calls, so the shipper's start-up is not in them.
- ``span``: the same spans driftcar makes, written by hand with the OpenTelemetry SDK's
  ``start_as_current_span`` (no driftcar): one per call for a plain model; for a ``Pipeline``
  one for ``Pipeline.predict`` and one per step method inside it. What the SDK's own spans cost,
  to compare ``instrumented --provider sdk`` against span for span (``spans`` in the output).
- ``--ship-process`` (with ``instrumented`` / ``bystander``): the hook's helper process converts,
  encodes and exports (``ship_process=True``); the warm-up is flushed before the timed calls (so
  the helper's start-up is not in them), and ``helper_cpu_s`` is the helper's CPU seconds (every
  thread, ``/proc/PID/task/*/schedstat``) from the first timed call to the end of the final flush.
- ``bystander``: an uninstrumented copy of the model, timed, while another copy in the same
  process is instrumented and has rows queued for ``--endpoint`` (so its shipper is busy
  retrying when the endpoint is down or black-holed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

FEATURES = 20


def _model(kind: str):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2_000, FEATURES))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    model = LogisticRegression() if kind == "plain" else make_pipeline(StandardScaler(), LogisticRegression())
    return model.fit(X, y), rng.normal(size=(4_096, FEATURES))


class _Floor:
    """A bare capture wrapper: copy rows and prediction into a preallocated ring, nothing else."""

    def __init__(self, predict, rows: int):
        size = 1024 if rows == 1 else 32  # a power of two; 32 x 1,000 rows x 20 floats is 5 MB
        self.predict_ = predict
        self.xs = np.empty((size, rows, FEATURES))
        self.ys = np.empty((size, rows), dtype=np.int64)
        self.i = 0
        self.mask = size - 1

    def __call__(self, x):
        y = self.predict_(x)
        i = self.i = (self.i + 1) & self.mask
        self.xs[i] = x
        self.ys[i] = y
        return y


def _provider(kind: str) -> None:
    if kind != "sdk":
        return
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())  # spans are built and ended, exported nowhere


def _spanned(tracer, method, name: str, attributes=None):
    def spanned(*a, **k):
        with tracer.start_as_current_span(name, attributes=attributes):
            return method(*a, **k)

    return spanned


def _hand_spans(model):
    """``model.predict`` with driftcar's spans made by hand: the model's, then each step's."""
    from opentelemetry import trace

    tracer = trace.get_tracer("bench")
    for i, (_, step) in enumerate(getattr(model, "steps", ())):
        name = "predict" if i == len(model.steps) - 1 else "transform"
        setattr(step, name, _spanned(tracer, getattr(step, name), f"{type(step).__name__}.{name}"))
    attributes = {"model.name": "bench", "model.version": "1"}
    return _spanned(tracer, model.predict, f"{type(model).__name__}.predict", attributes)


def spans_per_call(model) -> int:
    """Spans driftcar (and the ``span`` variant) make per ``predict``: the model and each step."""
    return 1 + len(getattr(model, "steps", ()))


def _predictor(args, model, inputs):
    """The timed callable and the Monitor whose delivery is reported (None without driftcar)."""
    if args.variant == "bare":
        return model.predict, None
    if args.variant == "floor":
        return _Floor(model.predict, args.rows), None
    if args.variant == "span":
        return _hand_spans(model), None
    import driftcar

    options = dict(name="bench", version="1", endpoint=args.endpoint, copy=not args.nocopy, protocol=args.protocol,
                   max_batch_rows=args.batch_rows, max_batch_age_s=args.batch_age, ship_process=args.ship_process,
                   cpu_budget=args.cpu_budget)
    if args.variant == "instrumented":
        monitor = driftcar.instrument(model, **options)
        return model.predict, monitor
    other, _ = _model(args.model)
    monitor = driftcar.instrument(other, **options)
    for i in range(64):  # rows queued: with the endpoint down the shipper keeps retrying them
        other.predict(inputs[i:i + 1])
    monitor.flush(0.2)
    return model.predict, monitor


def _timed(predict, batches: list, calls: int, rate: float) -> tuple[np.ndarray, float, dict]:
    """Per-call latencies (ns), wall seconds and the process's resource use over the timed calls
    (every thread): CPU seconds (``cpu_s``, and apart in user and kernel mode), page faults,
    context switches; the timing thread's own CPU and page faults. A paced run spins to each due
    time: that spin (``spin_s``) is CPU time the calls did not use, so ``cpu_s`` and the timing
    thread's CPU leave it out."""
    lat = np.empty(calls, dtype=np.int64)
    period = 1e9 / rate if rate else 0.0
    perf = time.perf_counter_ns
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    own0 = time.thread_time()
    faults0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    begin = perf()
    spin = 0  # ns spent waiting for the next due time (paced runs): the wait spins, so it is CPU time
    for i in range(calls):
        if period:
            due = begin + i * period
            arrived = t0 = perf()
            while t0 < due:
                t0 = perf()
            spin += t0 - arrived
        t0 = perf()
        predict(batches[i & 255])
        lat[i] = perf() - t0
    wall = (perf() - begin) / 1e9
    own = time.thread_time() - own0 - spin / 1e9
    own_faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - faults0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    used = {"cpu_s": ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime - spin / 1e9,
            "user_s": ru1.ru_utime - ru0.ru_utime, "sys_s": ru1.ru_stime - ru0.ru_stime,
            "minor_faults": ru1.ru_minflt - ru0.ru_minflt, "voluntary_switches": ru1.ru_nvcsw - ru0.ru_nvcsw,
            "involuntary_switches": ru1.ru_nivcsw - ru0.ru_nivcsw, "model_thread_cpu_s": own, "model_thread_faults": own_faults,
            "spin_s": spin / 1e9}
    return lat, wall, used


def _helper_started(monitor, flush_s: float) -> int | None:
    """The helper's pid once it has started and received the warm-up (its start-up stays out of the
    timed calls); the flush seals the blocks even when it cannot wait (``flush_s`` 0, endpoint down)."""
    monitor.flush(flush_s)
    deadline = time.monotonic() + 600
    while not monitor.stats.get("helper_received_rows") and time.monotonic() < deadline:
        time.sleep(0.01)
    return monitor.stats.get("helper_pid")


def _task_cpu_s(pid: int | None) -> float:
    """CPU seconds of every thread of process ``pid`` (nanoseconds on CPU, ``schedstat``), 0 without one."""
    if not pid:
        return 0.0
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that just ended (its time is lost to this count)
    return total / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variant", choices=("bare", "floor", "span", "instrumented", "bystander"))
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--model", choices=("plain", "pipeline"), default="plain")
    parser.add_argument("--provider", choices=("none", "sdk"), default="none")
    parser.add_argument("--endpoint", default="http://127.0.0.1:9")
    parser.add_argument("--rate", type=float, default=0.0, help="calls per second (0: flat out)")
    parser.add_argument("--protocol", choices=("grpc", "http/protobuf"), default="http/protobuf")
    parser.add_argument("--batch-rows", type=int, default=10_000, help="the shipper's max_batch_rows")
    parser.add_argument("--batch-age", type=float, default=1.0, help="the shipper's max_batch_age_s")
    parser.add_argument("--nocopy", action="store_true", help="instrument with copy=False")
    parser.add_argument("--ship-process", action="store_true", help="ship through the hook's helper process")
    parser.add_argument("--flush", type=float, default=5.0, help="seconds to wait for delivery at the end")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="seconds of untimed calls after the warm-up (every variant alike): the CPU budget's "
                             "share of calls kept with rows settles there, as in a server that has been up a while")
    parser.add_argument("--cpu-budget", default=None, help="the shipper's cpu_budget (default: the hook's default)")
    args = parser.parse_args()
    _provider(args.provider)
    model, inputs = _model(args.model)
    predict, monitor = _predictor(args, model, inputs)
    n_inputs = len(inputs) - args.rows
    batches = [inputs[(i * 37) % n_inputs:(i * 37) % n_inputs + args.rows] for i in range(256)]
    for i in range(args.warmup):
        predict(batches[i & 255])
    helper = None
    if monitor is not None and args.ship_process:
        helper = _helper_started(monitor, args.flush)
    elif args.variant == "instrumented":  # the transport's start-up (imports, first connection, the first
        monitor.flush(args.flush)  # batch's pages) stays out of the timed calls; with --flush 0 only sealed
    settle_until = time.monotonic() + args.settle
    i = 0
    while time.monotonic() < settle_until:
        predict(batches[i & 255])
        i += 1
    helper0 = _task_cpu_s(helper)
    lat, wall, used = _timed(predict, batches, args.calls, args.rate)
    out = {"variant": args.variant, "calls": args.calls, "rows": args.rows, "wall_s": wall,
           **used, "p50_ns": int(np.percentile(lat, 50)), "p90_ns": int(np.percentile(lat, 90)),
           "p99_ns": int(np.percentile(lat, 99)), "mean_ns": float(lat.mean()),
           # the mean without the slowest 1 %: a cost paid by every call moves it, rare stalls do not
           "mean_below_p99_ns": float(np.sort(lat)[:int(len(lat) * 0.99)].mean()),
           "spans": spans_per_call(model) if args.provider == "sdk" and args.variant in ("span", "instrumented") else 0}
    if monitor is not None and args.variant == "instrumented":
        monitor.flush(args.flush)
        stats = monitor.stats

        # totals, warm-up included: rows captured during the warm-up may be delivered at any time
        # every predicted row: captured, or sent as part of a call without data by the CPU budget
        out["predicted_rows"] = stats["captured_rows"] + stats.get("shed_rows", 0)
        out["kept_rows"] = stats["captured_rows"]
        out["delivered_rows"] = stats["sent_rows"]
        out["budget_keep"] = stats.get("budget_keep", 1.0)
        out["dropped_rows"] = stats["dropped_rows"]
    if helper:
        out["helper_cpu_s"] = _task_cpu_s(helper) - helper0
        monitor.shipper.shutdown(args.flush)  # the helper exits (its callgrind output is complete)
    print(json.dumps(out), flush=True)
    sys.stdout.flush()
    os._exit(0)  # the exit flush is measured elsewhere (tests/integration/shipping)


if __name__ == "__main__":
    main()
