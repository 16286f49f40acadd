"""Open Inference Protocol (v2) requests parsed without Ray: what a KServe/Triton client sends is taken,
a malformed tensor is an InvalidTensorError (400) that names the problem."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from serve.errors import InvalidTensorError, status_of
from serve.oip import OUTPUTS, infer_response, model_metadata, parse_infer_request, split_binary_body


def _tensor(**overrides: Any) -> dict[str, Any]:
    return {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a good film", "a bad film"], **overrides}


def test_triton_client_request_is_taken() -> None:
    """The exact JSON tritonclient.http builds for a BYTES input sent as JSON (binary_data=False)."""
    import json

    from tritonclient.http import InferInput, InferRequestedOutput
    from tritonclient.http._utils import _get_inference_request

    inp = InferInput("text", [2, 1], "BYTES")
    inp.set_data_from_numpy(np.array([["a good film"], ["a bad film"]], dtype=object), binary_data=False)
    body, _ = _get_inference_request(
        inputs=[inp],
        request_id="42",
        outputs=[InferRequestedOutput("scores", binary_data=False)],
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        custom_parameters={"function_to_apply": "sigmoid"},
    )
    infer = parse_infer_request(json.loads(body))
    assert infer.texts == ["a good film", "a bad film"]
    assert (infer.request_id, infer.function_to_apply, infer.outputs) == ("42", "sigmoid", ("scores",))


@pytest.mark.parametrize(
    "tensor",
    [
        _tensor(),
        _tensor(shape=[2, 1]),
        _tensor(shape=[2, 1], data=[["a good film"], ["a bad film"]]),
        _tensor(name="input-0"),
    ],
    ids=["flat", "n-by-1", "nested", "kserve-name"],
)
def test_shapes_and_names_taken(tensor: dict[str, Any]) -> None:
    infer = parse_infer_request({"inputs": [tensor]})
    assert infer.texts == ["a good film", "a bad film"]
    assert infer.outputs == OUTPUTS
    assert infer.request_id is None


MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("missing-inputs", {}, "inputs"),
    ("no-inputs", {"inputs": []}, "inputs: empty"),
    ("two-inputs", {"inputs": [_tensor(), _tensor(name="other")]}, "one BYTES tensor"),
    ("wrong-datatype", {"inputs": [_tensor(datatype="FP32")]}, "datatype 'FP32'"),
    ("shape-mismatch", {"inputs": [_tensor(shape=[3])]}, "holds 3 elements but data has 2"),
    ("shape-rank", {"inputs": [_tensor(shape=[1, 2])]}, "expected [N] or [N, 1]"),
    ("negative-dim", {"inputs": [_tensor(shape=[-1])]}, "expected [N] or [N, 1]"),
    ("shape-not-ints", {"inputs": [_tensor(shape=["2"])]}, "inputs[0].shape[0]"),
    ("no-data", {"inputs": [_tensor(data=None)]}, "no data"),
    ("not-strings", {"inputs": [_tensor(data=[1, 2])]}, "data[0]: expected a string"),
    ("too-nested", {"inputs": [_tensor(data=[[["a"]], ["b"]])]}, "nested deeper"),
    ("no-datatype", {"inputs": [{"name": "text", "shape": [1], "data": ["x"]}]}, "inputs[0].datatype"),
    ("binary", {"inputs": [_tensor(parameters={"binary_data_size": 30})]}, "binary"),
    ("bad-function", {"inputs": [_tensor()], "parameters": {"function_to_apply": "relu"}}, "function_to_apply"),
    ("top-k", {"inputs": [_tensor()], "parameters": {"top_k": 1}}, "top_k"),
    ("unknown-output", {"inputs": [_tensor()], "outputs": [{"name": "logits"}]}, "no output 'logits'"),
    ("id-not-string", {"inputs": [_tensor()], "id": 7}, "id"),
]


@pytest.mark.parametrize(("body", "word"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_tensors_are_400_naming_the_problem(body: dict[str, Any], word: str) -> None:
    with pytest.raises(InvalidTensorError) as info:
        parse_infer_request(body)
    assert word in info.value.message
    assert status_of(info.value).code == 400


def test_response_tensors_and_id() -> None:
    infer = parse_infer_request({"id": "r1", "inputs": [_tensor()]})
    out = infer_response("tri", infer, ("neg", "neu", "pos"), [[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    assert out["model_name"] == "tri" and out["id"] == "r1"
    label, scores = out["outputs"]
    assert label == {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["pos", "neg"]}
    assert scores == {"name": "scores", "datatype": "FP32", "shape": [2, 3], "data": [0.1, 0.2, 0.7, 0.5, 0.3, 0.2]}
    fresh = infer_response("tri", parse_infer_request({"inputs": [_tensor()]}), ("a", "b"), [[0, 1], [1, 0]])
    assert fresh["id"]  # the protocol's response always has one


def test_metadata_lists_labels_in_id_order() -> None:
    info = {
        "labels": {"2": "pos", "0": "neg", "1": "neu"},
        "runtime": "torch",
        "multi_label": False,
        "function_to_apply": "softmax",
    }
    meta = model_metadata("tri", info)
    assert meta["labels"] == ["neg", "neu", "pos"]
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"][1] == {"name": "scores", "datatype": "FP32", "shape": [-1, 3]}


def _triton_binary_body(texts: list[str]) -> tuple[bytes, str]:
    """What tritonclient.http sends by default: a JSON header, then the texts as binary BYTES elements."""
    from tritonclient.http import InferInput
    from tritonclient.http._utils import _get_inference_request

    inp = InferInput("text", [len(texts)], "BYTES")
    inp.set_data_from_numpy(np.array(texts, dtype=object))  # binary_data=True, the client's default
    body, json_size = _get_inference_request(
        inputs=[inp],
        request_id="",
        outputs=None,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        custom_parameters=None,
    )
    assert json_size is not None
    return body, str(json_size)


def test_triton_binary_tensors_are_taken() -> None:
    import json

    texts = ["a good film", "ünïcödé ✓ 映画", "a bad film"]
    body, header_length = _triton_binary_body(texts)
    head, binary = split_binary_body(body, header_length)
    assert parse_infer_request(json.loads(head), binary).texts == texts


def _binary_case(texts: list[str], mutate: Any) -> tuple[dict[str, Any], bytes]:
    import json

    body, header_length = _triton_binary_body(texts)
    head, binary = split_binary_body(body, header_length)
    raw = json.loads(head)
    return mutate(raw, binary)


def _with_size(raw: dict[str, Any], size: int) -> dict[str, Any]:
    raw["inputs"][0]["parameters"]["binary_data_size"] = size
    return raw


BINARY_MALFORMED: list[tuple[str, Any, str]] = [
    ("size-mismatch", lambda raw, b: (_with_size(raw, len(b) + 1), b), "binary_data_size"),
    ("cut-length", lambda raw, b: (_with_size(raw, len(b) + 2), b + b"\x01\x00"), "4-byte length"),
    ("cut-element", lambda raw, b: (_with_size(raw, len(b) + 5), b + b"\x09\x00\x00\x00x"), "past the end"),
    ("not-utf8", lambda raw, b: (_with_size(raw, len(b) + 6), b + b"\x02\x00\x00\x00\xc3\x28"), "UTF-8"),
    ("shape-mismatch", lambda raw, b: ({**raw, "inputs": [{**raw["inputs"][0], "shape": [3]}]}, b), "holds 3"),
    ("data-and-binary", lambda raw, b: ({**raw, "inputs": [{**raw["inputs"][0], "data": ["x"]}]}, b), "not both"),
]


@pytest.mark.parametrize(("mutate", "word"), [m[1:] for m in BINARY_MALFORMED], ids=[m[0] for m in BINARY_MALFORMED])
def test_malformed_binary_tensors_are_400(mutate: Any, word: str) -> None:
    raw, binary = _binary_case(["one", "two"], mutate)
    with pytest.raises(InvalidTensorError) as info:
        parse_infer_request(raw, binary)
    assert word in info.value.message


@pytest.mark.parametrize("header", ["abc", "0", "-1", "100000"])
def test_bad_header_length_is_400(header: str) -> None:
    with pytest.raises(InvalidTensorError, match="Inference-Header-Content-Length"):
        split_binary_body(b'{"inputs": []}', header)
