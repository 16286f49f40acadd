"""The in-place model swap of `sentiray k8s promote`, on a real local Ray Serve under open-loop load.

On a cluster, promote changes the RayService's serveConfigV2 in the builder arg `model` only, and KubeRay
sends the new config to the running cluster's dashboard: `PUT /api/serve/applications/` (KubeRay's
dashboard client, `UpdateDeployments`). This test does the same against a local Ray head with its
dashboard: deploy serve/config.yaml with artifact A (built by the same override code as the chart's
serveConfigV2), then PUT the config with artifact B while requests arrive at a fixed rate, and check
that no request fails while Serve replaces the replicas and that /info reports B afterwards.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sentiray.kube.serveconfig import SOURCE, apply_overrides, load_serve_config
from tests.integration.conftest import wait_for
from tests.k8s_support import REPO
from tests.load import OpenLoopResult, open_loop
from tests.ray_cluster import RayHead, free_port, start_head
from tests.support import synthetic_reviews

pytestmark = pytest.mark.timeout(600)

RATE = 8  # requests/s: well below what one tiny-model replica answers on 2 cores
LOAD_S = 60  # long enough for the new replicas to load and the old ones to drain


@pytest.fixture(scope="module")
def head() -> Any:
    ray_head = start_head(num_cpus=4)
    try:
        yield ray_head
    finally:
        ray_head.stop()


def _config(artifact: str, port: int) -> dict[str, Any]:
    """serve/config.yaml with the RayService's overrides (as the chart renders it), on loopback."""
    config = apply_overrides(
        load_serve_config(REPO / SOURCE),
        model_uri=artifact,
        # 4 logical CPUs on this 2-core machine: room for a surge replica of each deployment.
        ray_actor_options={"SentimentIngress": {"num_cpus": 0.1}, "SentimentModel": {"num_cpus": 1}},
        http_host="127.0.0.1",
    )
    config["http_options"]["port"] = port
    return config


def _put(ray_head: RayHead, config: dict[str, Any]) -> None:
    r = httpx.put(f"{ray_head.dashboard_url}/api/serve/applications/", json=config, timeout=60)
    assert r.status_code == 200, r.text


def _info(base: str) -> dict[str, Any] | None:
    r = httpx.get(f"{base}/info", timeout=10)
    return r.json() if r.status_code == 200 else None


def test_promote_swaps_the_model_in_place_without_a_failed_request(
    head: RayHead, tiny_artifact: Path, tmp_path: Path, record_property: Any
) -> None:
    a = str(tiny_artifact)
    b = str(shutil.copytree(tiny_artifact, tmp_path / "run-2" / "artifact"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    _put(head, _config(a, port))
    wait_for(lambda: (_info(base) or {}).get("artifact") == a, 240, "/info reporting artifact A")

    texts = synthetic_reviews(200, seed=9)[0]
    result: list[OpenLoopResult] = []
    load = threading.Thread(
        target=lambda: result.append(
            asyncio.run(open_loop(f"{base}/predict", [{"inputs": t} for t in texts], RATE, LOAD_S, window_s=5))
        ),
        daemon=True,
    )
    load.start()
    time.sleep(5)  # the load is steady before the swap
    swap_at, swap_wall = time.monotonic(), time.time()
    _put(head, _config(b, port))  # what KubeRay sends after `sentiray k8s promote B`
    seen: list[str] = []

    def swapped() -> bool:
        info = _info(base)
        if info:
            seen.append(info["artifact"])
        return bool(info) and info["artifact"] == b and _only_new_model_replicas(head, swap_wall)

    try:
        wait_for(swapped, LOAD_S - 10, "every model replica serving artifact B", interval_s=1)
    except BaseException:
        print("seen:", seen[-20:], "serve:", _app_details(head), "swap at", swap_wall)
        raise
    swap_s = time.monotonic() - swap_at
    load.join(timeout=LOAD_S + 120)
    assert result, "the load generator did not finish"
    (run,) = result
    figures = {"sent": run.sent, "ok": run.ok, "failed": run.failed, "failures": run.failures,
               "p50_ms": run.p50_ms, "p99_ms": run.p99_ms, "max_ms": run.max_ms, "swap_s": round(swap_s, 1)}
    print("promote swap:", figures)
    record_property("promote_swap", figures)
    assert run.failed == 0, (run.failures, run.windows)
    assert run.sent == RATE * LOAD_S
    # Requests kept arriving and being answered while the replicas changed over.
    assert seen and seen[-1] == b and set(seen) <= {a, b}
    for _ in range(5):  # and it stays on B
        assert (_info(base) or {}).get("artifact") == b
        time.sleep(0.5)


def _app_details(head: RayHead) -> Any:
    app = httpx.get(f"{head.dashboard_url}/api/serve/applications/", timeout=10).json()["applications"]["sentiray"]
    return {
        "status": app["status"],
        "message": app["message"][-500:],
        "deployments": {
            name: (d["status"], d["message"][-300:], [(r["state"], r["start_time_s"]) for r in d["replicas"]])
            for name, d in app["deployments"].items()
        },
    }


def _only_new_model_replicas(head: RayHead, since: float) -> bool:
    """The application is RUNNING and every model replica is RUNNING and started after `since` (the old
    ones are stopped), per the dashboard's Serve details (what KubeRay reads)."""
    r = httpx.get(f"{head.dashboard_url}/api/serve/applications/", timeout=10)
    app = r.json()["applications"]["sentiray"]
    replicas = app["deployments"]["SentimentModel"]["replicas"]
    return (
        app["status"] == "RUNNING"
        and bool(replicas)
        and all(rep["state"] == "RUNNING" and rep["start_time_s"] >= since for rep in replicas)
    )
