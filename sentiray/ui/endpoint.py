"""What the Streamlit app needs from the serving endpoint, without Streamlit: settings, and HTTP calls
whose failures become one readable message. Batch files are `sentiray.ui.batch`'s.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

from sentiray import client
from sentiray.errors import SentirayError
from sentiray.labels import BINARY, LabelSet

ENV_ENDPOINT = "SENTIRAY_ENDPOINT"
ENV_TOKEN = "SENTIRAY_API_TOKEN"
ENV_TOKEN_FILE = "SENTIRAY_API_TOKEN_FILE"
DEFAULT_ENDPOINT = "http://127.0.0.1:8000"


class Problem(StrEnum):
    """Why a call to the endpoint failed, as the app explains it."""

    UNREACHABLE = "unreachable"  # connection refused, DNS, timeout
    NOT_READY = "not_ready"  # 503: up, model still loading
    UNAUTHORIZED = "unauthorized"  # 401: missing or wrong token
    REFUSED = "refused"  # other 4xx: the input was refused; the message says why
    SERVER = "server"  # 5xx other than 503, or a body that is not what the API promises


class EndpointError(client.EndpointError):
    """A call to the endpoint failed; the message is meant for the app's user, `problem` says what kind."""

    def __init__(
        self,
        problem: Problem,
        message: str,
        status: int | None = None,
        detail: str | None = None,
        *,
        index: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, status, detail=detail, index=index, reason=reason)
        self.problem = problem


@dataclass(frozen=True)
class UiSettings:
    """Where the endpoint is and how to authenticate; from the environment (`sentiray ui` sets it)."""

    endpoint: str = DEFAULT_ENDPOINT
    token: str | None = None
    timeout_s: float = 60.0

    @classmethod
    def from_env(cls) -> UiSettings:
        endpoint = (os.environ.get(ENV_ENDPOINT) or DEFAULT_ENDPOINT).strip().rstrip("/")
        if not endpoint.startswith(("http://", "https://")):
            raise SentirayError(f"{ENV_ENDPOINT}: {endpoint!r} is not an http:// or https:// URL")
        return cls(endpoint=endpoint, token=read_token())


def read_token() -> str | None:
    """The bearer token from SENTIRAY_API_TOKEN, else from the file SENTIRAY_API_TOKEN_FILE names."""
    token = os.environ.get(ENV_TOKEN, "").strip()
    if token:
        return token
    path = os.environ.get(ENV_TOKEN_FILE, "").strip()
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError as e:
        raise SentirayError(f"{ENV_TOKEN_FILE}: cannot read {path}: {e.strerror or e}") from e


class EndpointClient:
    """The endpoint's /health, /info and /predict; every failure is an EndpointError.

    /predict goes through the project's client (`sentiray.client.PredictClient`), which retries what is
    safe to retry (dropped connections, 502/503/504 while a replica restarts); few retries, as a person
    is waiting. /health and /info are single GETs.
    """

    def __init__(self, settings: UiSettings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        headers = {"authorization": f"Bearer {settings.token}"} if settings.token else {}
        self._http = httpx.Client(
            base_url=settings.endpoint, headers=headers, timeout=settings.timeout_s, transport=transport
        )
        self._predictor = client.PredictClient(
            settings.endpoint,
            token=settings.token,
            retries=2,
            backoff_s=0.25,
            max_backoff_s=2.0,
            timeout_s=settings.timeout_s,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()
        self._predictor.close()

    def _unreachable(self, cause: str) -> EndpointError:
        return EndpointError(
            Problem.UNREACHABLE,
            f"the endpoint at {self.settings.endpoint} is not reachable ({cause}). "
            "Is it running, and is the URL right?",
        )

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        url = f"{self.settings.endpoint}{path}"
        try:
            r = self._http.request(method, path, **kw)
        except httpx.TimeoutException as e:
            raise EndpointError(
                Problem.UNREACHABLE,
                f"the endpoint at {url} did not answer within {self.settings.timeout_s:.0f}s",
            ) from e
        except httpx.HTTPError as e:
            raise self._unreachable(f"{type(e).__name__}: {e}") from e
        if r.status_code < 400:
            try:
                return r.json()
            except json.JSONDecodeError as e:
                raise EndpointError(
                    Problem.SERVER,
                    f"{url} answered {r.status_code} with a body that is not JSON",
                    r.status_code,
                ) from e
        raise _problem(r.status_code, client.error_detail(r).message)

    def health(self) -> bool:
        """True when the model answers; False while it loads (503). Unreachable raises."""
        try:
            self._call("GET", "/health")
        except EndpointError as e:
            if e.problem is Problem.NOT_READY:
                return False
            raise
        return True

    def info(self) -> dict[str, Any]:
        info = self._call("GET", "/info")
        if not isinstance(info, dict):
            raise EndpointError(Problem.SERVER, "/info did not answer a JSON object")
        return info

    def predict(self, texts: Sequence[str], *, truncate: bool = True) -> list[list[dict[str, Any]]]:
        """Ranked `{label, score}` lists, one per text (one request; mind /info's max_inputs)."""
        body = {"inputs": list(texts), "raw_scores": False, "truncate": truncate}
        try:
            out = self._predictor.post("/predict", body)
        except client.EndpointError as e:
            if e.status is None:  # the connection failed on every try
                raise self._unreachable(e.detail) from e
            raise _problem(e.status, e.detail, index=e.index, reason=e.reason) from e
        if not isinstance(out, list) or len(out) != len(texts):
            raise EndpointError(
                Problem.SERVER,
                f"/predict answered {len(out) if isinstance(out, list) else out!r} results for {len(texts)} texts",
            )
        return out

    def classify(self, text: str, *, truncate: bool = True) -> list[dict[str, Any]]:
        """One text: its ranked `{label, score}` list."""
        return self.predict([text], truncate=truncate)[0]


def _problem(status: int, detail: str, *, index: int | None = None, reason: str | None = None) -> EndpointError:
    """The EndpointError for an HTTP error status, with the endpoint's own message (and, for a refused
    text, its position and the reason)."""
    if status == 503:
        return EndpointError(
            Problem.NOT_READY,
            f"the endpoint is up but its model is not ready yet ({detail}); try again shortly",
            503,
            detail,
        )
    if status == 401:
        return EndpointError(
            Problem.UNAUTHORIZED,
            f"the endpoint refused the request: {detail}. Set {ENV_TOKEN} or {ENV_TOKEN_FILE} for the UI",
            401,
            detail,
        )
    if status < 500:
        return EndpointError(
            Problem.REFUSED,
            f"the endpoint refused the input ({status}): {reason or detail}",
            status,
            detail,
            index=index,
            reason=reason,
        )
    return EndpointError(Problem.SERVER, f"the endpoint failed ({status}): {detail}", status, detail)


def labels_from_info(info: dict[str, Any] | None) -> LabelSet:
    """The served model's label set from its /info (`labels`: id -> name, as the artifact records them;
    `problem_type` where reported), read by the one reader of a model config; binary without /info."""
    if not info or not info.get("labels"):
        return BINARY
    record = SimpleNamespace(id2label=info["labels"], problem_type=info.get("problem_type"))
    try:
        return LabelSet.from_model_config(record)
    except SentirayError as e:
        raise EndpointError(Problem.SERVER, f"/info reports labels the UI cannot use: {e}") from e


__all__ = [
    "DEFAULT_ENDPOINT",
    "ENV_ENDPOINT",
    "ENV_TOKEN",
    "ENV_TOKEN_FILE",
    "EndpointClient",
    "EndpointError",
    "Problem",
    "UiSettings",
    "labels_from_info",
]
