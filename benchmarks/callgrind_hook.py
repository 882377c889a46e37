"""Instructions per predict call, all threads, under valgrind's callgrind: a figure that does not
move when the machine is busy (it misses GIL hand-offs and cache misses, which the wall clock
and CPU time of ``bench_hookproc.py`` show).

``python benchmarks/callgrind_hook.py [--n1 300] [--n2 1300] [--protocol http/protobuf|grpc] [VARIANT ...]`` runs
``hook_workload.py VARIANT --calls N`` under callgrind for N1 and N2 calls (with
``OPENBLAS_NUM_THREADS=1``: a multi-threaded BLAS spins and makes counts meaningless) and reports
``(I(N2) - I(N1)) / (N2 - N1)``: start-up, fitting and the final flush cancel out. The
instrumented model ships to an OTLP receiver on 127.0.0.1 (outside valgrind) and its process
waits until every row is delivered, so the worker's conversion, encoding and export are in
the count. Batches are sealed by rows only (500 rows, no age limit): under valgrind a
process runs ~50x slower, and age-sealed batches would make the count depend on speed;
with 200 warm-up calls, N1 = 300 and N2 = 1,300 the difference is exactly two batches. Variants: bare, floor, instrumented (1 row, plain LogisticRegression by default),
``span`` (with ``--provider sdk``: the same spans as driftcar's, by hand with the SDK),
and ``worker``: the shipper worker's part alone (``ship_workload.py``: the same 500-row batch
shipped once per 500 calls on the main thread, a real export included, no model calls), so
the worker's instructions per row are measured apart from the model's; ``helper``: the
instrumented model with ``ship_process=True`` (conversion, encoding and export in the hook's helper
process), followed into the helper with ``--trace-children=yes``: the model process's
instructions per call (all its threads) and, on their own line, the helper's, which the user
pays on the node too. ``--keep DIR`` keeps the output files (``DIR/VARIANT-CALLS/``) for
``callgrind_annotate``, which attributes the instructions to functions.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def _totals(path: Path) -> tuple[str, int]:
    """The command line and the instruction total of one callgrind output file."""
    text = path.read_text(errors="replace")
    cmd = re.search(r"^cmd:\s*(.*)$", text, re.MULTILINE)
    match = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.MULTILINE)
    return (cmd.group(1) if cmd else ""), (int(match.group(1)) if match else 0)


def _instructions(variant: str, calls: int, endpoint: str, extra: list[str], keep: Path | None = None
                  ) -> tuple[list[int], int]:
    """Instructions of the model process, then of each of its threads in creation order (main
    first); and of the helper process (all threads; 0 without one). With ``keep``, the callgrind
    output files are copied to ``keep/VARIANT-CALLS/`` (for ``callgrind_annotate``)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent / "agent"), env.get("PYTHONPATH", "")])
    helper = variant == "helper"
    with tempfile.TemporaryDirectory() as tmp:
        script = ["ship_workload.py"] if variant == "worker" else ["hook_workload.py", variant]
        if helper:
            script = ["hook_workload.py", "instrumented", "--ship-process"]
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/callgrind.out.%p", "--dump-instr=no",
               "--separate-threads=yes", f"--trace-children={'yes' if helper else 'no'}",
               sys.executable, str(HERE / script[0]), *script[1:], "--calls", str(calls), "--warmup", "200",
               "--endpoint", endpoint, "--flush", "300", "--batch-rows", "500", "--batch-age", "3600", *extra]
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600)
        if keep is not None:
            shutil.copytree(tmp, keep / f"{variant}-{calls}", dirs_exist_ok=True)
        per_thread, helper_total = [], 0
        # callgrind.out.<pid>-<thread>: the model process is the one running the workload script
        for path in sorted(Path(tmp).glob("callgrind.out.*-*"), key=lambda p: int(p.name.rsplit("-", 1)[1])):
            command, total = _totals(path)
            if "driftcar.hook.shipping.helper" in command:
                helper_total += total
            elif script[0] in command:
                per_thread.append(total)
    if not per_thread:
        raise RuntimeError("no instruction totals in the callgrind output")
    return [sum(per_thread), *per_thread], helper_total


def count(variants: list[str], n1: int, n2: int, extra: list[str], protocol: str = "http/protobuf",
          keep: Path | None = None) -> dict[str, float]:
    from tests.support.otlp import GrpcOtlpReceiver, HttpOtlpReceiver

    result = {}
    extra = [*extra, "--protocol", protocol]
    with (GrpcOtlpReceiver() if protocol == "grpc" else HttpOtlpReceiver()) as receiver:
        for variant in variants:
            (i1, h1), (i2, h2) = (_instructions(variant, n, receiver.endpoint, extra, keep) for n in (n1, n2))
            result[variant] = (i2[0] - i1[0]) / (n2 - n1)
            threads = [(b - a) / (n2 - n1) / 1e3 for a, b in zip(i1[1:], i2[1:])]
            print(f"{variant:13s} {result[variant] / 1e3:9.1f} k instructions per call (per thread, main first: "
                  f"{', '.join(f'{t:.1f} k' for t in threads)})", flush=True)
            if h1 or h2:
                helper = (h2 - h1) / (n2 - n1)
                print(f"{'  its helper':13s} {helper / 1e3:9.1f} k instructions per call in the helper process "
                      f"(model + helper: {(result[variant] + helper) / 1e3:.1f} k)", flush=True)
    if "bare" in result:
        for variant, value in result.items():
            if variant != "bare":
                print(f"{variant:13s} {value / result['bare']:.3f}x bare, "
                      f"{(value - result['bare']) / 1e3:+.1f} k per call", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("variants", nargs="*", default=["bare", "floor", "instrumented"])
    parser.add_argument("--n1", type=int, default=300)
    parser.add_argument("--n2", type=int, default=1300)
    parser.add_argument("--model", default="plain", choices=("plain", "pipeline"))
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--provider", default="none", choices=("none", "sdk"),
                        help="an SDK TracerProvider: compare variants span and instrumented span for span")
    parser.add_argument("--protocol", default="http/protobuf", choices=("grpc", "http/protobuf"),
                        help="the hook's transport (default: the hook's default)")
    parser.add_argument("--keep", type=Path, help="copy the callgrind output files to KEEP/VARIANT-CALLS/")
    args = parser.parse_args()
    count(args.variants, args.n1, args.n2, ["--model", args.model, "--rows", str(args.rows), "--provider", args.provider],
          args.protocol, args.keep)


if __name__ == "__main__":
    main()
