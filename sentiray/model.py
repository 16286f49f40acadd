"""Build the classifier and tokenizer from a Hub id or a local folder, safely.

`trust_remote_code` is never enabled, and weights load from safetensors only unless pickle is
explicitly allowed: a pickle checkpoint can run arbitrary code when loaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from sentiray.errors import ConfigError, ModelLoadError
from sentiray.labels import LabelSet
from sentiray.numerics import Precision

_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")


def _refuse_local_pickle(name_or_path: str, allow_pickle: bool) -> None:
    folder = Path(name_or_path)
    if allow_pickle or not folder.is_dir():
        return
    has_safetensors = any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").exists()
    pickles = [p for p in _PICKLE_WEIGHTS if (folder / p).exists()]
    if pickles and not has_safetensors:
        raise ModelLoadError(
            f"{folder}: only pickle weights ({', '.join(pickles)}); pickle can execute code when loaded. "
            "Convert them to safetensors, or pass --allow-pickle if you trust the source."
        )


def _quiet_transformers() -> None:
    # Per-shard progress bars flood Ray worker logs; sentiray prints its own progress.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # sentiray tokenizes whole reviews on purpose, then truncates them itself (head or head+tail);
    # the "sequence length is longer than the specified maximum" warning does not apply.
    logging.getLogger("transformers.tokenization_utils_base").setLevel(logging.ERROR)


def load_tokenizer(name_or_path: str, revision: str | None = None) -> Any:
    """The fast tokenizer of a base model or artifact."""
    from transformers import AutoTokenizer

    _quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"tokenizer {name_or_path!r}: cannot load ({e})") from e


def load_model(
    name_or_path: str,
    *,
    labels: LabelSet | None = None,
    allow_pickle: bool = False,
    revision: str | None = None,
    dtype: torch.dtype | None = None,
) -> Any:
    """A sequence classifier for a label set.

    labels None: the classes the model records (an artifact's or checkpoint's), or the binary default
    for a base model without a trained head. Given labels that differ from the recorded ones get a new
    head (fine-tuning a base model, or a binary model into more classes).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    _quiet_transformers()
    _refuse_local_pickle(name_or_path, allow_pickle)
    try:
        config = AutoConfig.from_pretrained(name_or_path, revision=revision, trust_remote_code=False)
        recorded = LabelSet.from_model_config(config)
        wanted = labels or recorded
        model = AutoModelForSequenceClassification.from_pretrained(
            name_or_path,
            revision=revision,
            **wanted.model_config_kwargs(),
            # A head of another size than the one saved is replaced by a fresh one, not an error.
            ignore_mismatched_sizes=wanted.num_labels != int(getattr(config, "num_labels", 0) or 0),
            trust_remote_code=False,
            use_safetensors=None if allow_pickle else True,
            dtype=dtype,
        )
    except (OSError, ValueError) as e:
        hint = "" if allow_pickle else " (only safetensors weights load without --allow-pickle)"
        raise ModelLoadError(f"model {name_or_path!r}: cannot load{hint}: {e}") from e
    except ConfigError as e:
        raise ModelLoadError(f"model {name_or_path!r}: {e}") from e
    return model


def model_depth(name_or_path: str, revision: str | None = None) -> int:
    """The number of transformer layers of a base model, read from its config alone (no weights)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name_or_path, revision=revision, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"model {name_or_path!r}: cannot read its config: {e}") from e
    return int(config.num_hidden_layers)


def check_freeze_layers(n_layers: int, depth: int) -> None:
    """Refuse a freeze_layers value that leaves no transformer layer to train."""
    if n_layers >= depth:
        raise ConfigError(
            f"freeze_layers: {n_layers} would freeze every layer of this {depth}-layer model; "
            f"use at most {depth - 1}"
        )


def freeze_lower_layers(model: Any, n_layers: int) -> None:
    """Freeze the embeddings and the first n_layers transformer layers (0: nothing is frozen).

    Frozen weights take no gradient, no optimizer state and no all-reduce, and backpropagation stops
    at the lowest trainable layer: on a 2-core CPU, freezing one of MiniLM's six layers cut the step
    time to 0.84x (bench/cpu_recipe_levers.py). The layers are found by structure (the base model's
    `embeddings` and its ModuleList of config.num_hidden_layers blocks), which covers BERT, DistilBERT,
    RoBERTa and their kin.
    """
    if n_layers == 0:
        return
    depth = int(model.config.num_hidden_layers)
    check_freeze_layers(n_layers, depth)
    base = model.base_model
    embeddings = getattr(base, "embeddings", None)
    layers = next(
        (m for m in base.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == depth), None
    )
    if not isinstance(embeddings, torch.nn.Module) or layers is None:
        raise ConfigError(
            f"freeze_layers: cannot find the embeddings and transformer layers of {type(model).__name__}; "
            "use 0 to train every weight"
        )
    for module in (embeddings, *list(layers)[:n_layers]):
        module.requires_grad_(False)


def resolve_device(use_gpu: bool | None = None) -> torch.device:
    """cuda when asked for (or available, if unspecified), else cpu."""
    if use_gpu or (use_gpu is None and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ModelLoadError("a GPU was requested but CUDA is not available on this node")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def cpu_has_fast_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AVX512-BF16 or AMX), so bf16 is faster than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: Precision | str, device: torch.device) -> torch.dtype:
    """The compute dtype for a precision setting on a device."""
    precision = Precision(precision)
    if precision == Precision.AUTO:
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    if precision == Precision.FP16 and device.type == "cpu":
        raise ModelLoadError("precision fp16 is for GPUs; use bf16 or fp32 on CPU")
    return {Precision.FP32: torch.float32, Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}[precision]
