"""Reliability over real local Ray Serve and real HTTP: load, replica faults, shutdown, timeouts.

One Ray + Serve for the module (proxy `request_timeout_s` 10 s). The main application runs the real
model deployment on the tiny artifact with two replicas; the shutdown and timeout tests use a model whose
forward pass sleeps (0.5 s, 4 s), so requests stay in flight long enough to meet the event under test.
Replicas are found as this test process's descendants titled `ray::ServeReplica:<app>:SentimentModel`
and killed with SIGKILL, as the kernel's OOM killer or a node failure would. What the retries of the
sentiray client hid is printed and recorded (`record_property`); docs/reliability.md quotes it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from sentiray.client import PredictClient
from serve.app import FAULT_UNHEALTHY_FILE_ENV, METRIC_NAMES, SentimentModel, build_app
from serve.schemas import AppArgs
from tests.integration.conftest import ServeInstance, metric_sum, wait_for, wait_healthy
from tests.load import open_loop
from tests.support import IMDB_TEST, load_reviews, synthetic_reviews

pytestmark = pytest.mark.timeout(600)

SERVE_HTTP_OPTIONS = {"request_timeout_s": 10}  # read by the serve_instance fixture
REQUEST_TIMEOUT_S = SERVE_HTTP_OPTIONS["request_timeout_s"]

APP = "reliability"
MODEL = "SentimentModel"


# --- test doubles: the real deployment with a forward pass that takes a while (sleeping, not computing) --


class _SlowForward(SentimentModel.func_or_class):  # type: ignore[attr-defined,misc]
    forward_s = 0.5

    def _forward(self, flat: Any) -> Any:
        time.sleep(self.forward_s)
        return super()._forward(flat)


class _VerySlowForward(_SlowForward):
    forward_s = 4.0


class _SlowLoadSlowForward(_SlowForward):
    """Loads for longer than the proxy's request_timeout_s: a gap without replicas would show as 408s."""

    def __init__(self, args: Any) -> None:
        time.sleep(REQUEST_TIMEOUT_S + 1)
        super().__init__(args)


@pytest.fixture(scope="module", autouse=True)
def _register_by_value() -> None:
    """Ship this module's classes to replicas by value (they cannot import the test module)."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


# --- helpers -----------------------------------------------------------------------------------------


def _reviews(n: int) -> list[str]:
    """Real IMDB test reviews where the shared data is present, else synthetic ones."""
    if IMDB_TEST.is_file():
        return load_reviews(IMDB_TEST, n, seed=5)[0]
    return synthetic_reviews(n, seed=5)[0]


def _running(app: str) -> int:
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None or MODEL not in status.deployments:
        return 0
    states = status.deployments[MODEL].replica_states
    return sum(n for state, n in states.items() if str(getattr(state, "value", state)) == "RUNNING")


def _replica_pids(app: str) -> set[int]:
    """Process ids of the app's live model replicas (all are descendants of this test process)."""
    title = f"ServeReplica:{app}:{MODEL}"
    pids = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and any(title in part for part in proc.cmdline()):
                pids.add(proc.pid)
        except psutil.Error:
            continue
    return pids


def _two_replicas(app: str) -> set[int]:
    def ready() -> set[int] | None:
        pids = _replica_pids(app)
        return pids if _running(app) == 2 and len(pids) == 2 else None

    found: set[int] = wait_for(ready, 120, f"two running replicas of {app}")
    return found


class ClientLoad:
    """Threads sending one review per call through one shared sentiray PredictClient, until stopped.

    Every call's outcome is kept: `answered` calls and the `errors` raised once retries ran out.
    """

    def __init__(self, url: str, texts: list[str], threads: int = 4) -> None:
        self.client = PredictClient(url)  # the shipped retry policy
        self._texts = texts
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.answered = 0
        self.errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, offset: int) -> None:
        i = offset
        while not self._stop.is_set():
            text = self._texts[i % len(self._texts)]
            i += len(self._threads)
            try:
                out = self.client.predict([text])
                assert len(out) == 1 and out[0][0]["label"] in ("POSITIVE", "NEGATIVE"), out
                with self._lock:
                    self.answered += 1
            except Exception as e:
                with self._lock:
                    self.errors.append(e)

    def wait_answered(self, n: int, timeout_s: float = 120) -> None:
        wait_for(lambda: self.answered >= n, timeout_s, f"{n} answered calls (errors: {self.errors[:3]})")

    def __enter__(self) -> ClientLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)
        self.client.close()

    def report(self) -> dict[str, int]:
        return {
            "answered": self.answered,
            "lost": len(self.errors),
            "retried_requests": self.client.retried_requests,
            "retried_attempts": self.client.retried_attempts,
        }


def _record(record_property: Any, name: str, figures: dict[str, Any]) -> None:
    print(f"\n{name}: {figures}")
    for key, value in figures.items():
        record_property(f"{name}.{key}", value)


# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fault_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def api(serve_instance: ServeInstance, tiny_artifact: Path, fault_dir: Path) -> str:
    """The real application, two model replicas, health-checked every second, fault injection armed."""
    from ray import serve

    app = build_app(
        AppArgs(model=str(tiny_artifact), max_batch_size=8),
        model_options={
            "num_replicas": 2,
            "health_check_period_s": 1,
            "health_check_timeout_s": 10,
            "ray_actor_options": {
                "num_cpus": 0.5,
                # Armed, not fired: a replica fails its health check only once its own file exists.
                "runtime_env": {"env_vars": {FAULT_UNHEALTHY_FILE_ENV: str(fault_dir / "unhealthy-{pid}")}},
            },
        },
    )
    serve.run(app, name=APP, route_prefix="/")
    wait_healthy(serve_instance.base_url)
    return serve_instance.base_url


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return _reviews(500)


# --- load ----------------------------------------------------------------------------------------------


def test_open_loop_load_of_real_reviews_has_no_failed_request(api: str, texts: list[str], record_property: Any) -> None:
    """30 s at a fixed 10 requests/s (open loop, tests/load.py), one review each: every answer 2xx."""
    result = asyncio.run(open_loop(f"{api}/predict", [{"inputs": t} for t in texts], rate=10, duration_s=30))
    _record(
        record_property,
        "open_loop",
        {k: getattr(result, k) for k in ("sent", "ok", "failed", "failures", "p50_ms", "p99_ms", "max_ms")},
    )
    assert result.sent == 300
    assert result.failed == 0, result.failures
    assert result.ok == result.sent


# --- faults --------------------------------------------------------------------------------------------


def test_replica_killed_under_load_loses_no_request(api: str, texts: list[str], record_property: Any) -> None:
    before = _two_replicas(APP)
    victim = min(before)
    with ClientLoad(api, texts) as load:
        load.wait_answered(20)
        os.kill(victim, signal.SIGKILL)
        at_kill = load.answered

        def replaced() -> bool:
            pids = _replica_pids(APP)
            return _running(APP) == 2 and victim not in pids and len(pids - before) == 1

        wait_for(replaced, 120, "the deployment back at two running replicas, one of them new")
        load.wait_answered(load.answered + 20)
    _record(record_property, "replica_sigkill", {**load.report(), "answered_before_kill": at_kill})
    assert load.errors == []
    assert load.answered > at_kill


def test_replica_failing_its_health_check_is_replaced(
    api: str, texts: list[str], fault_dir: Path, record_property: Any
) -> None:
    before = _two_replicas(APP)
    victim, survivor = sorted(before)
    with ClientLoad(api, texts) as load:
        load.wait_answered(20)
        (fault_dir / f"unhealthy-{victim}").touch()  # SENTIRAY_FAULT_UNHEALTHY_FILE for this replica only

        def replaced() -> bool:
            pids = _replica_pids(APP)
            return _running(APP) == 2 and victim not in pids and survivor in pids and len(pids) == 2

        wait_for(replaced, 120, "the unhealthy replica replaced, the healthy one kept")
        load.wait_answered(load.answered + 20)
    _record(record_property, "replica_unhealthy", load.report())
    assert load.errors == []


def test_fault_injection_is_never_set_by_the_packaging() -> None:
    repo = Path(__file__).resolve().parents[2]
    packaged = [repo / "serve" / "config.yaml", repo / "Dockerfile"]
    packaged += [f for d in ("helm", "k8s") for f in (repo / d).rglob("*") if f.is_file()]
    assert len(packaged) > 10
    assert [str(f) for f in packaged if FAULT_UNHEALTHY_FILE_ENV in f.read_text(errors="replace")] == []


def test_model_that_cannot_load_stays_failed_with_its_error(serve_instance: ServeInstance, tmp_path: Path) -> None:
    """Deployed without waiting, as `serve deploy` does: DEPLOY_FAILED with the load error, and it stays
    so: /health 503 throughout, no replica restarting in a loop."""
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    app = build_app(
        AppArgs(model=str(tmp_path / "no-such-artifact")),
        # One constructor retry, not Serve's three: the same end state, sooner.
        model_options={"ray_actor_options": {"num_cpus": 0.5}, "max_constructor_retry_count": 1},
    )
    serve.run_many([serve.RunTarget(app, name="broken", route_prefix="/broken")], wait_for_applications_running=False)
    try:

        def failed_with_message() -> str | None:
            status = serve.status().applications.get("broken")
            if status is None or status.status != ApplicationStatus.DEPLOY_FAILED:
                return None
            message = status.message + " ".join(d.message for d in status.deployments.values())
            return message if "no such artifact folder" in message else None

        wait_for(failed_with_message, 180, "the application DEPLOY_FAILED with the load error")
        time.sleep(2)  # the last failed replica's process exits
        for _ in range(5):  # over the next ~8 s: still failed, still saying why, nothing restarting
            assert failed_with_message(), serve.status().applications.get("broken")
            assert _replica_pids("broken") == set()
            r = httpx.get(f"{serve_instance.base_url}/broken/health", timeout=30)
            assert r.status_code == 503, r.text
            time.sleep(1)
    finally:
        serve.delete("broken")


# --- graceful shutdown ---------------------------------------------------------------------------------


def _graceful_app(artifact: Path, batch_wait_timeout_s: float, model: type = _SlowForward) -> Any:
    """Starts at 2 replicas, autoscaled between 1 and 2 (one ongoing request each), quick to scale down."""
    return build_app(
        AppArgs(model=str(artifact), max_batch_size=4, batch_wait_timeout_s=batch_wait_timeout_s),
        model_options={
            "func_or_class": model,
            "ray_actor_options": {"num_cpus": 0.5},
            "autoscaling_config": {
                "initial_replicas": 2,
                "min_replicas": 1,
                "max_replicas": 2,
                "target_ongoing_requests": 1,
                "upscale_delay_s": 30,
                "downscale_delay_s": 3,
                "metrics_interval_s": 0.5,
                "look_back_period_s": 2,
            },
        },
    )


class PlainLoad:
    """Threads posting reviews with plain httpx (no retries); each call's (sent, answered, status) kept."""

    def __init__(self, url: str, texts: list[str]) -> None:
        self._url = url
        self._texts = texts
        self.calls: list[tuple[float, float, int | str]] = []
        self._threads: list[tuple[threading.Thread, threading.Event]] = []

    def add(self, n: int) -> None:
        for _ in range(n):
            stop = threading.Event()
            t = threading.Thread(target=self._run, args=(len(self._threads), stop), daemon=True)
            self._threads.append((t, stop))
            t.start()

    def stop(self) -> None:
        self.remove(len(self._threads))

    def remove(self, n: int) -> None:
        for t, stop in [self._threads.pop() for _ in range(n)]:
            stop.set()
            t.join(timeout=60)

    def _run(self, offset: int, stop: threading.Event) -> None:
        with httpx.Client(timeout=60) as c:
            i = offset
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    code: int | str = c.post(self._url, json={"inputs": self._texts[i % len(self._texts)]}).status_code
                except httpx.HTTPError as e:
                    code = type(e).__name__
                self.calls.append((sent, time.monotonic(), code))
                i += 7

    def wait_calls(self, more: int) -> None:
        n = len(self.calls)
        wait_for(lambda: len(self.calls) >= n + more, 120, f"{more} more answered requests")

    def in_flight_at(self, t: float) -> int:
        return sum(1 for sent, answered, _ in self.calls if sent < t < answered)


def test_scale_down_and_redeploy_drop_no_in_flight_request(
    serve_instance: ServeInstance, tiny_artifact: Path, texts: list[str], record_property: Any
) -> None:
    """Plain HTTP, no retries: the autoscaler removes one of two replicas (one client's load needs one),
    then a redeploy replaces every replica (ingress and model), both while requests are in flight; every
    request answers 200."""
    from ray import serve

    base = f"{serve_instance.base_url}/graceful"
    serve.run(_graceful_app(tiny_artifact, 0.01), name="graceful", route_prefix="/graceful")
    two = _replica_pids("graceful")
    assert len(two) == 2
    load = PlainLoad(f"{base}/predict", texts)
    try:
        load.add(1)  # at once: the autoscaler removes a replica after 3 s at this load
        load.wait_calls(5)
        wait_for(lambda: _running("graceful") == 1 and len(_replica_pids("graceful")) == 1, 120, "one replica")
        scaled_down_at = time.monotonic()
        assert _replica_pids("graceful") < two
        load.wait_calls(5)
        load.add(1)
        kept = _replica_pids("graceful")
        redeploy_at = time.monotonic()
        # A new version: Serve replaces the ingress and model replicas; the new model loads for longer
        # than request_timeout_s, so requests would time out if no old replica kept serving meanwhile.
        serve.run(_graceful_app(tiny_artifact, 0.02, _SlowLoadSlowForward), name="graceful", route_prefix="/graceful")

        def replaced() -> bool:
            pids = _replica_pids("graceful")
            return _running("graceful") >= 1 and bool(pids) and not pids & kept

        wait_for(replaced, 120, "the model replica replaced by a new one")
        load.wait_calls(10)
    finally:
        load.stop()
        serve.delete("graceful")
    codes = [code for _, _, code in load.calls]
    figures = {
        "requests": len(codes),
        "non_200": len(codes) - codes.count(200),
        "in_flight_at_scale_down": load.in_flight_at(scaled_down_at),
        "in_flight_at_redeploy": load.in_flight_at(redeploy_at),
    }
    _record(record_property, "graceful_shutdown", figures)
    assert [c for c in codes if c != 200] == []
    assert figures["in_flight_at_redeploy"] > 0


# --- request timeout -----------------------------------------------------------------------------------


def _timeout_counts(serve_instance: ServeInstance) -> dict[str, float]:
    text = serve_instance.scrape()
    cancelled = f"ray_{METRIC_NAMES['requests_cancelled']}_total"
    return {
        "computed": metric_sum(text, f"ray_{METRIC_NAMES['requests_per_batch']}_count", application="timeout"),
        "queued": metric_sum(text, cancelled, application="timeout", stage="queued"),
        "running": metric_sum(text, cancelled, application="timeout", stage="running"),
    }


def test_request_past_the_timeout_is_408_and_never_computed_if_still_queued(
    serve_instance: ServeInstance, tiny_artifact: Path, record_property: Any
) -> None:
    """One replica, one request per 4 s batch, 5 requests at once, request_timeout_s 10: the first two
    answer 200, the third times out while its batch runs (computed, dropped), the last two while still
    queued (never computed); all three get 408, and the metrics say which was which."""
    from ray import serve

    base = f"{serve_instance.base_url}/timeout"
    app = build_app(
        AppArgs(model=str(tiny_artifact), max_batch_size=1, batch_wait_timeout_s=0.0),
        model_options={"func_or_class": _VerySlowForward, "ray_actor_options": {"num_cpus": 0.5}},
    )
    serve.run(app, name="timeout", route_prefix="/timeout")
    try:
        wait_healthy(base)

        async def five() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as c:
                return await asyncio.gather(
                    *(c.post(f"{base}/predict", json={"inputs": f"review number {i}"}) for i in range(5))
                )

        responses = asyncio.run(five())
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 408}, [(r.status_code, r.text) for r in responses]
        timed_out = [r for r in responses if r.status_code == 408]
        assert timed_out, codes
        assert all("timed out" in r.text for r in timed_out), [r.text for r in timed_out]

        # Settled: every 408 counted as cancelled, every batch that ran exported.
        def settled() -> dict[str, float] | None:
            c = _timeout_counts(serve_instance)
            done = c["queued"] + c["running"] == len(timed_out) and c["computed"] == codes.count(200) + c["running"]
            return c if done else None

        counts = wait_for(settled, 60, "the cancelled and computed requests in the metrics")
        _record(record_property, "request_timeout", {"codes": sorted(codes), **counts})
        assert counts["queued"] >= 1, counts  # timed out while queued: never computed
        assert counts["running"] >= 1, counts  # timed out while its batch ran: computed, answer dropped
        assert httpx.post(f"{base}/predict", json={"inputs": "still serving"}, timeout=30).status_code == 200
    finally:
        serve.delete("timeout")
