"""How forward passes compute: the numeric precision (training and inference) and the inference engine,
with the one rule for which combinations can run (`runtime_conflict`). The training, scoring and serving
configs all take these; they are not training options, so they live apart from `sentiray.config`.
"""

from __future__ import annotations

from enum import StrEnum


class Precision(StrEnum):
    """Numeric precision of training or inference."""

    AUTO = "auto"  # bf16 where the hardware has it (CUDA sm80+, CPUs with AVX512-BF16/AMX), else fp32
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class Runtime(StrEnum):
    """The engine of inference forward passes (sentiray.runtime)."""

    AUTO = "auto"  # onnx-int8 on CPUs without fast bf16 (when onnxruntime is installed), else torch
    TORCH = "torch"  # PyTorch in the resolved precision (fp32, bf16, fp16)
    ONNX = "onnx"  # ONNX Runtime, fp32 (CPU)
    ONNX_INT8 = "onnx-int8"  # ONNX Runtime, int8 dynamic quantization of the linear layers (CPU)


def runtime_conflict(runtime: Runtime, precision: Precision, device: str | None) -> str | None:
    """Why a runtime cannot run with a precision on a device ("cpu", "cuda", None: not known yet), or None."""
    if runtime in (Runtime.AUTO, Runtime.TORCH):
        return None
    if device is not None and device != "cpu":
        return f"runtime {runtime.value} runs on CPU only; use runtime torch (or auto) on {device}"
    if precision not in (Precision.AUTO, Precision.FP32):
        computes = "int8" if runtime == Runtime.ONNX_INT8 else "fp32"
        return f"runtime {runtime.value} computes in {computes}; precision {precision.value} needs runtime torch"
    return None
