"""top_k and function_to_apply from `sentiray predict` and PredictClient to the request body."""

from __future__ import annotations

import json

import httpx
import pytest

from sentiray.cli import build_parser
from sentiray.client import PredictClient

PRED = [{"label": "positive", "score": 0.9}]


def _sent(**kwargs: object) -> list[dict[str, object]]:
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        return httpx.Response(200, json=[PRED] * len(body["inputs"]))

    with PredictClient("http://127.0.0.1:9", transport=httpx.MockTransport(handler)) as client:
        client.predict(["a", "b"], **kwargs)  # type: ignore[arg-type]
    return seen


def test_client_sends_the_parameters_only_when_set() -> None:
    (plain,) = _sent()
    assert "top_k" not in plain and "function_to_apply" not in plain  # an older endpoint still answers
    (asked,) = _sent(top_k=1, function_to_apply="sigmoid")
    assert (asked["top_k"], asked["function_to_apply"]) == (1, "sigmoid")


def test_cli_parses_the_parameters() -> None:
    args = build_parser().parse_args(["predict", "x", "--top-k", "2", "--function-to-apply", "none"])
    assert (args.top_k, args.function_to_apply) == (2, "none")
    args = build_parser().parse_args(["predict", "x"])
    assert (args.top_k, args.function_to_apply) == (None, None)


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["--top-k", "0"], "--top-k: expected a whole number >= 1, got 0"),
        (["--top-k", "two"], "--top-k: expected a whole number >= 1, got 'two'"),
        (["--function-to-apply", "relu"], "--function-to-apply: invalid choice: 'relu'"),
    ],
)
def test_cli_refuses_bad_values(argv: list[str], word: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["predict", "x", *argv])
    assert info.value.code == 2
    assert word in capsys.readouterr().err
