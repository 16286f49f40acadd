"""What the `cpu` preset's two switches save: padded tokens with length grouping, step time with frozen layers.

    python bench/cpu_recipe_levers.py --max-length 256 --out bench-levers.json

padding   the train split's token counts (sentiray.text.token_lengths, head_tail) batched the way the
          training loop batches them (sentiray.training.global_batches, 2 workers x 16): padded tokens of
          random batches against length-grouped ones, each over the real tokens
freeze    one optimizer step (forward, backward, AdamW) of 16 reviews at the split's mean grouped width,
          with 0, 1, 2 and 3 layers frozen (sentiray.model.freeze_lower_layers), on --threads threads;
          the median of --steps steps after one warm-up step, the variants interleaved step by step
The base model is the packaged all-MiniLM-L6-v2 unless --base-model.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

import numpy as np
import torch

from bench.common import IMDB_TRAIN, bench_parser, minilm_dir, write_result


def padding(lengths: np.ndarray, global_batch: int, world_size: int) -> dict[str, float]:
    from sentiray.training import global_batches, rank_share

    def padded(grouped: bool) -> tuple[int, float]:
        """(padded tokens over the epoch, mean width of the widest rank per step)."""
        total, widths = 0, []
        for gb in global_batches(len(lengths), 0, 42, global_batch, lengths if grouped else None):
            shares = [share for share in (rank_share(gb, r, world_size) for r in range(world_size)) if len(share)]
            # Each rank pads its share to its own longest row; the step waits for the widest rank.
            share_widths = [int(lengths[share].max()) for share in shares]
            total += sum(w * len(share) for w, share in zip(share_widths, shares, strict=True))
            widths.append(max(share_widths))
        return total, float(np.mean(widths))

    real = int(lengths.sum())
    (random_tokens, random_width), (grouped_tokens, grouped_width) = padded(False), padded(True)
    return {
        "real_tokens_per_row": round(real / len(lengths), 1),
        "random_padded_over_real": round(random_tokens / real, 3),
        "grouped_padded_over_real": round(grouped_tokens / real, 3),
        "grouped_over_random": round(grouped_tokens / random_tokens, 3),
        "random_mean_width": round(random_width, 1),
        "grouped_mean_width": round(grouped_width, 1),
    }


def freeze_step_times(base_model: str, width: int, threads: int, steps: int, frozen: list[int]) -> dict[str, float]:
    from sentiray.model import freeze_lower_layers, load_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    inputs = torch.randint(1000, 20000, (16, width))
    mask, labels = torch.ones_like(inputs), torch.randint(0, 2, (16,))
    setups: dict[int, tuple[Any, torch.optim.Optimizer]] = {}
    for n in frozen:
        model = load_model(base_model)
        freeze_lower_layers(model, n)
        model.train()
        setups[n] = (model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5))
    times: dict[int, list[float]] = {n: [] for n in frozen}
    for step in range(steps + 1):
        for n, (model, optimizer) in setups.items():
            started = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(input_ids=inputs, attention_mask=mask).logits, labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step:  # the first step of each variant warms up the allocator
                times[n].append(time.perf_counter() - started)
    full = statistics.median(times[0]) if 0 in times else None
    out: dict[str, float] = {}
    for n, values in times.items():
        out[f"frozen_{n}_step_s"] = round(statistics.median(values), 3)
        if full:
            out[f"frozen_{n}_over_full"] = round(statistics.median(values) / full, 3)
    return out


def main() -> None:
    parser = bench_parser(__doc__, threads="Intra-op threads of the step-time runs")
    parser.add_argument("--train", default=str(IMDB_TRAIN))
    parser.add_argument("--base-model", default=None)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16, help="Per worker")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--frozen", type=int, nargs="+", default=[0, 1, 2, 3])
    args = parser.parse_args()
    base_model = args.base_model or minilm_dir()

    from sentiray.data import load_file
    from sentiray.model import load_tokenizer
    from sentiray.text import token_lengths

    texts = load_file(args.train).texts
    lengths = token_lengths(load_tokenizer(base_model), texts, args.max_length, "head_tail")
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "rows": len(texts), "max_length": args.max_length,
        "padding": padding(lengths, args.batch_size * args.workers, args.workers),
    }
    width = round(result["padding"]["grouped_mean_width"])
    result["freeze"] = {"width": width, "threads": args.threads,
                        **freeze_step_times(base_model, width, args.threads, args.steps, args.frozen)}
    write_result(result, args.out)


if __name__ == "__main__":
    main()
