"""Serve fixtures: a local Ray + Serve on 127.0.0.1 and free ports, shared by consecutive test modules.

Modules that use `serve_instance` with the same `SERVE_HTTP_OPTIONS` run one after another (collection
puts them at the end of their folder, grouped by those options) and share one Ray + Serve: starting one
costs tens of seconds on a 2-core machine. Each module still starts from an empty Serve: every
application it deployed is deleted when it ends, and Ray is shut down when the next module does not use
the same instance (so a module that starts its own Ray, or none, never sees this one).

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

from tests.object_storage import moto_server
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


def _http_options(module: Any) -> dict[str, Any]:
    return dict(getattr(module, "SERVE_HTTP_OPTIONS", {}))


def _uses_serve(item: pytest.Item) -> bool:
    return "serve_instance" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Within each folder, move the modules that use serve_instance to the end, grouped by their
    SERVE_HTTP_OPTIONS (first-seen order kept), so that modules which can share one instance are adjacent."""
    serve_modules: dict[Any, dict[str, Any]] = {}
    for item in items:
        if _uses_serve(item) and item.module not in serve_modules:  # type: ignore[attr-defined]
            serve_modules[item.module] = _http_options(item.module)  # type: ignore[attr-defined]
    groups: list[dict[str, Any]] = []
    for options in serve_modules.values():
        if options not in groups:
            groups.append(options)

    folders = list(dict.fromkeys(item.path.parent for item in items))

    def key(indexed: tuple[int, pytest.Item]) -> tuple[int, int, int]:
        position, item = indexed
        module = getattr(item, "module", None)
        group = groups.index(serve_modules[module]) + 1 if module in serve_modules else 0
        return (folders.index(item.path.parent), group, position)

    items[:] = [item for _, item in sorted(enumerate(items), key=key)]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note which modules hand their Ray + Serve on: those followed by a module using the same options."""
    modules = list(dict.fromkeys(getattr(item, "module", None) for item in session.items))
    uses = {getattr(item, "module", None) for item in session.items if _uses_serve(item)}
    _HOST.hand_on = {
        this
        for this, following in zip(modules, modules[1:], strict=False)
        if this in uses and following in uses and _http_options(this) == _http_options(following)
    }


class _ServeHost:
    """The one in-process Ray + Serve (Ray allows one per process), kept between modules that share it."""

    def __init__(self) -> None:
        self.instance: ServeInstance | None = None
        self.options: dict[str, Any] = {}
        self.hand_on: set[Any] = set()

    def start(self, options: dict[str, Any]) -> ServeInstance:
        import ray
        from ray import serve

        if self.instance is not None and options == self.options:
            return self.instance
        self.stop()
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
            serve.start(http_options={**options, "host": "127.0.0.1", "port": http_port})
        except BaseException:
            ray.shutdown()
            raise
        self.options = options
        self.instance = ServeInstance(f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{metrics_port}/metrics")
        return self.instance

    def delete_applications(self) -> None:
        from ray import serve

        for name in list(serve.status().applications):
            serve.delete(name)  # blocks until its replicas are gone

    def stop(self) -> None:
        import ray
        from ray import serve

        if self.instance is None:
            return
        self.instance = None
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


_HOST = _ServeHost()


@pytest.fixture(scope="module")
def serve_instance(request: pytest.FixtureRequest) -> Iterator[ServeInstance]:
    """Local Ray (4 logical CPUs on this 2-core machine) with Serve's proxy on 127.0.0.1, and no
    application deployed when the module starts.

    A test module may set `SERVE_HTTP_OPTIONS` (e.g. `{"request_timeout_s": 10}`) for its proxy."""
    instance = _HOST.start(_http_options(request.module))
    register_test_models()
    handed_on = False
    try:
        yield instance
        if request.module in _HOST.hand_on:
            try:
                _HOST.delete_applications()
                handed_on = True
            except Exception:
                logging.getLogger(__name__).warning("could not clear Serve; restarting it", exc_info=True)
    finally:
        if not handed_on:
            _HOST.stop()


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

    async def predict(self, ids: list[list[int]], raw_scores: bool, **kwargs: Any) -> Any:
        # The replica receives token ids (the ingress tokenizes): recognise DIE_TEXT by its encoding.
        if self._predictor.encode([DIE_TEXT])[0] in ids:
            os._exit(1)
        return await super().predict(ids, raw_scores, **kwargs)


def register_test_models() -> None:
    """Ship this module's classes to replicas by value (they cannot import pytest's `conftest`)."""
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server for the test module (tests/object_storage.py)."""
    with moto_server() as endpoint:
        yield endpoint
