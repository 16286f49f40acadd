"""The Ray-free core on a GPU: training samples/s, model FLOP utilisation (MFU) in bf16, inference throughput.

    python bench/gpu_core.py --data ../shared/data/imdb --tokenizer $MINILM --out gpu-core.json

For each model size (DistilBERT-size and MiniLM-size; weights from a config, since the Hub may be out of
reach, with the packaged MiniLM's uncased WordPiece tokenizer, which both share), in one run:
  loop     sentiray.training.run_training on one GPU in bf16 autocast: the loop a Ray Train worker runs,
           tokenizing each batch on the host as it goes. Samples/s is the median of the logged
           intervals after the first.
  model    the same model, optimizer, autocast and clipping on batches tokenized and moved to the GPU
           beforehand: the loop's ceiling, so the gap between the two is what the loop's host work costs.
  predict  sentiray.Predictor in bf16 at each --predict-batches size, on reviews tokenized beforehand
           (the model path) and from raw text (tokenization included).
MFU = model FLOPs per second / the bf16 matrix-multiply peak measured here (an n x n x n product,
bench/matmul_peak.py). FLOPs are counted on real, unpadded tokens (bench/inference_runtimes.model_flops);
a training step is 3x its forward pass.

The script runs on a CPU as well (--device cpu --precision fp32, a few --steps), so it is checked where no
GPU is: bf16 on a CPU without AVX512-BF16/AMX runs about 100x slower than fp32.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

import torch
import torch.nn.functional as F

from bench.common import HistoryReporter, bench_parser, steady_rate, write_result
from bench.inference_runtimes import model_flops
from bench.matmul_peak import gflops
from sentiray.config import build_config
from sentiray.data import TextDataset, load_file
from sentiray.labels import ID2LABEL, LABEL2ID
from sentiray.model import load_model, load_tokenizer
from sentiray.predictor import Predictor
from sentiray.text import collate, encode
from sentiray.training import WorkerContext, run_training

TRUNCATION = "head_tail"
MODEL_WARMUP_STEPS = 5  # untimed steps of the model-only run (kernel selection, allocator, AdamW state)


def model_config(size: str) -> Any:
    """distilbert: distilbert-base-uncased's shape (66M parameters); minilm: all-MiniLM-L6-v2's (22M)."""
    from transformers import BertConfig, DistilBertConfig

    labels = {"num_labels": len(ID2LABEL), "id2label": ID2LABEL, "label2id": LABEL2ID}
    if size == "distilbert":
        return DistilBertConfig(**labels)
    return BertConfig(
        hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536, **labels
    )


def build_model_folder(size: str, tokenizer_dir: str, root: Path) -> tuple[str, int]:
    """A Hugging Face folder with random weights of the size's shape and the shared tokenizer, and the
    model's parameter count."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    folder = root / size
    model = AutoModelForSequenceClassification.from_config(model_config(size))
    model.save_pretrained(folder)
    load_tokenizer(tokenizer_dir).save_pretrained(folder)
    return str(folder), sum(p.numel() for p in model.parameters())


def mean_flops(config: Any, encoded: list[list[int]]) -> float:
    return statistics.fmean(model_flops(config, len(ids)) for ids in encoded)


def bench_loop(
    folder: str, train: TextDataset, validation: TextDataset, device: torch.device, args: argparse.Namespace
) -> dict[str, Any]:
    """samples/s of sentiray.training.run_training, the median over logged intervals after the first."""
    cfg = build_config(overrides={
        "base_model": folder, "max_length": args.max_length, "truncation": TRUNCATION,
        "batch_size": args.train_batch, "max_steps": args.steps, "precision": args.precision,
        "eval_every_steps": args.steps, "log_every_steps": args.log_every, "num_workers": 1,
        "use_gpu": device.type == "cuda", "torch_threads": args.threads,
    })
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    reporter = HistoryReporter()
    started = time.perf_counter()
    run_training(cfg, train, validation, WorkerContext(device=device), reporter)
    wall = time.perf_counter() - started
    out: dict[str, Any] = {
        "samples_per_s": round(steady_rate(reporter.history), 1),
        "wall_s_with_load_eval_checkpoint": round(wall, 1),
    }
    if device.type == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    return out


def bench_model_step(
    folder: str, batches: list[dict[str, torch.Tensor]], device: torch.device, dtype: torch.dtype
) -> dict[str, Any]:
    """samples/s of forward + backward + clip + AdamW on batches already on the device (the loop's ceiling)."""
    model = load_model(folder).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)

    def step(batch: dict[str, torch.Tensor]) -> None:
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = F.cross_entropy(logits.float(), batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:MODEL_WARMUP_STEPS]:
        step(batch)
    _sync(device)
    started = time.perf_counter()
    for batch in batches[MODEL_WARMUP_STEPS:]:
        step(batch)
    _sync(device)
    rows = sum(len(b["labels"]) for b in batches[MODEL_WARMUP_STEPS:])
    return {"samples_per_s": round(rows / (time.perf_counter() - started), 1)}


def bench_predict(
    folder: str, texts: list[str], device: torch.device, dtype: torch.dtype, batch_size: int, max_length: int,
    peak_gflops: float,
) -> dict[str, Any]:
    """reviews/s of Predictor.logits_for_ids (pre-tokenized) and Predictor.logits (from text), and their MFU."""
    predictor = Predictor(
        load_model(folder, dtype=dtype), load_tokenizer(folder), max_length=max_length,
        truncation=TRUNCATION, device=device, dtype=dtype, max_batch_size=batch_size,
    )
    encoded = predictor.encode(texts)
    # Warm-up over the same reviews: the first batch of each new sequence length picks its kernels.
    predictor.logits_for_ids(encoded)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    predictor.logits_for_ids(encoded)  # returns numpy, so the GPU is done when it returns
    model_rate = len(texts) / (time.perf_counter() - started)
    started = time.perf_counter()
    predictor.logits(texts)
    text_rate = len(texts) / (time.perf_counter() - started)
    gflop = mean_flops(predictor.model.config, encoded) / 1e9
    out: dict[str, Any] = {
        "reviews_per_s_pretokenized": round(model_rate, 1),
        "reviews_per_s_from_text": round(text_rate, 1),
        "gflop_per_review": round(gflop, 2),
        "mfu_pretokenized": round(model_rate * gflop / peak_gflops, 3),
        "mfu_from_text": round(text_rate * gflop / peak_gflops, 3),
    }
    if device.type == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = bench_parser(__doc__, threads="Host intra-op threads")
    parser.add_argument("--data", required=True, help="Folder with train.parquet and test.parquet")
    parser.add_argument("--tokenizer", required=True, help="A Hugging Face folder holding a BERT uncased tokenizer")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"], help="Compute dtype (and peak)")
    parser.add_argument("--sizes", nargs="+", default=["distilbert", "minilm"], choices=["distilbert", "minilm"])
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--train-batch", type=int, default=64, help="Reviews per training step")
    parser.add_argument("--steps", type=int, default=120, help="Training steps of the loop run")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--model-steps", type=int, default=40, help="Timed steps of the model-only run")
    parser.add_argument("--predict-reviews", type=int, default=4096)
    parser.add_argument("--predict-batches", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--peak-size", type=int, default=8192, help="n of the n x n x n bf16 peak product")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")

    import transformers

    peak = gflops(args.peak_size, args.peak_size, args.peak_size, dtype, repeats=10, device=args.device)
    env = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "sentiray_code": str(Path(sys.modules[run_training.__module__].__file__ or "?").parent),
        f"{args.precision}_peak_tflops": round(peak / 1e3, 3),
    }
    print("ENV " + json.dumps(env), flush=True)

    data = Path(args.data)
    train_all = load_file(str(data / "train.parquet"))
    test = load_file(str(data / "test.parquet"))
    model_batches = args.model_steps + MODEL_WARMUP_STEPS
    rows_needed = args.train_batch * max(args.steps, model_batches)
    train = train_all.subset(range(min(rows_needed, len(train_all))))
    validation = test.subset(range(256))
    texts = test.texts[: args.predict_reviews]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sentiray-gpu-") as tmp:
        for size in args.sizes:
            folder, parameters = build_model_folder(size, args.tokenizer, Path(tmp))
            tokenizer = load_tokenizer(folder)
            config = model_config(size)
            encoded = encode(tokenizer, train.texts, args.max_length, TRUNCATION)
            train_flops = 3 * mean_flops(config, encoded)
            row: dict[str, Any] = {
                "parameters_m": round(parameters / 1e6, 1),
                "mean_real_tokens_train": round(statistics.fmean(len(e) for e in encoded), 1),
                "train_gflop_per_sample": round(train_flops / 1e9, 2),
            }
            row["loop"] = bench_loop(folder, train, validation, device, args)
            pad = tokenizer.pad_token_id or 0
            batches = []
            for start in range(0, model_batches * args.train_batch, args.train_batch):
                chunk = encoded[start : start + args.train_batch]
                batch = collate(chunk, pad)
                batch["labels"] = torch.tensor(train.labels[start : start + len(chunk)])
                batches.append({k: v.to(device) for k, v in batch.items()})
            row["model"] = bench_model_step(folder, batches, device, dtype)
            # The model run's rows are the first of the loop's: each run's FLOPs counted on its own rows.
            timed = encoded[MODEL_WARMUP_STEPS * args.train_batch : model_batches * args.train_batch]
            model_flops_per_sample = 3 * mean_flops(config, timed)
            row["loop"]["mfu"] = round(row["loop"]["samples_per_s"] * train_flops / 1e9 / peak, 3)
            row["model"]["mfu"] = round(row["model"]["samples_per_s"] * model_flops_per_sample / 1e9 / peak, 3)
            print(f"{size}: train {json.dumps(row)}", flush=True)
            row["predict"] = {}
            for batch_size in args.predict_batches:
                p = bench_predict(folder, texts, device, dtype, batch_size, args.max_length, peak)
                row["predict"][batch_size] = p
                print(f"{size}: predict batch {batch_size} {json.dumps(p)}", flush=True)
            results[size] = row
    summary = {"env": env, "args": vars(args), "results": results}
    write_result(summary, args.out)


if __name__ == "__main__":
    main()
