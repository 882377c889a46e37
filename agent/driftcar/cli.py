"""The ``driftcar`` command. The only place in driftcar that exits the process.

Each sub-command lives in its own module exposing ``register(subparsers)``,
which adds its parser and sets ``func(args) -> int``. Modules are imported
lazily so ``driftcar profile`` does not pay for the sidecar's imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from driftcar import __version__

#: sub-command modules, in help order
COMMANDS = (
    "driftcar.sidecar.cli",  # driftcar sidecar
    "driftcar.stats.cli",  # driftcar profile
    "driftcar.view.cli",  # driftcar report
    "driftcar.demo",  # driftcar demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftcar",
        description="OpenTelemetry-native observability for ML models: drift, quality, golden signals.",
    )
    parser.add_argument("--version", action="version", version=f"driftcar {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("driftcar"):
                continue  # sub-command not built into this distribution
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        sys.exit(2)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
