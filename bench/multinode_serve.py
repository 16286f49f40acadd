"""A serving node lost under open-loop load: real Ray nodes on this machine, real Serve, real HTTP.

A head with no CPUs (Serve's controller and its one HTTP proxy, `HeadOnly`: every node on one machine
cannot bind the same port) and three worker nodes of one CPU each. The application runs two ingress and
two model replicas, at most one of each per node, so the two model replicas are on two different nodes.
Reviews (real IMDB test reviews) go out at a fixed rate through `sentiray.client.PredictClient` (the
shipped retry policy), one review per call, each call on its own thread at its scheduled time (open
loop: a slow endpoint meets the same arrivals). After `--before` seconds the node hosting one model
replica dies (SIGKILL to its whole process group: raylet, agents, replicas). Reported: calls sent,
answered and lost (raised to the caller after the client's retries), what the retries hid, latency from
the scheduled time before and after the kill, how long the GCS took to mark the node dead, and how long
the deployment ran below its replica count (from the kill until two model replicas run again).

    PYTHONPATH=$PWD python -m bench.multinode_serve --data ../shared/data/imdb/test.parquet \\
        --rate 8 --before 15 --after 100 --out bench-mn-serve.json

Exits 1 when a call was lost or the deployment did not get back to two replicas. This is a benchmark, not
a CI test: starting four nodes and Serve costs about two minutes on a 2-core machine, more than the CI
budget left after the training node-loss test (docs/reliability.md, "Node loss").
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

from bench.common import (
    IMDB_TEST,
    MODEL,
    bench_parser,
    free_port,
    healthy,
    load_reviews,
    model_replicas,
    percentile,
    wait_until,
    write_result,
)
from sentiray.client import PredictClient
from tests.multinode_cluster import MultiNodeCluster, start_cluster
from tests.support import build_tiny_model, train_tiny_artifact, write_synthetic_data

APP = "nodeloss"
MODEL_REPLICA = f"ServeReplica:{APP}:{MODEL}"


def tiny_artifact(folder: Path) -> Path:
    """The test suite's tiny trained artifact (a 2-layer DistilBERT on synthetic reviews), built in-process."""
    model = build_tiny_model(folder / "model")
    return train_tiny_artifact(model, write_synthetic_data(folder / "data"), folder / "artifact")


def deploy(cluster: MultiNodeCluster, artifact: Path, http_port: int) -> str:
    import ray
    from ray import serve

    from serve.app import build_app
    from serve.schemas import AppArgs

    ray.init(address=cluster.address, logging_level=logging.WARNING)
    serve.start(http_options={"host": "127.0.0.1", "port": http_port, "location": "HeadOnly"})
    app = build_app(
        AppArgs(model=str(artifact), max_batch_size=8),
        model_options={
            "num_replicas": 2, "max_replicas_per_node": 1, "health_check_period_s": 1,
            "ray_actor_options": {"num_cpus": 0.5},
        },
        ingress_options={"num_replicas": 2, "max_replicas_per_node": 1, "ray_actor_options": {"num_cpus": 0.25}},
    )
    serve.run(app, name=APP, route_prefix="/")
    url = f"http://127.0.0.1:{http_port}"
    wait_until(lambda: healthy(f"{url}/health"), 300, "the endpoint healthy", poll_s=1)
    return url


class OpenLoopClient:
    """Call i is started at start + i / rate on its own thread, through one shared PredictClient."""

    def __init__(self, url: str, texts: list[str], rate: float, duration_s: float) -> None:
        self.client = PredictClient(url)
        self.texts, self.rate, self.duration_s = texts, rate, duration_s
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.start = 0.0

    def _call(self, i: int, scheduled: float) -> None:
        try:
            out = self.client.predict([self.texts[i % len(self.texts)]])
            ok, error = out[0][0]["label"] in ("POSITIVE", "NEGATIVE"), None
        except Exception as e:
            ok, error = False, f"{type(e).__name__}: {e}"[:200]
        with self._lock:
            self.calls.append({"t": scheduled, "latency_s": time.monotonic() - (self.start + scheduled),
                               "ok": ok, "error": error})

    def run(self) -> None:
        n = round(self.rate * self.duration_s)
        with ThreadPoolExecutor(max_workers=128) as pool:
            self.start = time.monotonic()
            for i in range(n):
                scheduled = i / self.rate
                time.sleep(max(0.0, self.start + scheduled - time.monotonic()))
                pool.submit(self._call, i, scheduled)
        self.client.close()


def _latency(calls: list[dict[str, Any]]) -> dict[str, float]:
    values = sorted(c["latency_s"] * 1000 for c in calls if c["ok"])
    return {
        "p50_ms": round(percentile(values, 50), 1), "p99_ms": round(percentile(values, 99), 1),
        "max_ms": round(values[-1], 1) if values else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, out="write the figures as JSON here")
    parser.add_argument("--artifact", type=Path, help="artifact to serve (default: build the tests' tiny one)")
    parser.add_argument("--rate", type=float, default=8.0, help="calls per second (one review each)")
    parser.add_argument("--before", type=float, default=20.0, help="seconds of load before the node dies")
    parser.add_argument("--after", type=float, default=60.0, help="seconds of load after it")
    parser.add_argument("--fast-health-checks", action="store_true",
                        help="GCS checks raylets every 1 s, dead after 3 misses (default: Ray's 3 s x 5)")
    parser.add_argument("--data", type=Path, default=IMDB_TEST, help="parquet of reviews (a text column)")
    args = parser.parse_args(argv)

    texts = load_reviews(args.data, 500, seed=5)[0]
    work = Path(tempfile.mkdtemp(prefix="mnserve-"))
    artifact = args.artifact or tiny_artifact(work)
    head_args = (
        ['--system-config={"health_check_period_ms":1000,"health_check_failure_threshold":3}']
        if args.fast_health_checks else []
    )
    t0 = time.monotonic()
    cluster = start_cluster({"w1": 1, "w2": 1, "w3": 1}, head_cpus=0, head_args=head_args)
    try:
        url = deploy(cluster, artifact, free_port())
        setup_s = time.monotonic() - t0
        hosts = cluster.actor_nodes(MODEL_REPLICA)
        assert len(hosts) == 2 and len(set(hosts)) == 2, hosts
        victim = sorted(hosts)[0]
        load = OpenLoopClient(url, texts, args.rate, args.before + args.after)
        loader = threading.Thread(target=load.run)
        loader.start()
        time.sleep(args.before)
        cluster.nodes[victim].kill()
        killed = time.monotonic()
        timeline: list[tuple[float, int]] = []
        restored_s = None
        dead_s = None
        while loader.is_alive():
            try:
                running = model_replicas(APP)
            except Exception:
                running = -1
            now = time.monotonic() - killed
            timeline.append((round(now, 1), running))
            if dead_s is None and victim not in cluster.alive_names():
                dead_s = now
            noticed = any(r < 2 for _, r in timeline if r >= 0)
            if restored_s is None and noticed and running == 2:
                restored_s = now
            time.sleep(0.5)
        loader.join()
        kill_t = killed - load.start
        before = [c for c in load.calls if c["t"] < kill_t]
        after = [c for c in load.calls if c["t"] >= kill_t]
        lost = [c for c in load.calls if not c["ok"]]
        figures = {
            "rate": args.rate, "before_s": args.before, "after_s": args.after,
            "fast_health_checks": args.fast_health_checks, "setup_s": round(setup_s, 1),
            "model_replica_nodes": sorted(hosts), "victim": victim,
            "replica_nodes_after": sorted(cluster.actor_nodes(MODEL_REPLICA)),
            "sent": len(load.calls), "answered": len(load.calls) - len(lost), "lost": len(lost),
            "lost_examples": [c["error"] for c in lost[:3]],
            "retried_requests": load.client.retried_requests, "retried_attempts": load.client.retried_attempts,
            "latency_before_kill": _latency(before), "latency_after_kill": _latency(after),
            "node_marked_dead_after_s": None if dead_s is None else round(dead_s, 1),
            "reduced_capacity_s": None if restored_s is None else round(restored_s, 1),
            "replica_timeline": timeline[:: max(1, len(timeline) // 40)],
        }
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()
    print(json.dumps(figures, indent=2))
    write_result(figures, args.out, prefix=None)
    return 0 if figures["lost"] == 0 and figures["reduced_capacity_s"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
