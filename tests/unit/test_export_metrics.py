"""Honest metrics: the export scores the test split with each runtime the artifact is served with, and
serving_metrics answers for the runtime actually serving (the fp32 ones, flagged, for older artifacts)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sentiray.artifact import REFERENCE_RUNTIME, runtime_key, serving_metrics, verify_artifact
from sentiray.config import TrainJobConfig, build_config
from sentiray.data import TextDataset, load_splits
from sentiray.export import export_checkpoint
from sentiray.metrics import classification_metrics
from sentiray.model import resolve_precision
from sentiray.numerics import Precision, Runtime
from sentiray.predictor import Predictor
from sentiray.runtime import resolve_runtime
from sentiray.training import STATE_FILE
from tests.support import write_tiny_artifact

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cfg(tiny_model_dir: Path, synthetic_data_dir: Path) -> TrainJobConfig:
    """The tiny_artifact fixture's training config."""
    return build_config(
        overrides={
            "dataset": str(synthetic_data_dir), "base_model": str(tiny_model_dir), "max_length": 64,
            "epochs": 3, "batch_size": 16, "learning_rate": 3e-3, "num_workers": 1, "precision": "fp32",
        }
    )


@pytest.fixture(scope="module")
def checkpoint(tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A checkpoint folder of the trained tiny model: the artifact's weights, tokenizer and trainer state."""
    folder = tmp_path_factory.mktemp("checkpoint")
    shutil.copytree(tiny_artifact, folder, dirs_exist_ok=True)
    (folder / STATE_FILE).write_bytes((folder / "training_state.json").read_bytes())
    return str(folder)


@pytest.fixture(scope="module")
def test_split(cfg: TrainJobConfig) -> TextDataset:
    test = load_splits(cfg.data).test
    assert test is not None
    return test


def _served_metrics(location: str, test: TextDataset, **options: Any) -> dict[str, Any]:
    """Score the test split the way a server loads the artifact (Predictor.from_artifact)."""
    predictor = Predictor.from_artifact(location, device="cpu", **options)
    return classification_metrics(np.asarray(test.labels), predictor.logits(test.texts))


def _auto_key_on_cpu() -> str:
    runtime = resolve_runtime(Runtime.AUTO, CPU, Precision.AUTO)
    dtype = resolve_precision(Precision.AUTO, CPU) if runtime == Runtime.TORCH else torch.float32
    return runtime_key(runtime, "int8" if runtime == Runtime.ONNX_INT8 else str(dtype).removeprefix("torch."))


def test_default_export_scores_what_auto_serves_here(tiny_artifact: Path, test_split: TextDataset) -> None:
    manifest = verify_artifact(tiny_artifact)
    auto_key = _auto_key_on_cpu()  # onnx-int8 on most CPUs, torch-bf16 on CPUs with fast bf16
    assert set(manifest.runtime_metrics) == {REFERENCE_RUNTIME, auto_key}
    reference = manifest.runtime_metrics[REFERENCE_RUNTIME]
    assert reference.metrics == manifest.test_metrics  # test_metrics keeps meaning PyTorch fp32
    assert reference.device == "cpu"
    served = _served_metrics(str(tiny_artifact), test_split)  # runtime auto, precision auto
    assert manifest.runtime_metrics[auto_key].metrics == served
    answer = serving_metrics(manifest, *_concrete(auto_key))
    assert answer.exact and answer.measured_with == auto_key and answer.metrics == served


def _concrete(key: str) -> tuple[Runtime, str]:
    return {
        "torch-fp32": (Runtime.TORCH, "float32"), "torch-bf16": (Runtime.TORCH, "bfloat16"),
        "onnx-int8": (Runtime.ONNX_INT8, "int8"), "onnx": (Runtime.ONNX, "float32"),
    }[key]


def test_each_requested_runtime_is_scored_as_serving_would(
    checkpoint: str, cfg: TrainJobConfig, test_split: TextDataset, tmp_path: Path
) -> None:
    out = tmp_path / "artifact"
    _, test_metrics = export_checkpoint(
        checkpoint, cfg, str(out), test=test_split, dataset_summary={}, device="cpu",
        serving_runtimes=[("onnx-int8", "auto"), ("torch", "bf16"), ("torch", "fp32"), ("auto", "fp32")],
    )
    manifest = verify_artifact(out)
    assert set(manifest.runtime_metrics) == {"torch-fp32", "onnx-int8", "torch-bf16"}
    assert manifest.test_metrics == test_metrics == manifest.runtime_metrics["torch-fp32"].metrics
    assert test_metrics == _served_metrics(str(out), test_split, runtime="torch", precision="fp32")
    for key, options in {
        "onnx-int8": {"runtime": "onnx-int8"}, "torch-bf16": {"runtime": "torch", "precision": "bf16"}
    }.items():
        served = _served_metrics(str(out), test_split, **options)
        assert manifest.runtime_metrics[key].metrics == served, key
        assert serving_metrics(manifest, *_concrete(key)).metrics == served
    # A runtime not scored (onnx fp32 here) stands on the fp32 reference, flagged as such.
    answer = serving_metrics(manifest, Runtime.ONNX, "float32")
    assert (answer.runtime, answer.exact, answer.measured_with) == ("onnx", False, "torch-fp32")
    assert answer.metrics == test_metrics


def test_artifacts_without_runtime_metrics_still_load_and_fall_back(tiny_model_dir: Path, tmp_path: Path) -> None:
    metrics = {"accuracy": 0.875, "f1": 0.87}
    location = write_tiny_artifact(tmp_path / "old", tiny_model_dir, test_metrics=metrics)
    # As written before runtime_metrics existed (the manifest is not in its own file list).
    manifest_path = Path(location) / "sentiray.json"
    raw = json.loads(manifest_path.read_text())
    del raw["runtime_metrics"]
    manifest_path.write_text(json.dumps(raw))
    manifest = verify_artifact(location)
    assert manifest.runtime_metrics == {}
    int8 = serving_metrics(manifest, Runtime.ONNX_INT8, "int8")
    assert (int8.metrics, int8.exact, int8.measured_with, int8.runtime) == (metrics, False, "torch-fp32", "onnx-int8")
    fp32 = serving_metrics(manifest, Runtime.TORCH, "float32")
    assert (fp32.metrics, fp32.exact) == (metrics, True)
    assert Predictor.from_artifact(location, device="cpu", runtime="torch").predict(["great film"])


def test_an_artifact_without_test_metrics_has_none_for_any_runtime(tiny_model_dir: Path, tmp_path: Path) -> None:
    manifest = verify_artifact(write_tiny_artifact(tmp_path / "a", tiny_model_dir))
    answer = serving_metrics(manifest, Runtime.TORCH, "bfloat16")
    assert (answer.metrics, answer.exact, answer.measured_with) == (None, False, None)


@pytest.mark.parametrize(
    ("runtime", "numerics", "key"),
    [("torch", "float32", "torch-fp32"), ("torch", "bfloat16", "torch-bf16"), ("torch", "float16", "torch-fp16"),
     ("onnx", "float32", "onnx"), ("onnx-int8", "int8", "onnx-int8")],
)
def test_runtime_keys_name_the_serving_options(runtime: str, numerics: str, key: str) -> None:
    assert runtime_key(runtime, numerics) == key


def test_runtime_key_refuses_what_serves_nothing() -> None:
    with pytest.raises(ValueError, match="runtime auto names no numerics"):
        runtime_key("auto", "float32")
    with pytest.raises(ValueError, match="runtime torch computes in one of"):
        runtime_key("torch", "int8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="covered for real by the CUDA test below")
def test_export_device_auto_means_cuda_where_available(
    checkpoint: str, cfg: TrainJobConfig, test_split: TextDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This machine has no GPU: tell torch it has one, and the export must try to score there. Moving the
    # model fails (this torch has no CUDA, or no driver), which shows where it went.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises((AssertionError, RuntimeError), match="CUDA|cuda|NVIDIA"):
        export_checkpoint(
            checkpoint, cfg, str(tmp_path / "out"), test=test_split, dataset_summary={}, device="auto"
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_export_device_auto_scores_on_the_gpu(
    checkpoint: str, cfg: TrainJobConfig, test_split: TextDataset, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    export_checkpoint(checkpoint, cfg, str(out), test=test_split, dataset_summary={}, device="auto")
    manifest = verify_artifact(out)
    assert manifest.runtime_metrics[REFERENCE_RUNTIME].device.startswith("cuda")
    assert any(key != REFERENCE_RUNTIME for key in manifest.runtime_metrics)  # bf16/fp16, what auto serves


def test_export_without_a_test_split_records_no_metrics(
    checkpoint: str, cfg: TrainJobConfig, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    _, test_metrics = export_checkpoint(checkpoint, cfg, str(out), test=None, dataset_summary={}, device="cpu")
    manifest = verify_artifact(out)
    assert test_metrics is None and manifest.test_metrics is None and manifest.runtime_metrics == {}
