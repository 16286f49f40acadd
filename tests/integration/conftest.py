"""Serve fixtures: one local Ray + Serve per test module, on 127.0.0.1 and free ports.

Ray's node exports metrics (Serve's and ours) in Prometheus text at `http://127.0.0.1:<port>/metrics`,
the port given as `_metrics_export_port`; workers push to it every `metrics_report_interval_ms`.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.ray_cluster import free_port


@dataclass
class ServeInstance:
    base_url: str
    metrics_url: str

    def scrape(self) -> str:
        return httpx.get(self.metrics_url, timeout=10).text


_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)", re.MULTILINE)


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` (exact) whose labels include `labels`."""
    total = 0.0
    for m in _SAMPLE.finditer(text):
        if m.group("name") != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group("labels") or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group("value"))
    return total


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.5) -> Any:
    """Poll until predicate returns a truthy value; fail the test after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (httpx.HTTPError, OSError) as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def serve_instance(request: pytest.FixtureRequest) -> Iterator[ServeInstance]:
    """Local Ray (4 logical CPUs on this 2-core machine) with Serve's proxy on 127.0.0.1.

    A test module may set `SERVE_HTTP_OPTIONS` (e.g. `{"request_timeout_s": 10}`) for its proxy."""
    import ray
    from ray import serve

    os.environ["RAY_AUTH_MODE"] = "disabled"
    http_port, metrics_port = free_port(), free_port()
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        _metrics_export_port=metrics_port,
        _system_config={"metrics_report_interval_ms": 1000},
        logging_level=logging.WARNING,
    )
    try:
        register_test_models()
        http_options = {**getattr(request.module, "SERVE_HTTP_OPTIONS", {}), "host": "127.0.0.1", "port": http_port}
        serve.start(http_options=http_options)
        yield ServeInstance(f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def wait_healthy(base_url: str, timeout_s: float = 120) -> None:
    wait_for(lambda: httpx.get(f"{base_url}/health", timeout=5).status_code == 200, timeout_s, "/health 200")


# --- test doubles of the model deployment (same code, slowed down or made to die on demand) -------------

DIE_TEXT = "__sentiray_test_die__"


def _model_base() -> type:
    from serve.app import SentimentModel

    return SentimentModel.func_or_class  # type: ignore[attr-defined]


class SlowLoadModel(_model_base()):  # type: ignore[misc]
    """Takes a few seconds to load, so /health can be seen answering 503 first."""

    def __init__(self, args: Any) -> None:
        time.sleep(8)
        super().__init__(args)


class SlowForwardModel(_model_base()):  # type: ignore[misc]
    """Each forward pass takes 0.3 s (sleeping, not computing); a DIE_TEXT request kills the replica."""

    def _forward(self, flat: Any) -> Any:
        time.sleep(0.3)
        return super()._forward(flat)

    async def predict(self, texts: list[str], truncate: bool, raw_scores: bool) -> Any:
        if DIE_TEXT in texts:
            os._exit(1)
        return await super().predict(texts, truncate, raw_scores)


def register_test_models() -> None:
    """Ship this module's classes to replicas by value (they cannot import pytest's `conftest`)."""
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
