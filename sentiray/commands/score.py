"""`sentiray score`: run the batch scoring job on the local Ray (started if none is running)."""

from __future__ import annotations

import argparse
from typing import Any

from sentiray.score_config import add_score_arguments


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score a table of reviews with an artifact on Ray Data and write parquet",
        description="Score parquet/csv/jsonl files with an artifact on a pool of Ray Data actors (local Ray "
        "unless RAY_ADDRESS is set) and write parquet: the input columns, then label, score, one score per "
        "label, and error. The same job as `python -m ray_jobs.score`.",
    )
    add_score_arguments(parser)
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from ray_jobs.score import score
    from sentiray.score_config import ScoreConfig

    score(ScoreConfig.from_args(args))
    return 0
