"""Which CPU inference path is fastest and still correct: every candidate on the same reviews, in one run.

    python bench/inference_runtimes.py --artifact runs/minilm-6k-128/artifact --threads 2 \
        --accuracy-reviews 5000 --out bench-runtimes.json

Candidates: PyTorch fp32 / bf16 / int8 dynamic quantization (torch.ao) / torch.compile, ONNX Runtime fp32
and int8 (sentiray.runtime). Throughput is measured in interleaved rounds (every candidate once per
round, median reported), so a noisy neighbour slows all of them alike; each measurement processes
batches of real test reviews for a fixed time. Model FLOPs per review are counted on the real (unpadded)
tokens and reported against this machine's fp32 and bf16 matmul peak measured in the same run. A
candidate is kept only if its median speedup over PyTorch fp32 across the measured batch sizes (a
replica runs batch 1 when idle and up to max_batch_size when saturated) is at least 1.3x and it loses
at most 0.3 accuracy points on the test reviews (both measured here; every per-batch figure is
reported).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

import numpy as np
import torch

from bench.common import IMDB_TEST, bench_parser, write_result
from bench.matmul_peak import measure_peak
from sentiray.data import load_file
from sentiray.predictor import Predictor
from sentiray.runtime import TorchRunner

CANDIDATES = ("torch-fp32", "torch-bf16", "torch-int8-dynamic", "torch-compile", "onnx-fp32", "onnx-int8")
KEEP_SPEEDUP = 1.3
KEEP_ACCURACY_LOSS = 0.003


def model_flops(config: Any, tokens: int) -> float:
    """Forward FLOPs of a BERT-family encoder + classifier on one unpadded sequence of `tokens` tokens.

    Per layer and token: Q, K, V and output projections (4 h^2 multiply-adds), the FFN (2 h f), and
    attention scores plus the weighted sum (2 n h); a multiply-add is 2 FLOPs.
    """
    h = getattr(config, "hidden_size", None) or config.dim
    layers = getattr(config, "num_hidden_layers", None) or config.n_layers
    ffn = getattr(config, "intermediate_size", None) or config.hidden_dim
    per_token_layer = 2 * (4 * h * h + 2 * h * ffn + 2 * tokens * h)
    head = 2 * (h * h + h * 2)  # pooler/pre-classifier and classifier, once per sequence
    return float(layers * tokens * per_token_layer + head)


def build(candidate: str, artifact: str) -> Predictor:
    """A predictor running the candidate's forward pass (tokenization and batching are the core's)."""
    if candidate in ("onnx-fp32", "onnx-int8"):
        return Predictor.from_artifact(artifact, runtime="onnx" if candidate == "onnx-fp32" else "onnx-int8")
    precision = "bf16" if candidate == "torch-bf16" else "fp32"
    predictor = Predictor.from_artifact(artifact, runtime="torch", precision=precision)
    if candidate == "torch-int8-dynamic":
        from torch.ao.quantization import quantize_dynamic

        quantized = quantize_dynamic(predictor.model, {torch.nn.Linear}, dtype=torch.qint8)
        predictor._forward = TorchRunner(quantized, predictor.device)  # the bench swaps the engine only
    elif candidate == "torch-compile":
        compiled = torch.compile(predictor.model, dynamic=True)
        predictor._forward = TorchRunner(compiled, predictor.device)
    return predictor


def throughput(predictor: Predictor, encoded: list[list[int]], batch: int, seconds: float) -> float:
    """Reviews/s over whole batches run until `seconds` have passed (at least one batch)."""
    done, started = 0, time.perf_counter()
    while True:
        start = done % len(encoded)
        chunk = encoded[start : start + batch]
        predictor.logits_for_ids(chunk)
        done += len(chunk)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


def accuracy(predictor: Predictor, encoded: list[list[int]], labels: np.ndarray, batch: int) -> float:
    predicted = np.concatenate(
        [predictor.logits_for_ids(encoded[i : i + batch]).argmax(1) for i in range(0, len(encoded), batch)]
    )
    return float((predicted == labels).mean())


def main() -> None:
    parser = bench_parser(__doc__, threads="Intra-op threads of every candidate")
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--data", default=str(IMDB_TEST))
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=CANDIDATES)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--accuracy-batch", type=int, default=8, help="Batch size of the accuracy runs")
    parser.add_argument("--max-length", type=int, help="Tokens per review (default: the artifact's)")
    parser.add_argument("--reviews", type=int, default=256, help="Test reviews cycled by the speed runs")
    parser.add_argument("--seconds", type=float, default=6.0, help="Seconds per speed measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--accuracy-reviews", type=int, default=2000, help="0: skip the accuracy check")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load_file(args.data)
    predictors: dict[str, Predictor] = {}
    for name in args.candidates:
        try:
            started = time.perf_counter()
            predictors[name] = build(name, args.artifact)
            if args.max_length:
                predictors[name].max_length = args.max_length
            print(f"{name}: ready in {time.perf_counter() - started:.1f} s", flush=True)
        except Exception as e:  # a candidate that cannot run is a result, not a crash
            print(f"{name}: cannot run: {type(e).__name__}: {str(e)[:300]}", flush=True)
    reference = predictors.get("torch-fp32") or next(iter(predictors.values()))
    encoded = reference.encode(data.texts[: args.reviews])
    tokens = [len(ids) for ids in encoded]
    flops = statistics.fmean(model_flops(reference.model.config, n) for n in tokens)
    peak = measure_peak(args.threads)
    print(f"peak GFLOP/s: {peak}; mean real tokens/review {statistics.fmean(tokens):.1f}; "
          f"{flops / 1e9:.2f} GFLOP/review", flush=True)

    samples: dict[str, dict[int, list[float]]] = {n: {b: [] for b in args.batch_sizes} for n in predictors}
    for name, predictor in predictors.items():  # warm-up (torch.compile compiles here)
        started = time.perf_counter()
        for b in args.batch_sizes:
            predictor.logits_for_ids(encoded[:b])
        print(f"{name}: warm-up {time.perf_counter() - started:.1f} s", flush=True)
    for round_ in range(args.rounds):
        for name, predictor in predictors.items():
            for b in args.batch_sizes:
                # bf16 on a CPU without native bf16 is ~100x slower: one batch is enough to show it.
                seconds = args.seconds if name != "torch-bf16" or peak["bf16_gflops"] > 10 else 0.0
                samples[name][b].append(throughput(predictor, encoded, b, seconds))
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)

    speed = {n: {b: statistics.median(v) for b, v in per.items()} for n, per in samples.items()}
    base = speed.get("torch-fp32", {})
    results: dict[str, Any] = {}
    for name, per in speed.items():
        row: dict[str, Any] = {
            "reviews_per_s": {b: round(v, 1) for b, v in per.items()},
            "fraction_of_fp32_peak": {b: round(v * flops / 1e9 / peak["fp32_gflops"], 3) for b, v in per.items()},
            "fraction_of_bf16_peak": {b: round(v * flops / 1e9 / peak["bf16_gflops"], 2) for b, v in per.items()},
        }
        if base:
            row["speedup_vs_torch_fp32"] = {b: round(v / base[b], 2) for b, v in per.items()}
        results[name] = row

    def median_speedup(row: dict[str, Any]) -> float:
        return statistics.median(row.get("speedup_vs_torch_fp32", {0: 0.0}).values())

    if args.accuracy_reviews:
        texts, labels = data.texts[: args.accuracy_reviews], np.asarray(data.labels[: args.accuracy_reviews])
        acc_encoded = reference.encode(texts)
        for name, predictor in predictors.items():
            if name == "torch-fp32" or median_speedup(results[name]) >= 1.0:  # slower ones are out anyway
                started = time.perf_counter()
                results[name]["accuracy"] = round(accuracy(predictor, acc_encoded, labels, args.accuracy_batch), 4)
                print(f"{name}: accuracy {results[name]['accuracy']} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
        reference_acc = results.get("torch-fp32", {}).get("accuracy")
        for name, row in results.items():
            accurate = reference_acc is not None and "accuracy" in row and (
                reference_acc - row["accuracy"] <= KEEP_ACCURACY_LOSS
            )
            row["median_speedup"] = round(median_speedup(row), 2)
            row["kept"] = name == "torch-fp32" or (row["median_speedup"] >= KEEP_SPEEDUP and accurate)

    summary = {
        "artifact": args.artifact, "threads": args.threads, "max_length": reference.max_length,
        "mean_real_tokens": round(statistics.fmean(tokens), 1), "gflop_per_review": round(flops / 1e9, 3),
        "peak": peak, "seconds_per_measurement": args.seconds, "rounds": args.rounds,
        "accuracy_reviews": args.accuracy_reviews, "results": results,
    }
    for name, row in results.items():
        print(f"{name:>20}: " + json.dumps(row), flush=True)
    write_result(summary, args.out)


if __name__ == "__main__":
    main()
