"""How much batching buys the core predictor alone (no HTTP, no Ray): reviews/s by batch size.

    python bench/predictor_batching.py --artifact runs/minilm-6k-128/artifact --threads 2

The ceiling any server can reach with this model on this machine; compare with bench/serve_bench.py.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from sentiray.data import load_file
from sentiray.predictor import Predictor

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imdb" / "test.parquet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reviews", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16, 32])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor = Predictor.from_artifact(args.artifact, precision="fp32")
    texts = load_file(args.data).texts[: args.reviews]
    predictor.logits(texts[:16])  # warm-up
    out = {}
    for batch in args.batch_sizes:
        started = time.perf_counter()
        for i in range(0, len(texts), batch):
            predictor.logits(texts[i : i + batch])
        out[batch] = round(len(texts) / (time.perf_counter() - started), 1)
        print(f"batch {batch:>3}: {out[batch]:6.1f} reviews/s", flush=True)
    print("BENCH_RESULT " + json.dumps({"threads": args.threads, "reviews_per_s": out}))


if __name__ == "__main__":
    main()
