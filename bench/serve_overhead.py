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
import json
import os
import statistics
import time
from pathlib import Path

import httpx

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imdb" / "test.parquet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200, help="Reviews per path")
    parser.add_argument("--out", help="Write the results here as JSON")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster bound to 127.0.0.1

    import ray
    import torch
    from ray import serve

    from sentiray.data import load_file
    from sentiray.predictor import Predictor
    from serve.app import build_app
    from serve.schemas import AppArgs

    torch.set_num_threads(args.threads)
    texts = load_file(args.data).texts[: args.requests]
    ray.init(num_cpus=args.threads + 1, include_dashboard=False, logging_level="ERROR")
    serve.start(http_options={"host": "127.0.0.1", "port": 8123})
    app_args = AppArgs(model=args.artifact, batch_wait_timeout_s=0.0, torch_threads=args.threads)
    started = time.perf_counter()
    serve.run(
        build_app(app_args, model_options={"ray_actor_options": {"num_cpus": args.threads}}),
        name="sentiray", route_prefix="/",
    )
    cold_start_s = time.perf_counter() - started
    model = serve.get_deployment_handle("SentimentModel", app_name="sentiray")  # past the ingress
    direct = Predictor.from_artifact(args.artifact, max_batch_size=32)  # the replica's own runtime choice

    def call_direct(text: str) -> None:
        direct.logits_for_ids(direct.encode([text]))

    def call_handle(text: str) -> None:
        # The model replica takes token ids; tokenizing here stands in for the ingress's share.
        model.predict.remote(direct.encode([text]), False).result()

    client = httpx.Client(timeout=60)

    def call_http(text: str) -> None:
        r = client.post("http://127.0.0.1:8123/predict", json={"inputs": text})
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
    result = {
        "artifact": args.artifact, "threads": args.threads, "requests": len(texts),
        "runtime": direct.runtime.value, "deploy_to_running_s": round(cold_start_s, 1), "latency": summary,
        "overhead_median_ms": {name: round(statistics.median(v), 2) for name, v in paired.items()},
    }
    print("BENCH_RESULT " + json.dumps(result), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
