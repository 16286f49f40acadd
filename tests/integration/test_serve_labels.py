"""A three-label artifact over real local Ray Serve and real HTTP: labels from the model, top_k and
function_to_apply on /predict, and the Open Inference Protocol (v2) routes as a Triton client calls them.

One application for the module (model replicas are slow to start on a 2-core machine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from sentiray.numerics import Precision, Runtime
from serve.app import build_app
from serve.schemas import AppArgs
from tests.integration.conftest import ServeInstance, wait_healthy
from tests.label_models import THREE, write_labelled_artifact

pytestmark = pytest.mark.timeout(300)

NAME = "tri"
TEXTS = ["a wonderful superb film", "awful boring dull movie", "the plot and the actor"]
TOKEN = "tri-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
JSON = {"content-type": "application/json", **AUTH}


@pytest.fixture(scope="module")
def artifact(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_labelled_artifact(tmp_path_factory.mktemp("three-labels") / "artifact", tiny_model_dir, THREE)


@pytest.fixture(scope="module")
def api(serve_instance: ServeInstance, artifact: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """PyTorch fp32 (exact parity with the core predictor), behind a bearer token."""
    from ray import serve

    token_file = tmp_path_factory.mktemp("token") / "token"
    token_file.write_text(TOKEN)
    args = AppArgs(
        model=artifact, model_name=NAME, runtime=Runtime.TORCH, dtype=Precision.FP32, api_token_file=str(token_file)
    )
    app = build_app(args, model_options={"name": "SentimentModelTri", "ray_actor_options": {"num_cpus": 1}})
    serve.run(app, name="three-labels", route_prefix="/tri")
    base = f"{serve_instance.base_url}/tri"
    wait_healthy(base)
    return base


def _predict(api: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{api}/predict", json={"inputs": TEXTS, **body}, headers=AUTH, timeout=30)


def _healthy_after(api: str) -> None:
    assert httpx.get(f"{api}/health", timeout=10).status_code == 200
    assert _predict(api).status_code == 200


def _core(artifact: str, **kwargs: Any) -> list[list[dict[str, Any]]]:
    from sentiray.predictor import Predictor

    predictor = Predictor.from_artifact(artifact, device="cpu", precision="fp32", runtime="torch")
    return predictor.predict(TEXTS, **kwargs)


def _close(a: list[list[dict[str, Any]]], b: list[list[dict[str, Any]]]) -> None:
    for x, y in zip(a, b, strict=True):
        assert [p["label"] for p in x] == [p["label"] for p in y]
        np.testing.assert_allclose([p["score"] for p in x], [p["score"] for p in y], atol=1e-5)


def test_info_reports_the_models_labels(api: str) -> None:
    info = httpx.get(f"{api}/info", headers=AUTH).json()
    assert info["labels"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert (info["multi_label"], info["function_to_apply"]) == (False, "softmax")


@pytest.mark.parametrize("function_to_apply", [None, "softmax", "sigmoid", "none"])
@pytest.mark.parametrize("top_k", [None, 1, 2, 7])
def test_predict_top_k_and_function(api: str, artifact: str, top_k: int | None, function_to_apply: str | None) -> None:
    body = {k: v for k, v in (("top_k", top_k), ("function_to_apply", function_to_apply)) if v is not None}
    r = _predict(api, **body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert [len(row) for row in got] == [min(top_k or 3, 3)] * len(TEXTS)  # above 3: all, as HF's pipeline
    _close(got, _core(artifact, **body))
    if function_to_apply in (None, "softmax") and top_k in (None, 7):
        assert all(abs(sum(p["score"] for p in row) - 1) < 1e-5 for row in got)


def test_one_text_with_top_1(api: str) -> None:
    r = httpx.post(f"{api}/predict", json={"inputs": TEXTS[0], "top_k": 1}, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    (only,) = r.json()
    assert only["label"] in THREE.names


BAD_PARAMETERS: list[tuple[str, dict[str, Any], str]] = [
    ("top-k-zero", {"top_k": 0}, "top_k"),
    ("top-k-negative", {"top_k": -2}, "top_k"),
    ("top-k-string", {"top_k": "2"}, "top_k"),
    ("top-k-float", {"top_k": 1.5}, "top_k"),
    ("top-k-bool", {"top_k": True}, "top_k"),
    ("function-unknown", {"function_to_apply": "relu"}, "function_to_apply"),
    ("function-case", {"function_to_apply": "Softmax"}, "function_to_apply"),
    ("function-not-string", {"function_to_apply": 1}, "function_to_apply"),
    ("raw-scores-conflict", {"raw_scores": True, "function_to_apply": "softmax"}, "raw_scores"),
]


@pytest.mark.parametrize(("body", "field"), [b[1:] for b in BAD_PARAMETERS], ids=[b[0] for b in BAD_PARAMETERS])
def test_bad_parameters_are_422_naming_the_field(api: str, body: dict[str, Any], field: str) -> None:
    r = _predict(api, **body)
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]
    _healthy_after(api)


# --- Open Inference Protocol (v2) ------------------------------------------------------------------------


def _triton(api: str) -> Any:
    import tritonclient.http as triton

    return triton.InferenceServerClient(url=api.removeprefix("http://"))


def test_v2_health_and_metadata_with_a_triton_client(api: str) -> None:
    client = _triton(api)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(NAME)
    assert not client.is_model_ready("other")
    meta = client.get_model_metadata(NAME, headers=dict(AUTH))
    assert meta["name"] == NAME
    assert meta["labels"] == list(THREE.names)
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"]: o["shape"] for o in meta["outputs"]} == {"label": [-1], "scores": [-1, 3]}
    assert httpx.get(f"{api}/v2/models/{NAME}", timeout=10).status_code == 401
    assert httpx.get(f"{api}/v2/models/other", headers=AUTH, timeout=10).status_code == 404
    server = httpx.get(f"{api}/v2", timeout=10).json()
    assert (server["name"], server["extensions"]) == ("sentiray", ["binary_tensor_data"])


@pytest.mark.parametrize("shape", [[3], [3, 1]])
@pytest.mark.parametrize("function_to_apply", [None, "sigmoid", "none"])
def test_v2_infer_with_a_triton_client(
    api: str, artifact: str, shape: list[int], function_to_apply: str | None
) -> None:
    """What tritonclient.http sends (JSON tensors) and reads back; scores agree with /predict's."""
    import tritonclient.http as triton

    inp = triton.InferInput("text", shape, "BYTES")
    inp.set_data_from_numpy(np.array(TEXTS, dtype=object).reshape(shape), binary_data=False)
    params = {"function_to_apply": function_to_apply} if function_to_apply else None
    result = _triton(api).infer(NAME, [inp], request_id="req-1", headers=dict(AUTH), parameters=params)
    response = result.get_response()
    assert (response["model_name"], response["id"]) == (NAME, "req-1")
    scores = result.as_numpy("scores")
    labels = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label")]
    assert scores.shape == (3, 3) and scores.dtype == np.float32
    expected = _core(artifact, **({"function_to_apply": function_to_apply} if function_to_apply else {}))
    for row, label, ranked in zip(scores, labels, expected, strict=True):
        assert label == ranked[0]["label"]
        by_name = {p["label"]: p["score"] for p in ranked}
        np.testing.assert_allclose(row, [by_name[n] for n in THREE.names], atol=1e-5)


def test_v2_binary_tensors_as_tritonclient_sends_by_default(api: str, artifact: str) -> None:
    """tritonclient's defaults: texts in the binary tensor extension, outputs asked for as binary (answered
    as JSON, which it reads as well). The client adds a header to the dict it is given: pass a copy."""
    import tritonclient.http as triton

    inp = triton.InferInput("text", [3], "BYTES")
    inp.set_data_from_numpy(np.array(TEXTS, dtype=object))
    result = _triton(api).infer(NAME, [inp], headers=dict(AUTH))
    expected = _core(artifact)
    labels = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label")]
    assert labels == [ranked[0]["label"] for ranked in expected]
    assert result.as_numpy("scores").shape == (3, 3)


def _v2(**overrides: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": TEXTS[:2], **overrides}]}


# (id, body, status, a word the error must contain)
V2_MISTAKES: list[tuple[str, Any, int, str]] = [
    ("wrong-datatype", _v2(datatype="INT64", data=[1, 2]), 400, "datatype"),
    ("shape-mismatch", _v2(shape=[5]), 400, "shape"),
    ("shape-rank", _v2(shape=[1, 2]), 400, "shape"),
    ("missing-input", {"inputs": []}, 400, "inputs"),
    ("no-inputs-key", {"id": "x"}, 400, "inputs"),
    ("not-strings", _v2(data=[1, 2]), 400, "string"),
    ("bad-function", {**_v2(), "parameters": {"function_to_apply": "relu"}}, 400, "function_to_apply"),
    ("unknown-output", {**_v2(), "outputs": [{"name": "logits"}]}, 400, "logits"),
    ("empty-text", _v2(data=["fine", " "]), 422, "empty"),
    ("too-many", _v2(shape=[33], data=["a film"] * 33), 413, "limit"),
    ("not-json", b'{"inputs": ', 422, "JSON"),
    ("binary-size-mismatch", {**_v2(data=None, parameters={"binary_data_size": 4})}, 400, "binary_data_size"),
]


@pytest.mark.parametrize(("body", "status", "word"), [m[1:] for m in V2_MISTAKES], ids=[m[0] for m in V2_MISTAKES])
def test_v2_mistakes_are_4xx_and_leave_the_replica_healthy(api: str, body: Any, status: int, word: str) -> None:
    url = f"{api}/v2/models/{NAME}/infer"
    if isinstance(body, bytes):
        r = httpx.post(url, content=body, headers=JSON, timeout=30)
    else:
        r = httpx.post(url, json=body, headers=AUTH, timeout=30)
    assert r.status_code == status, r.text
    assert word in r.json()["error"]
    _healthy_after(api)


def test_v2_malformed_binary_body_is_400(api: str) -> None:
    """A binary-extension body cut short: 400 naming the problem, the replica healthy after."""
    head = b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 9}}]}'
    body = head + b"\x09\x00\x00\x00abcde"  # 9 bytes, as declared, but the element claims 9 of its own
    headers = {**JSON, "inference-header-content-length": str(len(head))}
    r = httpx.post(f"{api}/v2/models/{NAME}/infer", content=body, headers=headers, timeout=30)
    assert r.status_code == 400, r.text
    assert "past the end" in r.json()["error"]
    bad_header = {**JSON, "inference-header-content-length": "99999"}
    r = httpx.post(f"{api}/v2/models/{NAME}/infer", content=body, headers=bad_header, timeout=30)
    assert r.status_code == 400, r.text
    _healthy_after(api)


def test_v2_unknown_model_and_auth(api: str) -> None:
    assert httpx.post(f"{api}/v2/models/other/infer", json=_v2(), headers=AUTH, timeout=30).status_code == 404
    assert httpx.post(f"{api}/v2/models/{NAME}/infer", json=_v2(), timeout=30).status_code == 401
    assert httpx.post(f"{api}/v2/models/{NAME}/infer", json=_v2(), headers=AUTH, timeout=30).status_code == 200


def test_cli_predict_with_parameters(
    api: str, artifact: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sentiray predict --top-k --function-to-apply` against the endpoint; a 422 is a non-zero exit."""
    from sentiray.cli import main

    monkeypatch.setenv("TRI_TOKEN", TOKEN)
    base = ["predict", *TEXTS, "--url", api, "--token-env", "TRI_TOKEN", "--retries", "0"]
    assert main([*base, "--top-k", "2", "--function-to-apply", "sigmoid"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = _core(artifact, top_k=2, function_to_apply="sigmoid")
    assert [line["text"] for line in lines] == TEXTS
    _close([line["scores"] for line in lines], expected)
    assert main([*base, "--raw-scores", "--function-to-apply", "softmax"]) != 0
    assert "raw_scores" in capsys.readouterr().err
