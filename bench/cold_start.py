"""Cold start of a scaled-to-zero model deployment: the first request after the scale-down, until answered.

    python bench/cold_start.py --runs 3 --out cold-start.json            # MiniLM artifact built on the fly
    python bench/cold_start.py --artifact runs/minilm-6k-128/artifact --runs 3

Starts a local Ray + Serve in this process with the sentiray app. The model deployment's options come from
serve/config.yaml (what `serve deploy` and the RayService run), except `min_replicas: 0` and short
downscale delays, so that it scales to zero within seconds of going idle; one CPU per replica. Per run:
  1. wait until the model deployment has 0 replicas (the ingress keeps its own one);
  2. cold: POST one review to /predict and time it until answered (and its status code); the proxy's
     request_timeout_s (serve/config.yaml: 30 s) bounds what a client can see;
  3. warm: the median of 5 more requests right after, on the replica the cold one started.
The cold time is what a client waits at a scaled-to-zero endpoint: the autoscaler seeing the queued
request, a worker process starting, the replica importing torch and loading (and, for the ONNX
runtimes, converting) the model.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

import httpx

from bench.common import (
    APP,
    IMDB_TEST,
    bench_parser,
    free_port,
    healthy,
    load_reviews,
    local_serve,
    make_minilm_artifact,
    model_replicas,
    shipped_model_options,
    wait_until,
    write_result,
)

# Seconds idle before the replica count drops to zero (Serve waits downscale_to_zero_delay_s for the
# last replica). Short here only so the benchmark does not wait; the chart sets what a cluster uses.
TO_ZERO_DELAYS = {"downscale_delay_s": 5, "downscale_to_zero_delay_s": 5, "look_back_period_s": 5}


def scale_to_zero_options(num_cpus: float) -> dict[str, Any]:
    options = copy.deepcopy(shipped_model_options())
    options["autoscaling_config"].update(min_replicas=0, initial_replicas=1, **TO_ZERO_DELAYS)
    options["ray_actor_options"] = {"num_cpus": num_cpus}
    return options


def timed_post(client: httpx.Client, url: str, text: str) -> tuple[float, int]:
    start = time.perf_counter()
    code = client.post(url, json={"inputs": text}).status_code
    return time.perf_counter() - start, code


def measure(args: argparse.Namespace, artifact: str, texts: list[str], port: int) -> dict[str, Any]:
    from ray import serve

    from serve.app import build_app
    from serve.schemas import AppArgs

    options = scale_to_zero_options(args.num_cpus)
    app_args = {"model": artifact, "torch_threads": 1, **({"runtime": args.runtime} if args.runtime else {})}
    serve.run(build_app(AppArgs(**app_args), model_options=options), name=APP, route_prefix="/")
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: healthy(f"{base}/health"), 600, "healthy")
    runs = []
    with httpx.Client(timeout=600) as client:
        for i in range(args.runs):
            idle_from = time.monotonic()
            wait_until(lambda: model_replicas(running_only=False) == 0, 300, "zero model replicas", poll_s=0.5)
            to_zero_s = time.monotonic() - idle_from
            time.sleep(1)
            cold_s, code = timed_post(client, f"{base}/predict", texts[i % len(texts)])
            warm = [timed_post(client, f"{base}/predict", texts[(i + k) % len(texts)]) for k in range(1, 6)]
            row = {
                "run": i + 1,
                "idle_to_zero_s": round(to_zero_s, 1),
                "cold_s": round(cold_s, 2),
                "cold_status": code,
                "warm_median_ms": round(statistics.median(s for s, _ in warm) * 1000, 1),
                "warm_statuses": sorted({c for _, c in warm}),
            }
            runs.append(row)
            print(json.dumps(row), flush=True)
    serve.delete(APP)
    return {"autoscaling_config": options["autoscaling_config"], "app_args": app_args, "runs": runs}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--artifact", help="Artifact to serve (default: MiniLM with an untrained head, built here)")
    parser.add_argument("--data", default=str(IMDB_TEST))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--num-cpus", type=float, default=1, help="CPUs per model replica")
    parser.add_argument("--runtime", choices=["auto", "torch", "onnx", "onnx-int8"], help="Default: the config's")
    args = parser.parse_args()

    texts, _ = load_reviews(Path(args.data), 50) if Path(args.data).is_file() else (["A fine film."], [])
    workdir = Path(tempfile.mkdtemp(prefix="cold-start-"))
    artifact = args.artifact or str(make_minilm_artifact(workdir / "artifact", max_length=128))
    port = free_port()
    with local_serve(num_cpus=3, port=port, request_timeout_s=30):
        result = measure(args, artifact, texts, port)
    cold = [r["cold_s"] for r in result["runs"]]
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "artifact": args.artifact or "MiniLM-L6 (untrained head), max_length 128",
        "cold_s_median": statistics.median(cold),
        **result,
    }
    write_result(summary, args.out)


if __name__ == "__main__":
    main()
