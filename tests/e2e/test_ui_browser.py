"""The whole UI path in a real browser: Ray Serve endpoint (tiny artifact, bearer token from a file, as the
chart mounts it) -> `sentiray ui` -> headless Chromium (Debian's package, driven by Playwright).

Chromium is a hard requirement: .ci/run installs it, and this test fails (never skips) without it. The
screenshots are kept under test-artifacts/ at the repository root.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.integration.conftest import (  # noqa: F401 - serve_instance is a fixture used by name
    ServeInstance,
    free_port,
    serve_instance,
    wait_healthy,
)

CHROMIUM = Path(os.environ.get("SENTIRAY_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
POSITIVE = "a wonderful superb film"
NEGATIVE = "awful boring dull movie"
TOKEN = "browser-test-token"

pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture(scope="module")
def endpoint(serve_instance: ServeInstance, tiny_artifact: Path, token_file: Path) -> str:  # noqa: F811
    from ray import serve

    from serve.app import build_app
    from serve.schemas import AppArgs

    args = AppArgs(model=str(tiny_artifact), max_batch_size=8, api_token_file=str(token_file))
    serve.run(build_app(args, model_options={"ray_actor_options": {"num_cpus": 1}}), name="sentiray", route_prefix="/")
    wait_healthy(serve_instance.base_url)
    return serve_instance.base_url


@pytest.fixture(scope="module")
def ui_url(endpoint: str, token_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`sentiray ui` in its own process group, as the chart runs it (token from a mounted file)."""
    port = free_port()
    home = tmp_path_factory.mktemp("ui-home")
    env = {
        **os.environ,
        "HOME": str(home),
        "SENTIRAY_API_TOKEN_FILE": str(token_file),
    }
    env.pop("SENTIRAY_API_TOKEN", None)
    log = (home / "ui.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sentiray.cli", "ui", "--endpoint", endpoint, "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"sentiray ui exited {proc.returncode}: {(home / 'ui.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"sentiray ui did not answer in 120s: {(home / 'ui.log').read_text()[-3000:]}")
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def test_page_shows_the_right_label_in_chromium(ui_url: str) -> None:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does: apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            # A ?text= link classifies on arrival.
            page.goto(f"{ui_url}/?text={quote(POSITIVE)}", wait_until="domcontentloaded")
            main = page.get_by_test_id("stMain")
            expect(main.get_by_role("heading", name="POSITIVE")).to_be_visible(timeout=60_000)
            expect(main.get_by_text("Confidence")).to_be_visible()
            _wait_idle(page)
            # The sidebar shows the served model's /info (the token from the file was accepted).
            expect(page.get_by_test_id("stSidebar").get_by_text("fine-tuned from")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "ui-browser-positive.png"), full_page=True)

            review = page.get_by_role("textbox", name="Review", exact=True)
            review.fill(NEGATIVE)
            review.press("Control+Enter")
            page.get_by_role("button", name="Classify").click()
            expect(main.get_by_role("heading", name="NEGATIVE")).to_be_visible(timeout=60_000)
            _wait_idle(page)
            expect(main.get_by_text("The review has changed since")).to_have_count(0)
            page.screenshot(path=str(ARTIFACTS / "ui-browser-negative.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "ui-browser-positive.png").stat().st_size > 10_000


def _wait_idle(page: Any) -> None:
    """Until the script run is over: Streamlit keeps the previous run's elements on screen until then."""
    from playwright.sync_api import expect

    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)
