"""Turn a training checkpoint into an artifact: evaluate on the test split, then write it manifest-last."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from sentiray.artifact import write_artifact
from sentiray.config import TrainJobConfig
from sentiray.data import TextDataset
from sentiray.metrics import classification_metrics
from sentiray.model import load_model, load_tokenizer
from sentiray.predictor import Predictor
from sentiray.report import model_card, render_plots
from sentiray.training import read_checkpoint_state

# Optimizer state is for resuming, not for serving.
_CHECKPOINT_ONLY = ("optimizer.pt", "scheduler.pt", "trainer_state.json")


def evaluate_predictor(predictor: Predictor, data: TextDataset) -> dict[str, Any]:
    """Test metrics through the same predictor serving uses (same tokenization, same precision)."""
    logits = predictor.logits(data.texts)
    return classification_metrics(np.asarray(data.labels), logits)


def export_checkpoint(
    checkpoint_dir: str,
    cfg: TrainJobConfig,
    destination: str,
    *,
    test: TextDataset | None,
    dataset_summary: dict[str, Any],
    history: list[dict[str, Any]] | None = None,
    validation_metrics: dict[str, Any] | None = None,
    device: str = "auto",
    extra_files: dict[str, bytes] | None = None,
    model_name: str | None = None,
) -> tuple[str, dict[str, Any] | None]:
    """Evaluate the checkpoint on the test split and write the artifact; returns (location, test metrics)."""
    state = read_checkpoint_state(checkpoint_dir)
    model = load_model(checkpoint_dir)
    tokenizer = load_tokenizer(checkpoint_dir)
    predictor = Predictor(
        model, tokenizer, max_length=cfg.model.max_length, truncation=cfg.model.truncation,
        device=None if device == "auto" else torch.device(device),
    )
    test_metrics = evaluate_predictor(predictor, test) if test is not None else None
    history = history if history is not None else state.get("history", [])
    plots = render_plots(history, test_metrics)
    card = model_card(
        model_name=model_name or destination.rstrip("/").rsplit("/", 1)[-1],
        base_model=cfg.model.base_model,
        dataset=dataset_summary,
        test_metrics=test_metrics,
        max_length=cfg.model.max_length,
        truncation=cfg.model.truncation.value,
        training_config=cfg.model_dump(mode="json"),
        plots=sorted(plots),
    )
    location = write_artifact(
        destination,
        predictor.model,
        tokenizer,
        max_length=cfg.model.max_length,
        truncation=cfg.model.truncation,
        base_model=cfg.model.base_model,
        dataset=dataset_summary,
        test_metrics=test_metrics,
        validation_metrics=validation_metrics,
        history=history,
        training_config={**cfg.model_dump(mode="json"), "checkpoint_step": state.get("step")},
        extra_files={
            "training_state.json": json.dumps(state).encode(),
            "README.md": card.encode(),
            **plots,
            **(extra_files or {}),
        },
    )
    return location, test_metrics
