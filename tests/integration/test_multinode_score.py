"""The batch scoring job and the training job's export task on a real multi-node Ray cluster on this machine.

The head has no CPUs; four worker nodes have one CPU each (the export test adds one of two). Scoring
actors ask one CPU each, so a pool of two must sit on two different nodes; the node of one of them dies
mid-run (SIGKILL to its whole process group, `tests/multinode_cluster.py`). The three nodes left hold the
pool again plus Ray Data's read and write tasks, so no replacement node is needed (starting one under load
is what failed here: a raylet gets a fixed 30 s to register). The output is matched to the input by an `id`
key: no row lost, none written twice. Nodes share this machine's disk, so input, output and checkpoints are local
paths here (on Kubernetes they are `s3://`; the S3 path is `test_multinode_train.py`'s).
"""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.integration.test_multinode_train import FAST_HEALTH_CHECKS
from tests.integration.test_train_job import REPO, job_args, parse_result
from tests.multinode_cluster import MultiNodeCluster, start_cluster
from tests.support import synthetic_reviews

pytestmark = pytest.mark.timeout(900)

IMDB_TEST = Path("/work/shared/data/imdb/test.parquet")
# Enough rows that a pool of two actors on a loaded 2-core machine is still scoring when the node dies
# (about 25 s of scoring at 100 rows/s per actor, measured here), few enough for CI.
ROWS = 4000


@pytest.fixture(scope="module")
def cluster() -> Iterator[MultiNodeCluster]:
    """A head with no CPUs and four worker nodes of one CPU each."""
    c = start_cluster({"w1": 1, "w2": 1, "w3": 1, "w4": 1}, head_cpus=0, head_args=[FAST_HEALTH_CHECKS])
    yield c
    c.stop()


def _reviews(n: int) -> list[str]:
    """Real IMDB test reviews where the shared data is present, else synthetic ones, repeated to `n`."""
    for path in (IMDB_TEST, REPO.parent / "shared" / "data" / "imdb" / "test.parquet"):
        if path.is_file():
            texts = pq.read_table(path, columns=["text"]).column("text").to_pylist()[:2000]
            break
    else:
        texts = synthetic_reviews(min(n, 2000), seed=3)[0]
    return (texts * (n // len(texts) + 1))[:n]


def _scoring_actor_nodes(cluster: MultiNodeCluster) -> list[str]:
    """Nodes of the live scoring actors (Ray Data names them `MapWorker(MapBatches(Scorer))`)."""
    from ray.util.state import list_actors

    actors = list_actors(
        address=cluster.dashboard_url, filters=[("state", "=", "ALIVE")], limit=1000, raise_on_missing_output=False
    )
    return sorted(cluster.name_of(str(a.node_id)) for a in actors if "Scorer" in str(a.class_name))


@pytest.mark.skipif(
    os.environ.get("SENTIRAY_NODE_LOSS_SCORING") != "1",
    reason="flaky, so out of CI until fixed: one CI run and one 8,000-row run here ended the job before the "
    "state API showed both scoring actors (passed in 3 other runs); run with SENTIRAY_NODE_LOSS_SCORING=1, "
    "and bench/multinode_score.py measures the same guarantee",
)
def test_scoring_spreads_over_nodes_and_survives_losing_one(
    cluster: MultiNodeCluster, tiny_artifact: Path, tmp_path: Path, record_property: Any
) -> None:
    input_path, output = tmp_path / "input.parquet", tmp_path / "scored"
    # Row groups of 100: Ray Data reads the file as many blocks, so both actors get work all along.
    pq.write_table(pa.table({"id": list(range(ROWS)), "text": _reviews(ROWS)}), input_path, row_group_size=100)
    cmd = [
        sys.executable, "-m", "ray_jobs.score", "--model", str(tiny_artifact), "--input", str(input_path),
        "--output", str(output), "--min-actors", "2", "--max-actors", "2", "--cpus-per-actor", "1",
        "--batch-size", "16",
    ]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=cluster.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        spread: list[str] = []
        deadline = time.monotonic() + 300
        while len(spread) < 2:
            assert proc.poll() is None, f"the job ended before two scoring actors were up: {proc.stdout}"
            assert time.monotonic() < deadline, f"two scoring actors never ran at once: {spread}"
            with contextlib.suppress(Exception):  # the state API can time out on a loaded machine
                spread = _scoring_actor_nodes(cluster)
            time.sleep(1)
        # One CPU per actor and per node: the pool is spread over two worker nodes, none on the head.
        assert len(set(spread)) == 2 and "head" not in spread, spread
        time.sleep(3)  # let both score for a moment: the lost node takes work in flight with it
        assert proc.poll() is None, "the job finished before the node could be lost; raise ROWS"
        victim = spread[0]
        cluster.nodes[victim].kill()
        killed_after = time.monotonic() - started
        log, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log[-4000:]
    assert cluster.wait_for_dead(victim) >= 0  # the node really was lost, not just slow
    table = pq.read_table(output)
    counts = collections.Counter(table.column("id").to_pylist())
    missing = set(range(ROWS)) - set(counts)
    duplicated = {k: n for k, n in counts.items() if n > 1}
    job_s = time.monotonic() - started
    print(f"\nactors on {spread}; {victim} killed {killed_after:.1f}s into the job; job {job_s:.1f}s; "
          f"{len(counts)} ids written, {len(missing)} missing, {len(duplicated)} duplicated")
    record_property("killed_after_s", round(killed_after, 1))
    record_property("job_s", round(job_s, 1))
    assert not missing, sorted(missing)[:20]
    assert not duplicated, list(duplicated.items())[:20]
    assert table.num_rows == ROWS
    # Every row scored (the lost actor's rows were scored again elsewhere, not written empty).
    assert table.column("label").null_count == 0


def test_export_task_runs_on_a_node_that_can_hold_it(
    cluster: MultiNodeCluster, tiny_model_dir: Path, synthetic_data_dir: Path, tmp_path: Path
) -> None:
    """Three one-CPU training workers reserve 3 CPUs; no node has 3, one has 2. The export task's CPU rule
    (`sentiray.runs.export_cpus`: the training's reservation capped at the largest node) asks 2, so it
    runs on that node. Asking the whole reservation would wait forever for a node that does not exist."""
    cluster.add_node("big", num_cpus=2)
    name = "mn-export"
    args = job_args(
        tiny_model_dir, synthetic_data_dir, str(tmp_path / "runs"), name=name, output=str(tmp_path / "artifact"),
        epochs=1, max_steps=8, batch_size=4, eval_every_steps=8, num_workers=3, cpus_per_worker=1,
        max_eval_samples=40,
    )
    done = subprocess.run(
        [sys.executable, "-m", "ray_jobs.train", *args], env=cluster.env, cwd=REPO, capture_output=True,
        text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:] + done.stdout[-2000:]
    assert parse_result(done.stdout)["artifact"] == str(tmp_path / "artifact")
    where: list[str] = []
    deadline = time.monotonic() + 60
    while not where and time.monotonic() < deadline:  # task events reach the GCS a moment after the task
        with contextlib.suppress(Exception):
            where = cluster.task_nodes("_export_task")
        time.sleep(1)
    assert where and set(where) == {"big"}, where
