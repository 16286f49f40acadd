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

Exits 1 when any request failed (a non-2xx answer or no answer). `open_loop` is reused by the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.serve_bench import (
    DEFAULT_DATA,
    Server,
    free_port,
    load_reviews,
    percentile,
    run_load,
    server_env,
)


@dataclass
class OpenLoopResult:
    rate: float  # offered requests/s
    duration_s: float  # of the schedule; the run lasts until the last answer
    sent: int
    ok: int  # 2xx answers
    failed: int  # everything else: non-2xx answers and requests without an answer
    failures: dict[str, int]  # by HTTP status or exception type
    achieved_rps: float  # answered requests / seconds from the first send to the last answer
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    max_send_lag_ms: float  # how late the client sent a request, at worst (client health, not the server's)
    windows: list[dict[str, Any]] = field(default_factory=list)  # per window_s: sent, failed, p50, p99


async def open_loop(
    url: str,
    bodies: Sequence[dict[str, Any]],
    rate: float,
    duration_s: float,
    *,
    timeout_s: float = 60.0,
    window_s: float = 60.0,
) -> OpenLoopResult:
    """POST `bodies` (cycled) to `url` at `rate` requests/s for `duration_s` s; wait for every answer."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError(f"rate and duration_s must be > 0, got {rate} and {duration_s}")
    n = max(1, round(rate * duration_s))
    scheduled: list[float] = [0.0] * n  # offsets from start
    latency: list[float | None] = [None] * n  # seconds from the scheduled time; None when failed
    outcome: list[str] = [""] * n
    lag = 0.0
    # No pool limit worth the name: a limit would queue requests in the client and close the loop.
    limits = httpx.Limits(max_connections=4096, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:

        async def one(i: int, due: float) -> None:
            try:
                r = await client.post(url, json=bodies[i % len(bodies)])
                outcome[i] = str(r.status_code)
                if 200 <= r.status_code < 300:
                    latency[i] = time.perf_counter() - due
            except httpx.HTTPError as e:
                outcome[i] = type(e).__name__

        start = time.perf_counter()
        tasks = []
        for i in range(n):
            scheduled[i] = i / rate
            due = start + scheduled[i]
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag = max(lag, -delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    ok_ms = sorted(x * 1000 for x in latency if x is not None)
    failures = Counter(o for o, x in zip(outcome, latency, strict=True) if x is None)
    return OpenLoopResult(
        rate=rate,
        duration_s=duration_s,
        sent=n,
        ok=len(ok_ms),
        failed=n - len(ok_ms),
        failures=dict(failures),
        achieved_rps=round(len(ok_ms) / elapsed, 2),
        p50_ms=round(percentile(ok_ms, 50), 1),
        p95_ms=round(percentile(ok_ms, 95), 1),
        p99_ms=round(percentile(ok_ms, 99), 1),
        max_ms=round(ok_ms[-1], 1) if ok_ms else float("nan"),
        max_send_lag_ms=round(lag * 1000, 1),
        windows=_windows(scheduled, latency, window_s),
    )


def _windows(scheduled: list[float], latency: list[float | None], window_s: float) -> list[dict[str, Any]]:
    """Per window of send times: requests sent, failed, and p50/p99 of the answered ones (ms)."""
    out = []
    start = 0.0
    while start < (scheduled[-1] if scheduled else 0.0) + 1e-9:
        idx = [i for i, t in enumerate(scheduled) if start <= t < start + window_s]
        ms = sorted(latency[i] * 1000 for i in idx if latency[i] is not None)  # type: ignore[operator]
        out.append(
            {
                "from_s": round(start, 1),
                "sent": len(idx),
                "failed": len(idx) - len(ms),
                "p50_ms": round(percentile(ms, 50), 1),
                "p99_ms": round(percentile(ms, 99), 1),
            }
        )
        start += window_s
    return out


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
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--artifact", help="Start `sentiray serve ARTIFACT` on a free port and load it")
    target.add_argument("--url", help="Load an endpoint that is already up (its /predict)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="Parquet with a text column (default: IMDB test)")
    p.add_argument("--texts", type=int, default=5000, help="Distinct reviews, cycled")
    p.add_argument("--rate", type=float, help="Requests/s to hold (default: --fraction of measured capacity)")
    p.add_argument("--fraction", type=float, default=0.7, help="Share of the measured capacity to hold")
    p.add_argument("--duration", type=float, default=600.0, help="Seconds to hold the rate")
    p.add_argument("--capacity-concurrency", type=int, default=64, help="Closed-loop clients for capacity")
    p.add_argument("--capacity-duration", type=float, default=60.0, help="Seconds of the capacity run")
    p.add_argument("--threads", type=int, default=2, help="CPUs (torch threads) of the model replica")
    p.add_argument("--window", type=float, default=60.0, help="Seconds per reported window")
    p.add_argument("--timeout", type=float, default=60.0, help="Client timeout per request, seconds")
    p.add_argument("--out", help="Write the report as JSON here")
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
        argv_ = [sys.executable, "-m", "sentiray.cli", "serve", args.artifact, "--port", str(port)]
        argv_ += ["--num-cpus", str(args.threads)]
        server = Server("sentiray", argv_, f"http://127.0.0.1:{port}/health", env, workdir / "serve.log")
        base = f"http://127.0.0.1:{port}"
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
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
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
