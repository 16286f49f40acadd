"""The objective and the validation metrics: the two places where the kind of label decides the maths.

`row_losses` is what each training row contributes to the gradient; `validation_metrics` scores the
gathered validation logits; `evaluate` runs the model over the validation split across the ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from sentiray.config import TrainJobConfig
from sentiray.data import TextDataset
from sentiray.metrics import classification_metrics
from sentiray.text import collate, encode
from sentiray.training.context import WorkerContext, all_gather


def row_losses(logits: torch.Tensor, labels: torch.Tensor, multi_label: bool = False) -> torch.Tensor:
    """The training loss of each row (the loop weights and sums them): cross-entropy over the classes, or
    for multi-label the mean over the classes of each one's binary cross-entropy (the mean of all rows is
    what transformers' BCEWithLogitsLoss gives)."""
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none").mean(dim=-1)
    return F.cross_entropy(logits.float(), labels, reduction="none")


def validation_metrics(
    labels: np.ndarray, logits: np.ndarray, label_names: Sequence[str], multi_label: bool = False
) -> dict[str, Any]:
    """Classification metrics and the mean loss over the whole validation split."""
    metrics = classification_metrics(labels, logits, label_names, multi_label=multi_label)
    metrics["loss"] = float(row_losses(torch.from_numpy(logits), torch.from_numpy(labels), multi_label).mean())
    return metrics


def evaluate(
    model: torch.nn.Module,
    tokenizer: Any,
    data: TextDataset,
    cfg: TrainJobConfig,
    ctx: WorkerContext,
    autocast: Callable[[], Any],
    batch_size: int = 64,
) -> dict[str, Any]:
    """Metrics over the whole dataset, each rank scoring its stride of rows (results gathered)."""
    model.eval()
    n_outputs = int(cast(Any, model).config.num_labels)  # a Hugging Face model: its head's width
    ids = np.arange(ctx.rank, len(data), ctx.world_size)
    logits = np.zeros((len(ids), n_outputs), dtype=np.float32)
    pad = tokenizer.pad_token_id or 0
    with torch.inference_mode():
        # A split smaller than the world leaves some ranks no rows; they still join the gather below.
        texts = [data.texts[i] for i in ids]
        encoded = encode(tokenizer, texts, cfg.model.max_length, cfg.model.truncation) if texts else []
        # Length-sorted batches: less padding, same results.
        order = sorted(range(len(ids)), key=lambda j: len(encoded[j]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = {k: v.to(ctx.device) for k, v in collate([encoded[j] for j in chunk], pad).items()}
            with autocast():
                logits[chunk] = model(**batch).logits.float().cpu().numpy()
    model.train()
    gathered = all_gather((ids.tolist(), logits.tolist()), ctx)
    all_ids = np.concatenate([np.asarray(g[0], dtype=np.int64) for g in gathered])
    all_logits = np.concatenate([np.asarray(g[1], dtype=np.float32).reshape(-1, n_outputs) for g in gathered])
    labels = data.label_array(all_ids)
    return validation_metrics(labels, all_logits, data.label_set.names, data.label_set.multi_label)
