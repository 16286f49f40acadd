"""Inference runtimes: which one runs where, ONNX export correctness, int8 agreement, the graph cache."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from sentiray.errors import ModelLoadError
from sentiray.model import cpu_has_fast_bf16, load_model
from sentiray.numerics import Precision, Runtime
from sentiray.predictor import Predictor
from sentiray.runtime import OnnxRunner, TorchRunner, resolve_runtime
from sentiray.text import collate
from serve.schemas import AppArgs

CPU = torch.device("cpu")


def _ragged_batch(vocab: int, lengths: list[int], seed: int = 3) -> dict[str, torch.Tensor]:
    """Rows of other lengths than the export probe's, so dynamic axes and padding are exercised."""
    generator = torch.Generator().manual_seed(seed)
    rows = [torch.randint(5, vocab, (n,), generator=generator).tolist() for n in lengths]
    return collate(rows, pad_token_id=0)


@pytest.mark.skipif(cpu_has_fast_bf16(), reason="auto picks PyTorch bf16 on CPUs with fast bf16")
def test_auto_is_onnx_int8_on_this_cpu_and_torch_when_numerics_are_asked_for() -> None:
    assert resolve_runtime("auto", CPU, "auto") == Runtime.ONNX_INT8
    assert resolve_runtime("auto", CPU, "fp32") == Runtime.TORCH
    assert resolve_runtime("auto", CPU, "bf16") == Runtime.TORCH
    assert resolve_runtime("auto", torch.device("cuda"), "auto") == Runtime.TORCH
    assert resolve_runtime("onnx", CPU, "fp32") == Runtime.ONNX


@pytest.mark.parametrize(
    ("runtime", "precision", "device", "message"),
    [
        ("onnx-int8", "bf16", "cpu", "runtime onnx-int8 computes in int8; precision bf16 needs runtime torch"),
        ("onnx", "fp16", "cpu", "runtime onnx computes in fp32; precision fp16 needs runtime torch"),
        ("onnx-int8", "auto", "cuda", "runtime onnx-int8 runs on CPU only"),
    ],
)
def test_conflicting_runtime_settings_are_refused(runtime: str, precision: str, device: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        resolve_runtime(runtime, torch.device(device), precision)


def test_serve_args_refuse_a_conflict_where_they_are_built() -> None:
    with pytest.raises(ValueError, match="runtime onnx-int8 computes in int8; precision bf16 needs runtime torch"):
        AppArgs(model="m", runtime=Runtime.ONNX_INT8, dtype=Precision.BF16)
    with pytest.raises(ValueError, match="runtime onnx runs on CPU only"):
        AppArgs(model="m", runtime=Runtime.ONNX, device="cuda")
    assert AppArgs(model="m").runtime == Runtime.AUTO


def test_onnx_fp32_matches_pytorch_on_other_shapes_than_the_export(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = load_model(str(tiny_model_dir))
    runner = OnnxRunner(model, quantize=False, cache_dir=tmp_path)
    batch = _ragged_batch(model.config.vocab_size, [7, 40, 3, 63, 2])
    expected = TorchRunner(model, CPU)(**batch)
    assert np.abs(runner(**batch) - expected).max() <= 1e-4
    single = _ragged_batch(model.config.vocab_size, [50], seed=4)
    assert np.abs(runner(**single) - TorchRunner(model, CPU)(**single)).max() <= 1e-4


def test_an_export_that_disagrees_with_pytorch_is_refused(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sentiray.runtime

    # No real export disagrees on demand; a tolerance below any difference makes the real check fail.
    monkeypatch.setattr(sentiray.runtime, "EXPORT_TOLERANCE", -1.0)
    with pytest.raises(ModelLoadError, match="ONNX export of this model disagrees with PyTorch .*runtime torch"):
        OnnxRunner(load_model(str(tiny_model_dir)), quantize=False, cache_key="k", cache_dir=tmp_path)
    assert not list(tmp_path.glob("*.onnx")), "a refused export must not be cached"


def test_int8_agrees_with_fp32_on_labels(tiny_artifact: Path) -> None:
    from tests.support import synthetic_reviews

    texts, labels = synthetic_reviews(120, seed=11)
    fp32 = Predictor.from_artifact(str(tiny_artifact), runtime="torch", precision="fp32")
    int8 = Predictor.from_artifact(str(tiny_artifact), runtime="onnx-int8")
    assert (int8.runtime, int8.numerics, fp32.numerics) == (Runtime.ONNX_INT8, "int8", "float32")
    a, b = fp32.logits(texts), int8.logits(texts)
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.97
    assert (b.argmax(1) == np.array(labels)).mean() >= 0.9


def test_the_graph_cache_serves_a_restart_without_the_model(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = load_model(str(tiny_model_dir))
    batch = _ragged_batch(model.config.vocab_size, [9, 30])
    first = OnnxRunner(model, quantize=True, cache_key="artifact-sha", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.onnx"))) == 1
    with caplog.at_level(logging.INFO, logger="sentiray.runtime"):
        # A cache hit never touches the PyTorch model: None would fail any export.
        again = OnnxRunner(None, quantize=True, cache_key="artifact-sha", cache_dir=tmp_path)
    assert "from cache" in caplog.text
    np.testing.assert_array_equal(first(**batch), again(**batch))
    # Another artifact (or the fp32 graph of this one) is another entry, never the cached int8 graph.
    with pytest.raises(AttributeError):
        OnnxRunner(None, quantize=False, cache_key="artifact-sha", cache_dir=tmp_path)
    with pytest.raises(AttributeError):
        OnnxRunner(None, quantize=True, cache_key="other-artifact", cache_dir=tmp_path)


def test_predictor_refuses_an_unresolved_runtime(tiny_model_dir: Path) -> None:
    from sentiray.model import load_tokenizer

    with pytest.raises(ValueError, match="concrete runtime"):
        Predictor(
            load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir)), max_length=32,
            truncation="head", runtime=Runtime.AUTO,
        )
