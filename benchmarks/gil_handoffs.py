"""How often each thread of a model process takes the GIL back, and from where (Linux, root, perf).

``python benchmarks/gil_handoffs.py [--scene big|outage] [--seconds S] [--agent DIR]``

Every release of the GIL by a blocking call (a send, a poll, ``settimeout``, a numpy copy of
a large array, ``time.sleep``) ends in ``PyEval_RestoreThread``, and beside a model thread
that never pauses each of them can become a convoy: the waiting thread is woken by every one
of the model's own releases (a futex wake the model pays) and loses the GIL again until it
wins. This counts the calls with a perf uprobe, per thread, with the C caller of each, while
``hook_workload.py`` runs in a fresh process:

- ``big``: ``instrumented``, 1,000-row ``LogisticRegression.predict`` flat out, shipping to a real
  sidecar (the CPU budget's sample of calls);
- ``outage``: ``bystander``, 1-row calls flat out beside a silent instrumented model whose rows
  wait for a refused port (each attempt and the rows' deadline).

Counts, not timings: they hold on a busy machine, though the probe itself slows every release a
little (so convoys are shorter under it than without). What they showed, and what halving them
did not change, is in ``agent/driftcar/hook/shipping/README.md`` ("Not changed either").
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
PROBE = "probe_libpython3:PyEval_RestoreThread"


def _libpython() -> str:
    return os.path.join(sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY"))


def _ensure_probe() -> None:
    listed = subprocess.run(["perf", "probe", "-l"], capture_output=True, text=True).stdout
    if "PyEval_RestoreThread" not in listed:
        subprocess.run(["perf", "probe", "-x", _libpython(), "PyEval_RestoreThread"], check=True,
                       capture_output=True)


def _callers(data: str) -> dict[int, collections.Counter]:
    """tid -> Counter of the first two named C callers of PyEval_RestoreThread."""
    out = subprocess.run(["perf", "script", "-i", data, "-F", "tid,ip,sym"], capture_output=True, text=True).stdout
    counts: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for sample in out.split("\n\n"):
        lines = [line.split() for line in sample.strip().splitlines() if line.strip()]
        if not lines:
            continue
        tid = int(lines[0][0])
        names = [f[1].split("+")[0] for f in lines[1:] if len(f) > 1 and not f[1].startswith("[unknown")
                 and not f[1].startswith("PyEval_RestoreThread")]
        counts[tid][" < ".join(names[:2]) or "?"] += 1
    return counts


def run(scene: str, seconds: float, agent: str) -> str:
    from bench_hookproc import _Sidecar

    _ensure_probe()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONPATH=agent)
    with _Sidecar() as sidecar, tempfile.TemporaryDirectory() as tmp:
        if scene == "big":
            args = ["instrumented", "--rows", "1000", "--settle", "3", "--endpoint", f"http://127.0.0.1:{sidecar.http}"]
        else:
            args = ["bystander", "--rows", "1", "--endpoint", "http://127.0.0.1:9", "--flush", "0"]
        child = subprocess.Popen([sys.executable, str(HERE / "hook_workload.py"), *args, "--model", "plain",
                                  "--calls", "10000000"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(6)  # fit, warm-up, settle; an outage's first attempt
            data = os.path.join(tmp, "perf.data")
            subprocess.run(["perf", "record", "-q", "-e", PROBE, "--call-graph", "dwarf,4096", "-o", data,
                            "-p", str(child.pid), "--", "sleep", str(seconds)], check=True, capture_output=True)
        finally:
            child.kill()
            child.wait()
        counts = _callers(data)
    lines = [f"scene {scene}, {seconds:g} s: GIL taken back (PyEval_RestoreThread) per thread, top callers"]
    for tid, callers in sorted(counts.items(), key=lambda kv: -sum(kv[1].values())):
        name = "model thread" if tid == child.pid else "thread"
        lines.append(f"  {name} ({tid}): {sum(callers.values()):,} ({sum(callers.values()) / seconds:,.0f}/s)")
        if tid != child.pid:
            lines += [f"      {n:6,}  {caller}" for caller, n in callers.most_common(12)]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--scene", choices=("big", "outage"), default="big")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--agent", default=str(ROOT / "agent"), help="the driftcar tree to measure (PYTHONPATH)")
    args = parser.parse_args()
    print(run(args.scene, args.seconds, args.agent))
