"""Typed request errors and the one table that maps them to HTTP status codes.

Route code raises the error that names the problem; `to_response` turns it into the status, the JSON
`ErrorBody` and headers. What a call to the model deployment raises is mapped by `from_model_call`;
anything unknown is logged with its traceback and answered with a generic 500.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from fastapi.responses import JSONResponse

from sentiray.errors import InputError
from serve.schemas import ErrorBody

log = logging.getLogger("ray.serve")

RETRY_AFTER_S = 1

_RETRY = {"Retry-After": str(RETRY_AFTER_S)}
# Refusals before the body is read close the connection, so the server does not go on reading (or
# waiting for) the rest of it.
_CLOSE = {"Connection": "close"}


class RequestError(Exception):
    """An error the client hears about; its class decides the status code (see _TABLE)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body_fields(self) -> dict[str, object]:
        """Fields of the error body beyond `error` and `error_type`."""
        return {}


class UnauthorizedError(RequestError):
    """Missing or wrong bearer token."""


class LengthRequiredError(RequestError):
    """No Content-Length (a chunked body)."""


class BodyTooLargeError(RequestError):
    """The body is over max_body_bytes."""


class BodyTimeoutError(RequestError):
    """The body did not arrive within body_timeout_s."""


class InvalidUtf8Error(RequestError):
    """The body is not UTF-8."""


class TooDeepError(RequestError):
    """JSON nested deeper than max_json_depth."""


class MalformedJsonError(RequestError):
    """The body is not JSON."""


class InvalidRequestError(RequestError):
    """JSON of the wrong shape for the route."""


class InvalidTensorError(RequestError):
    """An Open Inference Protocol request whose tensors are malformed (datatype, shape, data, names)."""


class TooManyInputsError(RequestError):
    """More texts than max_inputs."""


class InvalidInputError(RequestError):
    """A text the model cannot take (empty, lone surrogate, too long with truncate=false).

    Its body carries the InputError's `index` (which text; absent when the list itself is wrong) and
    `reason`, so a caller can mark the row at fault without parsing the message.
    """

    def __init__(self, error: InputError) -> None:
        super().__init__(str(error))
        self.index = error.index
        self.reason = error.reason

    def body_fields(self) -> dict[str, object]:
        return {"index": self.index, "reason": self.reason}


class ModelNotFoundError(RequestError):
    """A KServe route naming another model."""


class NotReadyError(RequestError):
    """No model replica answered its probe (loading, failed, or gone)."""


class OverloadedError(RequestError):
    """The model deployment's queue is full (Serve's backpressure)."""


class UnavailableError(RequestError):
    """A model replica died or could not be reached during the call."""


class InternalError(RequestError):
    """Anything unexpected; the details go to the log, not to the client."""


@dataclass(frozen=True)
class _Status:
    code: int
    error_type: str
    headers: dict[str, str] = field(default_factory=dict)


_TABLE: dict[type[RequestError], _Status] = {
    InvalidUtf8Error: _Status(400, "invalid_utf8"),
    TooDeepError: _Status(400, "too_deep"),
    # 400, as Triton and KServe answer a malformed v2 tensor; the body's `error` is what their clients read.
    InvalidTensorError: _Status(400, "invalid_tensor"),
    UnauthorizedError: _Status(401, "unauthorized", {"WWW-Authenticate": "Bearer"}),
    ModelNotFoundError: _Status(404, "model_not_found"),
    BodyTimeoutError: _Status(408, "body_timeout", _CLOSE),
    LengthRequiredError: _Status(411, "length_required", _CLOSE),
    BodyTooLargeError: _Status(413, "too_large", _CLOSE),
    TooManyInputsError: _Status(413, "too_many_inputs"),
    MalformedJsonError: _Status(422, "malformed_json"),
    InvalidRequestError: _Status(422, "invalid_request"),
    InvalidInputError: _Status(422, "invalid_input"),
    InternalError: _Status(500, "internal"),
    NotReadyError: _Status(503, "not_ready", _RETRY),
    OverloadedError: _Status(503, "overloaded", _RETRY),
    UnavailableError: _Status(503, "unavailable", _RETRY),
}


def status_of(error: RequestError) -> _Status:
    return _TABLE[type(error)]


def to_response(error: RequestError) -> JSONResponse:
    status = status_of(error)
    body = ErrorBody(error=error.message, error_type=status.error_type, **error.body_fields()).model_dump(
        exclude_none=True
    )
    return JSONResponse(status_code=status.code, content=body, headers=status.headers)


def from_model_call(e: BaseException) -> RequestError:
    """Map what a call to the model deployment can raise; unknown errors are logged, then a generic 500."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

    if isinstance(e, RequestError):
        return e
    if isinstance(e, InputError):
        # Ray re-raises a replica's exception as a RayTaskError subclass of it; `cause` is the original.
        cause = getattr(e, "cause", None)
        return InvalidInputError(cause if isinstance(cause, InputError) else e)
    if isinstance(e, BackPressureError):
        return OverloadedError("the model is overloaded; retry later")
    if isinstance(e, (RayActorError, ActorDiedError, ActorUnavailableError, DeploymentUnavailableError)):
        return UnavailableError("a model replica became unavailable; retry later")
    if isinstance(e, asyncio.TimeoutError):
        return UnavailableError("the model did not answer in time; retry later")
    log.error("unexpected error serving a request", exc_info=e)
    return InternalError("internal error")
