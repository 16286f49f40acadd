"""serve/slow_clients.py on a real uvicorn server over loopback (no Ray): a request head trickled past the
deadline gets 408 and the connection closes, while normal requests on other connections are answered."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from serve import slow_clients
from tests.ray_cluster import free_port

TIMEOUT_S = 1.0


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(params=["auto", "h11"])
def server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """uvicorn configured as Serve configures it (http "auto", the keep-alive timeout), after `install`."""
    import uvicorn
    import uvicorn.config

    monkeypatch.setenv(slow_clients.HEADER_TIMEOUT_ENV, str(TIMEOUT_S))
    monkeypatch.setattr(slow_clients, "_installed", {})
    monkeypatch.setattr(uvicorn.config, "HTTP_PROTOCOLS", dict(uvicorn.config.HTTP_PROTOCOLS))
    assert slow_clients.install() == []  # no middlewares
    port = free_port()
    config = uvicorn.Config(_app, host="127.0.0.1", port=port, http=request.param, lifespan="off",
                            timeout_keep_alive=30, log_level="warning")  # fmt: skip
    srv = uvicorn.Server(config)
    srv.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=lambda: asyncio.run(srv.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield port
    srv.should_exit = True
    thread.join(timeout=10)


def _trickle(port: int, head: bytes, pause_s: float) -> tuple[float, bytes]:
    started, answer = time.monotonic(), b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.settimeout(pause_s)
        for i in range(len(head)):
            try:
                sock.sendall(head[i : i + 1])
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            answer += chunk
            if not chunk:
                break
    return time.monotonic() - started, answer


HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\n\r\n"


def test_a_trickled_head_is_cut_off_at_the_deadline_others_are_served(server: int) -> None:
    result: list[tuple[float, bytes]] = []
    slow = threading.Thread(target=lambda: result.append(_trickle(server, HEAD, 0.2)))  # would take ~9 s
    slow.start()
    served = []
    with httpx.Client(timeout=5) as c:
        while slow.is_alive():
            served.append(c.get(f"http://127.0.0.1:{server}/").status_code)
            time.sleep(0.1)
    slow.join()
    ((seconds, answer),) = result
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"error_type": "header_timeout"' in answer
    assert TIMEOUT_S <= seconds < TIMEOUT_S + 2
    assert len(served) >= 5 and set(served) == {200}


def test_a_silent_connection_is_closed_at_the_deadline(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        started = time.monotonic()
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < TIMEOUT_S + 2


def test_a_kept_alive_connection_idles_under_the_keep_alive_timeout_not_the_head_deadline(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
        for _ in range(2):
            sock.sendall(HEAD)
            answer = b""
            while not answer.endswith(b"0\r\n\r\n"):  # the whole chunked answer
                chunk = sock.recv(4096)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            time.sleep(TIMEOUT_S * 2)  # idle past the head deadline: the same connection still serves


@pytest.mark.parametrize("raw", ["soon", "0", "-1", "99999"])
def test_a_bad_deadline_is_refused_with_the_variable_named(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(slow_clients.HEADER_TIMEOUT_ENV, raw)
    with pytest.raises(ValueError, match=slow_clients.HEADER_TIMEOUT_ENV):
        slow_clients.header_timeout_s()
