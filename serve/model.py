"""The model deployment: token ids in, labels and scores out, batched by a budget of padded tokens.

Stages: load (the artifact, once), encode (done by the ingress: replicas receive token ids), infer
(token-budget batches, one forward-pass thread), to predictions (labels and scores per text).
Its Prometheus metrics live in `ModelMetrics`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from ray import serve
from ray.serve.metrics import Counter, Histogram

from serve.batching import Ticket, TokenBudgetBatcher
from serve.schemas import AppArgs, ModelInfo

log = logging.getLogger("ray.serve")

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


def _replica_threads(requested: int | None) -> int:
    """Intra-op threads: as asked, else the CPUs Ray gave this replica (at least one)."""
    if requested:
        return requested
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return max(1, math.floor(cpus))


class ModelMetrics:
    """The model replica's metrics, recorded in one place."""

    def __init__(self) -> None:
        self._predictions = Counter(
            METRIC_NAMES["predictions"], description="Predictions, by top label", tag_keys=("label",)
        )
        self._batch_size = Histogram(
            METRIC_NAMES["batch_size"], description="Texts per forward pass", boundaries=_SIZE_BUCKETS
        )
        self._tokens = Histogram(
            METRIC_NAMES["batch_tokens"],
            description="Real (unpadded) tokens per forward pass",
            boundaries=_TOKEN_BUCKETS,
        )
        self._padded = Histogram(
            METRIC_NAMES["batch_padded_tokens"],
            description="Tokens per forward pass, padding included",
            boundaries=_TOKEN_BUCKETS,
        )
        self._seconds = Histogram(
            METRIC_NAMES["model_seconds"], description="Seconds per forward pass", boundaries=_SECONDS_BUCKETS
        )
        self._requests = Histogram(
            METRIC_NAMES["requests_per_batch"], description="Requests served by one batch", boundaries=_SIZE_BUCKETS
        )
        self._cancelled = Counter(
            METRIC_NAMES["requests_cancelled"],
            description="Requests cancelled (timeout or client gone): stage=queued never computed, "
            "stage=running computed and dropped",
            tag_keys=("stage",),
        )

    def batch(self, requests: int, stats: list[Any]) -> None:
        """One batch of `requests` requests and the BatchStats of its forward passes."""
        self._requests.observe(requests)
        for s in stats:
            self._batch_size.observe(s.batch_size)
            self._tokens.observe(s.tokens)
            self._padded.observe(s.padded_tokens)
            self._seconds.observe(s.model_seconds)

    def top_labels(self, labels: list[str]) -> None:
        for label in labels:
            self._predictions.inc(tags={"label": label})

    def cancelled(self, started: bool) -> None:
        self._cancelled.inc(tags={"stage": "running" if started else "queued"})


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
    """One model replica: loads the artifact once, then predicts token ids in token-budget batches."""

    # -- load -------------------------------------------------------------------------------------------

    def __init__(self, args: AppArgs) -> None:
        import torch

        from sentiray.artifact import serving_metrics
        from sentiray.predictor import Predictor, default_function, encoding_key

        self._threads = _replica_threads(args.torch_threads)
        torch.set_num_threads(self._threads)
        # Raising here (ArtifactError, ModelLoadError) fails the replica; `serve status` shows the message.
        self._predictor = Predictor.from_artifact(
            args.model,  # fetch_artifact resolves paths, URIs and Hub ids
            device=args.device.value,
            precision=args.dtype,
            max_batch_size=args.max_batch_size,
            max_batch_tokens=args.max_batch_tokens,
            runtime=args.runtime,
        )
        manifest = self._predictor.manifest
        assert manifest is not None
        self._encoding_key = encoding_key(
            self._predictor.tokenizer, self._predictor.max_length, self._predictor.truncation
        )
        # The metrics of what this replica computes (int8 or bf16 can score differently from fp32).
        scored = serving_metrics(manifest, self._predictor.runtime, self._predictor.numerics)
        self._info = ModelInfo(
            model_name=args.model_name,
            artifact=args.model,
            # The model's config is the record of its classes (an older manifest says binary regardless).
            labels=self._predictor.labels.id2label,
            multi_label=self._predictor.labels.multi_label,
            function_to_apply=default_function(self._predictor.labels).value,
            max_length=manifest.max_length,
            truncation=manifest.truncation.value,
            base_model=manifest.base_model,
            test_metrics=scored.metrics,
            test_metrics_runtime=scored.measured_with,
            test_metrics_exact=scored.exact,
            versions=manifest.versions,
            device=str(self._predictor.device),
            dtype=self._predictor.numerics,
            runtime=self._predictor.runtime.value,
            max_batch_size=args.max_batch_size,
            max_batch_tokens=args.max_batch_tokens,
            max_inputs=args.max_inputs,
        ).model_dump(mode="json")
        self._broken: str | None = None
        self._fault_file = os.environ.get(FAULT_UNHEALTHY_FILE_ENV, "").replace("{pid}", str(os.getpid())) or None
        # One thread runs forward passes, so the event loop stays free to queue the next batch.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentiray-forward")
        self._batcher: TokenBudgetBatcher[np.ndarray] = TokenBudgetBatcher(
            self._infer,
            max_batch_size=args.max_batch_size,
            max_batch_tokens=args.max_batch_tokens,
            wait_s=args.batch_wait_timeout_s,
        )
        self._metrics = ModelMetrics()
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
        self,
        ids: list[list[int]],
        raw_scores: bool,
        *,
        encoding: str | None = None,
        texts: list[str] | None = None,
        truncate: bool = True,
        top_k: int | None = None,
        function_to_apply: str | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Per sequence of token ids (from the ingress's TextEncoder), labels and scores sorted by score
        (the top_k first; function_to_apply as Hugging Face's pipeline, see scores_to_predictions).

        `encoding` is the sender's `encoding_key`: when it is not this replica's (a model swap rolling out
        with a new tokenizer), the ids are remade from `texts` with this replica's own tokenizer.
        """
        logits = await self._logits(ids, encoding, texts, truncate)
        return self._to_predictions(logits, raw_scores, top_k, function_to_apply)

    async def scores(
        self,
        ids: list[list[int]],
        function_to_apply: str | None = None,
        *,
        encoding: str | None = None,
        texts: list[str] | None = None,
        truncate: bool = True,
    ) -> tuple[tuple[str, ...], np.ndarray]:
        """The label names and the scores per text in label order ([n, num_labels], float32): the tensor
        the Open Inference Protocol route answers with."""
        from sentiray.predictor import apply_function, resolve_function

        fn = resolve_function(self._predictor.labels, function_to_apply)  # ValueError: the ingress checked it
        logits = await self._logits(ids, encoding, texts, truncate)
        names = self._predictor.labels.names
        self._metrics.top_labels([names[int(j)] for j in np.argmax(logits, axis=1)])
        return names, np.asarray(apply_function(logits, fn), dtype=np.float32)

    async def _logits(
        self, ids: list[list[int]], encoding: str | None, texts: list[str] | None, truncate: bool
    ) -> np.ndarray:
        if encoding is not None and encoding != self._encoding_key:
            if texts is None:
                raise ValueError("token ids from another tokenizer and no texts to re-tokenize")
            ids = self._predictor.encode(texts, truncate=truncate)  # InputError -> 422 at the ingress
        # Past `request_timeout_s` Serve's proxy answers 408 and cancels the request down the call chain
        # (as it does when a client disconnects): a queued request is left out of the batches, a batch
        # already running finishes and the cancelled caller's rows are dropped. Our own deadline would
        # repeat the proxy's timeout in a second setting and race with its cancellation.
        ticket = self._batcher.ticket(ids)
        try:
            logits: np.ndarray = await ticket.future
        except asyncio.CancelledError:
            self._metrics.cancelled(ticket.started)
            raise
        return logits

    # -- infer ------------------------------------------------------------------------------------------

    async def _infer(self, batch: list[Ticket]) -> list[np.ndarray]:
        """Logits per request of a batch, computed in one call of the forward-pass thread."""
        flat = [seq for ticket in batch for seq in ticket.ids]
        loop = asyncio.get_running_loop()
        logits, stats = await loop.run_in_executor(self._executor, self._forward, flat)
        self._metrics.batch(len(batch), stats)
        out, start = [], 0
        for ticket in batch:
            out.append(logits[start : start + len(ticket.ids)])
            start += len(ticket.ids)
        return out

    def _forward(self, flat: Sequence[Sequence[int]]) -> tuple[np.ndarray, list[Any]]:
        # logits_with_stats runs under torch.inference_mode, sorted by length to cut padding.
        try:
            return self._predictor.logits_with_stats(flat)
        except Exception as e:
            # Inputs were validated and tokenized already: a failure here is the replica's, not the
            # client's, so let the health check replace it.
            self._broken = f"forward pass failed: {type(e).__name__}: {e}"
            raise

    # -- to predictions ---------------------------------------------------------------------------------

    def _to_predictions(
        self, logits: np.ndarray, raw_scores: bool, top_k: int | None, function_to_apply: str | None
    ) -> list[list[dict[str, Any]]]:
        from sentiray.predictor import scores_to_predictions

        out = scores_to_predictions(
            logits,
            labels=self._predictor.labels,
            raw_scores=raw_scores,
            top_k=top_k,
            function_to_apply=function_to_apply,
        )
        self._metrics.top_labels([row[0]["label"] for row in out])
        return out

    def check_health(self) -> None:
        if self._broken:
            raise RuntimeError(self._broken)
        if self._fault_file and os.path.exists(self._fault_file):
            raise RuntimeError(f"injected fault: {self._fault_file} exists ({FAULT_UNHEALTHY_FILE_ENV})")
