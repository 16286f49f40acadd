"""The autoscaler in the loop: a training job wider than the running nodes gets a node added, and runs.

Ray's autoscaler v2 (what KubeRay runs beside the head) with fake worker nodes (`FakeMultiNodeProvider`:
a node it "creates" is a real raylet on this machine), set up by `tests/multinode_cluster.py`. The head has
no CPUs; worker nodes have one each, at least one and at most two of them. The job asks for two training
workers of one CPU each, so it needs a second node that only the autoscaler can bring; once the job is done
and a node idle, the autoscaler removes it and keeps the one `min_workers` asks for (either of the two).
Which node a training worker ran on is read from the processes (`MultiNodeCluster.worker_node_ids`): the
workers of a short job can come and go between two polls of the state API.

The Serve half of the scenario (replicas beyond the nodes' room get a node, then both go away) is
`bench/autoscaler_nodes.py`, with its figures in docs/reliability.md ("Autoscaler").
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.multinode_cluster import MultiNodeCluster, NodeType, start_autoscaling_cluster
from tests.support import REPO
from tests.train_job import job_args, parse_result

pytestmark = pytest.mark.timeout(900)

TRAIN_WORKER = "RayTrainWorker"
IDLE_TIMEOUT_S = 10  # the autoscaler's idle_timeout_minutes, in seconds: short, for CI time


def _wait(predicate: Any, timeout_s: float, what: str, cluster: MultiNodeCluster) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the state API can time out on a loaded machine
            if value := predicate():
                return value
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout_s}s; the autoscaler's log:\n{cluster.monitor_log()}")


def test_a_training_job_wider_than_the_cluster_gets_a_node_and_the_idle_node_goes(
    tiny_model_dir: Path, synthetic_data_dir: Path, tmp_path: Path, record_property: Any
) -> None:
    cluster = start_autoscaling_cluster(
        {"cpu1": NodeType(cpus=1, min_workers=1, max_workers=2)}, idle_timeout_s=IDLE_TIMEOUT_S
    )
    proc: subprocess.Popen[str] | None = None
    try:
        # min_workers: the autoscaler starts one node by itself, and no more while nothing asks.
        first = _wait(cluster.autoscaled_nodes, 120, "the min_workers node did not come up", cluster)
        assert list(first.values()) == ["cpu1"], first
        args = job_args(
            tiny_model_dir, synthetic_data_dir, str(tmp_path / "runs"), name="as-train",
            output=str(tmp_path / "artifact"), num_workers=2, cpus_per_worker=1, epochs=1, max_steps=12,
            batch_size=8, eval_every_steps=6, max_eval_samples=40,
        )
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "ray_jobs.train", *args], env=cluster.env, cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        nodes_seen: dict[str, float] = {}  # node id -> seconds after the job's start it was first seen
        nodes_gone: dict[str, float] = {}  # node id -> seconds after the job's start it was first missed
        worker_nodes: set[str] = set()
        deadline = started + 420
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                alive = cluster.autoscaled_nodes()
                for node_id in alive:
                    nodes_seen.setdefault(node_id, round(time.monotonic() - started, 1))
                for node_id in set(nodes_seen) - set(alive):  # removed while the job still ran (its export)
                    nodes_gone.setdefault(node_id, round(time.monotonic() - started, 1))
                worker_nodes.update(cluster.worker_node_ids(TRAIN_WORKER))
            time.sleep(1)
        if proc.poll() is None:
            proc.kill()
        stdout, stderr = proc.communicate(timeout=30)
        job_s = time.monotonic() - started
        assert proc.returncode == 0, stderr[-4000:] + stdout[-3000:] + cluster.monitor_log()
        added = set(nodes_seen) - set(first)
        # Exactly one node was added, while the job ran (the job's two one-CPU workers need two nodes).
        assert len(added) == 1, (first, nodes_seen)
        # The two training workers ran on the two nodes, one each (the head has no CPUs to offer).
        assert worker_nodes == set(first) | added, (worker_nodes, first, added)
        result = parse_result(stdout)
        assert Path(result["artifact"], "sentiray.json").is_file()
        # The training workers are done: a node idles out and is removed, and min_workers keeps one. Which
        # one is the autoscaler's choice: the first node goes when it idles first (the export task ran on
        # the added one: seen in a CI run, the log then says the added node "is required by
        # min_worker_nodes, skipping idle termination").
        both = set(first) | added

        def one_left() -> set[str] | None:
            alive = set(cluster.autoscaled_nodes())
            return alive if len(alive) == 1 and alive < both else None

        kept: set[str] = _wait(one_left, 120, "no idle node was removed", cluster)
        (gone,) = both - kept
        assert gone in cluster.autoscaled_nodes("DEAD")
        (node,) = added
        removed_at = nodes_gone.get(gone, round(time.monotonic() - started, 1))
        print(f"node added {nodes_seen[node]} s after the job started; {'it' if gone == node else 'the first'} "
              f"was removed {removed_at} s after; the job took {job_s:.0f} s (idle timeout {IDLE_TIMEOUT_S} s)")
        record_property("node_added_after_s", nodes_seen[node])
        record_property("node_removed_after_s", removed_at)
        record_property("job_s", round(job_s, 1))
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        cluster.stop()
