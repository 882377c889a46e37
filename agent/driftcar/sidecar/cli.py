"""``driftcar sidecar``: run the sidecar in the foreground until SIGTERM/SIGINT.

Every option is also a YAML key (``--config FILE``, default ``$DRIFTCAR_CONFIG``) and a
``DRIFTCAR_*`` variable; see :mod:`driftcar.sidecar.config`. Exit codes: 0 after a clean
shutdown, 1 when the shutdown deadline was hit, 2 for configuration errors, 3 when the
service could not start (address in use, unreadable reference, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from driftcar.sidecar.config import OPTIONS, ConfigError, load_config

__all__ = ["register", "run"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sidecar",
        help="run the driftcar sidecar (OTLP receivers, drift evaluation, OTel export)",
        description="Receive driftcar.batch records over OTLP, evaluate drift and quality per window, "
                    "export OTel metrics and logs. Every option is also a YAML key and a DRIFTCAR_* variable.",
    )  # defaults are written into each option's help once (argparse's own would print "default: None")
    parser.add_argument("--config", metavar="FILE", default=os.environ.get("DRIFTCAR_CONFIG"),
                        help="YAML configuration file (env DRIFTCAR_CONFIG)")
    for option in OPTIONS:
        help_text = f"{option.help} [env {option.env}]"
        if option.parse.__name__ == "_bool":
            # a bare flag turns it on; "--flag false" turns off one that defaults to on
            parser.add_argument(option.flag, dest=option.dest, nargs="?", const=True, default=None,
                                metavar="BOOL", help=help_text)
        elif option.multiple:
            parser.add_argument(option.flag, dest=option.dest, action="append", metavar=option.metavar,
                                default=None, help=help_text)
        else:
            parser.add_argument(option.flag, dest=option.dest, metavar=option.metavar, default=None,
                                help=f"{help_text} (default {option.default})" if option.default not in
                                (None, (), {}) else help_text)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    flags = {o.key: getattr(args, o.dest, None) for o in OPTIONS}
    config_path = args.config
    if config_path and not os.path.exists(config_path) and config_path == os.environ.get("DRIFTCAR_CONFIG") \
            and config_path == "/etc/driftcar/driftcar.yaml":
        config_path = None  # the image default may be absent outside the container
    try:
        config = load_config(config_path, flags=flags)
    except ConfigError as exc:
        print(f"driftcar sidecar: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from driftcar.sidecar.memory import limit_blas_threads, tune_malloc

    tune_malloc()  # before the service starts its threads (see driftcar.sidecar.memory)
    limit_blas_threads()
    from driftcar.sidecar.service import SidecarService, StartError

    try:
        service = SidecarService(config)
    except (OSError, ValueError) as exc:
        print(f"driftcar sidecar: cannot start: {exc}", file=sys.stderr)
        return 3
    try:
        ok = asyncio.run(service.run())
    except StartError as exc:
        logging.getLogger("driftcar.sidecar").error("cannot start: %s", exc)
        return 3
    return 0 if ok else 1
