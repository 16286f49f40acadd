"""The head node lost in the middle of a RayJob's training, and the job retried on a fresh cluster.

A RayJob's driver runs on the head; when the head pod dies, the submitter fails and KubeRay retries the
job (`backoffLimit`) on a new RayCluster, with the same entrypoint: the charts and manifests run
`python -m ray_jobs.train --name <run> --resume-if-exists` against the same object storage
(`helm/sentiray-train`, `k8s/base/rayjob.yaml`). Here: a one-node cluster (the head, with the training's
CPU) trains with checkpoints on moto's S3 server; once a checkpoint is registered the head's whole process
group is SIGKILLed, and the driver with it (it runs in the head pod); a fresh head starts, and the same
command runs again. It must continue from the last registered checkpoint, not step 0.

What a RayService does when its head dies (Serve state lost without GCS fault tolerance, kept with
Redis-backed fault tolerance) is `bench/head_loss_serve.py`'s: see docs/reliability.md, "Node loss".
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ray_jobs.train import RUN_STATE_FILE
from tests.multinode_cluster import start_cluster
from tests.object_storage import MOTO_CREDENTIALS, bucket_client, registered_steps
from tests.support import REPO
from tests.train_job import job_args, parse_result

pytestmark = pytest.mark.timeout(900)

BUCKET = "sentiray-head"


@pytest.fixture(scope="module")
def s3(moto_endpoint: str) -> Any:
    return bucket_client(moto_endpoint, BUCKET)


def test_rayjob_retried_after_head_loss_resumes_from_checkpoint(
    moto_endpoint: str, s3: Any, tiny_model_dir: Path, synthetic_data_dir: Path
) -> None:
    name = "head-loss"
    env = {**MOTO_CREDENTIALS, "AWS_ENDPOINT_URL": moto_endpoint}
    # The chart's entrypoint, every attempt the same: --name <run> --resume-if-exists.
    args = job_args(
        tiny_model_dir, synthetic_data_dir, f"s3://{BUCKET}/runs", name=name, resume_if_exists=True,
        output=f"s3://{BUCKET}/models/{name}", epochs=1, max_steps=60, batch_size=4, eval_every_steps=15,
        keep_checkpoints=2, num_workers=1, max_eval_samples=40,
    )
    first = start_cluster({}, head_cpus=1, extra_env=env)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ray_jobs.train", *args], env=first.env, cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 300
        while not registered_steps(s3, BUCKET, name):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint was registered"
            time.sleep(0.2)
        assert first.head is not None
        first.head.kill()  # the head pod dies: GCS, raylet, the training worker
        proc.kill()  # and the driver, which runs in the head pod
        proc.communicate(timeout=30)
        at_kill = registered_steps(s3, BUCKET, name)
    finally:
        first.stop()  # KubeRay retries on a new RayCluster; nothing of the old one is left
    state = json.loads(s3.get_object(Bucket=BUCKET, Key=f"runs/{name}/{RUN_STATE_FILE}")["Body"].read())
    assert state["status"] == "running"  # the first attempt never finished

    second = start_cluster({}, head_cpus=1, extra_env=env)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ray_jobs.train", *args], env=second.env, cwd=REPO, capture_output=True,
            text=True, timeout=600,
        )
    finally:
        second.stop()
    assert done.returncode == 0, done.stderr[-4000:]
    result = parse_result(done.stdout)
    starts = result["attempt_start_steps"]
    print(f"\nhead killed at registered step {max(at_kill)}; attempts started at steps {starts}")
    # The retry continued from the newest checkpoint registered when the head died, not from step 0.
    assert len(starts) == 2 and starts[0] == 0, starts
    assert starts[1] >= max(at_kill) > 0
    state = json.loads(s3.get_object(Bucket=BUCKET, Key=f"runs/{name}/{RUN_STATE_FILE}")["Body"].read())
    assert state["status"] == "succeeded" and state["attempt_start_steps"] == starts
    assert result["artifact"] == f"s3://{BUCKET}/models/{name}"
