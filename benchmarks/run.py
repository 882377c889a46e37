"""Run every benchmark: ``make bench`` (or ``python benchmarks/run.py [--quick] [NAME ...]``).

Each ``benchmarks/bench_*.py`` (hook, reliability, shipping, sidecar, stats, telemetry, verdicts) exposes ``run(quick: bool) -> str`` returning a
Markdown section (figures + ratios against a baseline measured in the same run).
The combined report is printed; a full run (every benchmark, not ``--quick``) also writes it to
``benchmarks/results.md``, the reference report the README quotes (``--out FILE`` writes elsewhere).
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "agent"))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))  # the benchmarks' shared helpers (_timing), as when one runs as a script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    parser.add_argument("names", nargs="*", help="only these benchmarks (e.g. hook stats sidecar fleet)")
    parser.add_argument("--out", help="write the report here (default: benchmarks/results.md on a full run only)")
    args = parser.parse_args()
    sections = [
        f"# driftcar benchmarks\n\n{time.strftime('%Y-%m-%d %H:%M')} · Python {platform.python_version()} · "
        f"{platform.machine()} · {__import__('os').cpu_count()} cores\n"
    ]
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if args.names and name not in args.names:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
        print(f"== {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        section = module.run(quick=args.quick)
        sections.append(section.rstrip() + f"\n\n_{name}: {time.perf_counter() - started:.0f} s_\n")
        print(sections[-1], flush=True)
    report = "\n".join(sections)
    out = args.out or (None if args.quick or args.names else HERE / "results.md")
    if out:  # a smoke run or a single benchmark never replaces the reference report
        Path(out).write_text(report)
        print(f"report written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
