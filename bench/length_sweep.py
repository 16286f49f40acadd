"""Truncation x length sweep for CPU fine-tuning, with the TF-IDF baseline on the same rows, in one run.

    python bench/length_sweep.py --train-rows 1500 --test-rows 1000 --lengths 128 256 \
        --truncations head head_tail --out bench-sweep.json

Each configuration fine-tunes the packaged all-MiniLM-L6-v2 with the Ray-free core training loop (the
loop Ray Train runs on each worker; one process, --threads threads, fp32, 1 epoch, batch 16, lr 1e-4)
on the same first train rows, then scores the same test rows through the artifact's predictor
(sentiray.export, as the job does). TF-IDF bigram logistic regression is fitted on the same train rows.
Wall time per configuration is reported; the issue's budget is 60 minutes per configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

import torch

from bench.common import IMDB_DIR, bench_parser, minilm_dir, write_result
from bench.tfidf_baseline import fit_and_score
from sentiray.config import TrainJobConfig, build_config
from sentiray.data import TextDataset, load_splits
from sentiray.export import export_checkpoint
from sentiray.training import WorkerContext, run_training
from tests.support import LastCheckpoint


def _config(args: argparse.Namespace, max_length: int, truncation: str, workdir: Path) -> TrainJobConfig:
    return build_config(overrides={
        "train_file": str(Path(args.data) / "train.parquet"), "test_file": str(Path(args.data) / "test.parquet"),
        "validation_fraction": 0.02, "max_train_samples": args.train_rows, "max_eval_samples": 64,
        "max_test_samples": args.test_rows, "base_model": args.base_model, "max_length": max_length,
        "truncation": truncation, "epochs": 1, "batch_size": 16, "learning_rate": 1e-4, "precision": "fp32",
        "num_workers": 1, "torch_threads": args.threads, "log_every_steps": 25,
        "storage_path": str(workdir / "runs"),
    })


def _splits(args: argparse.Namespace, max_length: int, truncation: str) -> tuple[TextDataset, ...]:
    splits = load_splits(_config(args, max_length, truncation, Path(tempfile.gettempdir())).data)
    return splits.train, splits.validation, splits.test


def run_config(args: argparse.Namespace, max_length: int, truncation: str, workdir: Path) -> dict[str, Any]:
    cfg = _config(args, max_length, truncation, workdir)
    splits = load_splits(cfg.data)
    reporter = LastCheckpoint()
    started = time.perf_counter()
    final = run_training(cfg, splits.train, splits.validation, WorkerContext(), reporter)
    train_s = time.perf_counter() - started
    assert reporter.folder is not None
    _, metrics = export_checkpoint(
        str(reporter.folder), cfg, str(workdir / f"artifact-{truncation}-{max_length}"), test=splits.test,
        dataset_summary=splits.summary(), device="cpu",
    )
    assert metrics is not None
    return {
        "max_length": max_length, "truncation": truncation, "train_rows": len(splits.train),
        "test_rows": len(splits.test), "accuracy": round(metrics["accuracy"], 4), "f1": round(metrics["f1"], 4),
        "train_s": round(train_s, 1), "wall_s": round(time.perf_counter() - started, 1),
        "samples_per_s": round(final.get("train_samples_per_s", 0.0), 2),
    }


def main() -> None:
    parser = bench_parser(__doc__, threads="Intra-op threads of the training and scoring process")
    parser.add_argument("--data", default=str(IMDB_DIR))
    parser.add_argument("--base-model", default=None, help="Default: the packaged all-MiniLM-L6-v2")
    parser.add_argument("--train-rows", type=int, default=1500)
    parser.add_argument("--test-rows", type=int, default=1000)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--truncations", nargs="+", default=["head", "head_tail"], choices=["head", "head_tail"])
    parser.add_argument("--baseline-only", action="store_true", help="Only the TF-IDF baseline on the sweep's rows")
    args = parser.parse_args()
    args.base_model = args.base_model or minilm_dir()
    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="sentiray-sweep-"))
    results = []
    for max_length in [] if args.baseline_only else args.lengths:
        for truncation in args.truncations:
            row = run_config(args, max_length, truncation, workdir)
            results.append(row)
            print(json.dumps(row), flush=True)
    # The baseline on exactly the rows the transformer saw and was tested on (same splits, same seed).
    tfidf = fit_and_score(*_splits(args, args.lengths[0], args.truncations[0])[::2])
    summary = {
        "date": time.strftime("%Y-%m-%d"), "threads": args.threads, "base_model": args.base_model,
        "results": results,
        "tfidf": {"accuracy": round(tfidf["metrics"]["accuracy"], 4), "train_rows": tfidf["train_rows"]},  # type: ignore[index]
    }
    write_result(summary, args.out)


if __name__ == "__main__":
    main()
