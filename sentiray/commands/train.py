"""`sentiray train`: run the Ray Train job on the local Ray (started if none is running)."""

from __future__ import annotations

import argparse
from typing import Any

from sentiray.config import add_config_arguments


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a classifier with Ray Train and write an artifact",
        description="Fine-tune a sentiment classifier on Ray Train (local Ray unless RAY_ADDRESS is set). "
        "Options come from --preset, then --config YAML, then flags.",
    )
    add_config_arguments(parser)
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from ray_jobs.train import run
    from sentiray.config import config_from_namespace

    run(config_from_namespace(args))
    return 0
