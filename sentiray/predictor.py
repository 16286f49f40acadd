"""Batch in, labels and scores out: the model as serving and evaluation use it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sentiray.artifact import ArtifactManifest, fetch_artifact
from sentiray.config import Precision, Runtime, Truncation
from sentiray.labels import ID2LABEL
from sentiray.metrics import softmax
from sentiray.model import load_model, load_tokenizer, resolve_device, resolve_precision
from sentiray.runtime import OnnxRunner, TorchRunner, resolve_runtime
from sentiray.text import collate, encode


@dataclass(frozen=True)
class BatchStats:
    """What one forward pass cost; serving exports these as metrics."""

    batch_size: int
    tokens: int  # real (unpadded) tokens
    padded_tokens: int
    model_seconds: float


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
    ) -> None:
        """runtime must be concrete (torch, onnx, onnx-int8): from_artifact resolves auto."""
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
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.truncation = Truncation(truncation)
        self.max_batch_size = max_batch_size
        self.manifest = manifest
        self.last_stats: list[BatchStats] = []

    @classmethod
    def from_artifact(
        cls,
        location: str,
        *,
        device: str = "auto",
        precision: Precision | str = Precision.AUTO,
        max_batch_size: int = 32,
        runtime: Runtime | str = Runtime.AUTO,
    ) -> Predictor:
        """Load a verified artifact (path or URI); device is auto, cpu or cuda; runtime as resolve_runtime."""
        local_dir, manifest = fetch_artifact(location)
        torch_device = resolve_device(None if device == "auto" else device == "cuda")
        concrete = resolve_runtime(runtime, torch_device, precision)
        dtype = resolve_precision(precision, torch_device) if concrete == Runtime.TORCH else torch.float32
        model = load_model(str(local_dir), dtype=dtype)
        tokenizer = load_tokenizer(str(local_dir))
        return cls(
            model, tokenizer, max_length=manifest.max_length, truncation=manifest.truncation,
            device=torch_device, dtype=dtype, max_batch_size=max_batch_size, manifest=manifest, runtime=concrete,
        )

    @property
    def numerics(self) -> str:
        """What the forward pass computes in: float32, bfloat16, float16 or int8."""
        return "int8" if self.runtime == Runtime.ONNX_INT8 else str(self.dtype).removeprefix("torch.")

    def encode(self, texts: Sequence[str], *, truncate: bool = True) -> list[list[int]]:
        return encode(self.tokenizer, texts, self.max_length, self.truncation, truncate=truncate)

    def logits_for_ids(self, encoded: Sequence[Sequence[int]]) -> np.ndarray:
        """Logits (float32, [n, 2]) for pre-tokenized inputs, in input order.

        Inputs are sorted by length and cut into batches of similar length, so little compute goes
        to padding.
        """
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out = np.empty((len(encoded), len(ID2LABEL)), dtype=np.float32)
        stats = []
        pad_id = self.tokenizer.pad_token_id or 0
        for start in range(0, len(order), self.max_batch_size):
            idx = order[start : start + self.max_batch_size]
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
        self.last_stats = stats
        return out

    def logits(self, texts: Sequence[str], *, truncate: bool = True) -> np.ndarray:
        return self.logits_for_ids(self.encode(texts, truncate=truncate))

    def predict(
        self, texts: Sequence[str], *, raw_scores: bool = False, truncate: bool = True
    ) -> list[list[dict[str, Any]]]:
        """For each text, `[{"label", "score"}, ...]` sorted by score (probabilities, or logits)."""
        logits = self.logits(texts, truncate=truncate)
        return scores_to_predictions(logits, raw_scores=raw_scores)


def scores_to_predictions(logits: np.ndarray, *, raw_scores: bool = False) -> list[list[dict[str, Any]]]:
    """Per-row label/score lists, highest score first."""
    scores = logits if raw_scores else softmax(logits)
    out = []
    for row in scores:
        ranked = sorted(range(len(row)), key=lambda j: -float(row[j]))
        out.append([{"label": ID2LABEL[j], "score": float(row[j])} for j in ranked])
    return out
