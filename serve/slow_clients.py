"""A deadline on the request head for Serve's HTTP servers (its proxies, or ingress replicas that listen
themselves): a client that trickles its request line and headers is answered 408 and cut off.

uvicorn has no header timeout: its keep-alive timer is cancelled by the first byte a client sends, so a
client sending a header byte every few seconds holds the connection for ever, and Serve exposes only
`keep_alive_timeout_s`. Serve calls the function named by `RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH` in
each proxy (and direct-ingress replica) before it starts its uvicorn server; `install` points uvicorn's
`http="auto"` protocol at a subclass that arms a timer when a connection opens and when the first byte of
each later request arrives, and disarms it once the request head is parsed. The body has its own bound:
the ingress's `body_timeout_s` (408 once it runs out).

`sentiray serve` sets the variable for its local Ray; a RayService sets it on the Ray containers:

    RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=serve.slow_clients:install
    SENTIRAY_HEADER_TIMEOUT_S=10      # optional; the default
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

__all__ = [
    "CALLBACK_ENV",
    "CALLBACK_PATH",
    "DEFAULT_HEADER_TIMEOUT_S",
    "HEADER_TIMEOUT_ENV",
    "header_timeout_s",
    "install",
]

CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK_PATH = "serve.slow_clients:install"
HEADER_TIMEOUT_ENV = "SENTIRAY_HEADER_TIMEOUT_S"
# A browser or HTTP client sends its whole head in one packet; ten seconds covers a slow mobile link
# (nginx's client_header_timeout is 60 s, Apache's RequestReadTimeout 20-40 s).
DEFAULT_HEADER_TIMEOUT_S = 10.0

log = logging.getLogger("ray.serve")

_BODY = json.dumps({"error": "request headers not received in time", "error_type": "header_timeout"}).encode()
_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


def header_timeout_s() -> float:
    """The deadline from SENTIRAY_HEADER_TIMEOUT_S (default 10 s); a bad value fails the server's start."""
    raw = os.environ.get(HEADER_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_HEADER_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise ValueError(f"{HEADER_TIMEOUT_ENV}: {raw!r} is not a number of seconds in (0, 3600]")
    return value


class _HeadDeadline:
    """Mixin for a uvicorn HTTP/1.1 protocol: a request head not parsed within the deadline gets 408."""

    _head_timeout_s = DEFAULT_HEADER_TIMEOUT_S
    _head_timer: asyncio.TimerHandle | None = None

    # Attributes of the uvicorn protocol this is mixed into.
    cycle: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def _awaiting_head(self) -> bool:
        # No request yet on this connection, or the last one answered: the next bytes are a new head.
        return self.cycle is None or bool(self.cycle.response_complete)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._head_timeout_s, self._head_expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._awaiting_head() and not self.transport.is_closing():
            self.transport.write(_RESPONSE)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head():
            self._arm()  # a no-op while the timer of this head runs: trickling does not reset it
        super().data_received(data)  # type: ignore[misc]
        if not self._awaiting_head():
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]


def _protocol_classes(timeout_s: float) -> dict[str, type]:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    classes: dict[str, type] = {
        "h11": type("HeadDeadlineH11Protocol", (_HeadDeadline, H11Protocol), {"_head_timeout_s": timeout_s})
    }
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools not installed: uvicorn's "auto" is h11
        classes["auto"] = classes["h11"]
        return classes
    classes["httptools"] = type(
        "HeadDeadlineHttpToolsProtocol", (_HeadDeadline, HttpToolsProtocol), {"_head_timeout_s": timeout_s}
    )
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    classes["auto"] = classes["httptools"] if AutoHTTPProtocol is HttpToolsProtocol else classes["h11"]
    return classes


_installed: dict[str, type] = {}


def install() -> list[Any]:
    """Serve's proxy callback: make uvicorn's protocols enforce the head deadline in this process.

    Returns no middlewares (Serve expects a list)."""
    if not _installed:
        import uvicorn.config

        timeout_s = header_timeout_s()
        _installed.update(_protocol_classes(timeout_s))
        for name, cls in _installed.items():
            # uvicorn resolves `http=` through this table with import_from_string; a class is accepted too.
            globals()[cls.__name__] = cls
            uvicorn.config.HTTP_PROTOCOLS[name] = f"{__name__}:{cls.__name__}"
        log.info("sentiray: HTTP request heads must arrive within %g s (%s)", timeout_s, HEADER_TIMEOUT_ENV)
    return []
