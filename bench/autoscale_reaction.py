"""Autoscaling reaction of the model deployment: a load step to the second replica answering, and back.

    python bench/autoscale_reaction.py --artifact runs/minilm-6k-128/artifact --profiles config fast

Starts a local Ray + Serve in this process with the sentiray app. The model deployment's options come
from serve/config.yaml (what `serve deploy` and the RayService run), except max_replicas 2 and one CPU
and one thread per replica, so that two replicas fit this 2-core machine. Per profile:
  1. deploy, wait for /health and for one RUNNING model replica, then idle --idle-s;
  2. load step: --concurrency closed-loop clients post real test reviews;
  3. up: seconds from the step to `serve.status()` showing 2 RUNNING model replicas, and to the new
     replica's first completed predict (the first `CALL predict OK` line in its own log file);
  4. the load goes on --hold-s after the new replica answered, then stops;
  5. down: seconds from the stop to one RUNNING model replica.
Profiles: `config` is serve/config.yaml's autoscaling_config as shipped (upscale 10 s, downscale 120 s,
look-back 30 s); `fast` shortens the delays (upscale 2 s, downscale 10 s, look-back 5 s, metrics every
0.5 s) to show what the delays cost against the replica's own start-up.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

import httpx

from bench.common import (
    APP,
    IMDB_TEST,
    MODEL,
    bench_parser,
    free_port,
    healthy,
    load_reviews,
    local_serve,
    model_replicas,
    shipped_model_options,
    wait_until,
    write_result,
)

FAST = {"upscale_delay_s": 2, "downscale_delay_s": 10, "look_back_period_s": 5, "metrics_interval_s": 0.5}


def profile_options(profile: str) -> dict[str, Any]:
    options = copy.deepcopy(shipped_model_options())
    options["autoscaling_config"]["max_replicas"] = 2
    options["ray_actor_options"] = {"num_cpus": 1}
    if profile == "fast":
        options["autoscaling_config"].update(FAST)
    return options


def first_predict_at(logs_dir: Path, skip: set[Path]) -> float | None:
    """Wall-clock time of the first completed predict in a model replica log not in `skip`."""
    times = []
    for log in logs_dir.rglob(f"replica_{APP}_{MODEL}_*.log"):
        if log in skip:
            continue
        for line in log.read_text(errors="replace").splitlines():
            if "CALL predict OK" in line:
                # "INFO 2026-11-25 21:16:13,868 sentiray_SentimentModel ...": local time, millisecond precision
                stamp = " ".join(line.split()[1:3])
                times.append(datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp())
                break
    return min(times) if times else None


class ClosedLoopLoad:
    """N clients, each posting the next review as soon as its previous answer arrived."""

    def __init__(self, url: str, texts: list[str], concurrency: int) -> None:
        self.url, self.texts, self.concurrency = url, texts, concurrency
        self.stop_event = threading.Event()
        self.codes: list[int] = []
        self.finished_at: list[float] = []
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(concurrency)]

    def _client(self, offset: int) -> None:
        with httpx.Client(timeout=120) as client:
            i = offset
            while not self.stop_event.is_set():
                r = client.post(self.url, json={"inputs": self.texts[i % len(self.texts)]})
                self.codes.append(r.status_code)
                self.finished_at.append(time.time())
                i += self.concurrency

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=120)

    def rate(self, start: float, end: float) -> float:
        return sum(start <= t < end for t in self.finished_at) / max(end - start, 1e-9)


def measure(args: argparse.Namespace, profile: str, texts: list[str], port: int) -> dict[str, Any]:
    from ray import serve

    from serve.app import build_app
    from serve.schemas import AppArgs

    logs_dir = Path(tempfile.mkdtemp(prefix=f"autoscale-{profile}-"))
    options = profile_options(profile)
    app = build_app(AppArgs(model=args.artifact, torch_threads=1), model_options=options)
    deployed = time.monotonic()
    serve.run(app, name=APP, route_prefix="/", logging_config={"logs_dir": str(logs_dir)})
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: healthy(f"{base}/health"), 300, "healthy")
    deploy_s = time.monotonic() - deployed
    wait_until(lambda: model_replicas() == 1, 300, "one model replica")
    time.sleep(args.idle_s)
    existing = set(logs_dir.rglob(f"replica_{APP}_{MODEL}_*.log"))

    load = ClosedLoopLoad(f"{base}/predict", texts, args.concurrency)
    step = time.time()
    load.start()
    try:
        wait_until(lambda: model_replicas() == 2, args.timeout_s, "second replica RUNNING")
        second_running = time.time()
        answered = wait_until(lambda: first_predict_at(logs_dir, existing), args.timeout_s, "second replica answering")
        time.sleep(args.hold_s)
    finally:
        stopped = time.time()
        load.stop()
    wait_until(lambda: model_replicas() == 1, args.timeout_s + 300, "back to one replica", poll_s=0.5)
    back_to_one = time.time()
    codes = load.codes
    return {
        "profile": profile,
        "autoscaling_config": options["autoscaling_config"],
        "concurrency": args.concurrency,
        "deploy_to_healthy_s": round(deploy_s, 1),
        "step_to_second_running_s": round(second_running - step, 1),
        "step_to_second_answering_s": round(answered - step, 1),
        "stop_to_one_replica_s": round(back_to_one - stopped, 1),
        "req_per_s_one_replica": round(load.rate(step, second_running), 1),
        "req_per_s_two_replicas": round(load.rate(answered, stopped), 1),
        "requests": len(codes),
        "non_2xx": sum(not 200 <= c < 300 for c in codes),
    }


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--data", default=str(IMDB_TEST))
    parser.add_argument("--profiles", nargs="+", default=["config", "fast"], choices=["config", "fast"])
    parser.add_argument("--concurrency", type=int, default=48, help="Clients in the load step (3x the target)")
    parser.add_argument("--idle-s", type=float, default=5)
    parser.add_argument("--hold-s", type=float, default=10)
    parser.add_argument("--timeout-s", type=float, default=300)
    args = parser.parse_args()

    from ray import serve

    texts, _ = load_reviews(Path(args.data), 500)
    port = free_port()
    results = []
    # 2 model replicas x 1 CPU + the ingress's 0.1: logical CPUs, on this machine's 2 cores.
    with local_serve(num_cpus=3, port=port):
        for profile in args.profiles:
            row = measure(args, profile, texts, port)
            results.append(row)
            print(json.dumps(row), flush=True)
            serve.delete(APP)
    summary = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "artifact": args.artifact, "results": results}
    write_result(summary, args.out)


if __name__ == "__main__":
    main()
