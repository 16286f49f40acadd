"""Which engine runs a loaded classifier's forward pass: PyTorch, or ONNX Runtime (fp32 or int8).

On CPUs without fast bf16 (AVX2-only x86, most cloud CPUs before Sapphire Rapids) the default is ONNX
Runtime with int8 dynamic quantization of the linear layers: of the CPU paths compared, it alone was
faster than PyTorch fp32 by the required margin without costing accuracy (docs/benchmarks.md, "Serving:
which CPU inference path"). On GPUs PyTorch in bf16/fp16 runs. The ONNX graph is exported from the
already loaded, manifest-verified PyTorch model when the predictor is built, so an artifact carries one
set of weights and every runtime serves exactly those.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sentiray.errors import ModelLoadError
from sentiray.model import cpu_has_fast_bf16
from sentiray.numerics import Precision, Runtime, runtime_conflict

log = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask")
# The fp32 graph must reproduce PyTorch's logits on a padded probe batch to this tolerance, else the
# export is refused (an export that silently drops the attention mask gives plausible, wrong scores).
EXPORT_TOLERANCE = 1e-3
ONNX_CACHE_DIR = Path(os.environ.get("SENTIRAY_CACHE_DIR", Path.home() / ".cache" / "sentiray")) / "onnx"


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_runtime(runtime: Runtime | str, device: torch.device, precision: Precision | str) -> Runtime:
    """The concrete runtime for the settings on a device.

    auto picks onnx-int8 only when nothing asks for other numerics: a CPU, precision auto, a CPU without
    fast bf16 (where it has AVX512-BF16/AMX, PyTorch bf16 is the documented default) and onnxruntime
    installed. Everything else runs PyTorch.
    """
    runtime, precision = Runtime(runtime), Precision(precision)
    if runtime == Runtime.AUTO:
        onnx_fits = device.type == "cpu" and precision == Precision.AUTO and not cpu_has_fast_bf16()
        return Runtime.ONNX_INT8 if onnx_fits and onnxruntime_available() else Runtime.TORCH
    problem = runtime_conflict(runtime, precision, device.type)
    if problem:
        raise ModelLoadError(problem)
    if runtime != Runtime.TORCH and not onnxruntime_available():
        raise ModelLoadError(f"runtime {runtime.value} needs onnxruntime: pip install 'sentiray[onnx]'")
    return runtime


class TorchRunner:
    """The PyTorch forward pass, under inference_mode, in the model's device and dtype."""

    def __init__(self, model: Any, device: torch.device) -> None:
        self.model = model
        self.device = device

    @torch.inference_mode()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> np.ndarray:
        logits = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)).logits
        return logits.float().cpu().numpy()


class OnnxRunner:
    """An ONNX Runtime session holding the model exported from PyTorch (optionally int8-quantized).

    With a cache_key (from the artifact's manifest: the sha256 of every file), the finished graph is kept
    in cache_dir, so a replica that restarts or scales up on the same node skips the export (seconds to
    tens of seconds on a small CPU node).
    """

    def __init__(
        self, model: Any, *, quantize: bool, threads: int | None = None, cache_key: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        import onnxruntime as ort

        started = time.perf_counter()
        self.quantized = quantize
        cached = self._cache_path(cache_key, cache_dir) if cache_key else None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle intra-op threads would otherwise spin for a while after each run, taking the CPU that
        # the Serve proxy, the ingress and tokenization need on a small node.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if cached is not None and cached.is_file():
            self.session = ort.InferenceSession(str(cached), options, providers=["CPUExecutionProvider"])
            source = "cache"
        else:
            with tempfile.TemporaryDirectory(prefix="sentiray-onnx-") as tmp:
                path = Path(tmp) / "model.onnx"
                probe = _export(model, path)
                # Checked before quantizing: int8 scores legitimately differ from fp32 (by how much on
                # real reviews is the benchmark's business); the fp32 graph must match PyTorch.
                fp32_session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                self._check_export(model, probe, fp32_session)
                if quantize:
                    _quantize(path, path.with_suffix(".int8.onnx"))
                    path = path.with_suffix(".int8.onnx")
                # The session reads the whole graph into memory; the temporary files can go.
                self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                if cached is not None:
                    _store(path, cached)
            source = "export"
        log.info(
            "ONNX Runtime %s graph ready from %s in %.1f s",
            "int8" if quantize else "fp32", source, time.perf_counter() - started,
        )

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> np.ndarray:
        return _run(self.session, input_ids, attention_mask)

    def _cache_path(self, cache_key: str, cache_dir: Path | None) -> Path:
        import onnxruntime

        versions = f"torch {torch.__version__} onnxruntime {onnxruntime.__version__} int8 {self.quantized}"
        digest = hashlib.sha256(f"{cache_key} {versions}".encode()).hexdigest()[:32]
        return (cache_dir or ONNX_CACHE_DIR) / f"{digest}.onnx"

    @staticmethod
    def _check_export(model: Any, probe: dict[str, torch.Tensor], session: Any) -> None:
        expected = TorchRunner(model, torch.device("cpu"))(**probe)
        diff = float(np.abs(expected - _run(session, **probe)).max())
        if not diff <= EXPORT_TOLERANCE:
            raise ModelLoadError(
                f"the ONNX export of this model disagrees with PyTorch by {diff:.3g} (tolerance "
                f"{EXPORT_TOLERANCE}); serve it with runtime torch"
            )


def _run(session: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> np.ndarray:
    feeds = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
    return np.asarray(session.run(None, feeds)[0], dtype=np.float32)


def _store(path: Path, destination: Path) -> None:
    """Copy into the cache under a temporary name, then rename: readers never see half a file."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(path, staging)
        staging.replace(destination)
    except OSError as e:  # a read-only or full cache costs the next start an export, nothing more
        log.warning("cannot cache the ONNX graph at %s: %s", destination, e)
        staging.unlink(missing_ok=True)


def _probe_batch(model: Any) -> dict[str, torch.Tensor]:
    """Two rows of different lengths, so the traced graph sees padding and a real attention mask."""
    vocab = int(model.config.vocab_size)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(low=min(1000, vocab - 1), high=vocab, size=(2, 24), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 13:] = 0
    input_ids[1, 13:] = int(model.config.pad_token_id or 0)
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def _export(model: Any, path: Path) -> dict[str, torch.Tensor]:
    """Export the fp32 classifier with dynamic batch and sequence axes; returns the probe batch used."""
    probe = _probe_batch(model)
    source = model.float().cpu().eval()

    class Logits(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=int(getattr(model.config, "max_position_embeddings", 512)))
    try:
        # The dynamo exporter, though the TorchScript one exports faster: that one traces transformers 5's
        # attention-mask code into a graph whose scores are wrong (and differ from export to export;
        # docs/benchmarks.md, "Serving: which CPU inference path").
        torch.onnx.export(
            Logits(source).eval(),
            (probe["input_ids"], probe["attention_mask"]),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=["logits"],
            dynamic_shapes={"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    except Exception as e:  # the exporter raises many types; all mean "this model does not export"
        raise ModelLoadError(f"cannot export the model to ONNX ({type(e).__name__}: {e}); use runtime torch") from e
    return probe


def _quantize(source: Path, destination: Path) -> None:
    """int8 dynamic quantization of the MatMul weights, per output channel (activations: per batch, at run time)."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        source,
        destination,
        weight_type=QuantType.QInt8,
        # One scale per output channel, not per matrix: per-tensor weights flipped more of fp32's labels
        # and cost accuracy, at no gain in speed (docs/benchmarks.md, "Serving: which CPU inference path").
        per_channel=True,
        # The dynamo exporter leaves some intermediate types for shape inference to find; name the default.
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )
