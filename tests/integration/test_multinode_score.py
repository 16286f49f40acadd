"""The batch scoring job and the training job's export task on a real multi-node Ray cluster on this machine.

The head has no CPUs; four worker nodes have one CPU each (the export test adds one of two). Scoring
actors ask one CPU each, so a pool of two must sit on two different nodes. Once both have scored, the node
of one of them dies while it is scoring a block (SIGKILL to the node and every process under it,
`tests/multinode_cluster.py`). The three nodes left hold the pool again plus Ray Data's read and write
tasks, so no replacement node is needed (starting one under load is what failed here: a raylet gets a fixed
30 s to register). The output is matched to the input by an `id` key: no row lost, none written twice.
Nodes share this machine's disk, so input, output and checkpoints are local paths here (on Kubernetes they
are `s3://`; the S3 path is `test_multinode_train.py`'s).

What runs where is read from the processes themselves: Ray titles an actor's process `ray::<class>` and
`ray::<class>.<method>` while it runs a call (python/ray/_raylet.pyx), and Ray Data's pool actor runs each
block in `_MapWorker.submit` (ray/data/_internal/execution/operators/actor_pool_map_operator.py). The state
API lags behind on a loaded machine; the process titles do not.
"""

from __future__ import annotations

import collections
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.multinode_cluster import FAST_HEALTH_CHECKS, MultiNodeCluster, ScoringWatch, start_cluster
from tests.support import REPO, synthetic_reviews
from tests.train_job import job_args, parse_result

pytestmark = pytest.mark.timeout(900)

IMDB_TEST = Path("/work/shared/data/imdb/test.parquet")
# One file of one row group, as a user's export is: the job itself must cut it into blocks for the pool.
# The tiny model scores about 600 rows/s per actor here, so 16,000 rows keep both actors busy for about
# 13 s after they start (measured), time enough to see both score and kill one mid-block.
ROWS = 16_000


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


def test_scoring_spreads_over_nodes_and_survives_losing_one(
    cluster: MultiNodeCluster, tiny_artifact: Path, tmp_path: Path, record_property: Any
) -> None:
    input_path, output = tmp_path / "input.parquet", tmp_path / "scored"
    pq.write_table(pa.table({"id": list(range(ROWS)), "text": _reviews(ROWS)}), input_path)
    assert pq.ParquetFile(input_path).num_row_groups == 1
    cmd = [
        sys.executable, "-m", "ray_jobs.score", "--model", str(tiny_artifact), "--input", str(input_path),
        "--output", str(output), "--min-actors", "2", "--max-actors", "2", "--cpus-per-actor", "1",
        "--batch-size", "16",
    ]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=cluster.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    watch = ScoringWatch(cluster)
    victim = ""
    try:
        deadline = time.monotonic() + 300
        while not victim:
            if proc.poll() is not None:
                pytest.fail(
                    f"the job ended before both actors were seen scoring ({watch.scored_on}): "
                    f"{proc.stdout.read()[-3000:] if proc.stdout else ''}"
                )
            assert time.monotonic() < deadline, f"two actors never scored at once: {watch.hosts}, {watch.scored_on}"
            busy = watch.poll()
            if len(watch.scored_on) >= 2 and busy:
                victim = sorted(busy)[0]  # scoring a block this moment: its work in flight is lost with it
                cluster.nodes[victim].kill()
            time.sleep(0.1)
        killed_after = time.monotonic() - started
        log, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log[-4000:]
    # One CPU per actor and per node: the pool sat on two worker nodes, none on the head.
    assert len(watch.scored_on) == 2 and "head" not in watch.hosts, (watch.hosts, watch.scored_on)
    assert cluster.wait_for_dead(victim) >= 0  # the node really was lost, not just slow
    table = pq.read_table(output)
    counts = collections.Counter(table.column("id").to_pylist())
    missing = set(range(ROWS)) - set(counts)
    duplicated = {k: n for k, n in counts.items() if n > 1}
    job_s = time.monotonic() - started
    print(f"\nactors scored on {sorted(watch.scored_on)}; {victim} killed mid-block {killed_after:.1f}s into the job; "
          f"job {job_s:.1f}s; {len(counts)} ids written, {len(missing)} missing, {len(duplicated)} duplicated")
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
