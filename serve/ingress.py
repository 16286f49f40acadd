"""The HTTP front: checks and validates requests, tokenizes them, calls the model deployment with token ids.

Tokenizing here, not in the model replica, puts that CPU work on replicas that scale with load on CPU
nodes, and leaves the model replicas (the GPU, where there is one) only model work. The tokenizer is
the artifact's, loaded without the model (`TextEncoder`), so max_length and truncation are the ones
training used.
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' annotations (`request:
# Request`) at runtime through Serve's class-based ingress, which cannot resolve them from strings.

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from sentiray.errors import InputError
from sentiray.text import validate_texts
from serve import oip
from serve.checks import (
    authorize,
    check_declared_length,
    load_token,
    parse_json_object,
    pydantic_message,
    read_body,
)
from serve.errors import (
    InvalidInputError,
    InvalidRequestError,
    ModelNotFoundError,
    NotReadyError,
    RequestError,
    TooManyInputsError,
    from_model_call,
    to_response,
)
from serve.model import MAX_SURGE_PERCENT
from serve.schemas import AppArgs, ErrorBody, KServeRequest, KServeResponse, LabelScore, ModelInfo, PredictRequest

log = logging.getLogger("ray.serve")

fastapi_app = FastAPI(
    title="sentiray",
    description="Text classification served by Ray Serve: TEI-shaped /predict, KServe v1, the Open Inference "
    "Protocol (v2), /health, /info.",
    version="1",
)


@fastapi_app.exception_handler(RequestError)
async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
    return to_response(exc)


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


async def probe_model(ask: Any, timeout_s: float) -> dict[str, Any]:
    """The model's info from `ask()` (a replica answering proves one is up); NotReadyError, logged, if not."""
    try:
        info: dict[str, Any] = await asyncio.wait_for(ask(), timeout_s)
    except Exception as e:
        # Logged, so a 503 from /health (a failing readiness probe) says why in the ingress's log.
        reason = f"no answer within {timeout_s:g} s" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
        log.warning("model probe failed, answering 503 not_ready: %s", reason)
        raise NotReadyError("the model is not ready") from e
    return info


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
    """HTTP front: limits, validates and tokenizes requests, calls the model deployment, maps errors."""

    def __init__(self, model: DeploymentHandle, args: AppArgs) -> None:
        self._model = model
        self._args = args
        self._token = load_token(args)
        # Tokenizing runs beside the event loop (the Rust tokenizer releases the GIL), so a long batch
        # does not hold up reading other requests.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sentiray-tokenize")
        self._encoder: Any = None
        self._encoder_lock = asyncio.Lock()
        try:
            self._encoder = self._load_encoder()
        except Exception as e:
            # Not fatal here: the model deployment fails on the same artifact and says why in
            # `serve status`; this replica stays up to answer /health 503 meanwhile, and retries on use.
            log.warning("tokenizer not loaded yet (%s: %s)", type(e).__name__, e)

    def _load_encoder(self) -> Any:
        from sentiray.predictor import TextEncoder

        encoder = TextEncoder.from_artifact(self._args.model)
        _ = encoder.key  # hashed once here, not on the first request's path
        return encoder

    async def _get_encoder(self) -> Any:
        if self._encoder is None:
            async with self._encoder_lock:
                if self._encoder is None:
                    try:
                        self._encoder = await asyncio.get_running_loop().run_in_executor(self._pool, self._load_encoder)
                    except Exception as e:
                        log.warning("tokenizer not loaded (%s: %s)", type(e).__name__, e)
                        raise NotReadyError("the model is not ready") from e
        return self._encoder

    # -- request stages ---------------------------------------------------------------------------------

    async def _read_body(self, request: Request) -> bytes:
        """The raw body within the size and time limits (each a 4xx)."""
        check_declared_length(request.headers.get("content-length"), self._args.max_body_bytes)
        return await read_body(request.stream(), self._args.max_body_bytes, self._args.body_timeout_s)

    async def _read_json(self, request: Request, *, required: str) -> dict[str, Any]:
        """The body parsed as JSON after size, UTF-8 and depth checks (each a 4xx)."""
        body = await self._read_body(request)
        return parse_json_object(body, self._args.max_json_depth, required=required)

    def _check_count(self, texts: list[Any]) -> list[str]:
        if len(texts) > self._args.max_inputs:
            raise TooManyInputsError(
                f"inputs: {len(texts)} texts exceed the limit of {self._args.max_inputs} per request"
            )
        try:
            return validate_texts(texts)
        except InputError as e:
            raise InvalidInputError(e) from None

    async def _encode(self, texts: list[str], truncate: bool) -> tuple[list[list[int]], str]:
        """Token ids per text and the encoder's key (what the ids mean)."""
        encoder = await self._get_encoder()
        loop = asyncio.get_running_loop()
        try:
            ids: list[list[int]] = await loop.run_in_executor(
                self._pool, lambda: encoder.encode(texts, truncate=truncate)
            )
        except InputError as e:
            raise InvalidInputError(e) from None
        return ids, encoder.key

    async def _predict(
        self,
        texts: list[str],
        truncate: bool,
        raw_scores: bool,
        top_k: int | None = None,
        function_to_apply: str | None = None,
    ) -> list[list[dict[str, Any]]]:
        texts = self._check_count(texts)
        ids, key = await self._encode(texts, truncate)
        # Options are sent only when set, so a replica that predates them (mid-rollout) still answers.
        options = {k: v for k, v in (("top_k", top_k), ("function_to_apply", function_to_apply)) if v is not None}
        try:
            # The texts ride along so a replica of another artifact (mid-swap) can re-tokenize them.
            out: list[list[dict[str, Any]]] = await self._model.predict.remote(
                ids, raw_scores, encoding=key, texts=texts, truncate=truncate, **options
            )
        except Exception as e:
            raise from_model_call(e) from None
        return out

    async def _scores(
        self, texts: list[Any], function_to_apply: str | None
    ) -> tuple[tuple[str, ...], list[list[float]]]:
        """Label names and per-text scores in label order (the v2 route's tensors)."""
        checked = self._check_count(texts)
        ids, key = await self._encode(checked, True)
        try:
            names, scores = await self._model.scores.remote(
                ids, function_to_apply, encoding=key, texts=checked, truncate=True
            )
        except Exception as e:
            raise from_model_call(e) from None
        return tuple(names), scores.tolist()

    def _check_name(self, name: str) -> None:
        if name != self._args.model_name:
            raise ModelNotFoundError(f"model {name!r} not found; this endpoint serves {self._args.model_name!r}")

    async def _model_info(self, timeout_s: float) -> dict[str, Any]:
        """The model's info, asked of a replica each time: an answer proves one is up, and a cached one
        would outlive a model swap (sentiray k8s promote)."""
        return await probe_model(self._ask_info, timeout_s)

    async def _ask_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await self._model.info.remote()
        return info

    # -- routes -----------------------------------------------------------------------------------------

    @fastapi_app.post(
        "/predict",
        response_model=list[LabelScore] | list[list[LabelScore]],
        responses=_error_responses(400, 401, 408, 411, 413, 422, 503),
        openapi_extra=_json_body_schema(PredictRequest),
        summary="Classify a text or a batch (Hugging Face TEI shape)",
    )
    async def predict(self, request: Request) -> Any:
        authorize(request.headers.get("authorization"), self._token)
        raw = await self._read_json(request, required="inputs")
        try:
            req = PredictRequest.model_validate(raw)
            texts, batched = req.texts()
        except ValidationError as e:
            raise InvalidRequestError(pydantic_message(e)) from None
        except ValueError as e:
            raise InvalidRequestError(str(e)) from None
        out = await self._predict(texts, req.truncate, req.raw_scores, req.top_k, req.function_to_apply)
        return out if batched else out[0]

    @fastapi_app.post(
        "/v1/models/{name}:predict",
        response_model=KServeResponse,
        responses=_error_responses(400, 401, 404, 408, 411, 413, 422, 503),
        openapi_extra=_json_body_schema(KServeRequest),
        summary="Classify instances (KServe v1 shape)",
    )
    async def kserve_predict(self, name: str, request: Request) -> Any:
        authorize(request.headers.get("authorization"), self._token)
        self._check_name(name)
        raw = await self._read_json(request, required="instances")
        try:
            req = KServeRequest.model_validate(raw)
        except ValidationError as e:
            raise InvalidRequestError(pydantic_message(e)) from None
        out = await self._predict(req.instances, True, False)
        return {"predictions": [row[0] for row in out]}

    @fastapi_app.get("/health", responses=_error_responses(503), summary="200 once a model replica answers")
    async def health(self) -> dict[str, str]:
        await self._model_info(timeout_s=2.0)
        await self._get_encoder()
        return {"status": "ok"}

    @fastapi_app.get(
        "/info",
        response_model=ModelInfo,
        responses=_error_responses(401, 503),
        summary="The served model: labels, max_length, truncation, base model, test metrics, versions",
    )
    async def info(self, request: Request) -> Any:
        authorize(request.headers.get("authorization"), self._token)
        return await self._model_info(timeout_s=10.0)

    # -- Open Inference Protocol (v2) over REST -------------------------------------------------------
    # Probes (live, ready, model ready) need no token, as /health; metadata and infer need it, as /info
    # and /predict. Errors are the same ErrorBody, whose `error` field is what KServe's and Triton's
    # clients read.

    @fastapi_app.get("/v2", summary="Open Inference Protocol: server metadata")
    async def v2_server(self) -> dict[str, Any]:
        from sentiray import __version__

        return {"name": "sentiray", "version": __version__, "extensions": list(oip.EXTENSIONS)}

    @fastapi_app.get("/v2/health/live", summary="Open Inference Protocol: the server is up")
    async def v2_live(self) -> dict[str, bool]:
        return {"live": True}

    @fastapi_app.get(
        "/v2/health/ready", responses=_error_responses(503), summary="Open Inference Protocol: the model is ready"
    )
    async def v2_ready(self) -> dict[str, bool]:
        await self.health()
        return {"ready": True}

    @fastapi_app.get(
        "/v2/models/{name}/ready",
        responses=_error_responses(404, 503),
        summary="Open Inference Protocol: this model is ready",
    )
    async def v2_model_ready(self, name: str) -> dict[str, Any]:
        self._check_name(name)
        await self.health()
        return {"name": name, "ready": True}

    @fastapi_app.get(
        "/v2/models/{name}",
        response_model=oip.ModelMetadata,
        responses=_error_responses(401, 404, 503),
        summary="Open Inference Protocol: model metadata (inputs, outputs, labels)",
    )
    async def v2_model_metadata(self, name: str, request: Request) -> Any:
        authorize(request.headers.get("authorization"), self._token)
        self._check_name(name)
        return oip.model_metadata(name, await self._model_info(timeout_s=10.0))

    @fastapi_app.post(
        "/v2/models/{name}/infer",
        response_model=oip.InferenceResponse,
        responses=_error_responses(400, 401, 404, 408, 411, 413, 422, 503),
        openapi_extra=_json_body_schema(oip.InferenceRequest),
        summary="Open Inference Protocol: classify a BYTES tensor of texts",
    )
    async def v2_infer(self, name: str, request: Request) -> Any:
        authorize(request.headers.get("authorization"), self._token)
        self._check_name(name)
        body = await self._read_body(request)
        binary: bytes | None = None
        header_length = request.headers.get(oip.BINARY_HEADER)
        if header_length is not None:  # Triton's binary tensor extension: a JSON header, then raw tensors
            body, binary = oip.split_binary_body(body, header_length)
        raw = parse_json_object(body, self._args.max_json_depth, required="inputs")
        infer = oip.parse_infer_request(raw, binary)
        names, scores = await self._scores(infer.texts, infer.function_to_apply)
        return oip.infer_response(name, infer, names, scores)
