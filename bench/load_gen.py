"""Open-loop load generator for the sentiray endpoint: a fixed request rate of real reviews.

Open loop: request i is sent at `start + i / rate` whatever happened to the requests before it, so a slow
server meets the same arrivals as a fast one and its queue shows up as latency (a closed loop would slow
down with the server and hide it). Latency counts from the scheduled send time, so a lagging client is not
mistaken for a fast server (coordinated omission). Each request is one review, `{"inputs": text}`.

With `--artifact` the script starts `sentiray serve` itself, measures capacity (closed-loop saturation:
`--capacity-concurrency` clients for `--capacity-duration` s, the completed requests/s), then holds
`--fraction` of it for `--duration` s. With `--url` it loads an endpoint that is already up, at `--rate`
or at `--fraction` of a capacity it measures first.

    python -m bench.load_gen --artifact runs/minilm-6k-128/artifact --fraction 0.7 --duration 600 \\
        --out bench-load.json
    python -m bench.load_gen --url http://127.0.0.1:8000 --rate 10 --duration 30

Exits 1 when any request failed (a non-2xx answer or no answer). The open loop itself (`open_loop`) is
tests/load.py's, which the reliability tests run too.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

from bench.common import (
    IMDB_TEST,
    Server,
    bench_parser,
    free_port,
    load_reviews,
    run_load,
    serve_argv,
    server_env,
    write_result,
)
from tests.load import open_loop


def measure_capacity(url: str, bodies: Sequence[dict[str, Any]], concurrency: int, duration_s: float) -> float:
    """Completed requests/s with `concurrency` closed-loop clients: the most the endpoint sustains."""
    result = asyncio.run(run_load(url, bodies, concurrency, duration_s, "capacity", warmup_s=5.0))
    print(json.dumps({"capacity": asdict(result)}), flush=True)
    if result.errors:
        print(f"warning: {result.errors} failed requests while measuring capacity", file=sys.stderr)
    return result.rps


def _machine() -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "load_avg": [round(x, 2) for x in os.getloadavg()]}


def main(argv: Sequence[str] | None = None) -> int:
    p = bench_parser((__doc__ or "").split("\n\n")[0], threads="CPUs (torch threads) of the model replica",
                     out="Write the report as JSON here")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--artifact", help="Start `sentiray serve ARTIFACT` on a free port and load it")
    target.add_argument("--url", help="Load an endpoint that is already up (its /predict)")
    p.add_argument("--data", default=str(IMDB_TEST), help="Parquet with a text column (default: IMDB test)")
    p.add_argument("--texts", type=int, default=5000, help="Distinct reviews, cycled")
    p.add_argument("--rate", type=float, help="Requests/s to hold (default: --fraction of measured capacity)")
    p.add_argument("--fraction", type=float, default=0.7, help="Share of the measured capacity to hold")
    p.add_argument("--duration", type=float, default=600.0, help="Seconds to hold the rate")
    p.add_argument("--capacity-concurrency", type=int, default=64, help="Closed-loop clients for capacity")
    p.add_argument("--capacity-duration", type=float, default=60.0, help="Seconds of the capacity run")
    p.add_argument("--window", type=float, default=60.0, help="Seconds per reported window")
    p.add_argument("--timeout", type=float, default=60.0, help="Client timeout per request, seconds")
    args = p.parse_args(argv)

    texts, _ = load_reviews(Path(args.data), args.texts, seed=3)
    bodies = [{"inputs": t} for t in texts]
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join([Path(sys.executable).name, "-m", "bench.load_gen", *sys.argv[1:]]),
        "machine_before": _machine(),
        "texts": len(texts),
    }
    server = None
    if args.artifact:
        workdir = Path(tempfile.mkdtemp(prefix="sentiray-load-"))
        env = server_env(workdir, args.threads)  # a private local Ray on 127.0.0.1 for the run
        port = free_port()
        argv_ = serve_argv(args.artifact, port, "--num-cpus", str(args.threads))
        server = Server("sentiray", argv_, env, workdir / "serve.log", port)
        base = server.url
        report["server"] = {"argv": " ".join(argv_[1:]), "log": str(workdir / "serve.log")}
    else:
        base = args.url.rstrip("/")
    url = f"{base}/predict"
    try:
        if server is not None:
            server.wait_ready()
        if args.rate:
            rate = args.rate
        else:
            capacity = measure_capacity(url, bodies, args.capacity_concurrency, args.capacity_duration)
            report["capacity_rps"] = capacity
            report["fraction"] = args.fraction
            rate = round(capacity * args.fraction, 2)
        print(f"holding {rate} requests/s for {args.duration} s (open loop)", flush=True)
        result = asyncio.run(open_loop(url, bodies, rate, args.duration, timeout_s=args.timeout, window_s=args.window))
    finally:
        if server is not None:
            server.stop()
    report["machine_after"] = _machine()
    report["result"] = asdict(result)
    write_result(report, args.out, prefix=None)
    print(json.dumps(report["result"]), flush=True)
    print(
        f"\nrate {rate}/s for {args.duration:g} s: sent {result.sent}, ok {result.ok}, failed {result.failed} "
        f"{result.failures or ''}; p50 {result.p50_ms} ms, p95 {result.p95_ms} ms, p99 {result.p99_ms} ms, "
        f"max {result.max_ms} ms; max send lag {result.max_send_lag_ms} ms",
        flush=True,
    )
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
