"""Load behaviour over real local Ray Serve: backpressure, a replica dying under a request, autoscaling.

One application with small limits and a model whose forward pass sleeps 0.3 s (load without burning the
2 CPUs), scaled between 1 and 2 replicas with short delays.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest

from serve.app import build_app
from serve.schemas import AppArgs
from tests.integration.conftest import DIE_TEXT, ServeInstance, SlowForwardModel, wait_for, wait_healthy

pytestmark = pytest.mark.timeout(300)

APP = "scaling"
TEXT = {"inputs": "a wonderful superb film"}


@pytest.fixture(scope="module")
def api(serve_instance: ServeInstance, tiny_artifact: Path) -> str:
    from ray import serve

    args = AppArgs(
        model=str(tiny_artifact),
        max_batch_size=1,
        batch_wait_timeout_s=0.0,
        min_replicas=1,
        max_replicas=2,
        target_ongoing_requests=1,
        upscale_delay_s=1,
        downscale_delay_s=3,
    )
    app = build_app(
        args,
        model_options={
            "func_or_class": SlowForwardModel,
            "max_ongoing_requests": 2,
            "max_queued_requests": 2,
            "ray_actor_options": {"num_cpus": 1},
            "autoscaling_config": {
                "min_replicas": 1,
                "max_replicas": 2,
                "target_ongoing_requests": 1,
                "upscale_delay_s": 1,
                "downscale_delay_s": 3,
                "metrics_interval_s": 0.5,
                "look_back_period_s": 2,
            },
            "health_check_period_s": 1,
        },
        ingress_options={
            "max_ongoing_requests": 8,
            "max_queued_requests": 4,
            "backpressure_config": {"status_code": 503, "retry_after_s": 1},
        },
    )
    serve.run(app, name=APP, route_prefix="/")
    wait_healthy(serve_instance.base_url)
    return serve_instance.base_url


def _running_replicas() -> int:
    from ray import serve

    states = serve.status().applications[APP].deployments["SentimentModel"].replica_states
    return sum(n for state, n in states.items() if str(getattr(state, "value", state)) == "RUNNING")


async def _burst(url: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n)) as client:
        return await asyncio.gather(*(client.post(url, json=TEXT) for _ in range(n)))


def test_requests_past_the_limits_get_503_with_retry_after(api: str) -> None:
    responses = asyncio.run(_burst(f"{api}/predict", 24))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) == {200, 503}, codes
    assert codes.count(200) >= 2
    for r in responses:
        if r.status_code == 503:
            assert r.headers.get("retry-after") == "1", (r.headers, r.text)
    wait_healthy(api)
    assert httpx.post(f"{api}/predict", json=TEXT, timeout=30).status_code == 200


def test_a_replica_dying_under_a_request_is_503_with_retry_after(api: str) -> None:
    wait_healthy(api)
    r = httpx.post(f"{api}/predict", json={"inputs": DIE_TEXT}, timeout=60)
    assert r.status_code == 503, r.text
    assert r.headers.get("retry-after") == "1"
    assert r.json()["error_type"] == "unavailable"
    wait_healthy(api, timeout_s=240)  # Serve replaces the replica
    assert httpx.post(f"{api}/predict", json=TEXT, timeout=30).status_code == 200


def test_autoscaling_up_under_load_and_back_down(api: str) -> None:
    wait_healthy(api)
    wait_for(lambda: _running_replicas() == 1, 90, "one model replica before the load")
    stop = threading.Event()
    codes: list[int] = []

    def client() -> None:
        with httpx.Client(timeout=60) as c:
            while not stop.is_set():
                codes.append(c.post(f"{api}/predict", json=TEXT).status_code)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: _running_replicas() == 2, 120, "a second replica under sustained load")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert codes.count(200) > 0
    started = time.monotonic()
    wait_for(lambda: _running_replicas() == 1, 120, "back to one replica after the load")
    assert time.monotonic() - started < 120
