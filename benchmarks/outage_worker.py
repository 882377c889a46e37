"""What an outage costs an instrumented model process, per thread: the shipper worker's CPU and page
faults, and the model thread's GIL hand-overs and context switches.

``python benchmarks/outage_worker.py [--protocol http/protobuf|grpc] [--endpoint down|URL] [--seconds 30]
[--rate 2000] [--agent DIR]`` runs, in a fresh process, a 1-row ``LogisticRegression.predict``
(20 features) instrumented towards a refused port (``down``) or ``URL``, warms up for 3 s (the first
attempts, imports and back-off happen there), then calls at ``--rate`` calls/s (0: flat out) for
``--seconds`` and prints one JSON line: per thread (``/proc/self/task``) voluntary and involuntary
context switches, CPU ms (``schedstat``) and minor faults; the process's kernel CPU; the model
thread's ``time.sleep(0)`` hand-overs to the worker; the shipper's attempts and rows. Counts, not
timings: they hold on a busy machine. ``--agent`` measures another driftcar tree (before/after).
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
    import json, os, resource, sys, threading, time
    sys.path.insert(0, {here!r})
    import hook_workload
    import driftcar

    ENDPOINT, PROTOCOL, SECONDS, RATE = {endpoint!r}, {protocol!r}, {seconds!r}, {rate!r}
    MAIN = threading.get_native_id()
    handovers = [0]
    _sleep = time.sleep

    def counting_sleep(seconds):
        if seconds == 0 and threading.get_native_id() == MAIN:
            handovers[0] += 1
        _sleep(seconds)

    time.sleep = counting_sleep
    model, inputs = hook_workload._model("plain")
    monitor = driftcar.instrument(model, name="outage", version="1", endpoint=ENDPOINT, protocol=PROTOCOL)
    rows = [inputs[i:i + 1] for i in range(256)]

    def threads():
        names = {{t.native_id: t.name for t in threading.enumerate()}}
        out = {{}}
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{{tid}}/status") as f:
                    status = dict(line.split(":", 1) for line in f if ":" in line)
                with open(f"/proc/self/task/{{tid}}/schedstat") as f:
                    cpu_ns = int(f.read().split()[0])
                with open(f"/proc/self/task/{{tid}}/stat") as f:
                    minflt = int(f.read().rsplit(")", 1)[1].split()[7])
            except (FileNotFoundError, ProcessLookupError):
                continue
            out[tid] = (names.get(int(tid), status["Name"].strip()), int(status["voluntary_ctxt_switches"]),
                        int(status["nonvoluntary_ctxt_switches"]), cpu_ns, minflt)
        return out

    def call_for(seconds):
        start, i = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            model.predict(rows[i & 255])
            i += 1
            if RATE and not i % 20:
                ahead = start + i / RATE - time.perf_counter()
                if ahead > 0:
                    _sleep(ahead)
        return i

    call_for(3.0)
    before, ru0, handovers0, stats0 = threads(), resource.getrusage(resource.RUSAGE_SELF), handovers[0], monitor.stats
    calls = call_for(SECONDS)
    after, ru1, stats = threads(), resource.getrusage(resource.RUSAGE_SELF), monitor.stats
    per_thread = {{}}
    for tid, (name, vol, invol, cpu, flt) in after.items():
        _, vol0, invol0, cpu0, flt0 = before.get(tid, (name, 0, 0, 0, 0))
        per_thread[f"{{name}} ({{tid}})"] = {{"voluntary": vol - vol0, "involuntary": invol - invol0,
                                          "cpu_ms": round((cpu - cpu0) / 1e6, 1), "minor_faults": flt - flt0}}
    print(json.dumps({{"calls": calls, "seconds": SECONDS, "sys_ms": round(1e3 * (ru1.ru_stime - ru0.ru_stime), 1),
                      "minor_faults": ru1.ru_minflt - ru0.ru_minflt, "handovers": handovers[0] - handovers0,
                      "attempts": stats["failed_attempts"] - stats0["failed_attempts"],
                      "dropped_rows": stats["dropped_rows"], "queued_rows": stats["queued_rows"],
                      "sent_rows": stats["sent_rows"], "threads": per_thread}}), flush=True)
    os._exit(0)
    """
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=("grpc", "http/protobuf"), default="http/protobuf")
    parser.add_argument("--endpoint", default="down", help="down (a refused port) or a URL")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="calls per second (0: flat out)")
    parser.add_argument("--agent", default=str(ROOT / "agent"), help="the driftcar tree to measure")
    args = parser.parse_args()
    if args.endpoint == "down":
        sys.path.insert(0, str(ROOT))
        from tests.support.waiting import free_port

        args.endpoint = f"http://127.0.0.1:{free_port()}"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([args.agent, env.get("PYTHONPATH", "")])
    child = CHILD.format(here=str(HERE), endpoint=args.endpoint, protocol=args.protocol, seconds=args.seconds,
                         rate=args.rate)
    out = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True,
                         timeout=args.seconds + 300)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
