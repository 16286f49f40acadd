"""Tokenization throughput with and without cutting long texts to the part that reaches the kept tokens.

    python bench/tokenize_cut.py --lengths 128 256 512 --repeats 3 --batch 256 --out bench-tokenize-cut.json

Tokenizes every IMDB test review with the packaged all-MiniLM-L6-v2 WordPiece tokenizer through
sentiray.text.encode (what training, evaluation and serving call), once reading every text whole
(cut_text=False, the behaviour before the cut) and once cut (the default), interleaved in one process,
for each truncation and max_length. Batches of --batch reviews; the best of --repeats passes per variant.
The ids are checked to be identical. One thread unless --parallel (the tokenizers library's own pool).
Time is the process's CPU time (wall time with --wall): on a shared machine wall time mostly measures
the neighbours, while single-threaded CPU time measures the work.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

from bench.common import IMDB_TEST, bench_parser, minilm_dir, write_result

WALL = False


def _pass(
    tokenizer: Any, texts: list[str], max_length: int, truncation: str, batch: int, cut: bool
) -> tuple[float, list[list[int]]]:
    from sentiray.text import encode

    clock = time.perf_counter if WALL else time.process_time
    out: list[list[int]] = []
    started = clock()
    for start in range(0, len(texts), batch):
        out += encode(tokenizer, texts[start : start + batch], max_length, truncation, cut_text=cut)
    return clock() - started, out


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser((__doc__ or "").split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=IMDB_TEST)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--truncations", nargs="+", default=["head", "head_tail"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parallel", action="store_true", help="let the tokenizers library use its thread pool")
    parser.add_argument("--wall", action="store_true", help="time with the wall clock, not CPU time")
    args = parser.parse_args(argv)
    global WALL
    WALL = args.wall
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if args.parallel else "false"

    import pyarrow.parquet as pq

    from sentiray.model import load_tokenizer

    texts: list[str] = pq.read_table(args.data, columns=["text"]).column("text").to_pylist()
    tokenizer = load_tokenizer(minilm_dir())
    _pass(tokenizer, texts[:512], 128, "head", args.batch, cut=False)  # warm up
    rows = []
    clock = "wall" if args.wall else "CPU"
    print(f"{len(texts)} reviews, batch {args.batch}, best of {args.repeats}, {clock} time, parallel={args.parallel}")
    print(f"{'truncation':<10} {'max_len':>7} {'whole rev/s':>12} {'cut rev/s':>10} {'ratio':>6}")
    for truncation in args.truncations:
        for max_length in args.lengths:
            best = {False: float("inf"), True: float("inf")}
            ids: dict[bool, list[list[int]]] = {}
            for _ in range(args.repeats):
                for cut in (False, True):  # interleaved, so drifting load hits both alike
                    seconds, ids[cut] = _pass(tokenizer, texts, max_length, truncation, args.batch, cut)
                    best[cut] = min(best[cut], seconds)
            if ids[True] != ids[False]:
                print(f"ids differ for {truncation} {max_length}", file=sys.stderr)
                return 1
            row = {
                "truncation": truncation, "max_length": max_length,
                "whole_reviews_per_s": round(len(texts) / best[False], 1),
                "cut_reviews_per_s": round(len(texts) / best[True], 1),
                "ratio": round(best[False] / best[True], 2),
            }
            rows.append(row)
            print(f"{truncation:<10} {max_length:>7} {row['whole_reviews_per_s']:>12} "
                  f"{row['cut_reviews_per_s']:>10} {row['ratio']:>5}x", flush=True)
    summary = {"reviews": len(texts), "batch": args.batch, "clock": clock, "rows": rows}
    write_result(summary, args.out, prefix=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
