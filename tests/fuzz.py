"""Fuzz an endpoint from its own OpenAPI schema (schemathesis + hypothesis): never a 5xx.

Every operation the endpoint serves gets schema-valid and schema-breaking requests; each answer goes
through schemathesis' checks (no server error, documented status codes, content types and response
schemas, schema-breaking data refused), all but positive_data_acceptance: the schema admits requests the
endpoint refuses on purpose (empty texts, too many inputs, nesting too deep).

tests/integration/test_serve_hostile.py runs it at a small count; bench/fuzz_serve.py at thousands.
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


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
