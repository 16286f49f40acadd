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
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from serve_bench import DEFAULT_DATA, REPO, healthy, load_reviews  # bench/ is on sys.path when a script here runs

APP = "sentiray"
MODEL = "SentimentModel"
PORT = 8124
FAST = {"upscale_delay_s": 2, "downscale_delay_s": 10, "look_back_period_s": 5, "metrics_interval_s": 0.5}


def shipped_model_options() -> dict[str, Any]:
    """The model deployment's options in serve/config.yaml."""
    config = yaml.safe_load((REPO / "serve" / "config.yaml").read_text())
    (deployment,) = [d for d in config["applications"][0]["deployments"] if d["name"] == MODEL]
    return {k: v for k, v in deployment.items() if k != "name"}


def profile_options(profile: str) -> dict[str, Any]:
    options = copy.deepcopy(shipped_model_options())
    options["autoscaling_config"]["max_replicas"] = 2
    options["ray_actor_options"] = {"num_cpus": 1}
    if profile == "fast":
        options["autoscaling_config"].update(FAST)
    return options


def running_model_replicas() -> int:
    from ray import serve

    states = serve.status().applications[APP].deployments[MODEL].replica_states
    return sum(n for state, n in states.items() if str(getattr(state, "value", state)) == "RUNNING")


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


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")


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


def measure(args: argparse.Namespace, profile: str, texts: list[str]) -> dict[str, Any]:
    from ray import serve

    from serve.app import build_app
    from serve.schemas import AppArgs

    logs_dir = Path(tempfile.mkdtemp(prefix=f"autoscale-{profile}-"))
    options = profile_options(profile)
    app = build_app(AppArgs(model=args.artifact, torch_threads=1), model_options=options)
    deployed = time.monotonic()
    serve.run(app, name=APP, route_prefix="/", logging_config={"logs_dir": str(logs_dir)})
    base = f"http://127.0.0.1:{PORT}"
    wait_until(lambda: healthy(f"{base}/health"), 300, "healthy")
    deploy_s = time.monotonic() - deployed
    wait_until(lambda: running_model_replicas() == 1, 300, "one model replica")
    time.sleep(args.idle_s)
    existing = set(logs_dir.rglob(f"replica_{APP}_{MODEL}_*.log"))

    load = ClosedLoopLoad(f"{base}/predict", texts, args.concurrency)
    step = time.time()
    load.start()
    try:
        wait_until(lambda: running_model_replicas() == 2, args.timeout_s, "second replica RUNNING")
        second_running = time.time()
        answered = wait_until(lambda: first_predict_at(logs_dir, existing), args.timeout_s, "second replica answering")
        time.sleep(args.hold_s)
    finally:
        stopped = time.time()
        load.stop()
    wait_until(lambda: running_model_replicas() == 1, args.timeout_s + 300, "back to one replica", poll_s=0.5)
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--profiles", nargs="+", default=["config", "fast"], choices=["config", "fast"])
    parser.add_argument("--concurrency", type=int, default=48, help="Clients in the load step (3x the target)")
    parser.add_argument("--idle-s", type=float, default=5)
    parser.add_argument("--hold-s", type=float, default=10)
    parser.add_argument("--timeout-s", type=float, default=300)
    parser.add_argument("--out", help="Write the results here as JSON")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster bound to 127.0.0.1

    import ray
    from ray import serve

    texts, _ = load_reviews(Path(args.data), 500)
    # 2 model replicas x 1 CPU + the ingress's 0.1: logical CPUs, on this machine's 2 cores.
    ray.init(num_cpus=3, include_dashboard=False, logging_level="ERROR")
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    results = []
    try:
        for profile in args.profiles:
            row = measure(args, profile, texts)
            results.append(row)
            print(json.dumps(row), flush=True)
            serve.delete(APP)
    finally:
        serve.shutdown()
        ray.shutdown()
    summary = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "artifact": args.artifact, "results": results}
    print("BENCH_RESULT " + json.dumps(summary), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
