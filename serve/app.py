"""The Ray Serve application: a FastAPI ingress in front of batching, autoscaling model replicas.

`serve run serve.app:app model=PATH` or `serve deploy serve/config.yaml`. The ingress validates and
limits requests (body size, JSON depth, input count, types) before anything reaches a model replica;
model replicas tokenize per request (so one bad request cannot fail a batch) and run batched forward
passes through the core predictor.
"""

# No `from __future__ import annotations` here: Serve reads the builder's parameter annotation as a
# class to validate `args` into AppArgs.

import asyncio
import hmac
import json
import logging
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle
from ray.serve.metrics import Counter, Histogram

from sentiray.errors import InputError, SentirayError
from sentiray.text import validate_texts
from serve.schemas import (
    AppArgs,
    ErrorBody,
    KServeRequest,
    KServeResponse,
    LabelScore,
    ModelInfo,
    PredictRequest,
)

log = logging.getLogger("ray.serve")

__all__ = ["METRIC_NAMES", "AppArgs", "SentimentIngress", "SentimentModel", "app", "app_builder", "build_app"]

RETRY_AFTER_S = 1
# Extra replicas a rolling update may start before it stops old ones (rounded up: at least one).
MAX_SURGE_PERCENT = 25

# Fault injection, off unless set (never set by helm/ or k8s/): while the file this variable names
# exists, model replicas fail their health check, so Serve replaces them. `{pid}` in the path becomes
# the replica's process id, to fail one replica. For drills and the reliability tests
# (docs/reliability.md); e.g. `kubectl exec <worker> -- touch <file>`.
FAULT_UNHEALTHY_FILE_ENV = "SENTIRAY_FAULT_UNHEALTHY_FILE"

# Exported on Ray's Prometheus endpoint with a `ray_` prefix (e.g. ray_sentiray_batch_size_bucket).
METRIC_NAMES = {
    "predictions": "sentiray_predictions",
    "batch_size": "sentiray_batch_size",
    "batch_tokens": "sentiray_batch_tokens",
    "batch_padded_tokens": "sentiray_batch_padded_tokens",
    "model_seconds": "sentiray_model_seconds",
    "requests_per_batch": "sentiray_requests_per_batch",
    "requests_cancelled": "sentiray_requests_cancelled",
}

_SIZE_BUCKETS = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]
_TOKEN_BUCKETS = [64.0, 256.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0, 131072.0]
_SECONDS_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]


@dataclass
class _Pending:
    """One request's token ids on their way through the batch queue; `started` once a batch took it."""

    ids: list[list[int]]
    started: bool = False


@dataclass(frozen=True)
class InputProblem:
    """A request the model cannot take (too long with truncate=false...); the ingress answers 422."""

    message: str


# --- model replicas -------------------------------------------------------------------------------------


def _resolve_location(location: str) -> str:
    """A local folder or URI as is; anything else shaped like `org/name` is fetched from the Hub."""
    if "://" in location or Path(location).exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", location):
        return location
    from huggingface_hub import snapshot_download  # only for Hub ids

    return snapshot_download(location)


def _replica_threads(requested: int | None) -> int:
    """Intra-op threads: as asked, else the CPUs Ray gave this replica (at least one)."""
    if requested:
        return requested
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return max(1, math.floor(cpus))


@serve.deployment(
    name="SentimentModel",
    max_ongoing_requests=64,
    max_queued_requests=256,
    health_check_period_s=10,
    health_check_timeout_s=30,
    graceful_shutdown_wait_loop_s=2,
    graceful_shutdown_timeout_s=20,
    # Serve's default (0) stops old replicas before starting their replacements: with one replica a
    # redeploy leaves none while the new one loads, and requests wait out request_timeout_s (408).
    # A surge starts the replacement first, then drains the old replica.
    max_surge_percent=MAX_SURGE_PERCENT,
    ray_actor_options={"num_cpus": 1},
)
class SentimentModel:
    """One model replica: loads the artifact once, then tokenizes per request and predicts in batches."""

    def __init__(self, args: AppArgs) -> None:
        import torch

        from sentiray.predictor import Predictor

        self._threads = _replica_threads(args.torch_threads)
        torch.set_num_threads(self._threads)
        # Raising here (ArtifactError, ModelLoadError) fails the replica; `serve status` shows the message.
        self._predictor = Predictor.from_artifact(
            _resolve_location(args.model),
            device=args.device.value,
            precision=args.dtype,
            max_batch_size=args.max_batch_size,
            runtime=args.runtime,
        )
        manifest = self._predictor.manifest
        assert manifest is not None
        self._info = ModelInfo(
            model_name=args.model_name,
            artifact=args.model,
            labels=manifest.labels,
            max_length=manifest.max_length,
            truncation=manifest.truncation.value,
            base_model=manifest.base_model,
            test_metrics=manifest.test_metrics,
            versions=manifest.versions,
            device=str(self._predictor.device),
            dtype=self._predictor.numerics,
            runtime=self._predictor.runtime.value,
            max_batch_size=args.max_batch_size,
            max_inputs=args.max_inputs,
        ).model_dump(mode="json")
        self._broken: str | None = None
        self._fault_file = os.environ.get(FAULT_UNHEALTHY_FILE_ENV, "").replace("{pid}", str(os.getpid())) or None
        # One thread runs forward passes, so the event loop stays free to queue the next batch.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentiray-forward")
        self._infer.set_max_batch_size(args.max_batch_size)  # type: ignore[attr-defined]
        self._infer.set_batch_wait_timeout_s(args.batch_wait_timeout_s)  # type: ignore[attr-defined]

        self._m_predictions = Counter(
            METRIC_NAMES["predictions"], description="Predictions, by top label", tag_keys=("label",)
        )
        self._m_batch_size = Histogram(
            METRIC_NAMES["batch_size"], description="Texts per forward pass", boundaries=_SIZE_BUCKETS
        )
        self._m_tokens = Histogram(
            METRIC_NAMES["batch_tokens"],
            description="Real (unpadded) tokens per forward pass",
            boundaries=_TOKEN_BUCKETS,
        )
        self._m_padded = Histogram(
            METRIC_NAMES["batch_padded_tokens"],
            description="Tokens per forward pass, padding included",
            boundaries=_TOKEN_BUCKETS,
        )
        self._m_seconds = Histogram(
            METRIC_NAMES["model_seconds"], description="Seconds per forward pass", boundaries=_SECONDS_BUCKETS
        )
        self._m_requests = Histogram(
            METRIC_NAMES["requests_per_batch"],
            description="Requests served by one batch",
            boundaries=_SIZE_BUCKETS,
        )
        self._m_cancelled = Counter(
            METRIC_NAMES["requests_cancelled"],
            description="Requests cancelled (timeout or client gone): stage=queued never computed, "
            "stage=running computed and dropped",
            tag_keys=("stage",),
        )
        log.info(
            "sentiray model %s loaded on %s, %s in %s, with %d threads",
            args.model,
            self._info["device"],
            self._info["runtime"],
            self._info["dtype"],
            self._threads,
        )

    def info(self) -> dict[str, Any]:
        """What /info reports; answering at all also means the replica is ready."""
        return self._info

    async def predict(
        self, texts: list[str], truncate: bool, raw_scores: bool
    ) -> "list[list[dict[str, Any]]] | InputProblem":
        """Per text, labels and scores sorted by score; InputProblem for unusable input, before batching."""
        from sentiray.predictor import scores_to_predictions

        try:
            encoded = self._predictor.encode(texts, truncate=truncate)
        except InputError as e:
            # Returned, not raised: a client's mistake is not the replica's error (no traceback logged).
            return InputProblem(str(e))
        # Past `request_timeout_s` Serve's proxy answers 408 and cancels the request down the call chain
        # (as it does when a client disconnects). @serve.batch leaves cancelled requests out when it forms
        # a batch, so a queued request is never computed; a batch already running finishes and the
        # cancelled caller's rows are dropped. Serve does the skipping; we only count it. Our own deadline
        # would repeat the proxy's timeout in a second setting and race with its cancellation.
        pending = _Pending(encoded)
        try:
            logits = await self._infer(pending)
        except asyncio.CancelledError:
            self._m_cancelled.inc(tags={"stage": "running" if pending.started else "queued"})
            raise
        out = scores_to_predictions(logits, raw_scores=raw_scores)
        for row in out:
            self._m_predictions.inc(tags={"label": row[0]["label"]})
        return out

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def _infer(self, pending: list[_Pending]) -> list[np.ndarray]:
        for p in pending:
            p.started = True
        requests = [p.ids for p in pending]
        flat = [ids for request in requests for ids in request]
        loop = asyncio.get_running_loop()
        logits, stats = await loop.run_in_executor(self._executor, self._forward, flat)
        self._m_requests.observe(len(requests))
        for s in stats:
            self._m_batch_size.observe(s.batch_size)
            self._m_tokens.observe(s.tokens)
            self._m_padded.observe(s.padded_tokens)
            self._m_seconds.observe(s.model_seconds)
        out, start = [], 0
        for request in requests:
            out.append(logits[start : start + len(request)])
            start += len(request)
        return out

    def _forward(self, flat: list[list[int]]) -> tuple[np.ndarray, list[Any]]:
        # logits_for_ids runs under torch.inference_mode, sorted by length to cut padding.
        try:
            logits = self._predictor.logits_for_ids(flat)
        except Exception as e:
            # Inputs were validated and tokenized already: a failure here is the replica's, not the
            # client's, so let the health check replace it.
            self._broken = f"forward pass failed: {type(e).__name__}: {e}"
            raise
        return logits, list(self._predictor.last_stats)

    def check_health(self) -> None:
        if self._broken:
            raise RuntimeError(self._broken)
        if self._fault_file and os.path.exists(self._fault_file):
            raise RuntimeError(f"injected fault: {self._fault_file} exists ({FAULT_UNHEALTHY_FILE_ENV})")


# --- ingress --------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An HTTP error with a JSON body naming the problem."""

    def __init__(
        self, status: int, message: str, error_type: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.headers = headers or {}


_RETRY = {"Retry-After": str(RETRY_AFTER_S)}

fastapi_app = FastAPI(
    title="sentiray",
    description="Sentiment analysis served by Ray Serve: TEI-shaped /predict, KServe v1, /health, /info.",
    version="1",
)


def _error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error codes a route answers with, all with the ErrorBody shape."""
    return {code: {"model": ErrorBody} for code in codes}


def _json_body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Document the request body of a route that reads the raw body itself (size and depth checks
    come before JSON parsing), so /docs still shows the model's schema."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


@fastapi_app.exception_handler(ApiError)
async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    body = ErrorBody(error=exc.message, error_type=exc.error_type).model_dump()
    return JSONResponse(status_code=exc.status, content=body, headers=exc.headers)


def _cause(e: BaseException) -> BaseException:
    """The user exception inside a RayTaskError (Ray re-raises it as a subclass of both)."""
    return getattr(e, "cause", None) or e


def _to_api_error(e: BaseException) -> ApiError:
    """Map what a model call can raise to HTTP; unknown errors are logged and answered with a generic 500."""
    if isinstance(e, ApiError):
        return e
    if isinstance(e, InputError):
        return ApiError(422, str(_cause(e)), "invalid_input")
    if isinstance(e, BackPressureError):
        return ApiError(503, "the model is overloaded; retry later", "overloaded", _RETRY)
    if isinstance(e, (RayActorError, ActorDiedError, ActorUnavailableError, DeploymentUnavailableError)):
        return ApiError(503, "a model replica became unavailable; retry later", "unavailable", _RETRY)
    if isinstance(e, asyncio.TimeoutError):
        return ApiError(503, "the model did not answer in time; retry later", "unavailable", _RETRY)
    log.error("unexpected error serving a request", exc_info=e)
    return ApiError(500, "internal error", "internal")


_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def _json_depth_exceeds(body: bytes, limit: int) -> bool:
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


def _pydantic_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "body"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


def _load_token(args: AppArgs) -> bytes | None:
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


@serve.deployment(
    name="SentimentIngress",
    max_ongoing_requests=256,
    max_queued_requests=512,
    health_check_period_s=10,
    health_check_timeout_s=30,
    graceful_shutdown_wait_loop_s=2,
    graceful_shutdown_timeout_s=20,
    max_surge_percent=MAX_SURGE_PERCENT,  # as the model's: no gap without an ingress replica
    ray_actor_options={"num_cpus": 0.1},
)
@serve.ingress(fastapi_app)
class SentimentIngress:
    """HTTP front: limits and validates requests, calls the model deployment, maps errors to status codes."""

    def __init__(self, model: DeploymentHandle, args: AppArgs) -> None:
        self._model = model
        self._args = args
        self._token = _load_token(args)
        self._info: dict[str, Any] | None = None

    # -- helpers ------------------------------------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        if self._token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), self._token):
            raise ApiError(
                401, "missing or wrong bearer token", "unauthorized", {"WWW-Authenticate": "Bearer"}
            )

    async def _read_json(self, request: Request, *, required: str) -> dict[str, Any]:
        """The body parsed as JSON after size, UTF-8 and depth checks (each a 4xx)."""
        limit = self._args.max_body_bytes
        # Refusals before the body is read close the connection, so the server does not go on reading
        # (or waiting for) the rest of it.
        close = {"Connection": "close"}
        declared = request.headers.get("content-length")
        if declared is None:
            # Serve's proxy reads a body into memory as fast as the client sends it, whatever the handler
            # does; only a declared length, checked here, bounds that (a chunked body of 100 MB was held
            # whole by the proxy and the ingress before the size check could see it).
            raise ApiError(
                411, "a Content-Length header is required; chunked bodies are refused", "length_required", close
            )
        if not declared.isdigit() or int(declared) > limit:
            raise ApiError(
                413, f"request body of {declared} bytes exceeds the limit of {limit}", "too_large", close
            )
        chunks, size = [], 0
        # Our own deadline, not only the proxy's request_timeout_s: a client turns that one off with
        # Serve's `x-request-timeout-seconds: 0` header, and a trickled body would then hold this
        # request (and its share of max_ongoing_requests) forever.
        deadline = self._args.body_timeout_s
        try:
            async with asyncio.timeout(deadline):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise ApiError(413, f"request body exceeds the limit of {limit} bytes", "too_large", close)
                    chunks.append(chunk)
        except TimeoutError:
            raise ApiError(408, f"request body not received within {deadline:g} s", "body_timeout", close) from None
        body = b"".join(chunks)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ApiError(400, f"request body is not valid UTF-8 (byte {e.start})", "invalid_utf8") from None
        if _json_depth_exceeds(body, self._args.max_json_depth):
            raise ApiError(400, f"JSON nests deeper than {self._args.max_json_depth} levels", "too_deep")
        try:
            parsed = json.loads(text)
        # ValueError, not only JSONDecodeError: an integer of more than 4300 digits raises a plain one.
        except (ValueError, RecursionError) as e:
            raise ApiError(422, f"malformed JSON: {e}", "malformed_json") from None
        if not isinstance(parsed, dict):
            raise ApiError(
                422,
                f"body: expected a JSON object with an {required!r} field, got {type(parsed).__name__}",
                "invalid_request",
            )
        return parsed

    def _check_count(self, texts: list[Any]) -> list[str]:
        if len(texts) > self._args.max_inputs:
            raise ApiError(
                413,
                f"inputs: {len(texts)} texts exceed the limit of {self._args.max_inputs} per request",
                "too_many_inputs",
            )
        try:
            return validate_texts(texts)
        except InputError as e:
            raise ApiError(422, str(e), "invalid_input") from None

    async def _predict(
        self, texts: list[str], truncate: bool, raw_scores: bool
    ) -> list[list[dict[str, Any]]]:
        try:
            result = await self._model.predict.remote(texts, truncate, raw_scores)
        except Exception as e:
            raise _to_api_error(e) from None
        if isinstance(result, InputProblem):
            raise ApiError(422, result.message, "invalid_input")
        out: list[list[dict[str, Any]]] = result
        return out

    async def _model_info(self, timeout_s: float, *, cached: bool) -> dict[str, Any]:
        """The model's info; asking a replica (not the cache) proves one is up and answering."""
        if cached and self._info is not None:
            return self._info
        try:
            self._info = await asyncio.wait_for(self._ask_info(), timeout_s)
        except Exception as e:
            raise ApiError(503, "the model is not ready", "not_ready", _RETRY) from e
        return self._info

    async def _ask_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await self._model.info.remote()
        return info

    # -- routes -------------------------------------------------------------------------------------

    @fastapi_app.post(
        "/predict",
        response_model=list[LabelScore] | list[list[LabelScore]],
        responses=_error_responses(400, 401, 408, 411, 413, 422, 503),
        openapi_extra=_json_body_schema(PredictRequest),
        summary="Classify a text or a batch (Hugging Face TEI shape)",
    )
    async def predict(self, request: Request) -> Any:
        self._authorize(request)
        raw = await self._read_json(request, required="inputs")
        try:
            req = PredictRequest.model_validate(raw)
            texts, batched = req.texts()
        except ValidationError as e:
            raise ApiError(422, _pydantic_message(e), "invalid_request") from None
        except ValueError as e:
            raise ApiError(422, str(e), "invalid_request") from None
        out = await self._predict(self._check_count(texts), req.truncate, req.raw_scores)
        return out if batched else out[0]

    @fastapi_app.post(
        "/v1/models/{name}:predict",
        response_model=KServeResponse,
        responses=_error_responses(400, 401, 404, 408, 411, 413, 422, 503),
        openapi_extra=_json_body_schema(KServeRequest),
        summary="Classify instances (KServe v1 shape)",
    )
    async def kserve_predict(self, name: str, request: Request) -> Any:
        self._authorize(request)
        if name != self._args.model_name:
            raise ApiError(
                404,
                f"model {name!r} not found; this endpoint serves {self._args.model_name!r}",
                "model_not_found",
            )
        raw = await self._read_json(request, required="instances")
        try:
            req = KServeRequest.model_validate(raw)
        except ValidationError as e:
            raise ApiError(422, _pydantic_message(e), "invalid_request") from None
        out = await self._predict(self._check_count(req.instances), True, False)
        return {"predictions": [row[0] for row in out]}

    @fastapi_app.get(
        "/health", responses=_error_responses(503), summary="200 once a model replica answers"
    )
    async def health(self) -> dict[str, str]:
        await self._model_info(timeout_s=2.0, cached=False)
        return {"status": "ok"}

    @fastapi_app.get(
        "/info",
        response_model=ModelInfo,
        responses=_error_responses(401, 503),
        summary="The served model: labels, max_length, truncation, base model, test metrics, versions",
    )
    async def info(self, request: Request) -> Any:
        self._authorize(request)
        # Asked of a model replica each time: a cached answer outlives a model swap (sentiray k8s promote).
        return await self._model_info(timeout_s=10.0, cached=False)


# --- builder --------------------------------------------------------------------------------------------


def build_app(
    args: AppArgs,
    *,
    model_options: dict[str, Any] | None = None,
    ingress_options: dict[str, Any] | None = None,
) -> serve.Application:
    """The application with deployment options layered: code defaults, builder args, explicit options."""
    model_opts: dict[str, Any] = {}
    autoscaling = args.autoscaling_overrides()
    if autoscaling:
        model_opts["autoscaling_config"] = {"min_replicas": 1, "max_replicas": 1, **autoscaling}
        model_opts["autoscaling_config"]["max_replicas"] = max(
            model_opts["autoscaling_config"]["max_replicas"], model_opts["autoscaling_config"]["min_replicas"]
        )
    model_opts.update(model_options or {})
    model = SentimentModel.options(**model_opts).bind(args)  # type: ignore[attr-defined]
    return SentimentIngress.options(**(ingress_options or {})).bind(model, args)  # type: ignore[attr-defined]


def app_builder(args: AppArgs) -> serve.Application:
    """Typed Serve app builder: `serve run serve.app:app_builder model=PATH [key=value ...]`."""
    if not isinstance(args, AppArgs):
        args = AppArgs.model_validate(args)
    return build_app(args)


# `serve run serve.app:app model=...` reads better; same builder.
app = app_builder
