"""Instructions of ``bench_verdicts.py --speed``'s driftcar workload (profile + 11 window evaluations,
deciding test alone) under valgrind's callgrind: a figure that does not move when the machine is
busy, unlike the wall time the speed table reports.

``python benchmarks/callgrind_verdicts.py [--rows 50000] [--part all|profile|windows]`` runs the
workload once and twice in two processes (``OPENBLAS_NUM_THREADS=1``: a multi-threaded BLAS spins)
and reports the difference: imports, data generation and first-call warm-ups cancel out. ``profile``
times ``profile(reference)`` alone, ``windows`` the 10 window updates and 11 evaluations against a
profile built before the timed part.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _workload(rows: int, part: str, repeats: int) -> None:
    """The timed part, ``repeats`` times, after one untimed warm-up run of the whole workload."""
    sys.path.insert(0, str(HERE))
    import numpy as np

    import bench_verdicts as bv
    from driftcar.stats import DriftConfig, profile

    rng = np.random.default_rng(6)
    ref, ana = bv._raw(rng, rows, bv.Scenario("none")), bv._raw(rng, rows, bv.Scenario("none"))
    cfg = DriftConfig(methods=())
    bv._ours(ref, ana, rows, cfg)
    prof = profile(ref)
    for _ in range(repeats):
        if part == "all":
            bv._ours(ref, ana, rows, cfg)
        elif part == "profile":
            profile(ref)
        else:
            bv._windows(prof, ana, rows, cfg)


def _instructions(rows: int, part: str, repeats: int) -> int:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent / "agent"), env.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
               sys.executable, __file__, "--child", "--rows", str(rows), "--part", part, "--repeats", str(repeats)]
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600)
        match = re.search(r"^(?:summary|totals):\s*(\d+)", out.read_text(errors="replace"), re.MULTILINE)
    if not match:
        raise RuntimeError("no instruction total in the callgrind output")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--part", default="all", choices=("all", "profile", "windows"))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _workload(args.rows, args.part, args.repeats)
        return
    one, two = _instructions(args.rows, args.part, 1), _instructions(args.rows, args.part, 2)
    print(f"{args.part} at {args.rows:,} rows: {(two - one) / 1e6:.1f} M instructions per run")


if __name__ == "__main__":
    main()
