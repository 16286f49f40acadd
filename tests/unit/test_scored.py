"""The scored table's schema and per-row errors (sentiray.scored), and the error fields they are read from:
InputError's index and reason, the client's error with the endpoint's own words."""

from __future__ import annotations

import pickle

import httpx
import pytest

from sentiray.client import EndpointError, PredictClient
from sentiray.errors import ConfigError, InputError
from sentiray.labels import BINARY, LabelSet
from sentiray.scored import BINARY_SCHEMA, MISSING_TEXT, ScoredColumns, ScoredSchema, row_problem
from sentiray.text import validate_texts

THREE = LabelSet.of(["negative", "neutral", "positive"])


def test_binary_columns_are_those_of_before_label_sets() -> None:
    assert BINARY_SCHEMA.labels == BINARY
    assert BINARY_SCHEMA.columns == ("label", "score", "score_negative", "score_positive", "error")


def test_one_score_column_per_label_in_id_order() -> None:
    schema = ScoredSchema(THREE)
    assert schema.columns == ("label", "score", "score_negative", "score_neutral", "score_positive", "error")
    assert schema.clashes(["text", "score_neutral", "error"]) == ["score_neutral", "error"]


def test_labels_that_would_share_a_column_are_refused() -> None:
    with pytest.raises(ConfigError, match="labels 'Good' and 'good' would share the column 'score_good'"):
        ScoredSchema(LabelSet.of(["Good", "good", "bad"]))


def test_rows_are_filled_from_probabilities_or_an_endpoints_ranking() -> None:
    cols = ScoredColumns(ScoredSchema(THREE), 4)
    cols.set_scores(0, [0.2, 0.7, 0.1])
    cols.set_ranked(1, [{"label": "positive", "score": 0.6}, {"label": "negative", "score": 0.3}])  # top_k=2
    cols.set_error(2, "empty or whitespace-only text")
    out = cols.columns()
    assert list(out) == list(ScoredSchema(THREE).columns)
    assert out["label"] == ["neutral", "positive", None, None]
    assert out["score"] == [0.7, 0.6, None, None]
    assert out["score_neutral"] == [0.7, None, None, None]  # left out by the ranking: null, not 0
    assert out["error"] == [None, None, "empty or whitespace-only text", None]
    assert cols.bad_rows == 1
    with pytest.raises(ValueError, match=r"labels \['POSITIVE'\] are not the model's"):
        cols.set_ranked(3, [{"label": "POSITIVE", "score": 1.0}])
    with pytest.raises(ValueError, match="2 scores for 3 labels"):
        cols.set_scores(3, [0.5, 0.5])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, MISSING_TEXT),
        (float("nan"), MISSING_TEXT),
        ("  ", "empty or whitespace-only text"),
        (3, "expected a string, got int"),
        ("bad \ud800 text", "not valid Unicode (lone surrogate at position 4)"),
        ("fine", None),
    ],
)
def test_row_problem_is_the_reason_alone(value: object, reason: str | None) -> None:
    assert row_problem(value) == reason


def test_input_error_carries_index_and_reason_and_keeps_the_api_message() -> None:
    with pytest.raises(InputError) as err:
        validate_texts(["ok", "   "])
    assert (err.value.index, err.value.reason) == (1, "empty or whitespace-only text")
    assert str(err.value) == "inputs[1]: empty or whitespace-only text"
    with pytest.raises(InputError) as err:
        validate_texts([])
    assert err.value.index is None
    assert str(err.value) == err.value.reason == "inputs: empty list; send at least one text"
    # Raised in Ray workers and Serve replicas: its fields survive pickling.
    back = pickle.loads(pickle.dumps(InputError("too long", 7)))
    assert (back.index, back.reason, str(back)) == (7, "too long", "inputs[7]: too long")


def _client(status: int, body: object, retries: int = 0) -> PredictClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    return PredictClient("http://127.0.0.1:9", transport=httpx.MockTransport(handler), retries=retries,
                         sleep=lambda _: None)  # fmt: skip


def test_the_clients_error_carries_the_endpoints_own_words() -> None:
    body = {"error": "inputs[0]: empty or whitespace-only text", "error_type": "invalid_input"}
    with pytest.raises(EndpointError) as err:
        _client(422, body).predict(["x"])
    assert str(err.value) == "HTTP 422: inputs[0]: empty or whitespace-only text"
    assert (err.value.status, err.value.detail, err.value.error_type) == (422, body["error"], "invalid_input")
    assert (err.value.index, err.value.reason) == (None, None)  # an endpoint that names no row
    body = {**body, "index": 0, "reason": "empty or whitespace-only text"}
    with pytest.raises(EndpointError) as err:
        _client(422, body).predict(["x"])
    assert (err.value.index, err.value.reason) == (0, "empty or whitespace-only text")
    with pytest.raises(EndpointError) as err:  # fields of the wrong type are not believed
        _client(422, {**body, "index": True, "reason": 3}).predict(["x"])
    assert (err.value.index, err.value.reason) == (None, None)
    with pytest.raises(EndpointError) as err:
        _client(503, {"error": "model loading"}, retries=1).predict(["x"])
    assert str(err.value) == "HTTP 503 after 2 attempts: model loading"
    assert (err.value.detail, err.value.error_type) == ("model loading", None)
    with pytest.raises(EndpointError) as err:
        _client(422, {"detail": [{"loc": ["body", "inputs"], "msg": "Field required"}]}).predict(["x"])
    assert "Field required" in err.value.detail
