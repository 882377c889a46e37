"""The ``driftcar`` command. The only place in driftcar that exits the process.

Each sub-command lives in its own module exposing ``register(subparsers)``,
which adds its parser and sets ``func(args) -> int``. Modules are imported
lazily so ``driftcar profile`` does not pay for the sidecar's imports.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys

from driftcar._version import __version__

#: sub-command modules, in help order
COMMANDS = (
    "driftcar.sidecar.cli",  # driftcar sidecar
    "driftcar.stats.cli",  # driftcar profile
    "driftcar.view.cli",  # driftcar report
    "driftcar.demo",  # driftcar demo
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose "unrecognized arguments" error suggests the closest known flags."""

    def error(self, message: str):
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            known = sorted(_option_strings(self, getattr(self, "argv", None) or sys.argv[1:]))
            hints = []
            for arg in message[len(prefix):].split():
                flag = arg.split("=", 1)[0]
                if flag.startswith("-"):
                    near = difflib.get_close_matches(flag, known, n=3, cutoff=0.6)
                    if near:
                        hints.append(f"{flag}: did you mean {' or '.join(near)}?")
            if hints:
                message += "\n" + "\n".join(hints)
        super().error(message)


def _option_strings(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The flags of ``parser`` and of the sub-command named in ``argv`` (of every one if none is)."""
    flags = {s for s in parser._option_string_actions if s.startswith("--")}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = [sub for name, sub in action.choices.items() if name in argv]
            for sub in chosen or action.choices.values():
                flags |= _option_strings(sub, argv)
    return flags


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    parser.argv = sys.argv[1:] if argv is None else list(argv)
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
