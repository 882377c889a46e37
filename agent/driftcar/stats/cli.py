"""``driftcar profile FILE... --out ref.driftcar``: a reference profile from training data.

Reads CSV (``.csv``, ``.csv.gz``, any other name) and Parquet (``.parquet``,
``.pq``; needs pyarrow) in chunks, in two passes (edges, then exact counts),
so files larger than memory work in bounded memory. A progress bar is drawn
on stderr only when it is a terminal. ``--label`` / ``--prediction`` name
the columns holding y and the model output; ``--show FILE`` prints a saved
profile. Every option can also come from a ``DRIFTCAR_PROFILE_<OPTION>``
environment variable (e.g. ``DRIFTCAR_PROFILE_BINS=10``); flags win.
Exit status: 0 done, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

__all__ = ["register", "run"]


def _env(name: str, default):
    return os.environ.get(f"DRIFTCAR_PROFILE_{name.upper()}", default)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value}")
    return value


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "profile",
        help="build a reference profile (.driftcar) from training data (CSV / Parquet)",
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="CSV or Parquet files with the same columns")
    p.add_argument("-o", "--out", default=_env("out", None), help="output profile file (e.g. ref.driftcar)")
    p.add_argument("--show", metavar="PROFILE", help="print a summary of a saved profile and exit")
    p.add_argument("--label", default=_env("label", None), help="column holding the ground truth (y)")
    p.add_argument("--prediction", default=_env("prediction", None), help="column holding the model output")
    p.add_argument("--exclude", type=_names, default=_names(_env("exclude", "")),
                   help="comma-separated columns to leave out (ids, timestamps)")
    p.add_argument("--categorical", type=_names, default=_names(_env("categorical", "")),
                   help="comma-separated numeric columns to treat as categories")
    p.add_argument("--bins", type=_positive_int, default=int(_env("bins", 20)),
                   help="coarse quantile bins per numeric feature (default 20)")
    p.add_argument("--fine-bins", type=_positive_int, default=int(_env("fine_bins", 400)),
                   help="fine quantile bins for KS / Wasserstein (default 400; error bound ~1/fine-bins)")
    p.add_argument("--top-k", type=_positive_int, default=int(_env("top_k", 50)),
                   help="categories kept per categorical feature; the rest are __other__ (default 50)")
    p.add_argument("--max-rows-kept", type=_positive_int, default=int(_env("max_rows_kept", 100_000)),
                   help="rows sampled for quantile edges and PCA (default 100000; counts are always exact)")
    p.add_argument("--pca-variance", type=_share, default=float(_env("pca_variance", 0.9)),
                   help="share of variance the PCA keeps (default 0.9)")
    p.add_argument("--no-multivariate", action="store_true", help="skip the PCA (multivariate drift) model")
    p.add_argument("--chunk-rows", type=_positive_int, default=int(_env("chunk_rows", 100_000)),
                   help="rows read per chunk (default 100000)")
    p.add_argument("--format", choices=("auto", "csv", "parquet"), default=_env("format", "auto"))
    p.add_argument("--delimiter", default=_env("delimiter", ","), help="CSV field delimiter (default ,)")
    p.add_argument("--seed", type=int, default=int(_env("seed", 0)), help="sampling seed (default 0)")
    p.add_argument("--progress", choices=("auto", "always", "never"), default=_env("progress", "auto"),
                   help="progress bar on stderr: auto = only on a terminal")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stdout")
    p.set_defaults(func=run)


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
        print(f"  [multivariate] PCA {prof.pca.components.shape[1]} of {len(prof.pca.features)} components, "
              f"{prof.pca.explained:.1%} of variance", file=out)


def run(args: argparse.Namespace) -> int:
    from driftcar.stats.errors import ProfileError
    from driftcar.stats.profile import Profile, ProfileBuilder
    from driftcar.stats.readers import ReadError, read_chunks

    def fail(message: str) -> int:
        print(f"driftcar profile: error: {message}", file=sys.stderr)
        return 2

    if args.show:
        try:
            _summary(Profile.load(args.show))
        except ProfileError as exc:
            return fail(exc.reason)
        return 0
    if not args.files:
        return fail("no input files (usage: driftcar profile FILE... --out ref.driftcar)")
    if not args.out:
        return fail("--out is required (where to write the profile)")
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    bar = _bar(show)
    special = [c for c in (args.label, args.prediction) if c]
    try:
        builder = ProfileBuilder(bins=args.bins, fine_bins=max(args.fine_bins, args.bins), top_k=args.top_k,
                                 categorical=args.categorical, max_rows_kept=max(10, args.max_rows_kept),
                                 multivariate=not args.no_multivariate, pca_variance=args.pca_variance,
                                 seed=args.seed)
    except ValueError as exc:
        return fail(str(exc))

    def split(chunk: dict, path: str):
        for col in special + list(args.exclude):
            if col not in chunk and col not in args.exclude:
                raise ProfileError(f"{path}: no column {col!r} (columns: {', '.join(chunk)})")
        y = chunk.pop(args.label) if args.label else None
        pred = chunk.pop(args.prediction) if args.prediction else None
        for col in args.exclude:
            chunk.pop(col, None)
        return chunk, y, pred

    try:
        for step, (label, feed) in enumerate((("pass 1/2 (edges)", builder.observe),
                                              ("pass 2/2 (counts)", builder.count))):
            for k, path in enumerate(args.files):
                name = f"{label} {os.path.basename(path)}"
                progress = (lambda f, name=name: bar(name, f))
                for chunk in read_chunks(path, args.chunk_rows, args.format, args.delimiter, progress):
                    X, y, pred = split(chunk, path)
                    feed(X, y, pred)
            if step == 0:
                builder.fix()
        prof = builder.finish()
        prof.save(args.out)
    except (ProfileError, ReadError, ValueError) as exc:
        return fail(getattr(exc, "reason", None) or str(exc))
    except OSError as exc:
        return fail(f"{exc.filename or args.out}: {exc.strerror or exc}")
    if not args.quiet:
        _summary(prof)
        print(f"wrote {args.out} ({os.path.getsize(args.out):,} bytes)")
    return 0
