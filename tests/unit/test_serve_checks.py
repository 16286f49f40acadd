"""The ingress's request checks and error table as plain functions, without Ray running."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sentiray.errors import InputError, SentirayError
from serve.checks import (
    authorize,
    check_declared_length,
    json_depth_exceeds,
    load_token,
    parse_json_object,
    read_body,
)
from serve.errors import (
    _TABLE,
    BodyTimeoutError,
    BodyTooLargeError,
    InvalidInputError,
    InvalidRequestError,
    InvalidUtf8Error,
    LengthRequiredError,
    MalformedJsonError,
    NotReadyError,
    RequestError,
    TooDeepError,
    UnauthorizedError,
    from_model_call,
    status_of,
    to_response,
)
from serve.ingress import probe_model
from serve.schemas import AppArgs

TOKEN = b"s3cret"


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer wrong", "Basic s3cret", "s3cret", "Bearer s3cre", "Bearer s3cret2"],
)
def test_authorize_refuses_a_missing_or_wrong_token(header: str | None) -> None:
    with pytest.raises(UnauthorizedError):
        authorize(header, TOKEN)


@pytest.mark.parametrize("header", ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret "])
def test_authorize_accepts_the_token(header: str) -> None:
    authorize(header, TOKEN)


def test_authorize_is_open_without_a_token() -> None:
    authorize(None, None)


def test_load_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_token(AppArgs(model="m")) is None
    monkeypatch.setenv("SENTIRAY_TEST_TOKEN", " abc \n")
    assert load_token(AppArgs(model="m", api_token_env="SENTIRAY_TEST_TOKEN")) == b"abc"
    monkeypatch.setenv("SENTIRAY_TEST_TOKEN", "  ")
    with pytest.raises(SentirayError, match="empty"):
        load_token(AppArgs(model="m", api_token_env="SENTIRAY_TEST_TOKEN"))
    with pytest.raises(SentirayError, match="does not exist"):
        load_token(AppArgs(model="m", api_token_file=str(tmp_path / "missing")))
    (tmp_path / "token").write_text("xyz\n")
    assert load_token(AppArgs(model="m", api_token_file=str(tmp_path / "token"))) == b"xyz"


@pytest.mark.parametrize(
    ("declared", "error"),
    [
        (None, LengthRequiredError),
        ("1001", BodyTooLargeError),
        ("-1", BodyTooLargeError),
        ("1e3", BodyTooLargeError),
        ("", BodyTooLargeError),
    ],
)
def test_declared_length_is_required_and_bounded(declared: str | None, error: type[RequestError]) -> None:
    with pytest.raises(error):
        check_declared_length(declared, 1000)


def test_declared_length_within_the_limit() -> None:
    assert check_declared_length("1000", 1000) == 1000


async def _chunks(parts: list[bytes], pause_s: float = 0.0) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(pause_s)
        yield part


def test_read_body_joins_the_chunks() -> None:
    assert asyncio.run(read_body(_chunks([b"ab", b"cd"]), 4, 5.0)) == b"abcd"


def test_read_body_stops_past_the_limit() -> None:
    with pytest.raises(BodyTooLargeError, match="limit of 4"):
        asyncio.run(read_body(_chunks([b"ab", b"cd", b"e"]), 4, 5.0))


def test_read_body_stops_a_trickle_at_the_deadline() -> None:
    with pytest.raises(BodyTimeoutError, match="0.2 s"):
        asyncio.run(read_body(_chunks([b"a"] * 100, pause_s=0.05), 1000, 0.2))


@pytest.mark.parametrize(
    ("body", "deep"),
    [
        (b'{"inputs": ' + b"[" * 40 + b"]" * 40 + b"}", True),
        (b'{"inputs": "' + b"[" * 40 + b'"}', False),  # brackets inside a string do not nest
        (b'{"inputs": "\\"' + b"[" * 40 + b'"}', False),  # nor after an escaped quote
        (b"[" * 32 + b"]" * 32, False),
        (b"[" * 33 + b"]" * 33, True),
    ],
)
def test_json_depth(body: bytes, deep: bool) -> None:
    assert json_depth_exceeds(body, 32) is deep


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"inputs": "caf\xc3\x28"}', InvalidUtf8Error),
        (b"[" * 40 + b"]" * 40, TooDeepError),
        (b'{"inputs": ', MalformedJsonError),
        (b'{"n": ' + b"1" * 5000 + b"}", MalformedJsonError),  # int of more than 4300 digits: a plain ValueError
        (b'"a string"', InvalidRequestError),
    ],
)
def test_parse_json_object_refuses(body: bytes, error: type[RequestError]) -> None:
    with pytest.raises(error):
        parse_json_object(body, 32, required="inputs")


def test_parse_json_object() -> None:
    assert parse_json_object(b'{"inputs": ["a"]}', 32, required="inputs") == {"inputs": ["a"]}


def test_every_request_error_has_one_status() -> None:
    errors = _all_subclasses(RequestError)
    assert errors == set(_TABLE)
    assert all(400 <= status.code < 600 for status in _TABLE.values())
    assert {(s.code, s.error_type) for s in _TABLE.values()} >= {(401, "unauthorized"), (503, "not_ready")}


def _all_subclasses(cls: type) -> set[type]:
    return {sub for direct in cls.__subclasses__() for sub in {direct} | _all_subclasses(direct)}


def test_to_response_carries_status_body_and_headers() -> None:
    r = to_response(UnauthorizedError("missing or wrong bearer token"))
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.body == b'{"error":"missing or wrong bearer token","error_type":"unauthorized"}'
    assert to_response(NotReadyError("x")).headers["retry-after"] == "1"
    assert status_of(BodyTooLargeError("x")).headers == {"Connection": "close"}


def test_a_refused_text_is_named_by_index_and_reason_in_the_body() -> None:
    r = to_response(InvalidInputError(InputError("empty or whitespace-only text", 2)))
    assert r.status_code == 422
    assert json.loads(r.body) == {
        "error": "inputs[2]: empty or whitespace-only text", "error_type": "invalid_input", "index": 2,
        "reason": "empty or whitespace-only text",
    }  # fmt: skip
    # A problem with the list itself names no text.
    whole = json.loads(to_response(InvalidInputError(InputError("inputs: empty list; send at least one text"))).body)
    assert "index" not in whole and whole["reason"] == whole["error"]


def test_an_input_error_from_a_model_replica_keeps_its_index_and_reason() -> None:
    """Ray re-raises a replica's InputError as a RayTaskError that is also an InputError, with the
    original as `cause` (ray.exceptions.RayTaskError.as_instanceof_cause); its fields must survive."""
    from ray.exceptions import RayTaskError

    raised = RayTaskError("predict", "Traceback ...", InputError("too long", 1)).as_instanceof_cause()
    assert isinstance(raised, InputError)
    mapped = from_model_call(raised)
    assert isinstance(mapped, InvalidInputError)
    assert (mapped.message, mapped.index, mapped.reason) == ("inputs[1]: too long", 1, "too long")


def test_failed_model_probe_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """issue 16: a failed health probe of the model was turned into 503 without a log line."""

    async def broken() -> dict[str, str]:
        raise RuntimeError("replica gone")

    async def silent() -> dict[str, str]:
        await asyncio.sleep(10)
        return {}

    with caplog.at_level(logging.WARNING, logger="ray.serve"):
        with pytest.raises(NotReadyError):
            asyncio.run(probe_model(broken, 1.0))
        with pytest.raises(NotReadyError):
            asyncio.run(probe_model(silent, 0.05))
    messages = [r.getMessage() for r in caplog.records if r.name == "ray.serve"]
    assert any("RuntimeError: replica gone" in m for m in messages), messages
    assert any("no answer within 0.05 s" in m for m in messages), messages


def test_model_probe_answers() -> None:
    async def ok() -> dict[str, str]:
        return {"model_name": "m"}

    assert asyncio.run(probe_model(ok, 1.0)) == {"model_name": "m"}
