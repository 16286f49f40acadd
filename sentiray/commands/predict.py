"""`sentiray predict TEXT... | --file F`: classify texts with a running endpoint (retries, never on 4xx)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from sentiray.errors import ConfigError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "predict",
        help="Classify texts with a running sentiray endpoint",
        description="Send texts to POST {url}/predict; print one JSON line per text.",
    )
    p.add_argument("texts", nargs="*", metavar="TEXT", help="Texts to classify")
    p.add_argument("--file", metavar="PATH", help="Read texts from a file, one per line ('-': stdin)")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="Endpoint base URL (default: %(default)s)")
    p.add_argument("--token-env", metavar="VAR", help="Env var holding the bearer token")
    p.add_argument("--token-file", metavar="PATH", help="File holding the bearer token")
    p.add_argument("--raw-scores", action="store_true", help="Print logits instead of probabilities")
    p.add_argument(
        "--top-k",
        type=_top_k,
        metavar="K",
        help="Labels per text, highest score first (default: all; more than the model has: all)",
    )
    p.add_argument(
        "--function-to-apply",
        choices=("softmax", "sigmoid", "none"),
        help="Logits to scores (default: the model's: sigmoid if multi-label, else softmax)",
    )
    p.add_argument(
        "--no-truncate",
        dest="truncate",
        action="store_false",
        help="Refuse texts over the model's max_length instead of cutting them",
    )
    p.add_argument(
        "--retries", type=int, default=5, help="Retries of 5xx and dropped connections (default: 5)"
    )
    p.add_argument("--batch-size", type=int, default=32, help="Texts per request (default: 32)")
    p.add_argument("--timeout", type=float, default=60.0, help="Seconds per request (default: 60)")
    p.set_defaults(handler=run)


def _top_k(value: str) -> int:
    try:
        k = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}") from None
    if k < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {k}")
    return k


def _texts(args: argparse.Namespace) -> list[str]:
    texts = list(args.texts)
    if args.file:
        if args.file == "-":
            lines = sys.stdin.read().splitlines()
        else:
            path = Path(args.file)
            if not path.is_file():
                raise ConfigError(f"--file: {path} does not exist")
            lines = path.read_text(encoding="utf-8").splitlines()
        texts.extend(line for line in lines if line.strip())
    if not texts:
        raise ConfigError("give TEXT arguments or --file with one text per line")
    return texts


def _token(args: argparse.Namespace) -> str | None:
    if args.token_env:
        token = os.environ.get(args.token_env, "").strip()
        if not token:
            raise ConfigError(f"--token-env: environment variable {args.token_env} is empty or unset")
        return token
    if args.token_file:
        path = Path(args.token_file)
        if not path.is_file():
            raise ConfigError(f"--token-file: {path} does not exist")
        return path.read_text().strip()
    return None


def run(args: argparse.Namespace) -> int:
    from sentiray.client import PredictClient

    texts = _texts(args)
    with PredictClient(
        args.url, token=_token(args), retries=args.retries, batch_size=args.batch_size, timeout_s=args.timeout
    ) as client:
        results = client.predict(
            texts,
            raw_scores=args.raw_scores,
            truncate=args.truncate,
            top_k=args.top_k,
            function_to_apply=args.function_to_apply,
        )
    for text, scores in zip(texts, results, strict=True):
        print(json.dumps({"text": text, "label": scores[0]["label"], "scores": scores}, ensure_ascii=False))
    return 0
