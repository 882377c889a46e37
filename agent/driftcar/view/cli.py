"""``driftcar report REFERENCE CURRENT --out report.html``: a self-contained HTML drift report.

REFERENCE is a profile (``driftcar profile ... --out ref.driftcar``) or a CSV/Parquet
file (profiled on the fly); CURRENT a CSV/Parquet file, judged as one window, or cut
into windows by ``--time-column COL --window 1d`` (Unix seconds or ISO 8601 times) or
by ``--rows N``. The file has no external references: open it anywhere, mail it. A
progress bar is drawn on stderr when it is a terminal. Exit status: 0 written, 2 bad
input or usage, 1 drift found with ``--fail-on-drift`` (for scripts that gate on it).
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["register", "run"]


def register(subparsers) -> None:
    from driftcar.stats.cli import _names, _positive_int

    p = subparsers.add_parser(
        "report", help="write a self-contained HTML drift report of a data file against a reference",
        description=__doc__.split("\n\n")[0].replace("``", "") + "\n\n" + __doc__.split("\n\n")[1].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("reference", metavar="REFERENCE", help="profile (.driftcar) or CSV / Parquet training data")
    p.add_argument("current", metavar="CURRENT", help="CSV / Parquet data to compare with the reference")
    p.add_argument("-o", "--out", default="report.html", help="output HTML file (default report.html)")
    p.add_argument("--time-column", metavar="COL", help="column holding each row's time (cut into windows)")
    p.add_argument("--window", metavar="DURATION", help="window length with --time-column (e.g. 1h, 1d)")
    p.add_argument("--rows", type=_positive_int, metavar="N", help="cut CURRENT into windows of N rows")
    p.add_argument("--label", help="column holding the ground truth (quality when --prediction is given too)")
    p.add_argument("--prediction", help="column holding the model output")
    p.add_argument("--exclude", type=_names, default=[], help="comma-separated columns to leave out (ids)")
    p.add_argument("--categorical", type=_names, default=[],
                   help="comma-separated numeric columns to treat as categories (data-file REFERENCE)")
    p.add_argument("--drift", metavar="YAML", help="drift settings as YAML (the sidecar's drift: section)")
    p.add_argument("--title", help="title of the report")
    p.add_argument("--chunk-rows", type=_positive_int, default=100_000, help="rows read per chunk (default 100000)")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress bar on stderr: auto = only on a terminal")
    p.add_argument("--fail-on-drift", action="store_true", help="exit with status 1 when a feature drifted")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stdout")
    p.set_defaults(func=run)


def _drift_config(text: str | None):
    if not text:
        return None
    import yaml

    from driftcar.stats import DriftConfig

    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError("--drift: expected a YAML map, e.g. '{exit_windows: 1}'")
    return DriftConfig.from_mapping(data, "--drift")


def run(args: argparse.Namespace) -> int:
    from driftcar.stats.cli import _bar
    from driftcar.stats.errors import ProfileError
    from driftcar.stats.readers import ReadError
    from driftcar.view.offline import report

    def fail(message: str) -> int:
        print(f"driftcar report: error: {message}", file=sys.stderr)
        return 2

    if (args.time_column is None) != (args.window is None):
        return fail("--time-column and --window go together")
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    try:
        result = report(args.reference, args.current, time_column=args.time_column, window=args.window,
                        rows=args.rows, label=args.label, prediction=args.prediction, exclude=args.exclude,
                        categorical=args.categorical, config=_drift_config(args.drift), title=args.title,
                        chunk_rows=args.chunk_rows, progress=_bar(show) if show else None)
        result.save(args.out)
    except (ProfileError, ReadError, ValueError) as exc:
        return fail(getattr(exc, "reason", None) or str(exc))
    except OSError as exc:
        return fail(f"{exc.filename or args.out}: {exc.strerror or exc}")
    if not args.quiet:
        model = result.document["models"][0]
        for note in result.document["notes"]:
            print(f"note: {note}")
        print(f"{len(model['features'])} features compared over {model['windows_kept']} window(s); "
              f"drifted: {', '.join(model['drifted']) or 'none'}")
        print(f"wrote {args.out} ({os.path.getsize(args.out):,} bytes)")
    return 1 if args.fail_on_drift and result.drifted else 0
