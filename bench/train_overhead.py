"""Ray Train's overhead: the sentiray job against a plain Hugging Face `Trainer`, same model, data, length.

    python bench/train_overhead.py --rows 640 --max-length 128 --out bench-train.json

Runs, one after another in this one invocation (each in its own process):
  hf        transformers.Trainer, one process, --threads intra-op threads
  ray-1x2   `python -m ray_jobs.train` on a local Ray: 1 worker x --threads threads
  ray-2x1   the same job with 2 workers x --threads/2 threads each (DDP over gloo)
  core      the job's own training loop (sentiray.training.run_training) in one process with --threads
            threads and no Ray: hf -> core is the loop's cost, core -> ray-1x2 is Ray's
All runs train on the same rows (the job's own split of the first --rows after its seeded shuffle) and
tokenize on the fly with the same function (sentiray.text.encode: head_tail truncation, the
same special tokens), use AdamW with the same learning rate, linear schedule, warmup, clipping, fp32,
batch 16 per step (the 2-worker run: 8 per worker, the same global batch). Throughput is the median of
the per-interval (--log-every steps) samples/s after the first interval (compile/allocator warm-up), so job start-up,
evaluation and export are not counted; they are reported separately as wall time. Peak RSS is per
worker process. Base model: the packaged all-MiniLM-L6-v2 unless --base-model.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

from bench.common import (
    IMDB_TEST,
    IMDB_TRAIN,
    REPO,
    HistoryReporter,
    bench_parser,
    minilm_dir,
    server_env,
    steady_rate,
    write_result,
)


def run_hf(args: argparse.Namespace) -> dict[str, Any]:
    """The baseline, in this process: transformers.Trainer on the same rows and tokenization."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from sentiray.model import load_model, load_tokenizer
    from sentiray.text import collate, encode

    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    train = job_splits(args).train
    texts, labels = train.texts, train.labels
    tokenizer, model = load_tokenizer(args.base_model), load_model(args.base_model)
    pad = tokenizer.pad_token_id or 0

    class Rows(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return len(texts)

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"text": texts[i], "label": labels[i]}

    def collator(rows: list[dict[str, Any]]) -> dict[str, Any]:
        ids = encode(tokenizer, [r["text"] for r in rows], args.max_length, "head_tail")
        batch = collate(ids, pad)
        batch["labels"] = torch.tensor([r["label"] for r in rows])
        return batch

    history: list[dict[str, Any]] = []

    class Rate(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, _args: Any, state: Any, _control: Any, **_: Any) -> None:
            if state.global_step % args.log_every == 0:
                elapsed = time.perf_counter() - self.started
                history.append({"step": state.global_step, "samples_per_s": args.log_every * args.batch_size / elapsed})
                self.started = time.perf_counter()

    out = tempfile.mkdtemp(prefix="hf-trainer-")
    training_args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=1, learning_rate=5e-5,
        weight_decay=0.01, warmup_steps=0.1, lr_scheduler_type="linear", max_grad_norm=1.0,
        eval_strategy="no", save_strategy="no", logging_steps=args.log_every, report_to=[], use_cpu=True,
        dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True, seed=42,
    )
    started = time.perf_counter()
    Trainer(model=model, args=training_args, train_dataset=Rows(), data_collator=collator,
            callbacks=[Rate()]).train()
    return {
        "samples_per_s": round(steady_rate(history), 2),
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_rss_mb_per_worker": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "intervals": [round(h["samples_per_s"], 2) for h in history],
    }


def threads_per_worker(args: argparse.Namespace, workers: int) -> int:
    return max(1, args.threads // workers)


def job_flags(args: argparse.Namespace, workers: int) -> list[str]:
    """The training job's flags for a layout of `workers` x (--threads / workers) threads."""
    threads = threads_per_worker(args, workers)
    return [
        "--train-file", str(args.train), "--test-file", str(args.test),
        "--max-train-samples", str(args.rows), "--validation-fraction", "0.01", "--max-eval-samples", "16",
        "--max-test-samples", "16", "--base-model", args.base_model, "--max-length", str(args.max_length),
        "--truncation", "head_tail", "--epochs", "1", "--batch-size", str(args.batch_size // workers),
        "--learning-rate", "5e-5", "--precision", "fp32", "--log-every-steps", str(args.log_every),
        "--num-workers", str(workers), "--cpus-per-worker", str(threads), "--torch-threads", str(threads),
    ]


def job_config(args: argparse.Namespace, workers: int = 1) -> Any:
    """The TrainJobConfig the job builds from job_flags (parsed by the job's own parser)."""
    from ray_jobs.train import build_parser
    from sentiray.config import config_from_namespace

    return config_from_namespace(build_parser().parse_args(job_flags(args, workers)))


def job_splits(args: argparse.Namespace) -> Any:
    """The rows the job trains on: its own seeded shuffle, limit and validation carve-out."""
    from sentiray.data import load_splits

    return load_splits(job_config(args).data)


def run_core(args: argparse.Namespace) -> dict[str, Any]:
    """The job's training loop in this process, without Ray (one worker, --threads threads)."""
    from sentiray.data import load_splits
    from sentiray.training import WorkerContext, run_training

    cfg = job_config(args)
    splits = load_splits(cfg.data)
    reporter = HistoryReporter()
    started = time.perf_counter()
    run_training(cfg, splits.train, splits.validation, WorkerContext(), reporter)
    return {
        "samples_per_s": round(steady_rate(reporter.history), 2),
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_rss_mb_per_worker": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "intervals": [round(h["samples_per_s"], 2) for h in reporter.history if "samples_per_s" in h],
    }


def run_ray(args: argparse.Namespace, workers: int, workdir: Path) -> dict[str, Any]:
    name = f"bench-{workers}x{threads_per_worker(args, workers)}"
    argv = [
        sys.executable, "-m", "ray_jobs.train", *job_flags(args, workers),
        "--storage-path", str(workdir / "runs"), "--name", name, "--output", str(workdir / name),
    ]
    env = server_env(workdir / name, None)  # a private local Ray for the job, as for a benchmarked server
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    manifest = json.loads((workdir / name / "sentiray.json").read_text())
    history = manifest["history"]
    return {
        "samples_per_s": round(steady_rate(history), 2),
        "wall_s": round(wall, 1),
        "peak_rss_mb_per_worker": max(h.get("peak_rss_mb", 0.0) for h in history),
        "intervals": [round(h["samples_per_s"], 2) for h in history if "samples_per_s" in h],
    }


def main() -> None:
    parser = bench_parser(__doc__, threads="Intra-op threads of each run, split between the workers of a Ray run")
    parser.add_argument("--train", default=str(IMDB_TRAIN))
    parser.add_argument("--test", default=str(IMDB_TEST))
    parser.add_argument("--base-model", default=None, help="Default: the packaged all-MiniLM-L6-v2")
    parser.add_argument("--rows", type=int, default=640, help="Train rows (one epoch)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16, help="Global batch per optimizer step")
    parser.add_argument("--log-every", type=int, default=10, help="Steps per throughput interval")
    runs = ["hf", "core", "ray-1x2", "ray-2x1"]
    parser.add_argument("--runs", nargs="+", default=["hf", "core", "ray-1x2", "ray-2x1"], choices=runs)
    parser.add_argument("--_in_process", choices=["hf", "core"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.base_model = args.base_model or minilm_dir()

    if args._in_process:
        result = run_hf(args) if args._in_process == "hf" else run_core(args)
        print("RUN_RESULT " + json.dumps(result), flush=True)
        return
    workdir = Path(tempfile.mkdtemp(prefix="sentiray-train-bench-"))
    results: dict[str, Any] = {}
    for run in args.runs:
        if run in ("hf", "core"):  # each in a fresh process, so none inherits another's allocator or threads
            argv = [sys.executable, __file__, "--_in_process", run, "--train", args.train, "--test", args.test,
                    "--rows", str(args.rows), "--max-length", str(args.max_length),
                    "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                    "--base-model", args.base_model, "--log-every", str(args.log_every)]
            proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO,
                                  env={**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)})
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RUN_RESULT ")), None)
            if line is None:
                raise RuntimeError(f"{run} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            results[run] = json.loads(line.removeprefix("RUN_RESULT "))
        else:
            results[run] = run_ray(args, 1 if run == "ray-1x2" else 2, workdir)
        print(f"{run}: {json.dumps(results[run])}", flush=True)
    # Every run against HF; the Ray runs also against the same loop without Ray (Ray's own share).
    comparisons = [(run, "hf") for run in results if run != "hf"]
    comparisons += [(run, "core") for run in results if run.startswith("ray-")]
    for run, baseline in comparisons:
        if baseline in results:
            ratio = results[run]["samples_per_s"] / results[baseline]["samples_per_s"]
            results[run][f"ratio_to_{baseline}"] = round(ratio, 3)
    summary = {"date": time.strftime("%Y-%m-%d"), "rows": args.rows, "max_length": args.max_length,
               "batch_size": args.batch_size, "threads": args.threads, "base_model": args.base_model,
               "results": results}
    write_result(summary, args.out)


if __name__ == "__main__":
    main()
