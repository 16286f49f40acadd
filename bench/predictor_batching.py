"""How much batching buys the core predictor alone (no HTTP, no Ray): reviews/s by batch size.

    python bench/predictor_batching.py --artifact runs/minilm-6k-128/artifact --threads 2

The ceiling any server can reach with this model on this machine; compare with bench/serve_bench.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

import torch

from bench.common import IMDB_TEST, bench_parser, write_result
from sentiray.data import load_file
from sentiray.predictor import Predictor


def main() -> None:
    parser = bench_parser(__doc__, threads="Intra-op threads of the predictor", out=None)
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--data", default=str(IMDB_TEST))
    parser.add_argument("--reviews", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument(
        "--precision", default="fp32", help="As the endpoint's dtype arg: auto picks what `sentiray serve` picks"
    )
    parser.add_argument(
        "--from-tokens",
        action="store_true",
        help="Tokenize up front and time the model alone (a model replica's work now that the ingress tokenizes)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor = Predictor.from_artifact(args.artifact, precision=args.precision)
    texts = load_file(args.data).texts[: args.reviews]
    encoded = predictor.encode(texts)
    predictor.logits(texts[:16])  # warm-up
    out = {}
    for batch in args.batch_sizes:
        started = time.perf_counter()
        for i in range(0, len(texts), batch):
            if args.from_tokens:
                predictor.logits_for_ids(encoded[i : i + batch])
            else:
                predictor.logits(texts[i : i + batch])
        out[batch] = round(len(texts) / (time.perf_counter() - started), 1)
        print(f"batch {batch:>3}: {out[batch]:6.1f} reviews/s", flush=True)
    result = {
        "threads": args.threads,
        "runtime": predictor.runtime.value,
        "numerics": predictor.numerics,
        "from_tokens": args.from_tokens,
        "reviews_per_s": out,
    }
    write_result(result, None)


if __name__ == "__main__":
    main()
