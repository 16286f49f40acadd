"""The training job on a real multi-node Ray cluster on this machine, and a worker node lost mid-run.

The head has no CPUs (only the driver and Ray Train's controller, which asks none, run there); each
worker node has one, so the two training workers must land on two different nodes. Nodes share no disk:
checkpoints, the run state and the artifact go to object storage (moto's S3 server on loopback), which
every node reaches with its own environment, as pods do on Kubernetes. A node is lost by SIGKILL to its
whole process group (`tests/multinode_cluster.py`), as an eviction or a reclaimed spot VM loses it.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sentiray.artifact import fetch_artifact
from tests.multinode_cluster import FAST_HEALTH_CHECKS, MultiNodeCluster, start_cluster
from tests.object_storage import MOTO_CREDENTIALS, bucket_client, registered_steps, run_state
from tests.support import REPO
from tests.train_job import held_out_accuracy, job_args, parse_result

pytestmark = pytest.mark.timeout(900)

BUCKET = "sentiray"
TRAIN_WORKER = "RayTrainWorker"


@pytest.fixture(scope="module")
def s3_env(moto_endpoint: str) -> Iterator[str]:
    """The server's endpoint and credentials in this process's environment: it reads the artifacts back."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**MOTO_CREDENTIALS, "AWS_ENDPOINT_URL": moto_endpoint}.items():
            mp.setenv(key, value)
        yield moto_endpoint


@pytest.fixture(scope="module")
def s3(s3_env: str) -> Any:
    return bucket_client(s3_env, BUCKET)


@pytest.fixture(scope="module")
def cluster(moto_endpoint: str, s3: Any) -> Iterator[MultiNodeCluster]:
    """A head with no CPUs and two worker nodes of one CPU each."""
    c = start_cluster(
        {"w1": 1, "w2": 1}, head_cpus=0, head_args=[FAST_HEALTH_CHECKS],
        extra_env={**MOTO_CREDENTIALS, "AWS_ENDPOINT_URL": moto_endpoint},
    )
    yield c
    c.stop()


def _args(model: Path, data: Path, name: str) -> list[str]:
    # Long enough that a node can die mid-run (150 steps, a checkpoint every 25); the same for both tests,
    # so the interrupted run's artifact can be compared with the uninterrupted one's.
    return job_args(
        model, data, f"s3://{BUCKET}/runs", name=name, output=f"s3://{BUCKET}/models/{name}",
        epochs=1, max_steps=150, batch_size=4, eval_every_steps=25, keep_checkpoints=3, max_failures=1,
        max_eval_samples=40,
    )


def _start(cluster: MultiNodeCluster, args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ray_jobs.train", *args], env=cluster.env, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _finish(proc: subprocess.Popen[str], cluster: MultiNodeCluster, seen: list[str]) -> tuple[str, str]:
    """Wait for the job, noting every second which nodes host training workers; (stdout, stderr)."""
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        # The state API can time out on a loaded machine; the next poll will do.
        with contextlib.suppress(Exception):
            seen.extend(cluster.actor_nodes(TRAIN_WORKER))
        time.sleep(1)
    try:
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-4000:] + stdout[-3000:]
    return stdout, stderr


def test_training_across_two_worker_nodes_survives_losing_one(
    cluster: MultiNodeCluster, s3: Any, tiny_model_dir: Path, synthetic_data_dir: Path, record_property: Any,
    tmp_path: Path,
) -> None:
    """One run shows both: the workers spread over the two worker nodes, then one node is lost.

    One run is all the CI time allows: the uninterrupted baseline is test_train_job's bar (>= 0.95 held-out
    accuracy on the same data and model), not a second multi-node run (docs/reliability.md, "Node loss").
    """
    name = "mn-nodeloss"
    proc = _start(cluster, _args(tiny_model_dir, synthetic_data_dir, name))
    try:
        deadline = time.monotonic() + 300
        while not (registered := registered_steps(s3, BUCKET, name)):
            assert proc.poll() is None, "the job ended before a checkpoint was registered"
            assert time.monotonic() < deadline, "no checkpoint was registered"
            time.sleep(0.2)
        hosts = cluster.actor_nodes(TRAIN_WORKER)
        # Both workers run, each on its own worker node, none on the head (it has no CPUs).
        assert sorted(hosts) == ["w1", "w2"], hosts
        cluster.nodes["w1"].kill()
        at_kill = registered_steps(s3, BUCKET, name)
        detected_s = cluster.wait_for_dead("w1")
        # A replacement node joins, as KubeRay recreates an evicted worker pod. Until it is up the restart
        # waits for room (Ray Train's worker-group start waits up to 60 s, and retries after that).
        cluster.add_node("w3", num_cpus=1)
        after: list[str] = []
        stdout, stderr = _finish(proc, cluster, after)
    finally:
        if proc.poll() is None:
            proc.kill()
    result = parse_result(stdout)
    starts = result["attempt_start_steps"]
    print(
        f"\nnode w1 killed at registered step {max(at_kill)}; GCS marked it dead after {detected_s:.1f}s; "
        f"attempts started at steps {starts}; "
        + " ".join(ln for ln in stdout.splitlines() if ln.startswith("done in"))
    )
    record_property("registered_step_at_kill", max(at_kill))
    record_property("node_dead_after_s", round(detected_s, 1))
    record_property("attempt_start_steps", starts)
    # The restart began at the newest registered checkpoint (or a later one), not at step 0.
    assert len(starts) == 2 and starts[0] == 0, (starts, stdout[-4000:], stderr[-3000:])
    assert starts[1] >= max(at_kill) >= registered[-1] > 0
    # The restarted workers ran on the nodes left: the survivor and the replacement.
    assert after and set(after) <= {"w2", "w3"}, after
    fingerprints = result["weight_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]  # DDP kept the nodes in step
    # Checkpoints, run state and artifact are in the bucket; the run state records the restart.
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert any(k.startswith(f"runs/{name}/checkpoint_") for k in keys)
    assert result["artifact"] == f"s3://{BUCKET}/models/{name}"
    state = run_state(s3, BUCKET, name)
    assert state["status"] == "succeeded"
    assert state["attempt_start_steps"] == starts
    # The artifact loads and scores as an uninterrupted run's does (test_train_job's bar).
    _, manifest = fetch_artifact(result["artifact"], cache_root=tmp_path)
    assert manifest.test_metrics is not None
    accuracy, _ = held_out_accuracy(result["artifact"], synthetic_data_dir / "test.parquet")
    record_property("accuracy", accuracy)
    print(f"held-out accuracy {accuracy:.3f}")
    assert accuracy >= 0.95
