"""sentiray.client against an in-process mock transport: what is retried and what is not."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from sentiray.client import EndpointError, PredictClient

PRED = [{"label": "POSITIVE", "score": 0.9}, {"label": "NEGATIVE", "score": 0.1}]


def _client(
    handler: Callable[[httpx.Request], httpx.Response], **kw: object
) -> tuple[PredictClient, list[float]]:
    sleeps: list[float] = []
    client = PredictClient(
        "http://127.0.0.1:9",
        transport=httpx.MockTransport(handler),
        sleep=sleeps.append,
        **kw,  # type: ignore[arg-type]
    )
    return client, sleeps


def _ok(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    return httpx.Response(200, json=[PRED] * len(body["inputs"]))


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried(status: int) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, json={"error": "busy"}) if len(calls) < 3 else _ok(request)

    client, sleeps = _client(handler)
    assert client.predict(["a"]) == [PRED]
    assert len(calls) == 3
    assert len(sleeps) == 2


def test_retry_after_is_honoured_and_capped() -> None:
    answers = iter(
        [
            httpx.Response(503, headers={"Retry-After": "2"}, json={"error": "overloaded"}),
            httpx.Response(503, headers={"Retry-After": "3600"}, json={"error": "overloaded"}),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or _ok(request)

    client, sleeps = _client(handler, max_backoff_s=5)
    client.predict(["a"])
    assert sleeps == [2.0, 5.0]


@pytest.mark.parametrize("status", [400, 401, 404, 413, 422])
def test_client_errors_are_not_retried(status: int) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, json={"error": "inputs[0]: empty", "error_type": "invalid_input"})

    client, sleeps = _client(handler)
    with pytest.raises(EndpointError, match="inputs\\[0\\]: empty") as info:
        client.predict(["a"])
    assert info.value.status == status
    assert len(calls) == 1
    assert sleeps == []


def test_connection_resets_are_retried_then_give_up() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadError("connection reset by peer", request=request)

    client, sleeps = _client(handler, retries=3, backoff_s=0.1)
    with pytest.raises(EndpointError, match="ReadError"):
        client.predict(["a"])
    assert len(calls) == 4
    assert all(0 <= s <= 0.1 * 2**i for i, s in enumerate(sleeps))


def test_texts_are_sent_in_chunks_with_the_token() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers.get("authorization"), json.loads(request.content)))
        return _ok(request)

    client, _ = _client(handler, batch_size=2, token="t0k")
    out = client.predict(["a", "b", "c"], raw_scores=True, truncate=False)
    assert len(out) == 3
    assert [len(body["inputs"]) for _, body in seen] == [2, 1]
    assert all(auth == "Bearer t0k" for auth, _ in seen)
    assert all(body["raw_scores"] is True and body["truncate"] is False for _, body in seen)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="retries"):
        PredictClient("http://127.0.0.1:9", retries=-1)
    with pytest.raises(ValueError, match="batch_size"):
        PredictClient("http://127.0.0.1:9", batch_size=0)


def test_retried_requests_and_attempts_are_counted() -> None:
    failures = {"a": 2, "b": 0, "c": 1}  # failed attempts before each text's request succeeds

    def handler(request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["inputs"][0]
        if failures[text]:
            failures[text] -= 1
            if text == "c":
                raise httpx.ConnectError("connection refused", request=request)
            return httpx.Response(503, json={"error": "busy"})
        return _ok(request)

    client, _ = _client(handler, batch_size=1)
    assert len(client.predict(["a", "b", "c"])) == 3
    assert client.retried_requests == 2
    assert client.retried_attempts == 3
