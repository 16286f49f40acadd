"""The real `sentiray serve` CLI as a subprocess over real HTTP: it deploys from the Serve config (the
packaged one, here with three limits lowered so they are reached quickly), cuts off slow clients, keeps
its Ray token private, and stops cleanly on SIGTERM with requests in flight.

One CLI process for the module, on a free port, with a private HOME and Ray's default token auth. The
tiny artifact serves with `--batch-wait-timeout-s 3`: a lone request waits 3 s for its batch to fill, so
requests stay in flight without a slowed test double, past the config's `request_timeout_s` of 1 s.
Requests that must succeed say so with Serve's own `x-request-timeout-seconds` header.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from sentiray.commands.serve import INGRESS, packaged_config_path
from tests.ray_cluster import free_port

pytestmark = pytest.mark.timeout(600)

REQUEST_TIMEOUT_S = 1
BATCH_WAIT_S = 3.0
HEADER_TIMEOUT_S = 2.0
INGRESS_ONGOING, INGRESS_QUEUED = 2, 1
PATIENT = {"x-request-timeout-seconds": "30"}  # this request may wait out its batch
ONE = {"inputs": "a wonderful superb film"}


@dataclass
class Cli:
    process: subprocess.Popen[bytes]
    base_url: str
    home: Path
    log: Path
    config: dict[str, Any]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _derived_config(folder: Path) -> tuple[Path, dict[str, Any]]:
    """The packaged config with only the request timeout and the ingress's queue bounds lowered."""
    config = yaml.safe_load(packaged_config_path().read_text())
    config["http_options"]["request_timeout_s"] = REQUEST_TIMEOUT_S
    (ingress,) = [d for d in config["applications"][0]["deployments"] if d["name"] == INGRESS]
    ingress["max_ongoing_requests"] = INGRESS_ONGOING
    ingress["max_queued_requests"] = INGRESS_QUEUED
    path = folder / "serve-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config


@pytest.fixture(scope="module")
def cli(tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    folder = tmp_path_factory.mktemp("serve-cli")
    home = folder / "home"
    home.mkdir()
    config_path, config = _derived_config(folder)
    port = free_port()
    env = {**os.environ, "HOME": str(home), "SENTIRAY_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S)}
    env.pop("RAY_AUTH_MODE", None)  # as a user runs it: Ray's default, token auth on
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    log = folder / "cli.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sentiray.cli", "serve", str(tiny_artifact), "--config", str(config_path),
             "--port", str(port), "--num-cpus", "0.5", "--min-replicas", "1", "--max-replicas", "1",
             "--batch-wait-timeout-s", str(BATCH_WAIT_S)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    cli = Cli(process, f"http://127.0.0.1:{port}", home, log, config)
    try:
        deadline = time.monotonic() + 240
        while "sentiray serving" not in cli.output():
            assert process.poll() is None, f"sentiray serve exited {process.returncode}:\n{cli.output()[-3000:]}"
            assert time.monotonic() < deadline, f"sentiray serve did not come up:\n{cli.output()[-3000:]}"
            time.sleep(1)
        yield cli
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        # Ray processes left by a failed test are in the CLI's session.
        for proc in psutil.process_iter():
            try:
                if os.getsid(proc.pid) == process.pid:
                    proc.kill()
            except (psutil.Error, ProcessLookupError, PermissionError):
                continue


def test_the_ray_token_it_writes_is_readable_by_its_owner_only(cli: Cli) -> None:
    token = cli.home / ".ray" / "auth_token"
    assert token.is_file(), sorted(p.name for p in cli.home.rglob("*"))
    assert oct(token.stat().st_mode & 0o777) == oct(0o600)
    assert oct(token.parent.stat().st_mode & 0o077) == oct(0)
    assert len(token.read_text().strip()) == 64  # 256 random bits, hex


def test_a_request_past_the_configured_timeout_is_408(cli: Cli) -> None:
    started = time.monotonic()
    r = httpx.post(f"{cli.base_url}/predict", json=ONE, timeout=30)
    took = time.monotonic() - started
    assert r.status_code == 408, r.text
    assert "timed out" in r.text
    assert REQUEST_TIMEOUT_S <= took < BATCH_WAIT_S, took  # cut by the proxy's timeout, not the batch
    # The model itself answers, given the time its batch needs: the 408 was the timeout's.
    ok = httpx.post(f"{cli.base_url}/predict", json=ONE, headers=PATIENT, timeout=30)
    assert ok.status_code == 200, ok.text
    assert ok.json()[0]["label"] == "POSITIVE"


def test_backpressure_is_503_with_retry_after(cli: Cli) -> None:
    """More requests at once than the ingress takes and queues: the rest are refused at once."""
    n = 8

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as c:
            return await asyncio.gather(*(c.post(f"{cli.base_url}/predict", json=ONE) for _ in range(n)))

    responses = asyncio.run(burst())
    codes = sorted(r.status_code for r in responses)
    assert set(codes) == {408, 503}, [(r.status_code, r.text[:100]) for r in responses]
    refused = [r for r in responses if r.status_code == 503]
    assert len(refused) >= n - INGRESS_ONGOING - INGRESS_QUEUED, codes
    (ingress,) = [d for d in cli.config["applications"][0]["deployments"] if d["name"] == INGRESS]
    for r in refused:
        assert r.headers["retry-after"] == str(ingress["backpressure_config"]["retry_after_s"]), r.headers


def _trickle(base_url: str, give_up_s: float) -> tuple[float, bytes, bool]:
    """Send a request head a byte every 0.2 s; (seconds until the server answered or closed, answer, closed)."""
    port = int(base_url.rsplit(":", 1)[1])
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
    started, answer, closed = time.monotonic(), b"", False
    with socket.create_connection(("127.0.0.1", port), timeout=give_up_s) as sock:
        sock.settimeout(0.2)
        for i in range(len(head)):
            if time.monotonic() - started > give_up_s:
                break
            try:
                sock.sendall(head[i : i + 1])
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            answer += chunk
        sock.settimeout(2)
        try:
            while chunk := sock.recv(4096):
                answer += chunk
            closed = True
        except (TimeoutError, OSError):
            pass
    return time.monotonic() - started, answer, closed


def test_a_client_trickling_its_headers_is_cut_off_while_others_are_served(cli: Cli) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        # 4 heads of ~90 bytes at 5 bytes/s would take 18 s each; the deadline is HEADER_TIMEOUT_S.
        trickles = [pool.submit(_trickle, cli.base_url, 30.0) for _ in range(4)]
        served = []
        with httpx.Client(timeout=30) as c:
            while not all(t.done() for t in trickles):
                served.append(c.get(f"{cli.base_url}/health").status_code)
                time.sleep(0.2)
            served.append(c.post(f"{cli.base_url}/predict", json=ONE, headers=PATIENT).status_code)
    assert len(served) >= 4 and set(served) == {200}, served
    for t in trickles:
        seconds, answer, closed = t.result()
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"header_timeout" in answer
        assert closed
        assert HEADER_TIMEOUT_S <= seconds < HEADER_TIMEOUT_S + 5, seconds


def test_sigterm_finishes_requests_in_flight_then_stops_serve_and_ray(cli: Cli) -> None:
    """Last in the module: it stops the CLI."""
    cli_proc = psutil.Process(cli.process.pid)
    ray_procs = cli_proc.children(recursive=True)
    assert any("raylet" in " ".join(p.cmdline()) for p in ray_procs), [p.name() for p in ray_procs]
    (model,) = [d for d in cli.config["applications"][0]["deployments"] if d["name"] == "SentimentModel"]
    window_s = model["graceful_shutdown_timeout_s"]

    async def in_flight_then_sigterm() -> tuple[list[httpx.Response], float]:
        async with httpx.AsyncClient(timeout=60) as c:
            for _ in range(3):
                calls = [
                    asyncio.create_task(c.post(f"{cli.base_url}/predict", json=ONE, headers=PATIENT))
                    for _ in range(INGRESS_ONGOING)
                ]
                await asyncio.sleep(1.0)  # admitted, waiting for their batch (BATCH_WAIT_S)
                if not any(t.done() for t in calls):
                    break
                # Answered already: an earlier test's request still held an ingress slot (503), or a
                # loaded machine stalled this loop past the batch wait. Let them drain and try again.
                await asyncio.gather(*calls)
                await asyncio.sleep(BATCH_WAIT_S)
            else:
                pytest.fail("no attempt had its requests still in flight after 1 s")
            cli.process.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            return list(await asyncio.gather(*calls)), sent

    responses, sigterm_at = asyncio.run(in_flight_then_sigterm())
    rc = cli.process.wait(timeout=window_s + 60)
    stopped_s = time.monotonic() - sigterm_at
    print(f"\nSIGTERM to exit: {stopped_s:.1f} s; in flight: {[r.status_code for r in responses]}")
    assert [r.status_code for r in responses] == [200] * INGRESS_ONGOING, [r.text for r in responses]
    assert rc == 0, cli.output()[-3000:]
    assert "stopped" in cli.output()
    # Serve's replicas drain within graceful_shutdown_timeout_s; Ray's own teardown adds a few seconds.
    assert stopped_s < window_s + 10, stopped_s
    time.sleep(2)
    left = [p for p in ray_procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], [(p.pid, " ".join(p.cmdline())[:80]) for p in left]
