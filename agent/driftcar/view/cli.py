"""``driftcar report REFERENCE CURRENT --out report.html``: a self-contained HTML drift report.

REFERENCE is a profile (``driftcar profile ... --out ref.driftcar``) or a CSV/Parquet
file (profiled on the fly); CURRENT a CSV/Parquet file, judged as one window, or cut
into windows by ``--time-column COL --window 1d`` (Unix seconds or ISO 8601 times) or
by ``--rows N``. The file has no external references: open it anywhere, mail it. A
progress bar is drawn on stderr when it is a terminal. Every option can also come from a
``DRIFTCAR_REPORT_<OPTION>`` environment variable or a key of a YAML ``--config`` file;
precedence: flag, environment, file, default. Exit status: 0 written, 2 bad input or
usage, 1 drift found with ``--fail-on-drift`` (for scripts that gate on it).
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["register", "run"]


def _drift(value):
    """The sidecar's ``drift:`` settings, as a YAML map (text from a flag or variable, or a map in --config)."""
    import yaml

    from driftcar.stats import DriftConfig

    try:
        data = yaml.safe_load(value) if isinstance(value, str) else value
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError("expected a YAML map, e.g. '{exit_windows: 1}'")
    try:
        return DriftConfig.from_mapping(data, "drift")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _options() -> dict:
    """option -> (parser, default, help); each is a flag, a DRIFTCAR_REPORT_<OPTION> variable and a
    key of the --config YAML file; precedence flag > environment > file > default."""
    from driftcar.stats.cli import _bool, _choice, _names, _positive_int, _text

    return {
        "out": (_text, "report.html", "output HTML file (default report.html)"),
        "time_column": (_text, None, "column holding each row's time: cut CURRENT into windows of --window"),
        "window": (_text, None, "window length with --time-column (e.g. 1h, 1d)"),
        "rows": (_positive_int, None, "cut CURRENT into windows of this many rows"),
        "label": (_text, None, "column holding the ground truth (quality when --prediction is given too)"),
        "prediction": (_text, None, "column holding the model output"),
        "exclude": (_names, [], "comma-separated columns to leave out (ids)"),
        "categorical": (_names, [], "comma-separated numeric columns to treat as categories (data REFERENCE)"),
        "drift": (_drift, None, "drift settings as a YAML map (the sidecar's drift: section)"),
        "title": (_text, None, "title of the report"),
        "chunk_rows": (_positive_int, 100_000, "rows read per chunk (default 100000)"),
        "format": (_choice("auto", "csv", "parquet"), "auto", "input format: auto (by extension), csv, parquet"),
        "delimiter": (_text, ",", "CSV field delimiter (default ,)"),
        "progress": (_choice("auto", "always", "never"), "auto", "progress bar on stderr: auto = only on a terminal"),
        "fail_on_drift": (_bool, False, "exit with status 1 when a feature drifted"),
    }


def register(subparsers) -> None:
    from driftcar.stats.cli import add_option_flags

    p = subparsers.add_parser(
        "report", help="write a self-contained HTML drift report of a data file against a reference",
        description=__doc__.split("\n\n")[0].replace("``", "") + "\n\n" + __doc__.split("\n\n")[1].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("reference", metavar="REFERENCE", help="profile (.driftcar) or CSV / Parquet training data")
    p.add_argument("current", metavar="CURRENT", help="CSV / Parquet data to compare with the reference")
    add_option_flags(p, _options())
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from driftcar.stats.cli import _bar, resolve, run_failure
    from driftcar.stats.errors import ProfileError
    from driftcar.stats.readers import ReadError
    from driftcar.view.offline import report

    def fail(message: str) -> int:
        print(f"driftcar report: error: {message}", file=sys.stderr)
        return 2

    try:
        opt = resolve(args, options=_options(), prefix="DRIFTCAR_REPORT_")
    except ValueError as exc:
        return fail(str(exc))
    if (opt["time_column"] is None) != (opt["window"] is None):
        return fail("--time-column and --window go together")
    show = opt["progress"] == "always" or (opt["progress"] == "auto" and sys.stderr.isatty())
    try:
        result = report(args.reference, args.current, time_column=opt["time_column"], window=opt["window"],
                        rows=opt["rows"], label=opt["label"], prediction=opt["prediction"], exclude=opt["exclude"],
                        categorical=opt["categorical"], config=opt["drift"], title=opt["title"],
                        chunk_rows=opt["chunk_rows"], fmt=opt["format"], delimiter=opt["delimiter"],
                        progress=_bar(show) if show else None)
        result.save(opt["out"])
    except (ProfileError, ReadError, ValueError, OSError) as exc:
        return fail(run_failure(exc, opt["out"]))
    if not args.quiet:
        model = result.document["models"][0]
        for note in result.document["notes"]:
            print(f"note: {note}")
        print(f"{len(model['features'])} features compared over {model['windows_kept']} window(s); "
              f"drifted: {', '.join(model['drifted']) or 'none'}")
        print(f"wrote {opt['out']} ({os.path.getsize(opt['out']):,} bytes)")
    return 1 if opt["fail_on_drift"] and result.drifted else 0
