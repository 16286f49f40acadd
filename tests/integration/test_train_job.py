"""The training job on a real local Ray cluster: end to end, sharding, faults, resume, S3, submission."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ray_jobs.train import RESUME_COPY_PREFIX
from sentiray.artifact import verify_artifact
from sentiray.errors import ArtifactError
from sentiray.predictor import Predictor
from sentiray.runs import RESULT_PREFIX, RUN_STATE_FILE
from tests.object_storage import MOTO_CREDENTIALS
from tests.ray_cluster import RayHead, start_head
from tests.support import REPO
from tests.train_job import held_out_accuracy, job_args, parse_result

pytestmark = pytest.mark.timeout(900)

@pytest.fixture(scope="module")
def workers_tmpdir() -> Iterator[Path]:
    """The workers' temp folder (TMPDIR), private to this module so a test can see what they leave there."""
    folder = Path(tempfile.mkdtemp(prefix="rtw", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def head(moto_endpoint: str, workers_tmpdir: Path) -> Iterator[RayHead]:
    # Workers reach the object store with the node's environment, as pods do on Kubernetes.
    ray_head = start_head(
        num_cpus=4,
        extra_env={**MOTO_CREDENTIALS, "AWS_ENDPOINT_URL": moto_endpoint, "TMPDIR": str(workers_tmpdir)},
    )
    yield ray_head
    ray_head.stop()


def run_job(head: RayHead, args: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ray_jobs.train", *args], env=head.env, cwd=REPO,
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="module")
def finished_run(
    head: RayHead, tiny_model_dir: Path, synthetic_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    storage = tmp_path_factory.mktemp("runs")
    # Batches grouped by length: the two ranks share the token counts they each computed for half the rows.
    args = job_args(tiny_model_dir, synthetic_data_dir, str(storage), name="e2e", group_by_length=True)
    proc = run_job(head, args)
    assert proc.returncode == 0, proc.stderr[-4000:] + proc.stdout[-4000:]
    return {"result": parse_result(proc.stdout), "storage": storage, "stdout": proc.stdout}


def test_two_workers_train_an_artifact_that_reloads_and_scores(
    finished_run: dict[str, Any], synthetic_data_dir: Path
) -> None:
    result = finished_run["result"]
    manifest = verify_artifact(result["artifact"])
    losses = [h["loss"] for h in manifest.history if "loss" in h]
    assert len(losses) >= 3 and losses[-1] < 0.8 * losses[0], losses
    accuracy, n = held_out_accuracy(result["artifact"], synthetic_data_dir / "test.parquet")
    assert n >= 200
    assert accuracy >= 0.95
    assert manifest.test_metrics is not None
    assert manifest.test_metrics["accuracy"] == pytest.approx(accuracy)
    # Both ranks end with identical weights.
    fingerprints = result["weight_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    assert result["attempt_start_steps"] == [0]
    # Progress a person can follow, and the closing lines.
    stdout = finished_run["stdout"]
    assert "samples/s" in stdout and "step 5/" in stdout and "test metrics" in stdout


# The real IMDB sample (its `rating` column: 1-4 negative reviews, 7-10 positive ones).
SHARED_IMDB = Path(os.environ.get("SENTIRAY_IMDB_DIR", REPO.parent / "shared" / "data" / "imdb"))


@pytest.mark.skipif(not (SHARED_IMDB / "train.parquet").is_file(), reason=f"IMDB sample not found at {SHARED_IMDB}")
def test_three_rating_classes_from_real_imdb(head: RayHead, tiny_model_dir: Path, tmp_path: Path) -> None:
    from sentiray.config import DataConfig
    from sentiray.data import load_splits

    names = ["negative", "good", "great"]
    data = {
        "label_column": "rating", "label_bins": "1-4,7-8,9-10", "label_names": ",".join(names),
        "max_train_samples": 96, "max_eval_samples": 30, "max_test_samples": 60,
    }
    args = job_args(
        tiny_model_dir, SHARED_IMDB, str(tmp_path / "runs"), name="three", epochs=1, max_steps=3, batch_size=8,
        **data,
    )
    proc = run_job(head, args)
    assert proc.returncode == 0, proc.stderr[-4000:] + proc.stdout[-4000:]
    assert "3 classes" in proc.stdout
    result = parse_result(proc.stdout)
    manifest = verify_artifact(result["artifact"])
    # The artifact records the three classes in its model config (the record) and its manifest.
    config = json.loads((Path(result["artifact"]) / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "good", "2": "great"}
    assert manifest.labels == dict(enumerate(names))
    # Metrics of three classes: the test rows' true classes are the rows of a 3 x 3 confusion matrix.
    metrics = result["test_metrics"]
    assert metrics == manifest.test_metrics
    assert metrics["labels"] == names and sorted(metrics["per_class"]) == sorted(names)
    matrix = np.asarray(metrics["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == metrics["n"] == 60
    cfg = DataConfig(dataset=str(SHARED_IMDB), **data)  # type: ignore[arg-type]
    test = load_splits(cfg).test
    assert test is not None
    assert matrix.sum(axis=1).tolist() == list(test.label_counts().values())
    assert {"eval_accuracy", "eval_f1", "eval_roc_auc"} <= set(result["validation"])
    predictor = Predictor.from_artifact(result["artifact"], precision="fp32")
    assert predictor.logits(test.texts[:5]).shape == (5, 3)


def test_sharding_is_disjoint_and_covers_the_split_on_ray_workers(head: RayHead, tmp_path: Path) -> None:
    script = f"""
import json, ray, ray.train
from ray.train import ScalingConfig, RunConfig
from ray.train.torch import TorchTrainer
from sentiray.training import global_batches, rank_share, steps_per_epoch

def worker(config):
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    seen = {{}}
    for epoch in range(2):
        ids = []
        for gb in global_batches(config["n"], epoch, 7, config["batch"] * world):
            ids += rank_share(gb, rank, world).tolist()
        seen[epoch] = {{"ids": ids, "steps": steps_per_epoch(config["n"], config["batch"], world)}}
    with open(f"{tmp_path}/rank{{rank}}.json", "w") as f:
        json.dump(seen, f)

ray.init()
TorchTrainer(worker, train_loop_config={{"n": 101, "batch": 8}},
             scaling_config=ScalingConfig(num_workers=2),
             run_config=RunConfig(storage_path="{tmp_path}/storage", name="shard")).fit()
"""
    proc = subprocess.run([sys.executable, "-c", script], env=head.env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for epoch in ("0", "1"):
        a, b = (set(r[epoch]["ids"]) for r in ranks)
        assert not a & b
        assert a | b == set(range(101))
        assert ranks[0][epoch]["steps"] == ranks[1][epoch]["steps"]
    assert ranks[0]["0"]["ids"] != ranks[0]["1"]["ids"]  # reshuffled per epoch


def _registered_steps(run_dir: Path) -> list[int]:
    """Steps of the checkpoints Ray Train has registered (its snapshot in the run's storage).

    A checkpoint folder appears in storage before the controller registers the report, and only
    registered checkpoints are restored after a failure, so the tests wait on the snapshot.
    """
    try:
        snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    except (OSError, ValueError):
        return []  # not written yet, or being replaced
    return sorted(r["metrics"]["step"] for r in snapshot.get("checkpoint_results", []))


def _wait_for_checkpoint(run_dir: Path, proc: subprocess.Popen[str], timeout: float = 300) -> int:
    """Wait until Ray Train has registered a checkpoint; return the newest registered step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the job ended before a checkpoint was registered"
        steps = _registered_steps(run_dir)
        if steps:
            return steps[-1]
        time.sleep(0.2)
    raise AssertionError("no checkpoint was registered")


def _kill_one_train_worker(head: RayHead) -> int:
    from ray.util.state import list_actors

    actors = list_actors(
        address=head.dashboard_url,
        filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
        raise_on_missing_output=False,
    )
    assert actors, "no live RayTrainWorker actor found"
    pid = int(actors[-1].pid)
    os.kill(pid, signal.SIGKILL)
    return pid


def _fault_args(model: Path, data: Path, storage: Path, name: str, max_failures: int) -> list[str]:
    return job_args(
        # Long enough that the kill lands mid-run. The 150 steps train in about 5 s here; nearly all of a
        # run's minute or two is process start-up, so fewer steps would save little and let the kill miss.
        model, data, str(storage), name=name, epochs=1, max_steps=150, batch_size=4, eval_every_steps=25,
        keep_checkpoints=3, max_failures=max_failures, max_test_samples=50, max_eval_samples=40,
    )


def _start_job(head: RayHead, args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ray_jobs.train", *args], env=head.env, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _run_and_kill_a_worker(head: RayHead, args: list[str], run_dir: Path) -> tuple[int, int, str, str]:
    """Run the job, SIGKILL one worker once a checkpoint is registered; (registered step, rc, out, err)."""
    proc = _start_job(head, args)
    try:
        registered = _wait_for_checkpoint(run_dir, proc)
        _kill_one_train_worker(head)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    return registered, proc.returncode, stdout, stderr


def test_killed_worker_resumes_from_last_checkpoint(
    head: RayHead, tiny_model_dir: Path, synthetic_data_dir: Path, tmp_path: Path, workers_tmpdir: Path
) -> None:
    args = _fault_args(tiny_model_dir, synthetic_data_dir, tmp_path, "fault", max_failures=1)
    first, returncode, stdout, stderr = _run_and_kill_a_worker(head, args, tmp_path / "fault")
    assert returncode == 0, stderr[-4000:]
    result = parse_result(stdout)
    starts = result["attempt_start_steps"]
    assert len(starts) == 2 and starts[0] == 0, (starts, stdout[-6000:], stderr[-3000:])
    # The restart began at a checkpoint no earlier than the one seen before the kill, not at step 0.
    assert starts[1] >= first > 0
    assert starts[1] % 25 == 0 and starts[1] < 150
    verify_artifact(result["artifact"])
    # Each worker of the restarted group copied the checkpoint to resume from it, and removed its copy.
    assert not list(workers_tmpdir.glob(f"{RESUME_COPY_PREFIX}*"))


def test_killed_worker_without_retries_fails_fast_and_clearly(
    head: RayHead, tiny_model_dir: Path, synthetic_data_dir: Path, tmp_path: Path
) -> None:
    args = _fault_args(tiny_model_dir, synthetic_data_dir, tmp_path, "nofault", max_failures=0)
    _, returncode, stdout, stderr = _run_and_kill_a_worker(head, args, tmp_path / "nofault")
    assert returncode == 1
    assert "run 'nofault' failed" in stderr and "--resume nofault" in stderr
    assert RESULT_PREFIX not in stdout
    state = json.loads((tmp_path / "nofault" / RUN_STATE_FILE).read_text())
    assert state["status"] == "failed"


def test_killed_driver_relaunched_with_resume_continues(
    head: RayHead, tiny_model_dir: Path, synthetic_data_dir: Path, tmp_path: Path
) -> None:
    args = _fault_args(tiny_model_dir, synthetic_data_dir, tmp_path, "driver", max_failures=0)
    proc = _start_job(head, args)
    first = _wait_for_checkpoint(tmp_path / "driver", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    at_kill = _registered_steps(tmp_path / "driver")
    resume_args = [a if a != "--name" else "--resume" for a in args]
    done = run_job(head, resume_args)
    assert done.returncode == 0, done.stderr[-4000:]
    starts = parse_result(done.stdout)["attempt_start_steps"]
    # It continues from the newest checkpoint Ray Train had registered when the driver died.
    assert starts[0] == 0 and len(starts) == 2
    assert starts[1] >= max(at_kill) >= first > 0


def test_resume_refuses_finished_changed_or_unknown_runs(
    head: RayHead, finished_run: dict[str, Any], tiny_model_dir: Path, synthetic_data_dir: Path
) -> None:
    storage = str(finished_run["storage"])
    finished = run_job(head, job_args(tiny_model_dir, synthetic_data_dir, storage, resume="e2e"))
    assert finished.returncode == 1
    assert "already finished" in finished.stderr

    unknown = run_job(head, job_args(tiny_model_dir, synthetic_data_dir, storage, resume="nope"))
    assert unknown.returncode == 1
    assert "no run named 'nope'" in unknown.stderr

    taken = run_job(head, job_args(tiny_model_dir, synthetic_data_dir, storage, name="e2e"))
    assert taken.returncode == 1
    assert "already exists" in taken.stderr and "--resume e2e" in taken.stderr


def test_resume_refuses_a_changed_config(
    head: RayHead, tiny_model_dir: Path, synthetic_data_dir: Path, tmp_path: Path
) -> None:
    # A run state from an interrupted run, written as the job writes it.
    from sentiray.config import build_config
    from sentiray.runs import write_run_state

    cfg = build_config(overrides={"dataset": str(synthetic_data_dir), "base_model": str(tiny_model_dir),
                                  "max_length": 64, "storage_path": str(tmp_path), "name": "half"})
    write_run_state(cfg, "half", "running")
    changed = run_job(head, job_args(tiny_model_dir, synthetic_data_dir, str(tmp_path), resume="half",
                                     learning_rate=1e-4))
    assert changed.returncode == 1
    assert "different configuration" in changed.stderr and "optim.learning_rate" in changed.stderr


def test_s3_storage_and_output(
    head: RayHead, moto_endpoint: str, tiny_model_dir: Path, synthetic_data_dir: Path,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    import boto3

    for key, value in {**MOTO_CREDENTIALS, "AWS_ENDPOINT_URL": moto_endpoint}.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="sentiray")
    proc = run_job(
        head,
        job_args(tiny_model_dir, synthetic_data_dir, "s3://sentiray/runs", name="s3run",
                 output="s3://sentiray/models/s3run", epochs=2),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = parse_result(proc.stdout)
    assert result["artifact"] == "s3://sentiray/models/s3run"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="sentiray")["Contents"]}
    assert "models/s3run/sentiray.json" in keys
    assert "runs/s3run/sentiray_run.json" in keys
    assert any(k.startswith("runs/s3run/checkpoint_") for k in keys)
    accuracy, _ = held_out_accuracy(result["artifact"], synthetic_data_dir / "test.parquet")
    assert accuracy >= 0.95

    # A tampered object in the store is refused by the loader.
    s3.put_object(Bucket="sentiray", Key="models/s3run/config.json", Body=b"{}")
    from sentiray.artifact import fetch_artifact

    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        fetch_artifact("s3://sentiray/models/s3run", cache_root=tmp_path / "cache")


def _submit_job(client: Any, entrypoint: str, timeout_s: float = 120) -> str:
    """Submit, asking again while Ray's dashboard answers that its agent is busy: on a loaded machine its
    lookup of the head's agent can time out (HTTP 500 "No available agent ..., please try again later")."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            job_id: str = client.submit_job(entrypoint=entrypoint)
            return job_id
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(5)


def test_job_submission_client_runs_the_entrypoint(
    head: RayHead, tiny_model_dir: Path, synthetic_data_dir: Path, tmp_path: Path
) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(head.dashboard_url)
    args = " ".join(job_args(tiny_model_dir, synthetic_data_dir, str(tmp_path), name="submitted", epochs=2))
    job_id = _submit_job(client, f"{sys.executable} -m ray_jobs.train {args}")
    deadline = time.monotonic() + 600
    status = client.get_job_status(job_id)
    while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED} and time.monotonic() < deadline:
        time.sleep(2)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-4000:]
    result = parse_result(logs)
    manifest = verify_artifact(result["artifact"])
    assert manifest.test_metrics is not None and manifest.test_metrics["accuracy"] >= 0.95


def test_push_to_hub_offline_fails_clearly_and_keeps_the_artifact(
    head: RayHead, tiny_model_dir: Path, synthetic_data_dir: Path, tmp_path: Path
) -> None:
    env = {**head.env, "HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_test_not_a_real_token"}
    proc = subprocess.run(
        [sys.executable, "-m", "ray_jobs.train",
         *job_args(tiny_model_dir, synthetic_data_dir, str(tmp_path), name="pushed", epochs=1,
                   push_to_hub="sentiray-test/tiny")],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 1
    assert "sentiray push" in proc.stderr  # the message says how to retry
    assert "hf_test_not_a_real_token" not in proc.stderr + proc.stdout
    result = parse_result(proc.stdout)  # the result line comes before the push
    verify_artifact(result["artifact"])
    state = json.loads((tmp_path / "pushed" / RUN_STATE_FILE).read_text())
    assert state["status"] == "succeeded"
