"""Load harness shared by the reliability tests and the load benchmarks (bench/load_gen.py, bench/serve_bench.py).

Open loop: request i is sent at `start + i / rate` whatever happened to the requests before it, so a slow
server meets the same arrivals as a fast one and its queue shows up as latency (a closed loop would slow
down with the server and hide it). Latency counts from the scheduled send time, so a lagging client is not
mistaken for a fast server (coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in [0, 100])."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


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
