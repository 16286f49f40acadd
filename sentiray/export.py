"""Turn a training checkpoint into an artifact: evaluate on the test split, then write it manifest-last."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Sequence
from typing import Any

import torch

from sentiray.artifact import REFERENCE_RUNTIME, RuntimeMetrics, runtime_key, write_artifact
from sentiray.config import TrainJobConfig
from sentiray.data import TextDataset
from sentiray.errors import ModelLoadError
from sentiray.labels import LabelSet
from sentiray.metrics import classification_metrics
from sentiray.model import load_model, load_tokenizer, resolve_device, resolve_precision
from sentiray.numerics import Precision, Runtime
from sentiray.predictor import Predictor
from sentiray.report import model_card, render_plots
from sentiray.runtime import resolve_runtime
from sentiray.training import read_checkpoint_state

log = logging.getLogger(__name__)


def evaluate_predictor(predictor: Predictor, data: TextDataset) -> dict[str, Any]:
    """Test metrics through the same predictor serving uses (same tokenization, same precision)."""
    logits = predictor.logits(data.texts)
    return classification_metrics(
        data.label_array(), logits, data.label_set.names, multi_label=data.label_set.multi_label
    )


def export_device(device: str) -> torch.device:
    """The device the export scores on: auto is CUDA where available, else CPU; or cpu, cuda, cuda:N."""
    return resolve_device(None) if device == "auto" else torch.device(device)


def score_runtimes(
    checkpoint_dir: str,
    cfg: TrainJobConfig,
    test: TextDataset,
    device: torch.device,
    runtimes: Sequence[tuple[Runtime | str, Precision | str]],
    *,
    skip: Collection[str] = (),
) -> dict[str, RuntimeMetrics]:
    """Test metrics through each (runtime, precision) a server could run the checkpoint with on device.

    Keyed by runtime_key; runtimes whose key is in skip (already scored) are not scored again. Each gets
    its own copy of the weights: the predictor converts its model in place (to bf16, or to the CPU for
    the ONNX export), and the artifact is written from the fp32 one. A runtime that cannot run this model
    here (an ONNX export refused) is logged and left out; serving it would fail the same way.
    """
    tokenizer = load_tokenizer(checkpoint_dir)
    out: dict[str, RuntimeMetrics] = {}
    for runtime, precision in runtimes:
        try:
            concrete = resolve_runtime(runtime, device, precision)
            dtype = resolve_precision(precision, device) if concrete == Runtime.TORCH else torch.float32
            key = runtime_key(concrete, "int8" if concrete == Runtime.ONNX_INT8 else str(dtype).removeprefix("torch."))
            if key in out or key in skip:
                continue
            predictor = Predictor(
                load_model(checkpoint_dir, dtype=dtype), tokenizer, max_length=cfg.model.max_length,
                truncation=cfg.model.truncation, device=device, dtype=dtype, runtime=concrete,
            )
        except ModelLoadError as e:
            log.warning("test split not scored with runtime %s, precision %s: %s", runtime, precision, e)
            continue
        started = time.perf_counter()
        metrics = evaluate_predictor(predictor, test)
        out[key] = RuntimeMetrics(metrics=metrics, device=str(device), seconds=round(time.perf_counter() - started, 1))
        log.info("test split scored with %s on %s: accuracy %.4f", key, device, metrics.get("accuracy", float("nan")))
    return out


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
    serving_runtimes: Sequence[tuple[Runtime | str, Precision | str]] | None = None,
) -> tuple[str, dict[str, Any] | None]:
    """Evaluate the checkpoint on the test split and write the artifact; returns (location, test metrics).

    The test metrics are PyTorch fp32's (the manifest's test_metrics). The test split is also scored with
    serving_runtimes, (runtime, precision) pairs, into the manifest's runtime_metrics; by default with
    what runtime auto and precision auto serve on this kind of machine (int8 ONNX on CPUs without fast
    bf16, bf16 on GPUs and CPUs with it), so a server can report the metrics of what it runs.
    """
    state = read_checkpoint_state(checkpoint_dir)
    scoring_device = export_device(device)
    model = load_model(checkpoint_dir)
    tokenizer = load_tokenizer(checkpoint_dir)
    predictor = Predictor(
        model, tokenizer, max_length=cfg.model.max_length, truncation=cfg.model.truncation, device=scoring_device
    )
    test_metrics = None
    runtime_metrics: dict[str, RuntimeMetrics] = {}
    if test is not None:
        started = time.perf_counter()
        test_metrics = evaluate_predictor(predictor, test)
        runtime_metrics[REFERENCE_RUNTIME] = RuntimeMetrics(
            metrics=test_metrics, device=str(scoring_device), seconds=round(time.perf_counter() - started, 1)
        )
        wanted = [(Runtime.AUTO, Precision.AUTO)] if serving_runtimes is None else list(serving_runtimes)
        runtime_metrics |= score_runtimes(
            checkpoint_dir, cfg, test, scoring_device, wanted, skip={REFERENCE_RUNTIME}
        )
    history = history if history is not None else state.get("history", [])
    label_set = LabelSet.from_model_config(model.config)
    plots = render_plots(history, test_metrics, label_set)
    card = model_card(
        labels=label_set,
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
        runtime_metrics=runtime_metrics,
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
