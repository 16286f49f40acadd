"""Typed builder arguments and the HTTP request/response shapes of the sentiray endpoint (no Ray)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

from sentiray.numerics import Precision, Runtime, runtime_conflict


class Device(StrEnum):
    """Where a model replica runs."""

    AUTO = "auto"  # cuda when the replica was given a GPU, else cpu
    CPU = "cpu"
    CUDA = "cuda"


SERVE_PRECISIONS = (Precision.AUTO, Precision.FP32, Precision.BF16)


class AppArgs(BaseModel):
    """Arguments of `serve.app:app_builder` (the `args:` of a Serve config, or `key=value` of `serve run`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(..., min_length=1, description="Artifact: a local folder, an s3:// URI or a Hub id")
    model_name: str = Field(
        default="sentiray",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Name served at /v1/models/{name}:predict and reported by /info",
    )
    device: Device = Field(default=Device.AUTO, description="Device of the model replicas")
    dtype: Precision = Field(
        default=Precision.AUTO, description="auto (bf16 where the hardware runs it fast), fp32 or bf16"
    )
    runtime: Runtime = Field(
        default=Runtime.AUTO,
        description="Forward-pass engine: auto (onnx-int8 on CPUs without fast bf16, else torch), torch, onnx "
        "(fp32) or onnx-int8 (CPU)",
    )
    max_batch_size: int = Field(
        default=32, ge=1, le=1024, description="Texts per batch of requests and per forward pass"
    )
    max_batch_tokens: int = Field(
        default=8192,
        ge=64,
        le=1_048_576,
        description="Padded tokens (texts x the longest) per batch of requests and per forward pass; a "
        "request alone always runs (as TEI's --max-batch-tokens)",
    )
    batch_wait_timeout_s: float = Field(
        default=0.01, ge=0.0, le=5.0, description="How long a batch waits to fill"
    )
    max_inputs: int = Field(default=32, ge=1, le=4096, description="Texts per request; more is answered 413")
    max_body_bytes: int = Field(
        default=2_000_000,
        ge=1024,
        le=256_000_000,
        description="Request body limit in bytes; more is answered 413",
    )
    max_json_depth: int = Field(
        default=32, ge=3, le=512, description="JSON nesting limit; deeper is answered 400"
    )
    body_timeout_s: float = Field(
        default=15.0,
        gt=0,
        le=600,
        description="The whole request body must arrive within this many seconds; slower is answered 408",
    )
    torch_threads: int | None = Field(
        default=None, ge=1, le=512, description="Intra-op threads per model replica (default: its num_cpus)"
    )
    api_token_env: str | None = Field(
        default=None,
        min_length=1,
        description="Env var holding the bearer token the API requires (default: none)",
    )
    api_token_file: str | None = Field(
        default=None,
        min_length=1,
        description="File holding the bearer token the API requires (default: none)",
    )
    # Autoscaling of the model deployment. Unset fields keep the deployment's defaults; a Serve config's
    # `deployments:` section overrides all of these.
    min_replicas: int | None = Field(default=None, ge=1, description="Fewest model replicas")
    max_replicas: int | None = Field(default=None, ge=1, description="Most model replicas")
    target_ongoing_requests: float | None = Field(
        default=None, gt=0, description="Ongoing requests per replica"
    )
    upscale_delay_s: float | None = Field(
        default=None, ge=0, description="Load must last this long to add replicas"
    )
    downscale_delay_s: float | None = Field(
        default=None, ge=0, description="Idle this long before removing replicas"
    )

    @model_validator(mode="after")
    def _check(self) -> AppArgs:
        if self.dtype not in SERVE_PRECISIONS:
            allowed = ", ".join(p.value for p in SERVE_PRECISIONS)
            raise ValueError(f"dtype: {self.dtype.value!r} is not served; allowed: {allowed}")
        problem = runtime_conflict(self.runtime, self.dtype, None if self.device == Device.AUTO else self.device.value)
        if problem:
            raise ValueError(problem)
        if self.min_replicas and self.max_replicas and self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is larger than max_replicas ({self.max_replicas})"
            )
        if self.api_token_env and self.api_token_file:
            raise ValueError("api_token_env and api_token_file: set at most one")
        return self

    def autoscaling_overrides(self) -> dict[str, Any]:
        """The autoscaling fields that were set, as Serve's autoscaling_config keys."""
        keys = (
            "min_replicas",
            "max_replicas",
            "target_ongoing_requests",
            "upscale_delay_s",
            "downscale_delay_s",
        )
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


# --- HTTP shapes ----------------------------------------------------------------------------------------


class _Strict(BaseModel):
    # Strict: `"true"` is not a bool and `1` is not a string; the client hears about it (422).
    model_config = ConfigDict(strict=True)


# sentiray.predictor.ScoreFunction's values, spelled out: a strict pydantic model takes a JSON string for a
# Literal but not for an Enum, and the schema stays Ray- and torch-free.
FunctionToApply = Literal["softmax", "sigmoid", "none"]


class PredictRequest(_Strict):
    """Hugging Face text-embeddings-inference `/predict` shape."""

    inputs: StrictStr | list[StrictStr] | list[list[StrictStr]] = Field(
        default=...,
        description="A text, a batch of texts, or TEI's batch form: a list of one-element lists",
        examples=["a wonderful film", ["a wonderful film", "a dull film"]],
    )
    raw_scores: StrictBool = Field(default=False, description="Return logits instead of probabilities")
    truncate: StrictBool = Field(
        default=True, description="Cut texts longer than the model's max_length (else they are refused, 422)"
    )
    top_k: StrictInt | None = Field(
        default=None,
        ge=1,
        description="How many labels to return per text, highest score first (default: all of them); more "
        "than the model has returns all, as Hugging Face's text-classification pipeline does",
    )
    function_to_apply: FunctionToApply | None = Field(
        default=None,
        description="softmax, sigmoid or none (logits), as Hugging Face's text-classification pipeline; "
        "default: sigmoid for a multi-label model or a single-logit head, softmax otherwise",
    )

    @model_validator(mode="after")
    def _raw_scores_agree(self) -> PredictRequest:
        if self.raw_scores and self.function_to_apply not in (None, "none"):
            raise ValueError(
                f"raw_scores: true asks for logits, which contradicts function_to_apply {self.function_to_apply!r}"
            )
        return self

    def texts(self) -> tuple[list[str], bool]:
        """The texts and whether the input was a batch."""
        if isinstance(self.inputs, str):
            return [self.inputs], False
        texts: list[str] = []
        for i, item in enumerate(self.inputs):
            if isinstance(item, list):
                if len(item) != 1:
                    raise ValueError(
                        f"inputs[{i}]: a nested input must hold exactly one text, got {len(item)}"
                    )
                texts.append(str(item[0]))
            else:
                texts.append(str(item))
        return texts, True


class KServeRequest(_Strict):
    """KServe v1 `:predict` shape."""

    instances: list[StrictStr] = Field(..., description="Texts to classify", examples=[["a wonderful film"]])


class LabelScore(BaseModel):
    label: str
    score: float


class KServeResponse(BaseModel):
    predictions: list[LabelScore] = Field(..., description="The top label and its score, per instance")


class ErrorBody(BaseModel):
    error: str = Field(..., description="What was wrong with the request")
    error_type: str = Field(..., description="Machine-readable kind of error")
    # invalid_input only (absent otherwise), so a caller can mark the row at fault without parsing `error`.
    index: int | None = Field(None, description="invalid_input: the position of the refused text in `inputs`")
    reason: str | None = Field(None, description="invalid_input: what is wrong with it, without the position")


class ModelInfo(BaseModel):
    model_name: str
    artifact: str = Field(..., description="The model location this replica loaded (the app's `model` arg)")
    labels: dict[int, str] = Field(..., description="The model's classes, id -> name, from its config")
    multi_label: bool = Field(False, description="True: several labels per text (sigmoid per label)")
    function_to_apply: str = Field(
        "softmax", description="What turns logits into scores when a request does not say (softmax or sigmoid)"
    )
    max_length: int
    truncation: str
    base_model: str
    test_metrics: dict[str, Any] | None = Field(
        None, description="Test-split metrics of the runtime serving (see test_metrics_runtime)"
    )
    test_metrics_runtime: str | None = Field(
        None, description="The runtime those metrics were scored with (torch-fp32, torch-bf16, onnx-int8...)"
    )
    test_metrics_exact: bool = Field(
        False, description="True: scored with the runtime serving; false: the fp32 reference stands in for it"
    )
    versions: dict[str, str] = Field(default_factory=dict)
    device: str
    dtype: str = Field(..., description="What the forward pass computes in: float32, bfloat16, float16 or int8")
    runtime: str = Field(..., description="The forward-pass engine: torch, onnx or onnx-int8")
    max_batch_size: int
    max_batch_tokens: int
    max_inputs: int
