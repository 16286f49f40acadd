"""Ray Serve's own cost per request: one review over HTTP against the same review by a direct call.

    python bench/serve_overhead.py --artifact runs/minilm-6k-128/artifact --threads 2 --requests 200

Starts a local Ray + Serve in this process with the sentiray app (defaults, batch wait 0 so no batching
delay is counted), then sends the same reviews one at a time (concurrency 1), alternating three paths:
  http    POST /predict through Serve's proxy and the FastAPI ingress (what clients do)
  handle  tokenize here, then the model deployment's `predict` on the token ids through a
          DeploymentHandle (Serve routing, no HTTP/ingress)
  direct  the core predictor's encode + forward in this process (no Serve at all; the replica's work)
http - direct is Serve's whole overhead (HTTP, proxy, ingress, routing, two process hops); http - handle
is the HTTP + ingress share. Medians and p90s are reported; alternating keeps machine noise common.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

import httpx

from bench.common import APP, IMDB_TEST, MODEL, bench_parser, free_port, local_serve, write_result


def main() -> None:
    parser = bench_parser(__doc__, threads="Torch threads of the model replica and of the direct predictor")
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--data", default=str(IMDB_TEST))
    parser.add_argument("--requests", type=int, default=200, help="Reviews per path")
    args = parser.parse_args()
    port = free_port()
    with local_serve(num_cpus=args.threads + 1, port=port):
        result = measure(args, port)
    write_result(result, args.out)


def measure(args: argparse.Namespace, port: int) -> dict[str, Any]:
    """Deploy the app and time the three paths, alternating, one review at a time."""
    import torch
    from ray import serve

    from sentiray.data import load_file
    from sentiray.predictor import Predictor
    from serve.app import build_app
    from serve.schemas import AppArgs

    torch.set_num_threads(args.threads)
    texts = load_file(args.data).texts[: args.requests]
    app_args = AppArgs(model=args.artifact, batch_wait_timeout_s=0.0, torch_threads=args.threads)
    started = time.perf_counter()
    serve.run(
        build_app(app_args, model_options={"ray_actor_options": {"num_cpus": args.threads}}),
        name=APP, route_prefix="/",
    )
    cold_start_s = time.perf_counter() - started
    model = serve.get_deployment_handle(MODEL, app_name=APP)  # past the ingress
    direct = Predictor.from_artifact(args.artifact, max_batch_size=32)  # the replica's own runtime choice

    def call_direct(text: str) -> None:
        direct.logits_for_ids(direct.encode([text]))

    def call_handle(text: str) -> None:
        # The model replica takes token ids; tokenizing here stands in for the ingress's share.
        model.predict.remote(direct.encode([text]), False).result()

    client = httpx.Client(timeout=60)

    def call_http(text: str) -> None:
        r = client.post(f"http://127.0.0.1:{port}/predict", json={"inputs": text})
        r.raise_for_status()

    paths = {"http": call_http, "handle": call_handle, "direct": call_direct}
    for fn in paths.values():  # warm-up
        for text in texts[:5]:
            fn(text)
    times: dict[str, list[float]] = {name: [] for name in paths}
    for text in texts:
        for name, fn in paths.items():
            t = time.perf_counter()
            fn(text)
            times[name].append((time.perf_counter() - t) * 1000)
    client.close()

    def stats(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {"p50_ms": round(statistics.median(ordered), 2), "p90_ms": round(ordered[int(0.9 * len(ordered))], 2)}

    summary = {name: stats(v) for name, v in times.items()}
    paired = {
        "http_minus_direct": [h - d for h, d in zip(times["http"], times["direct"], strict=True)],
        "http_minus_handle": [h - d for h, d in zip(times["http"], times["handle"], strict=True)],
        "handle_minus_direct": [h - d for h, d in zip(times["handle"], times["direct"], strict=True)],
    }
    return {
        "artifact": args.artifact, "threads": args.threads, "requests": len(texts),
        "runtime": direct.runtime.value, "deploy_to_running_s": round(cold_start_s, 1), "latency": summary,
        "overhead_median_ms": {name: round(statistics.median(v), 2) for name, v in paired.items()},
    }


if __name__ == "__main__":
    main()
