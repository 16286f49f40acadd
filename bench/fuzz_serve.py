"""Fuzz the sentiray endpoint from its own OpenAPI schema (schemathesis + hypothesis): never a 5xx.

Every operation the endpoint serves gets schema-valid and schema-breaking requests; each answer goes
through schemathesis' checks (no server error, documented status codes, content types and response
schemas, schema-breaking data refused), all but positive_data_acceptance: the schema admits requests the
endpoint refuses on purpose (empty texts, too many inputs, nesting too deep).

    python bench/fuzz_serve.py --examples 2000 --out fuzz.json            # starts `sentiray serve` itself
    python bench/fuzz_serve.py --url http://127.0.0.1:8000 --examples 500  # an endpoint already up

Started by the script, the endpoint serves an untrained tiny model (built like the test fixtures) or
`--artifact`. `fuzz_endpoint` is what tests/integration/test_serve_hostile.py runs at a small count.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))


@dataclass
class FuzzReport:
    """What a fuzz run sent and got: answers by operation and status, and every failed check."""

    examples_per_mode: int
    requests: int = 0
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)  # "POST /predict 422" -> count
    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # nothing to generate (negative cases of GET /health)

    @property
    def server_errors(self) -> int:
        return sum(n for key, n in self.statuses.items() if key.rsplit(" ", 1)[1].startswith("5"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "examples_per_mode": self.examples_per_mode,
            "requests": self.requests,
            "seconds": round(self.seconds, 1),
            "server_errors": self.server_errors,
            "statuses": dict(sorted(self.statuses.items())),
            "skipped": self.skipped,
            "failures": self.failures,
        }


def fuzz_endpoint(
    base_url: str,
    *,
    examples: int,
    model_name: str = "sentiray",
    headers: dict[str, str] | None = None,
    seed: int | None = None,
) -> FuzzReport:
    """Up to `examples` positive and `examples` negative cases per operation of base_url's schema."""
    import hypothesis
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode, checks
    from schemathesis.core.result import Err

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    report = FuzzReport(examples)
    started = time.monotonic()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the endpoint's own schema is broken
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                name = (case.path_parameters or {}).get("name")
                if name is not None and zlib.crc32(str(name).encode()) % 4:
                    case.path_parameters["name"] = model_name  # most KServe calls reach the model
                response = case.call(base_url=base_url, headers=headers, timeout=120)
                report.requests += 1
                report.statuses[f"{case.method.upper()} {case.operation.path} {response.status_code}"] += 1
                try:
                    case.validate_response(response, excluded_checks=[checks.positive_data_acceptance], headers=headers)
                except AssertionError as failure:  # schemathesis' FailureGroup is one
                    report.failures.append(str(failure))

            if seed is not None:
                run = hypothesis.seed(seed)(run)
            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                report.skipped.append(f"{operation.method.upper()} {operation.path} {mode.value}")
    report.seconds = time.monotonic() - started
    return report


# --- a local endpoint for the run ------------------------------------------------------------------------


def _tiny_artifact(folder: Path) -> Path:
    from tests.support import build_tiny_model, write_tiny_artifact

    out = folder / "artifact"
    write_tiny_artifact(out, build_tiny_model(folder / "tiny-model"), base_model="tiny-distilbert (untrained)")
    return out


def _serve(artifact: Path, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """`sentiray serve` in its own process group, Ray's files under workdir; ready once /health is 200."""
    env = {**os.environ, "RAY_TMPDIR": str(workdir), "RAY_USAGE_STATS_ENABLED": "0"}
    log = (workdir / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "sentiray"), "serve", str(artifact), "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sentiray serve exited {proc.returncode}; see {workdir / 'serve.log'}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("sentiray serve did not become healthy in 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="fuzz this endpoint instead of starting one")
    parser.add_argument("--artifact", help="artifact to serve (default: an untrained tiny model)")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--examples", type=int, default=1000, help="per operation and mode (positive, negative)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--token", help="bearer token to send (an endpoint with api_token_env/file)")
    parser.add_argument("--out", help="write the report as JSON here")
    args = parser.parse_args()

    headers = {"authorization": f"Bearer {args.token}"} if args.token else None
    proc = None
    # Short path: Ray's unix sockets live under RAY_TMPDIR and have a ~100-byte limit.
    with tempfile.TemporaryDirectory(prefix="fz", dir="/tmp") as tmp:
        url = args.url
        if url is None:
            artifact = Path(args.artifact) if args.artifact else _tiny_artifact(Path(tmp))
            proc = _serve(artifact, args.port, Path(tmp))
            url = f"http://127.0.0.1:{args.port}"
        try:
            report = fuzz_endpoint(url, examples=args.examples, headers=headers, seed=args.seed)
        finally:
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
    out = report.as_dict()
    print(json.dumps({k: v for k, v in out.items() if k != "failures"}, indent=2))
    for failure in report.failures[:20]:
        print("---", failure, sep="\n")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    sys.exit(1 if report.server_errors or report.failures else 0)


if __name__ == "__main__":
    main()
