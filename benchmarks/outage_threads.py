"""Per-thread wake-ups and CPU of a model process while its shipper's endpoint is unreachable.

``python benchmarks/outage_threads.py [--protocol grpc|http/protobuf] [--endpoint hole|down]
[--seconds S] [--idle] [--agent DIR] [--backoff-cap S --timeout S]`` runs the ``bystander`` scene of ``hook_workload.py`` in a fresh process: one
model instrumented with rows queued for an endpoint that is black-holed (accepts, never answers)
or down (refused), and an uninstrumented model called flat out (``--idle``: the process sleeps
instead). A short back-off cap and a long timeout make one attempt after another through the
window (the instrumented model is silent, so the worker retries at the cap). Over S seconds it prints, per thread (name from ``/proc/self/task/<tid>/comm``),
voluntary and involuntary context switches and CPU ticks: Python threads that exited within the
window as they ended, other threads that exited (gRPC's core threads) as the process's
``getrusage`` minus the rest. Counts, not timings: they
hold on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CHILD = textwrap.dedent(
    """
    import json, os, resource, sys, time
    import numpy as np
    import driftcar
    import threading
    ENDPOINT, PROTOCOL, SECONDS, IDLE, OPTIONS = json.loads(sys.argv[1])
    ended = {}  # Python threads that exit: their counts as their run() ends (gRPC's call threads)
    _run = threading.Thread.run

    def run(self):
        try:
            _run(self)
        finally:
            tid = str(threading.get_native_id())
            ended[tid] = threads().get(tid)

    threading.Thread.run = run
    from sklearn.linear_model import LogisticRegression

    def threads():
        out = {}
        for tid in os.listdir("/proc/self/task"):
            try:
                base = f"/proc/self/task/{tid}/"
                comm = open(base + "comm").read().strip()
                fields = open(base + "stat").read().rsplit(")", 1)[1].split()
                status = {l.split(":")[0]: l.split()[1] for l in open(base + "status")
                          if l.startswith(("voluntary", "nonvoluntary"))}
            except OSError:
                continue
            out[tid] = [comm, int(fields[11]) + int(fields[12]), int(status["voluntary_ctxt_switches"]),
                        int(status["nonvoluntary_ctxt_switches"])]
        return out

    def process():
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return [(ru.ru_utime + ru.ru_stime) * os.sysconf("SC_CLK_TCK"), ru.ru_nvcsw, ru.ru_nivcsw]

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2_000, 20))
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    other = LogisticRegression().fit(X, X[:, 1] > 0)
    monitor = driftcar.instrument(other, name="bench", endpoint=ENDPOINT, protocol=PROTOCOL, **OPTIONS)
    for i in range(64):
        other.predict(X[i:i + 1])
    monitor.flush(0.2)
    t0, p0, calls = threads(), process(), 0
    ended.clear()  # threads that ended before the window
    end = time.monotonic() + SECONDS
    while time.monotonic() < end:
        if IDLE:
            time.sleep(0.5)
        else:
            model.predict(X[calls & 1023:(calls & 1023) + 1])
            calls += 1
    t1, p1 = threads(), process()
    rows = []
    for tid, (comm, cpu, vol, invol) in t1.items():
        c0 = t0.get(tid, [comm, 0, 0, 0])
        rows.append([tid, comm, cpu - c0[1], vol - c0[2], invol - c0[3], tid not in t0])
    for tid, last in ended.items():
        if tid not in t1 and last is not None and tid not in t0:
            rows.append([tid, "python (exited)", last[1], last[2], last[3], True])
    live = [sum(r[k] for r in rows) for k in (2, 3, 4)]
    exited = [p1[k] - p0[k] - live[k] for k in range(3)]
    print(json.dumps({"calls": calls, "threads": rows, "exited": exited,
                      "attempts": monitor.stats["failed_attempts"]}), flush=True)
    os._exit(0)
    """
)


def measure(protocol: str, endpoint: str, seconds: float, idle: bool = False, agent: str = str(ROOT / "agent"),
            options: dict | None = None) -> dict:
    sys.path.insert(0, str(ROOT))
    from tests.support.waiting import free_port
    from tests.unit.shipping.helpers import BlackHole

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([agent, os.environ.get("PYTHONPATH", "")])

    def run(url: str) -> dict:
        params = json.dumps([url, protocol, seconds, idle, options or {}])
        out = subprocess.run([sys.executable, "-c", CHILD, params], env=env, capture_output=True, text=True,
                             timeout=seconds + 120)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        return json.loads(out.stdout.strip().splitlines()[-1])

    if endpoint == "down":
        return run(f"http://127.0.0.1:{free_port()}")
    with BlackHole() as hole:
        return run(f"http://127.0.0.1:{hole.port}")


def report(result: dict) -> str:
    lines = [f"calls {result['calls']:,}, failed attempts {result['attempts']}",
             f"{'tid':>8} {'thread':<20} {'cpu ticks':>9} {'voluntary':>9} {'involuntary':>11}"]
    for tid, comm, cpu, vol, invol, new in sorted(result["threads"], key=lambda r: -r[3]):
        lines.append(f"{tid:>8} {comm + (' (new)' if new else ''):<20} {cpu:>9} {vol:>9} {invol:>11}")
    cpu, vol, invol = result["exited"]
    lines.append(f"{'':>8} {'(other exited)':<20} {cpu:>9.0f} {vol:>9} {invol:>11}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", choices=("grpc", "http/protobuf"), default="grpc")
    parser.add_argument("--endpoint", choices=("hole", "down"), default="hole")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--idle", action="store_true")
    parser.add_argument("--agent", default=str(ROOT / "agent"), help="the driftcar tree to measure")
    parser.add_argument("--backoff-cap", type=float, help="retry_max_backoff_s (default: the config's)")
    parser.add_argument("--timeout", type=float, help="timeout_s (default: the config's)")
    args = parser.parse_args()
    options = {"retry_max_backoff_s": args.backoff_cap, "retry_initial_backoff_s": args.backoff_cap,
               "timeout_s": args.timeout}
    options = {k: v for k, v in options.items() if v is not None}
    print(report(measure(args.protocol, args.endpoint, args.seconds, args.idle, args.agent, options)))
