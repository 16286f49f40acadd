"""The `sentiray` command: one subcommand per module in sentiray.commands.

Each command module defines `register(subparsers)`, which adds its parser and sets `handler` to a
function taking the parsed namespace and returning an exit code. Modules import heavy libraries (Ray,
torch, kubernetes) inside their handlers, so `sentiray --help` stays fast and Ray-free.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from sentiray.entrypoint import run_entrypoint

# Order is the order shown in --help.
COMMAND_MODULES = [
    "sentiray.commands.train",
    "sentiray.commands.score",
    "sentiray.commands.serve",
    "sentiray.commands.predict",
    "sentiray.commands.k8s",
    "sentiray.commands.ui",
    "sentiray.commands.push",
]

log = logging.getLogger("sentiray")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sentiray", description="Sentiment analysis fine-tuned with Ray Train and served with Ray Serve."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _version() -> str:
    from sentiray import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run the handler; user-facing errors exit 1 with their message, no traceback."""
    args = build_parser().parse_args(argv)
    return run_entrypoint(lambda: args.handler(args), prog=f"sentiray {args.command}")


if __name__ == "__main__":
    sys.exit(main())
