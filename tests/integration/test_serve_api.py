"""Smoke (temporary)."""
from __future__ import annotations

import httpx
import pytest

from serve.app import build_app
from serve.schemas import AppArgs
from tests.integration.conftest import wait_healthy


@pytest.mark.timeout(300)
def test_smoke(serve_instance, tiny_artifact):
    from ray import serve
    serve.run(build_app(AppArgs(model=str(tiny_artifact), max_batch_size=8)), name="sentiray", route_prefix="/")
    wait_healthy(serve_instance.base_url)
    r = httpx.post(serve_instance.base_url + "/predict", json={"inputs": "a wonderful superb film"})
    print(r.status_code, r.text)
    r = httpx.post(serve_instance.base_url + "/predict", json={"inputs": "\ud800"})
    print(r.status_code, r.text)
    r = httpx.post(serve_instance.base_url + "/predict", json={"inputs": ["x " * 500], "truncate": False})
    print(r.status_code, r.text)
    import time; time.sleep(3)
    print([l for l in serve_instance.scrape().splitlines() if "sentiray" in l][:20])
