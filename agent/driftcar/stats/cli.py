"""``driftcar profile FILE... --out ref.driftcar``: a reference profile from training data.

Reads CSV (``.csv``, ``.csv.gz``, any other name) and Parquet (``.parquet``,
``.pq``; needs pyarrow) in chunks, in two passes (edges, then exact counts),
so files larger than memory work in bounded memory. A progress bar is drawn
on stderr only when it is a terminal. ``--label`` / ``--prediction`` name
the columns holding y and the model output; ``--show FILE`` prints a saved
profile. Each column's kind is inferred and printed with the reason: text that
is at least 95 % numbers stays numeric (the strays are counted as invalid and
shown); empty, id-like and timestamp-like columns are left out (``--keep`` to
profile them anyway); a reference under 1,000 rows is reported with the
smallest shift it can detect. Every option can also come from a ``DRIFTCAR_PROFILE_<OPTION>``
environment variable (e.g. ``DRIFTCAR_PROFILE_BINS=10``) or a key of a YAML
``--config`` file; precedence: flag, environment, file, default.
Exit status: 0 done, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

__all__ = ["register", "run"]


def _positive_int(text) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _int(text) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _share(text) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value}")
    return value


def _names(text) -> list[str]:
    if isinstance(text, (list, tuple)):
        return [str(n).strip() for n in text if str(n).strip()]
    return [n.strip() for n in str(text).split(",") if n.strip()]


def _text(text) -> str:
    return str(text)


def _bool(text) -> bool:
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _choice(*allowed: str):
    def parse(text) -> str:
        if str(text) not in allowed:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(allowed)}, got {text!r}")
        return str(text)

    return parse


#: option -> (parser, default, help). Each is a flag, a DRIFTCAR_PROFILE_<OPTION> variable and a
#: key of the --config YAML file; precedence flag > environment > file > default.
OPTIONS: dict[str, tuple] = {
    "out": (_text, None, "output profile file (e.g. ref.driftcar)"),
    "label": (_text, None, "column holding the ground truth (y)"),
    "prediction": (_text, None, "column holding the model output"),
    "exclude": (_names, [], "comma-separated columns to leave out"),
    "keep": (_names, [], "comma-separated columns to profile although inferred empty, id-like or timestamp-like"),
    "categorical": (_names, [], "comma-separated numeric columns to treat as categories"),
    "bins": (_positive_int, 20, "coarse quantile bins per numeric feature (default 20)"),
    "fine_bins": (_positive_int, 400, "fine quantile bins for KS / Wasserstein (default 400; error ~1/fine-bins)"),
    "top_k": (_positive_int, 50, "categories kept per categorical feature; the rest are __other__ (default 50)"),
    "max_rows_kept": (_positive_int, 100_000,
                      "rows sampled for quantile edges and PCA (default 100000; counts are always exact)"),
    "pca_variance": (_share, 0.9, "share of variance the PCA keeps (default 0.9)"),
    "pca_max_columns": (_positive_int, 200, "most columns in the multivariate test: numeric features first, then "
                        "category indicators, in column order (default 200; its cost grows as the cube)"),
    "multivariate": (_bool, True, "fit the PCA model for multivariate drift (default true)"),
    "chunk_rows": (_positive_int, 100_000, "rows read per chunk (default 100000)"),
    "format": (_choice("auto", "csv", "parquet"), "auto", "input format: auto (by extension), csv, parquet"),
    "delimiter": (_text, ",", "CSV field delimiter (default ,)"),
    "seed": (_int, 0, "sampling seed (default 0)"),
    "progress": (_choice("auto", "always", "never"), "auto", "progress bar on stderr: auto = only on a terminal"),
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "profile",
        help="build a reference profile (.driftcar) from training data (CSV / Parquet)",
        description=(__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1]).replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="CSV or Parquet files with the same columns")
    p.add_argument("--show", metavar="PROFILE", help="print a summary of a saved profile and exit")
    add_option_flags(p, OPTIONS)
    p.set_defaults(func=run)


def add_option_flags(p: argparse.ArgumentParser, options: dict) -> None:
    """``--config``, one flag per entry of an options table like :data:`OPTIONS` (default None, so
    :func:`resolve` can tell a flag that was given from one that was not) and ``-q``."""
    p.add_argument("--config", metavar="YAML", help="options as a YAML map (keys as below, - or _)")
    for name, (parse, _, text) in options.items():
        flags = [f"--{name.replace('_', '-')}"] + (["-o"] if name == "out" else [])
        if parse is _bool:
            p.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            p.add_argument(*flags, dest=name, type=parse, default=None, help=text)
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stdout")


def resolve(args: argparse.Namespace, environ=None, options: dict | None = None,
            prefix: str = "DRIFTCAR_PROFILE_") -> dict:
    """Final option values: flag > DRIFTCAR_PROFILE_* (``prefix``) > --config file > default.
    ValueError listing every problem (with where the bad value came from). ``options`` is a
    table like :data:`OPTIONS` (the default), so other commands resolve theirs the same way."""
    from driftcar._layers import Setting, env_layer, resolve as layered, yaml_layer

    environ = os.environ if environ is None else environ
    options = OPTIONS if options is None else options
    problems: list[tuple[str, str]] = []
    path = args.config or environ.get(f"{prefix}CONFIG")
    from_file = yaml_layer(path, options, problems, unknown=lambda key: (path, f"unknown key {key!r}"))
    from_file = {name: s for name, s in from_file.items() if s.value is not None}  # null: not set
    defaults = {name: Setting(default, "default", parsed=True) for name, (_, default, _) in options.items()}
    from_env = env_layer(environ, {f"{prefix}{name.upper()}": name for name in options}, prefix, problems)
    from_flags = {name: Setting(getattr(args, name), f"--{name}", parsed=True)
                  for name in options if getattr(args, name) is not None}
    parsers = {name: parse for name, (parse, _, _) in options.items()}
    values, _ = layered(parsers, (defaults, from_file, from_env, from_flags), problems)
    if problems:
        raise ValueError("; ".join(f"{where}: {message}" for where, message in problems))
    return values


def _bar(enabled: bool) -> Callable[[str, float], None]:
    last = [0.0]

    def show(label: str, fraction: float) -> None:
        if not enabled:
            return
        now = time.monotonic()
        if fraction < 1.0 and now - last[0] < 0.1:
            return
        last[0] = now
        width = 30
        full = int(round(fraction * width))
        sys.stderr.write(f"\r{label} [{'#' * full}{'.' * (width - full)}] {fraction * 100:5.1f}%")
        if fraction >= 1.0:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _summary(prof, out=None) -> None:
    out = out or sys.stdout
    print(f"profile: {prof.rows} rows, {len(prof.features)} features, source={prof.source}, "
          f"bins={prof.bins} (fine {prof.fine_bins}), top_k={prof.top_k}", file=out)
    for name, f in prof.features.items():
        if f.kind == "numeric":
            detail = f"mean {f.mean:.4g}, sd {f.std:.4g}, range [{f.min:.4g}, {f.max:.4g}], {len(f.edges) + 1} bins"
        else:
            detail = f"{len(f.categories)} categories" + (f" + {f.category_array[-1]} other" if f.category_array[-1] else "")
        print(f"  {name:<24} {f.kind:<11} missing {f.missing_rate:6.2%}  {detail}", file=out)
    for what, f in (("prediction", prof.prediction), ("label", prof.label)):
        if f is not None:
            print(f"  [{what}] {f.kind}, missing {f.missing_rate:.2%}", file=out)
    if prof.pca is not None:
        print(f"  [multivariate] {_pca_text(prof)}", file=out)
    inf = prof.inference
    if inf is not None:
        first = f" from the first {inf.decided_on:,} rows" if 0 < inf.decided_on < inf.rows else ""
        print(f"columns, as inferred{first} (--keep, --exclude, --categorical to override):", file=out)
        for c in inf.columns:
            print(f"  {c.line()}", file=out)
        if inf.sensitivity:
            print(f"sensitivity: {inf.rows:,} reference rows; {inf.sensitivity_text()}", file=out)


def _pca_text(prof) -> str:
    """The PCA's size and why it is that size (a reader compares it with the variance target)."""
    pca = prof.pca
    k, d = pca.components.shape[1], len(pca.features)
    text = f"PCA {k} of {d} components, {pca.explained:.1%} of variance"
    if pca.capped:
        text += (f": capped at {k} = features - 1 so that a reconstruction error remains "
                 f"(the {pca.variance:.0%} target needs all {d})")
    elif pca.variance is not None:
        text += f": the fewest that reach the {pca.variance:.0%} target"
    numeric = sum(1 for f in prof.features.values() if f.kind == "numeric")
    categorical = sum(1 for f in prof.features.values() if f.kind == "categorical")
    if numeric > d or categorical > len(pca.onehot):
        text += (f"; left out of it (judged per feature only): {numeric - d} numeric feature(s) (more than half "
                 f"missing, or past --pca-max-columns), {categorical - len(pca.onehot)} categorical (no category "
                 f"of >= 1 % beside the most frequent, or past --pca-max-columns)")
    return text


def _two_passes(files: list[str], opt: dict, builder, inference, bar) -> None:
    """Pass 1 (edges) then pass 2 (counts) over every file, each chunk's kinds as inferred."""
    from driftcar.stats.errors import ProfileError
    from driftcar.stats.readers import read_chunks

    def split(chunk: dict, path: str):
        for col in (c for c in (opt["label"], opt["prediction"]) if c):
            if col not in chunk:
                raise ProfileError(f"{path}: no column {col!r} (columns: {', '.join(chunk)})")
        y = chunk.pop(opt["label"]) if opt["label"] else None
        pred = chunk.pop(opt["prediction"]) if opt["prediction"] else None
        return chunk, y, pred

    for step, (label, feed) in enumerate((("pass 1/2 (edges)", builder.observe), ("pass 2/2 (counts)", builder.count))):
        for path in files:
            name = f"{label} {os.path.basename(path)}"
            progress = (lambda f, name=name: bar(name, f))
            for chunk in read_chunks(path, opt["chunk_rows"], opt["format"], opt["delimiter"], progress):
                X, y, pred = split(chunk, path)
                X = inference.apply(X, count=step == 0)
                if not X and y is None and pred is None:
                    raise ProfileError(f"{path}: nothing to profile: every column was left out (--keep COL)")
                builder.categorical |= {n for n, kind in inference.kinds.items() if kind == "categorical"}
                feed(X, y, pred)
        if step == 0:
            builder.fix()



def run_failure(exc: BaseException, out: str) -> str:
    """One line for an error while reading the inputs or writing ``out``: the reader's or profile's
    reason, else the file and the system's words (``driftcar profile`` and ``driftcar report`` alike)."""
    if isinstance(exc, OSError):  # ProfileError and ReadError are ValueErrors with a reason
        return f"{exc.filename or out}: {exc.strerror or exc}"
    return getattr(exc, "reason", None) or str(exc)


def run(args: argparse.Namespace) -> int:
    from driftcar.stats.errors import ProfileError
    from driftcar.stats.profile import Profile, ProfileBuilder
    from driftcar.stats.infer import KindInference
    from driftcar.stats.readers import ReadError, file_format

    def fail(message: str) -> int:
        print(f"driftcar profile: error: {message}", file=sys.stderr)
        return 2

    if args.show:
        try:
            _summary(Profile.load(args.show))
        except ProfileError as exc:
            return fail(exc.reason)
        return 0
    try:
        opt = resolve(args)
    except ValueError as exc:
        return fail(str(exc))
    if not args.files:
        return fail("no input files (usage: driftcar profile FILE... --out ref.driftcar)")
    if not opt["out"]:
        return fail("--out is required (where to write the profile)")
    show = opt["progress"] == "always" or (opt["progress"] == "auto" and sys.stderr.isatty())
    bar = _bar(show)
    inference = KindInference(categorical=opt["categorical"], keep=opt["keep"], exclude=opt["exclude"],
                              top_k=opt["top_k"], text=all(file_format(f, opt["format"]) == "csv" for f in args.files))
    try:
        builder = ProfileBuilder(bins=opt["bins"], fine_bins=max(opt["fine_bins"], opt["bins"]), top_k=opt["top_k"],
                                 categorical=opt["categorical"], max_rows_kept=max(10, opt["max_rows_kept"]),
                                 multivariate=opt["multivariate"], pca_variance=opt["pca_variance"],
                                 pca_max_columns=max(2, opt["pca_max_columns"]),
                                 seed=opt["seed"])
    except ValueError as exc:
        return fail(str(exc))
    try:
        _two_passes(args.files, opt, builder, inference, bar)
        prof = builder.finish(inference.report())
        prof.save(opt["out"])
    except (ProfileError, ReadError, ValueError, OSError) as exc:
        return fail(run_failure(exc, opt["out"]))
    if not args.quiet:
        _summary(prof)
        print(f"wrote {opt['out']} ({os.path.getsize(opt['out']):,} bytes)")
    for problem in prof.inference.warnings():
        print(f"driftcar profile: warning: {problem}", file=sys.stderr)
    return 0
