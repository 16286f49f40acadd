"""HTTP client of the sentiray endpoint (Ray-free): batches texts and retries what is safe to retry.

Prediction is idempotent, so 500/502/503/504 and dropped connections are retried with exponential
backoff (a server's Retry-After is honoured, capped); a 4xx is the caller's mistake and never retried.
`retried_requests` (requests whose first attempt failed) and `retried_attempts` (failed attempts that
were retried) show what the retries hid (docs/reliability.md).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from sentiray.errors import SentirayError

__all__ = ["RETRY_STATUSES", "EndpointError", "ErrorDetail", "PredictClient", "error_detail"]

RETRY_STATUSES = frozenset({500, 502, 503, 504})


class EndpointError(SentirayError):
    """The endpoint refused a request (4xx) or kept failing after all retries.

    `status` is the last HTTP status (None: the connection failed every time), `detail` the endpoint's
    own words (its JSON body's `error`; for a failed connection, what failed), `error_type` the body's
    machine-readable kind when it gave one. For a refused text (`invalid_input`), `index` is its position
    in the request's texts and `reason` what is wrong with it, when the endpoint said. The message adds
    how it went (`HTTP 422: ...`).
    """

    def __init__(
        self,
        message: str,
        status: int | None = None,
        *,
        detail: str | None = None,
        error_type: str | None = None,
        index: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = message if detail is None else detail
        self.error_type = error_type
        self.index = index
        self.reason = reason


class PredictClient:
    """Calls `POST {url}/predict` (TEI shape) in chunks of at most `batch_size` texts.

    Safe to share between threads. Since the client was made: `retried_requests`, the requests whose
    first attempt failed (a retryable status or a transport error) and were retried; `retried_attempts`,
    all such failed attempts.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        timeout_s: float = 60.0,
        batch_size: int = 32,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries: must be >= 0, got {retries}")
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.batch_size = batch_size
        self._sleep = sleep
        self.retried_requests = 0
        self.retried_attempts = 0
        self._count_lock = threading.Lock()

    def __enter__(self) -> PredictClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def predict(
        self,
        texts: Sequence[str],
        *,
        raw_scores: bool = False,
        truncate: bool = True,
        top_k: int | None = None,
        function_to_apply: str | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Per text, `[{"label", "score"}, ...]` sorted by score: the top_k (default: every label), scored
        by function_to_apply (softmax, sigmoid or none; default: the model's)."""
        out: list[list[dict[str, Any]]] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start : start + self.batch_size])
            body: dict[str, Any] = {"inputs": chunk, "raw_scores": raw_scores, "truncate": truncate}
            # Sent only when set: an endpoint that predates them then answers as before.
            if top_k is not None:
                body["top_k"] = top_k
            if function_to_apply is not None:
                body["function_to_apply"] = function_to_apply
            out.extend(self.post("/predict", body))
        return out

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST JSON with retries; returns the decoded JSON answer."""
        attempt = 0
        while True:
            try:
                response = self._http.post(path, json=body)
            except (httpx.TransportError, httpx.TimeoutException) as e:
                if attempt >= self.retries:
                    cause = f"{type(e).__name__}: {e}"
                    raise EndpointError(f"{self._http.base_url}{path}: {cause}", detail=cause) from e
                self._count_retry(attempt)
                self._sleep(self._delay(attempt, None))
                attempt += 1
                continue
            if response.status_code < 400:
                return response.json()
            said = error_detail(response)
            if response.status_code not in RETRY_STATUSES:
                raise said.error(f"HTTP {response.status_code}: {said.message}", response.status_code)
            if attempt >= self.retries:
                raise said.error(
                    f"HTTP {response.status_code} after {attempt + 1} attempts: {said.message}", response.status_code
                )
            self._count_retry(attempt)
            self._sleep(self._delay(attempt, response.headers.get("retry-after")))
            attempt += 1

    def _count_retry(self, attempt: int) -> None:
        with self._count_lock:
            self.retried_attempts += 1
            if attempt == 0:
                self.retried_requests += 1

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self.max_backoff_s)
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        # Full jitter, so clients that failed together do not come back together.
        return random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2**attempt))


@dataclass(frozen=True)
class ErrorDetail:
    """What an error response said: its words, and the body's fields when it is the endpoint's ErrorBody."""

    message: str
    error_type: str | None = None
    index: int | None = None
    reason: str | None = None

    def error(self, message: str, status: int) -> EndpointError:
        return EndpointError(
            message, status, detail=self.message, error_type=self.error_type, index=self.index, reason=self.reason
        )


def error_detail(response: httpx.Response) -> ErrorDetail:
    """The endpoint's words (its JSON `error`, FastAPI's `detail`, else the body) and its ErrorBody fields."""
    try:
        body = response.json()
    except ValueError:
        return ErrorDetail(response.text.strip()[:500] or response.reason_phrase)
    if isinstance(body, dict) and "error" in body:
        kind, index, reason = body.get("error_type"), body.get("index"), body.get("reason")
        return ErrorDetail(
            str(body["error"]),
            kind if isinstance(kind, str) else None,
            index if isinstance(index, int) and not isinstance(index, bool) else None,
            reason if isinstance(reason, str) else None,
        )
    if isinstance(body, dict) and "detail" in body:  # FastAPI's own shape
        return ErrorDetail(str(body["detail"])[:500])
    return ErrorDetail(str(body)[:500])
