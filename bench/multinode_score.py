"""The batch scoring job on several real Ray nodes on this machine, one scoring node lost mid-run.

A head with no CPUs and three worker nodes (`--node-cpus` each). `python -m ray_jobs.score` scores
`--rows` real IMDB test reviews (one parquet file of one row group, as an export is), each with a unique
`id`, with a pool of `--actors` scoring actors; once every actor has been seen scoring a block and
`--kill-after` more seconds have passed, the node of an actor scoring a block at that moment dies (SIGKILL
to it and every process under it: raylet, agents, actors, tasks). What runs where is read from the
processes' titles (`MultiNodeCluster.workers_titled`), not the state API, which lags on a loaded machine.
The job must still finish, and the output must hold every input `id` exactly once (rows matched by key,
not counted). Reported: which nodes held the actors, the job's time, rows written, ids missing and
duplicated.

    PYTHONPATH=$PWD python -m bench.multinode_score --data ../shared/data/imdb/test.parquet --rows 6000

Exits 1 when the job failed or a row was lost or duplicated. Nodes share this machine's disk, so input
and output are local paths here; on Kubernetes they would be s3:// (the job reads and writes both).
A benchmark, not a CI test: see docs/reliability.md, "Node loss", for why.
"""

from __future__ import annotations

import collections
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
from tests.multinode_cluster import ScoringWatch, start_cluster


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, out="write the figures as JSON here")
    parser.add_argument("--artifact", type=Path, help="artifact (default: build the tests' tiny one)")
    parser.add_argument("--data", type=Path, default=IMDB_TEST, help="parquet of reviews (a text column)")
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--node-cpus", type=float, default=1)
    parser.add_argument(
        "--kill-after", type=float, default=2.0, help="seconds after every actor has scored; below 0: no kill"
    )
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mnscore-"))
    texts = pq.read_table(args.data, columns=["text"]).column("text").to_pylist()
    texts = (texts * (args.rows // len(texts) + 1))[: args.rows]
    input_path = work / "input.parquet"
    pq.write_table(pa.table({"id": list(range(args.rows)), "text": texts}), input_path)
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
        watch = ScoringWatch(cluster)
        all_scored_at: float | None = None
        while proc.poll() is None and time.monotonic() - started < 900:
            busy = watch.poll()
            if all_scored_at is None and len(watch.scorers) >= args.actors:
                all_scored_at = time.monotonic()
            ready = all_scored_at is not None and time.monotonic() - all_scored_at >= args.kill_after
            if victim is None and args.kill_after >= 0 and ready and busy:
                victim = sorted(busy)[0]  # scoring a block this moment: its work in flight is lost with it
                figures["actor_nodes_at_kill"] = sorted(watch.hosts)
                figures["killed_after_s"] = round(time.monotonic() - started, 1)
                cluster.nodes[victim].kill()
            time.sleep(0.1)
        log, _ = proc.communicate(timeout=60)
        figures.update(
            victim=victim, scored_on=sorted(watch.scored_on), returncode=proc.returncode,
            job_s=round(time.monotonic() - started, 1),
        )
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
    return 0 if ok and (figures["victim"] or args.kill_after < 0) else 1


if __name__ == "__main__":
    sys.exit(main())
