"""The Open Inference Protocol (v2, as KServe and Triton speak it) over REST: shapes and parsing, no Ray.

One input, a BYTES tensor of texts of shape [N] or [N, 1] (its data flat or nested, as the protocol
allows); two outputs: `label` (BYTES [N], the top label) and `scores` (FP32 [N, num_labels], row-major,
in label-id order, after `function_to_apply`). The input may have any name, as KServe's Hugging Face
server reads the first input whatever its name; the metadata calls it `text`. What is wrong with a
tensor is an `InvalidTensorError` (400) that names the tensor and the problem.

Inputs may also come in Triton's binary tensor extension (tritonclient's and perf_analyzer's default):
the JSON header is the body's first `Inference-Header-Content-Length` bytes, and the texts follow as
raw BYTES elements (each a 4-byte little-endian length, then that many UTF-8 bytes), the input's
`binary_data_size` long. Outputs always come back as JSON, which those clients read as well when they
asked for `binary_data_output`.
"""

from __future__ import annotations

import math
import struct
import uuid
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from serve.errors import InvalidTensorError
from serve.schemas import FunctionToApply

INPUT_NAME = "text"
LABEL_OUTPUT = "label"
SCORES_OUTPUT = "scores"
OUTPUTS = (LABEL_OUTPUT, SCORES_OUTPUT)
BYTES = "BYTES"
FP32 = "FP32"
BINARY_HEADER = "inference-header-content-length"
# Triton's name for the binary tensor extension (inputs only here; see the module docstring).
EXTENSIONS = ("binary_tensor_data",)

_FUNCTIONS: tuple[str, ...] = get_args(FunctionToApply)


class _Loose(BaseModel):
    # Fields the protocol defines are typed strictly; others (a client's extensions) are ignored.
    model_config = ConfigDict(extra="ignore")


class RequestInput(_Loose):
    name: StrictStr
    shape: list[StrictInt]
    datatype: StrictStr
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class RequestOutput(_Loose):
    name: StrictStr
    parameters: dict[str, Any] | None = None


class InferenceRequest(_Loose):
    """`$inference_request` of the protocol's REST spec."""

    id: StrictStr | None = None
    parameters: dict[str, Any] | None = Field(
        default=None,
        description="`function_to_apply`: softmax, sigmoid or none (default: the model's, see /info)",
    )
    inputs: list[RequestInput] = Field(default=..., description="One BYTES tensor of texts, shape [N] or [N, 1]")
    outputs: list[RequestOutput] | None = Field(default=None, description="label and/or scores (default: both)")


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ResponseOutput(MetadataTensor):
    data: list[Any]


class InferenceResponse(BaseModel):
    model_name: str
    id: str
    outputs: list[ResponseOutput]


class ModelMetadata(BaseModel):
    """`$metadata_model_response`, with the model's labels (in label-id order) added."""

    name: str
    versions: list[str] = Field(default_factory=list, description="Empty: one version is served, unnamed")
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    labels: list[str]
    multi_label: bool
    function_to_apply: str


@dataclass(frozen=True)
class Infer:
    """What an inference request asks for, checked."""

    texts: list[Any]
    request_id: str | None
    function_to_apply: str | None
    outputs: tuple[str, ...]


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _message(err: ValidationError) -> str:
    return "; ".join(f"{_field_path(tuple(e['loc']))}: {e['msg']}" for e in err.errors()[:5])


def _flatten(data: list[Any], where: str) -> list[Any]:
    """The elements of a tensor's data, flat or nested (the protocol allows both; row-major)."""
    flat: list[Any] = []
    for i, item in enumerate(data):
        if isinstance(item, list):
            for j, inner in enumerate(item):
                if isinstance(inner, list):
                    raise InvalidTensorError(f"{where}.data[{i}][{j}]: nested deeper than a [N, 1] tensor")
                flat.append(inner)
        else:
            flat.append(item)
    return flat


def split_binary_body(body: bytes, header_length: str) -> tuple[bytes, bytes]:
    """The JSON header and the binary tensor data of a body sent with Inference-Header-Content-Length."""
    if not header_length.isdigit() or not 0 < int(header_length) <= len(body):
        raise InvalidTensorError(
            f"Inference-Header-Content-Length: {header_length!r} is not a length within the {len(body)}-byte body"
        )
    n = int(header_length)
    return body[:n], body[n:]


def _decode_bytes_elements(binary: bytes, where: str) -> list[str]:
    """BYTES elements in Triton's binary form: a 4-byte little-endian length, then the bytes, repeated."""
    texts: list[str] = []
    at = 0
    while at < len(binary):
        if at + 4 > len(binary):
            raise InvalidTensorError(f"{where}: binary data ends inside an element's 4-byte length")
        (size,) = struct.unpack_from("<I", binary, at)
        at += 4
        if at + size > len(binary):
            raise InvalidTensorError(f"{where}: binary element {len(texts)} runs past the end of the data")
        try:
            texts.append(binary[at : at + size].decode("utf-8"))
        except UnicodeDecodeError as e:
            raise InvalidTensorError(f"{where}: binary element {len(texts)} is not UTF-8 (byte {e.start})") from None
        at += size
    return texts


def _binary_texts(tensor: RequestInput, binary: bytes, where: str) -> list[str]:
    size = (tensor.parameters or {}).get("binary_data_size")
    if isinstance(size, bool) or not isinstance(size, int) or size != len(binary):
        raise InvalidTensorError(
            f"{where}: parameters.binary_data_size {size!r} does not match the {len(binary)} bytes after the header"
        )
    if tensor.data is not None:
        raise InvalidTensorError(f"{where}: give the texts either in `data` or as binary data, not both")
    return _decode_bytes_elements(binary, where)


def parse_infer_request(raw: dict[str, Any], binary: bytes | None = None) -> Infer:
    """The texts and options of an inference request; InvalidTensorError (400) naming what is wrong.

    binary: what followed the JSON header of a body in the binary tensor extension (None: JSON only).
    """
    try:
        req = InferenceRequest.model_validate(raw)
    except ValidationError as e:
        raise InvalidTensorError(_message(e)) from None
    if not req.inputs:
        raise InvalidTensorError(f"inputs: empty; send one {BYTES} tensor of texts, e.g. named {INPUT_NAME!r}")
    if len(req.inputs) > 1:
        names = [t.name for t in req.inputs]
        raise InvalidTensorError(f"inputs: this model takes one {BYTES} tensor of texts, got {len(names)}: {names}")
    tensor = req.inputs[0]
    where = f"inputs[0] ({tensor.name!r})"
    if tensor.datatype != BYTES:
        raise InvalidTensorError(f"{where}: datatype {tensor.datatype!r}; this model takes {BYTES} (texts)")
    shape = tensor.shape
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or any(d < 0 for d in shape):
        raise InvalidTensorError(f"{where}: shape {shape}; expected [N] or [N, 1] (N texts)")
    declares_binary = "binary_data_size" in (tensor.parameters or {})
    if binary is not None or declares_binary:
        if binary is None:
            raise InvalidTensorError(
                f"{where}: parameters.binary_data_size is set but the request has no Inference-Header-Content-Length"
            )
        texts: list[Any] = _binary_texts(tensor, binary, where)
    elif tensor.data is None:
        raise InvalidTensorError(f"{where}: no data")
    else:
        texts = _flatten(tensor.data, where)
    if len(texts) != math.prod(shape):
        raise InvalidTensorError(f"{where}: shape {shape} holds {math.prod(shape)} elements but data has {len(texts)}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidTensorError(f"{where}.data[{i}]: expected a string ({BYTES}), got {type(text).__name__}")

    params = req.parameters or {}
    fn = params.get("function_to_apply")
    if fn is not None and fn not in _FUNCTIONS:
        raise InvalidTensorError(f"parameters.function_to_apply: {fn!r} is not one of {', '.join(_FUNCTIONS)}")
    if "top_k" in params:
        raise InvalidTensorError(
            f"parameters.top_k: not on this route: {SCORES_OUTPUT!r} holds every label's score (use /predict)"
        )
    outputs = tuple(o.name for o in req.outputs) if req.outputs else OUTPUTS
    for i, name in enumerate(outputs):
        if name not in OUTPUTS:
            raise InvalidTensorError(f"outputs[{i}]: no output {name!r}; this model has {list(OUTPUTS)}")
    return Infer(texts=texts, request_id=req.id, function_to_apply=fn, outputs=outputs)


def infer_response(
    model_name: str, infer: Infer, names: tuple[str, ...] | list[str], scores: list[list[float]]
) -> dict[str, Any]:
    """`$inference_response`: the requested outputs, the request's id echoed (a new one when it gave none)."""
    n, k = len(scores), len(names)
    tensors = {
        LABEL_OUTPUT: ResponseOutput(
            name=LABEL_OUTPUT,
            datatype=BYTES,
            shape=[n],
            data=[names[max(range(k), key=row.__getitem__)] for row in scores],
        ),
        SCORES_OUTPUT: ResponseOutput(
            name=SCORES_OUTPUT, datatype=FP32, shape=[n, k], data=[s for row in scores for s in row]
        ),
    }
    return InferenceResponse(
        model_name=model_name,
        id=infer.request_id if infer.request_id is not None else uuid.uuid4().hex,
        outputs=[tensors[name] for name in infer.outputs],
    ).model_dump()


def model_metadata(model_name: str, info: dict[str, Any]) -> dict[str, Any]:
    """`$metadata_model_response` from the model replica's /info."""
    labels = [info["labels"][k] for k in sorted(info["labels"], key=int)]
    return ModelMetadata(
        name=model_name,
        platform=f"sentiray-{info['runtime']}",
        inputs=[MetadataTensor(name=INPUT_NAME, datatype=BYTES, shape=[-1])],
        outputs=[
            MetadataTensor(name=LABEL_OUTPUT, datatype=BYTES, shape=[-1]),
            MetadataTensor(name=SCORES_OUTPUT, datatype=FP32, shape=[-1, len(labels)]),
        ],
        labels=labels,
        multi_label=bool(info.get("multi_label", False)),
        function_to_apply=str(info.get("function_to_apply", "softmax")),
    ).model_dump()
