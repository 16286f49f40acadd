"""Request checks as plain functions (no Ray, no FastAPI app): body size, JSON depth, bearer token.

The ingress runs them in this order before anything reaches a model replica; each raises the typed
error (serve/errors.py) that names the problem.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sentiray.errors import SentirayError
from serve.errors import (
    BodyTimeoutError,
    BodyTooLargeError,
    InvalidRequestError,
    InvalidUtf8Error,
    LengthRequiredError,
    MalformedJsonError,
    TooDeepError,
    UnauthorizedError,
)
from serve.schemas import AppArgs

_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def load_token(args: AppArgs) -> bytes | None:
    """The bearer token the API requires, or None when auth is off. A configured but empty token fails."""
    if args.api_token_env:
        token = os.environ.get(args.api_token_env, "").strip()
        source = f"environment variable {args.api_token_env}"
    elif args.api_token_file:
        path = Path(args.api_token_file)
        if not path.is_file():
            raise SentirayError(f"api_token_file: {path} does not exist")
        token = path.read_text().strip()
        source = f"file {path}"
    else:
        return None
    if not token:
        raise SentirayError(f"the bearer token from {source} is empty")
    return token.encode()


def authorize(authorization: str | None, token: bytes | None) -> None:
    """UnauthorizedError unless the Authorization header carries the token (always fine when token is None)."""
    if token is None:
        return
    scheme, _, presented = (authorization or "").partition(" ")
    # compare_digest: the comparison takes as long whatever prefix of the token was guessed right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token):
        raise UnauthorizedError("missing or wrong bearer token")


def check_declared_length(content_length: str | None, limit: int) -> int:
    """The declared body size, refused when absent (chunked) or over limit."""
    if content_length is None:
        # Serve's proxy reads a body into memory as fast as the client sends it, whatever the handler
        # does; only a declared length, checked here, bounds that (a chunked body of 100 MB was held
        # whole by the proxy and the ingress before the size check could see it).
        raise LengthRequiredError("a Content-Length header is required; chunked bodies are refused")
    if not content_length.isdigit() or int(content_length) > limit:
        raise BodyTooLargeError(f"request body of {content_length} bytes exceeds the limit of {limit}")
    return int(content_length)


async def read_body(chunks: AsyncIterator[bytes], limit: int, timeout_s: float) -> bytes:
    """The whole body, refused once it passes limit bytes or takes longer than timeout_s to arrive.

    Our own deadline, not only the proxy's request_timeout_s: a client turns that one off with Serve's
    `x-request-timeout-seconds: 0` header, and a trickled body would then hold the request (and its
    share of max_ongoing_requests) forever.
    """
    parts, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise BodyTooLargeError(f"request body exceeds the limit of {limit} bytes")
                parts.append(chunk)
    except TimeoutError:
        raise BodyTimeoutError(f"request body not received within {timeout_s:g} s") from None
    return b"".join(parts)


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """True when brackets nest deeper than limit (brackets inside strings do not count)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # cannot nest deeper than there are brackets
    depth = 0
    for m in _JSON_TOKENS.finditer(body):
        tok = m.group()
        if tok in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif tok in (b"]", b"}"):
            depth -= 1
    return False


def parse_json_object(body: bytes, max_depth: int, *, required: str) -> dict[str, Any]:
    """The body parsed as a JSON object after UTF-8 and depth checks (depth scanned before parsing)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidUtf8Error(f"request body is not valid UTF-8 (byte {e.start})") from None
    if json_depth_exceeds(body, max_depth):
        raise TooDeepError(f"JSON nests deeper than {max_depth} levels")
    try:
        parsed = json.loads(text)
    # ValueError, not only JSONDecodeError: an integer of more than 4300 digits raises a plain one.
    except (ValueError, RecursionError) as e:
        raise MalformedJsonError(f"malformed JSON: {e}") from None
    if not isinstance(parsed, dict):
        raise InvalidRequestError(
            f"body: expected a JSON object with an {required!r} field, got {type(parsed).__name__}"
        )
    return parsed


def pydantic_message(err: ValidationError) -> str:
    """The first few validation errors as `field: message`, joined."""
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "body"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)
