"""Fuzz the sentiray endpoint from its own OpenAPI schema (schemathesis + hypothesis): never a 5xx.

Every operation the endpoint serves gets schema-valid and schema-breaking requests; each answer goes
through schemathesis' checks (no server error, documented status codes, content types and response
schemas, schema-breaking data refused), all but positive_data_acceptance: the schema admits requests the
endpoint refuses on purpose (empty texts, too many inputs, nesting too deep).

    python bench/fuzz_serve.py --examples 2000 --out fuzz.json            # starts `sentiray serve` itself
    python bench/fuzz_serve.py --url http://127.0.0.1:8000 --examples 500  # an endpoint already up

Started by the script, the endpoint serves an untrained tiny model (built like the test fixtures) or
`--artifact`. The fuzzing itself (`fuzz_endpoint`) is tests/fuzz.py's, which
tests/integration/test_serve_hostile.py runs at a small count.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

from bench.common import Server, bench_parser, serve_argv, server_env
from tests.fuzz import fuzz_endpoint
from tests.support import build_tiny_model, write_tiny_artifact


def _tiny_artifact(folder: Path) -> Path:
    out = folder / "artifact"
    write_tiny_artifact(out, build_tiny_model(folder / "tiny-model"), base_model="tiny-distilbert (untrained)")
    return out


def main() -> None:
    parser = bench_parser(__doc__, out="write the report as JSON here")
    parser.add_argument("--url", help="fuzz this endpoint instead of starting one")
    parser.add_argument("--artifact", help="artifact to serve (default: an untrained tiny model)")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--examples", type=int, default=1000, help="per operation and mode (positive, negative)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--token", help="bearer token to send (an endpoint with api_token_env/file)")
    args = parser.parse_args()

    headers = {"authorization": f"Bearer {args.token}"} if args.token else None
    # Short path: Ray's unix sockets live under RAY_TMPDIR and have a ~100-byte limit.
    with tempfile.TemporaryDirectory(prefix="fz", dir="/tmp") as tmp:
        url = args.url
        server = None
        if url is None:
            artifact = Path(args.artifact) if args.artifact else _tiny_artifact(Path(tmp))
            env = {**server_env(Path(tmp), None), "RAY_TMPDIR": tmp}
            server = Server("sentiray serve", serve_argv(artifact, args.port), env, Path(tmp) / "serve.log", args.port)
        try:
            if server is not None:
                url = server.wait_ready(timeout_s=300)
            report = fuzz_endpoint(url, examples=args.examples, headers=headers, seed=args.seed)
        finally:
            if server is not None:
                server.stop(grace_s=30)
    out = report.as_dict()
    print(json.dumps({k: v for k, v in out.items() if k != "failures"}, indent=2))
    for failure in report.failures[:20]:
        print("---", failure, sep="\n")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    sys.exit(1 if report.server_errors or report.failures else 0)


if __name__ == "__main__":
    main()
