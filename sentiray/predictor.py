"""Batch in, labels and scores out: the model as serving and evaluation use it."""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import torch

from sentiray.artifact import ArtifactManifest, fetch_artifact
from sentiray.config import Truncation
from sentiray.labels import BINARY, LabelSet
from sentiray.metrics import softmax
from sentiray.model import load_model, load_tokenizer, resolve_device, resolve_precision
from sentiray.numerics import Precision, Runtime
from sentiray.runtime import OnnxRunner, TorchRunner, resolve_runtime
from sentiray.text import collate, encode


class ScoreFunction(StrEnum):
    """What turns logits into scores: Hugging Face text-classification's `function_to_apply`."""

    SOFTMAX = "softmax"  # one label per text: scores sum to 1
    SIGMOID = "sigmoid"  # each label on its own (multi-label, or a single-logit head)
    NONE = "none"  # the logits themselves (TEI's raw_scores)


SOFTMAX = ScoreFunction.SOFTMAX
SIGMOID = ScoreFunction.SIGMOID
NONE = ScoreFunction.NONE


def default_function(labels: LabelSet) -> ScoreFunction:
    """Hugging Face's default: sigmoid for multi-label models and single-logit heads, else softmax."""
    return SIGMOID if labels.multi_label or labels.num_labels == 1 else SOFTMAX


def resolve_function(
    labels: LabelSet, function_to_apply: ScoreFunction | str | None = None, *, raw_scores: bool = False
) -> ScoreFunction:
    """The function to apply: as asked, the model's default when None; `raw_scores` (TEI's flag) is `none`.

    ValueError names the field for an unknown function or one that contradicts raw_scores.
    """
    if function_to_apply is not None:
        try:
            fn = ScoreFunction(function_to_apply)
        except ValueError:
            allowed = ", ".join(f.value for f in ScoreFunction)
            raise ValueError(f"function_to_apply: {function_to_apply!r} is not one of {allowed}") from None
        if raw_scores and fn != NONE:
            raise ValueError(f"raw_scores: true asks for logits, which contradicts function_to_apply {fn.value!r}")
        return fn
    return NONE if raw_scores else default_function(labels)


def check_top_k(top_k: int | None) -> int | None:
    """top_k as given (None: every label); ValueError unless a whole number >= 1."""
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k: must be a whole number >= 1 (or null for every label), got {top_k!r}")
    return top_k


def apply_function(logits: np.ndarray, fn: ScoreFunction) -> np.ndarray:
    """Scores from logits ([n, num_labels]) by the given function."""
    if fn == SOFTMAX:
        return softmax(logits)
    if fn == SIGMOID:
        with np.errstate(over="ignore"):  # exp overflows to inf for very negative logits: the score is 0
            return np.asarray(1.0 / (1.0 + np.exp(-logits.astype(np.float64))), dtype=np.float32)
    return logits


@dataclass(frozen=True)
class BatchStats:
    """What one forward pass cost; serving exports these as metrics."""

    batch_size: int
    tokens: int  # real (unpadded) tokens
    padded_tokens: int
    model_seconds: float


def encoding_key(tokenizer: Any, max_length: int, truncation: Truncation | str) -> str:
    """Identifies what token ids mean: the tokenizer's full definition with max_length and truncation.

    The ingress tokenizes and model replicas take ids; while a model swap rolls out, an old ingress can
    reach a new model replica (and the reverse). Ids made by another tokenizer would be read as garbage
    with no error, so each request carries the key and a replica re-tokenizes when it differs.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    definition = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    digest = hashlib.sha256(definition.encode())
    digest.update(f"|{max_length}|{Truncation(truncation).value}".encode())
    return digest.hexdigest()


class TextEncoder:
    """The artifact's tokenization (its tokenizer, max_length and truncation): texts in, token ids out.

    Loads without the model, so an HTTP front can tokenize while model replicas take token ids.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        max_length: int,
        truncation: Truncation | str,
        manifest: ArtifactManifest | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.truncation = Truncation(truncation)
        self.manifest = manifest

    @classmethod
    def from_artifact(cls, location: str) -> TextEncoder:
        """The tokenizer and settings of a verified artifact (path or URI); the weights are not loaded."""
        local_dir, manifest = fetch_artifact(location)
        return cls(
            load_tokenizer(str(local_dir)),
            max_length=manifest.max_length,
            truncation=manifest.truncation,
            manifest=manifest,
        )

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id or 0)

    @functools.cached_property
    def key(self) -> str:
        """This encoder's `encoding_key`."""
        return encoding_key(self.tokenizer, self.max_length, self.truncation)

    def encode(self, texts: Sequence[str], *, truncate: bool = True) -> list[list[int]]:
        """Token ids per text (InputError for unusable text, or over-long text with truncate=False)."""
        return encode(self.tokenizer, texts, self.max_length, self.truncation, truncate=truncate)


def padded_tokens(lengths: Sequence[int]) -> int:
    """Tokens of one forward pass over sequences of these lengths, padding included."""
    return len(lengths) * max(lengths, default=0)


def forward_passes(
    lengths: Sequence[int], max_batch_size: int, max_batch_tokens: int | None = None
) -> list[list[int]]:
    """Indices of the inputs per forward pass: sorted by length, a pass closes at max_batch_size inputs or
    when the next input would take it past max_batch_tokens padded tokens (an input alone always runs)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    passes: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Sorted ascending, so the next input is the widest: the pass would be (n + 1) x its length.
        too_wide = max_batch_tokens is not None and (len(current) + 1) * lengths[i] > max_batch_tokens
        if current and (len(current) == max_batch_size or too_wide):
            passes.append(current)
            current = []
        current.append(i)
    if current:
        passes.append(current)
    return passes


class Predictor:
    """A loaded classifier: tokenizes with the artifact's settings and returns per-label scores."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_length: int,
        truncation: Truncation | str,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        max_batch_size: int = 32,
        manifest: ArtifactManifest | None = None,
        runtime: Runtime = Runtime.TORCH,
        max_batch_tokens: int | None = None,
    ) -> None:
        """runtime must be concrete (torch, onnx, onnx-int8): from_artifact resolves auto.

        A forward pass takes at most max_batch_size inputs and (when set) max_batch_tokens padded tokens.
        """
        self.device = device or torch.device("cpu")
        self.runtime = Runtime(runtime)
        if self.runtime == Runtime.AUTO:
            raise ValueError("Predictor needs a concrete runtime; resolve auto with sentiray.runtime.resolve_runtime")
        self.dtype = dtype if self.runtime == Runtime.TORCH else torch.float32
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self._forward: TorchRunner | OnnxRunner = (
            TorchRunner(self.model, self.device)
            if self.runtime == Runtime.TORCH
            else OnnxRunner(
                self.model,
                quantize=self.runtime == Runtime.ONNX_INT8,
                cache_key=manifest.fingerprint() if manifest is not None else None,
            )
        )
        self.encoder = TextEncoder(tokenizer, max_length=max_length, truncation=truncation, manifest=manifest)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.truncation = Truncation(truncation)
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.manifest = manifest
        # The model's own config records its classes (the artifact's one record of them).
        self.labels = LabelSet.from_model_config(model.config)

    @classmethod
    def from_artifact(
        cls,
        location: str,
        *,
        device: str = "auto",
        precision: Precision | str = Precision.AUTO,
        max_batch_size: int = 32,
        runtime: Runtime | str = Runtime.AUTO,
        max_batch_tokens: int | None = None,
    ) -> Predictor:
        """Load a verified artifact (path or URI); device is auto, cpu or cuda; runtime as resolve_runtime."""
        local_dir, manifest = fetch_artifact(location)
        torch_device = resolve_device(None if device == "auto" else device == "cuda")
        concrete = resolve_runtime(runtime, torch_device, precision)
        dtype = resolve_precision(precision, torch_device) if concrete == Runtime.TORCH else torch.float32
        model = load_model(str(local_dir), dtype=dtype)  # the classes its config records
        tokenizer = load_tokenizer(str(local_dir))
        return cls(
            model, tokenizer, max_length=manifest.max_length, truncation=manifest.truncation,
            device=torch_device, dtype=dtype, max_batch_size=max_batch_size, manifest=manifest, runtime=concrete,
            max_batch_tokens=max_batch_tokens,
        )

    @property
    def numerics(self) -> str:
        """What the forward pass computes in: float32, bfloat16, float16 or int8."""
        return "int8" if self.runtime == Runtime.ONNX_INT8 else str(self.dtype).removeprefix("torch.")

    def encode(self, texts: Sequence[str], *, truncate: bool = True) -> list[list[int]]:
        return self.encoder.encode(texts, truncate=truncate)

    def logits_for_ids(self, encoded: Sequence[Sequence[int]]) -> np.ndarray:
        """Logits (float32, [n, num_labels]) for pre-tokenized inputs, in input order."""
        return self.logits_with_stats(encoded)[0]

    def logits_with_stats(self, encoded: Sequence[Sequence[int]]) -> tuple[np.ndarray, list[BatchStats]]:
        """Logits for pre-tokenized inputs, in input order, and what each forward pass cost.

        Inputs are sorted by length and cut into passes of similar length (forward_passes), so little
        compute goes to padding.
        """
        out = np.empty((len(encoded), self.labels.num_labels), dtype=np.float32)
        stats = []
        pad_id = self.encoder.pad_token_id
        lengths = [len(ids) for ids in encoded]
        for idx in forward_passes(lengths, self.max_batch_size, self.max_batch_tokens):
            batch = collate([encoded[i] for i in idx], pad_id)
            started = time.perf_counter()
            out[idx] = self._forward(batch["input_ids"], batch["attention_mask"])
            stats.append(
                BatchStats(
                    batch_size=len(idx),
                    tokens=int(batch["attention_mask"].sum()),
                    padded_tokens=int(batch["attention_mask"].numel()),
                    model_seconds=time.perf_counter() - started,
                )
            )
        return out, stats

    def logits(self, texts: Sequence[str], *, truncate: bool = True) -> np.ndarray:
        return self.logits_for_ids(self.encode(texts, truncate=truncate))

    def predict(
        self,
        texts: Sequence[str],
        *,
        raw_scores: bool = False,
        truncate: bool = True,
        top_k: int | None = None,
        function_to_apply: ScoreFunction | str | None = None,
    ) -> list[list[dict[str, Any]]]:
        """For each text, `[{"label", "score"}, ...]` sorted by score; see scores_to_predictions."""
        logits = self.logits(texts, truncate=truncate)
        return scores_to_predictions(
            logits, labels=self.labels, raw_scores=raw_scores, top_k=top_k, function_to_apply=function_to_apply
        )


def scores_to_predictions(
    logits: np.ndarray,
    *,
    labels: LabelSet = BINARY,
    raw_scores: bool = False,
    top_k: int | None = None,
    function_to_apply: ScoreFunction | str | None = None,
) -> list[list[dict[str, Any]]]:
    """Per row, `{"label", "score"}` dicts, highest score first, as Hugging Face's pipeline with `top_k`.

    top_k: how many labels (None: all; more than the model has: all, as the pipeline's slice does).
    function_to_apply: softmax, sigmoid or none (None: the model's default, see default_function);
    raw_scores=True is `none` (TEI's flag). ValueError, naming the field, for a bad value.
    """
    fn = resolve_function(labels, function_to_apply, raw_scores=raw_scores)
    k = check_top_k(top_k)
    if logits.ndim != 2 or logits.shape[1] != labels.num_labels:
        raise ValueError(f"logits of shape {logits.shape} do not match {labels.num_labels} labels")
    scores = apply_function(logits, fn)
    names = labels.names
    out = []
    for row in scores:
        ranked = sorted(range(len(row)), key=lambda j: -float(row[j]))[:k]
        out.append([{"label": names[j], "score": float(row[j])} for j in ranked])
    return out
