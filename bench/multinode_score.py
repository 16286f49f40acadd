"""The batch scoring job on several real Ray nodes on this machine, one scoring node lost mid-run.

A head with no CPUs and three worker nodes (`--node-cpus` each). `python -m ray_jobs.score` scores
`--rows` real IMDB test reviews, each with a unique `id`, with a pool of `--actors` scoring actors;
once they have run `--kill-after` seconds, the node hosting one scoring actor dies (SIGKILL to its whole
process group: raylet, agents, actors, tasks). The job must still finish, and the output must hold every input
`id` exactly once (rows matched by key, not counted). Reported: which nodes held the actors, the job's
time, rows written, ids missing and duplicated.

    PYTHONPATH=$PWD python -m bench.multinode_score --data ../shared/data/imdb/test.parquet --rows 6000

Exits 1 when the job failed or a row was lost or duplicated. Nodes share this machine's disk, so input
and output are local paths here; on Kubernetes they would be s3:// (the job reads and writes both).
A benchmark, not a CI test: see docs/reliability.md, "Node loss", for why.
"""

from __future__ import annotations

import collections
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import IMDB_TEST, REPO, bench_parser, write_result
from bench.multinode_serve import tiny_artifact
from tests.multinode_cluster import MultiNodeCluster, start_cluster


def scoring_actor_nodes(cluster: MultiNodeCluster) -> list[str]:
    """Nodes of the live Ray Data map actors (class `MapWorker(MapBatches(Scorer))`)."""
    from ray.util.state import list_actors

    actors = list_actors(
        address=cluster.dashboard_url, filters=[("state", "=", "ALIVE")], limit=1000, raise_on_missing_output=False
    )
    return [cluster.name_of(str(a.node_id)) for a in actors if "Scorer" in str(a.class_name)]


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, out="write the figures as JSON here")
    parser.add_argument("--artifact", type=Path, help="artifact (default: build the tests' tiny one)")
    parser.add_argument("--data", type=Path, default=IMDB_TEST, help="parquet of reviews (a text column)")
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--node-cpus", type=float, default=1)
    parser.add_argument("--kill-after", type=float, default=10.0, help="seconds after the actors are up")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mnscore-"))
    texts = pq.read_table(args.data, columns=["text"]).column("text").to_pylist()
    texts = (texts * (args.rows // len(texts) + 1))[: args.rows]
    input_path = work / "input.parquet"
    # Several row groups, so Ray Data reads the file as several blocks that spread over the actors.
    pq.write_table(pa.table({"id": list(range(args.rows)), "text": texts}), input_path, row_group_size=250)
    artifact = args.artifact or tiny_artifact(work)
    output = work / "scored"

    t0 = time.monotonic()
    cluster = start_cluster({"w1": args.node_cpus, "w2": args.node_cpus, "w3": args.node_cpus}, head_cpus=0)
    figures: dict[str, Any] = {"rows": args.rows, "actors": args.actors, "node_cpus": args.node_cpus,
                               "cluster_start_s": round(time.monotonic() - t0, 1)}
    try:
        cmd = [
            sys.executable, "-m", "ray_jobs.score", "--model", str(artifact), "--input", str(input_path),
            "--output", str(output), "--min-actors", str(args.actors), "--max-actors", str(args.actors),
            "--cpus-per-actor", "0.5", "--batch-size", "32",
        ]
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=cluster.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        victim = None
        seen: list[str] = []
        first_seen: float | None = None
        while proc.poll() is None and time.monotonic() - started < 900:
            with contextlib.suppress(Exception):  # the state API can time out on a loaded machine
                seen = scoring_actor_nodes(cluster) or seen
            if seen and first_seen is None:
                first_seen = time.monotonic()
            written = list(output.glob("*.parquet")) if output.is_dir() else []
            # Once the actors have scored for a while (Ray Data writes its files late, so waiting for the
            # first one let the kill land at the very end of a run).
            if victim is None and first_seen is not None and time.monotonic() - first_seen > args.kill_after:
                victim = sorted(seen)[0]
                figures["actor_nodes_at_kill"] = sorted(seen)
                figures["files_written_at_kill"] = len(written)
                figures["killed_after_s"] = round(time.monotonic() - started, 1)
                cluster.nodes[victim].kill()
            time.sleep(0.5)
        log, _ = proc.communicate(timeout=60)
        figures.update(victim=victim, returncode=proc.returncode, job_s=round(time.monotonic() - started, 1))
        if proc.returncode != 0:
            figures["log_tail"] = log[-3000:]
        else:
            ids = pq.read_table(output, columns=["id"]).column("id").to_pylist()
            counts = collections.Counter(ids)
            figures.update(
                rows_written=len(ids),
                missing=len(set(range(args.rows)) - set(counts)),
                duplicated=sum(1 for n in counts.values() if n > 1),
                result_line=next((ln for ln in log.splitlines() if ln.startswith("SENTIRAY_SCORE_RESULT")), None),
            )
    finally:
        cluster.stop()
    print(json.dumps(figures, indent=2))
    write_result(figures, args.out, prefix=None)
    ok = figures["returncode"] == 0 and figures.get("missing") == 0 and figures.get("duplicated") == 0
    return 0 if ok and figures["victim"] else 1


if __name__ == "__main__":
    sys.exit(main())
