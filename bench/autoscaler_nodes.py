"""Serve's replica autoscaling and Ray's node autoscaler in one loop, on fake nodes on this machine.

Ray's autoscaler v2 (what KubeRay runs) with `FakeMultiNodeProvider` worker nodes of one CPU each, at least
one and at most two (`tests/multinode_cluster.py`, `start_autoscaling_cluster`). The head has no CPUs and
runs Serve's controller and its one HTTP proxy (`HeadOnly`). The application: one ingress replica (0.25
CPU) and the model deployment as serve/config.yaml ships it but for max 2 replicas, a target of 2 ongoing
requests per replica (the tiny model never queues the shipped 16), 0.5 CPU per replica and short
autoscaling delays (bench/autoscale_reaction.py's `fast`: upscale 2 s, downscale 10 s, look-back 5 s).
The first worker node holds the ingress and one model replica (0.75 CPU); a second model replica does not
fit, so Serve's scale-up leaves it pending until the autoscaler brings a node.

  1. deploy, wait for /health and one RUNNING model replica on the one worker node;
  2. load step: --concurrency closed-loop clients post real test reviews;
  3. up: seconds from the step to the autoscaler's new node alive in the GCS, to two RUNNING model replicas,
     and to the new replica's first completed predict (its own log's first `CALL predict OK`); the new
     replica must be on the new node;
  4. the load goes on --hold-s more, then stops;
  5. down: seconds from the stop to one RUNNING model replica and to the added node's removal (DEAD in the
     GCS: the autoscaler drained and terminated it after --idle-timeout-s idle).

    PYTHONPATH=$PWD python bench/autoscaler_nodes.py --data ../shared/data/imdb/test.parquet --out /tmp/as.json

Exits 1 when a step did not happen or a request failed. A benchmark, not a CI test: docs/reliability.md,
"Autoscaler", says why.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script: bench/ is on sys.path (autoscale_reaction imports serve_bench by its bare name).
from autoscale_reaction import FAST, ClosedLoopLoad, first_predict_at, shipped_model_options, wait_until
from multinode_serve import tiny_artifact
from serve_bench import DEFAULT_DATA, healthy, load_reviews

from tests.multinode_cluster import MultiNodeCluster, NodeType, free_port, start_autoscaling_cluster

APP = "sentiray"
MODEL = "SentimentModel"
MODEL_REPLICA = f"ServeReplica:{APP}:{MODEL}"
_STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}")


def running_model_replicas() -> int:
    from ray import serve

    status = serve.status().applications.get(APP)
    if status is None or MODEL not in status.deployments:
        return 0
    states = status.deployments[MODEL].replica_states
    return sum(n for state, n in states.items() if str(getattr(state, "value", state)) == "RUNNING")


def first_log_line_at(logs: list[Path], needle: str, after: float) -> float | None:
    """Wall-clock time of the first line containing `needle`, stamped after `after`, in `logs`."""
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if needle in line and (m := _STAMP.search(line)):
                t = datetime.datetime.strptime(m.group(0), "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time
                if t >= after:
                    return t
    return None


def model_options() -> dict[str, Any]:
    options = shipped_model_options()
    # The tiny model answers a batch in ~20 ms, so the ingress (tokenizing) is the bottleneck and a model
    # replica never holds the shipped target of 16 ongoing requests; 2 makes the load step ask for a second.
    options["autoscaling_config"].update({**FAST, "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2})
    # Two replicas cannot share a one-CPU node beside the ingress: the second needs a node of its own.
    options["ray_actor_options"] = {"num_cpus": 0.5}
    return options


def deploy(cluster: MultiNodeCluster, artifact: Path, http_port: int, logs_dir: Path) -> str:
    import ray
    from ray import serve

    from serve.app import build_app
    from serve.schemas import AppArgs

    # log_to_driver off: every replica's access log line would otherwise be printed here.
    ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": http_port, "location": "HeadOnly"})
    app = build_app(
        AppArgs(model=str(artifact), torch_threads=1),
        model_options=model_options(),
        ingress_options={"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.25}},
    )
    serve.run(app, name=APP, route_prefix="/", logging_config={"logs_dir": str(logs_dir)}, blocking=False)
    url = f"http://127.0.0.1:{http_port}"
    wait_until(lambda: healthy(f"{url}/health"), 300, "healthy", poll_s=1)
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, help="artifact to serve (default: build the tests' tiny one)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="parquet of reviews (a text column)")
    parser.add_argument("--concurrency", type=int, default=24, help="closed-loop clients in the load step")
    parser.add_argument("--hold-s", type=float, default=10, help="load after the new replica answered")
    parser.add_argument("--idle-timeout-s", type=float, default=10, help="the autoscaler's idle timeout")
    parser.add_argument("--timeout-s", type=float, default=300, help="limit for each step")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    texts = load_reviews(args.data, 500, seed=5)[0]
    work = Path(tempfile.mkdtemp(prefix="asnodes-"))
    artifact = args.artifact or tiny_artifact(work)
    logs_dir = work / "serve-logs"
    t0 = time.monotonic()
    cluster = start_autoscaling_cluster(
        {"cpu1": NodeType(cpus=1, min_workers=1, max_workers=2)}, idle_timeout_s=args.idle_timeout_s
    )
    timeline: list[tuple[float, int, int]] = []
    try:
        first = wait_until(cluster.autoscaled_nodes, 120, "the min_workers node", poll_s=1)
        url = deploy(cluster, artifact, free_port(), logs_dir)
        wait_until(lambda: running_model_replicas() == 1, 300, "one model replica")
        setup_s = time.monotonic() - t0
        before = set(cluster.actor_node_ids(MODEL_REPLICA))
        assert before == set(first), (before, first)
        existing_logs = set(logs_dir.rglob(f"replica_{APP}_{MODEL}_*.log"))

        load = ClosedLoopLoad(f"{url}/predict", texts, args.concurrency)
        step = time.time()
        load.start()
        added: set[str] = set()
        node_up = running2 = answered = None
        try:
            deadline = time.monotonic() + args.timeout_s
            while answered is None and time.monotonic() < deadline:
                now = time.time()
                try:
                    alive, running = set(cluster.autoscaled_nodes()), running_model_replicas()
                except Exception:  # the state API can time out on a loaded machine; next poll
                    time.sleep(0.5)
                    continue
                timeline.append((round(now - step, 1), running, len(alive)))
                if node_up is None and alive - set(first):
                    added, node_up = alive - set(first), now
                if running2 is None and running == 2:
                    running2 = now
                if running2 is not None:
                    answered = first_predict_at(logs_dir, existing_logs)
                time.sleep(0.5)
            replica_nodes = set(cluster.actor_node_ids(MODEL_REPLICA))
            time.sleep(args.hold_s if answered else 0)
        finally:
            stopped = time.time()
            load.stop()
        one_replica = node_gone = None
        deadline = time.monotonic() + args.timeout_s + 60 * 3
        while (one_replica is None or node_gone is None) and added and time.monotonic() < deadline:
            now = time.time()
            try:
                alive, running = set(cluster.autoscaled_nodes()), running_model_replicas()
            except Exception:
                time.sleep(0.5)
                continue
            timeline.append((round(now - step, 1), running, len(alive)))
            if one_replica is None and running == 1:
                one_replica = now
            if node_gone is None and not (alive & added):
                node_gone = now
            time.sleep(0.5)
        dead = set(cluster.autoscaled_nodes("DEAD"))
        # Where the scale-up's time went: Serve's decision, the autoscaler's launch request, the node's start.
        assert cluster.head is not None
        head_logs = Path(cluster.head.temp_dir, "session_latest", "logs")
        controller_logs = sorted(head_logs.glob("serve/controller_*.log"))
        upscale_decided = first_log_line_at(controller_logs, f"Upscaling Deployment(name='{MODEL}'", step)
        launch_requested = first_log_line_at([head_logs / "monitor.log"], "QUEUED->REQUESTED", step)
        monitor_log = cluster.monitor_log(10**8)
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)  # the tiny artifact and the replicas' logs

    def since(t: float | None, origin: float) -> float | None:
        return None if t is None else round(t - origin, 1)

    codes = load.codes
    figures = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "concurrency": args.concurrency, "hold_s": args.hold_s, "idle_timeout_s": args.idle_timeout_s,
        "model_autoscaling_config": model_options()["autoscaling_config"],
        "setup_s": round(setup_s, 1),
        "step_to_serve_upscale_decision_s": since(upscale_decided, step),
        "step_to_autoscaler_launch_request_s": since(launch_requested, step),
        "step_to_node_alive_s": since(node_up, step),
        "step_to_second_replica_running_s": since(running2, step),
        "step_to_new_replica_answering_s": since(answered, step),
        "new_replica_on_added_node": bool(added) and replica_nodes == set(first) | added,
        "stop_to_one_replica_s": since(one_replica, stopped),
        "stop_to_node_removed_s": since(node_gone, stopped),
        "added_node_dead_in_gcs": bool(added) and added <= dead,
        "autoscaler_events": sorted({  # the autoscaler logs its events again each second while they hold
            ln.split(" -- ", 1)[-1] for ln in monitor_log.splitlines()
            if "event_logger" in ln and ("Adding" in ln or "Removing" in ln)
        }),
        "req_per_s_one_replica": round(load.rate(step, running2 or stopped), 1),
        "req_per_s_two_replicas": round(load.rate(answered, stopped), 1) if answered else None,
        "requests": len(codes), "non_2xx": sum(not 200 <= c < 300 for c in codes),
        # "seconds after the step: running model replicas / alive autoscaled nodes"
        "timeline": [f"{t:.1f}s {r}/{n}" for t, r, n in timeline[:: max(1, len(timeline) // 40)]],
    }
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    ok = (
        figures["new_replica_on_added_node"] and figures["stop_to_node_removed_s"] is not None
        and figures["stop_to_one_replica_s"] is not None and figures["non_2xx"] == 0 and figures["requests"] > 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
