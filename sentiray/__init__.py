"""sentiray: sentiment analysis fine-tuned with Ray Train and served with Ray Serve.

This package is the Ray-free core: it imports and runs where Ray is not installed. Names are imported
lazily (PEP 562), so `import sentiray.cli` or `sentiray --help` do not pay for torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ArtifactManifest": "sentiray.artifact",
    "fetch_artifact": "sentiray.artifact",
    "verify_artifact": "sentiray.artifact",
    "write_artifact": "sentiray.artifact",
    "Precision": "sentiray.config",
    "TrainJobConfig": "sentiray.config",
    "Truncation": "sentiray.config",
    "build_config": "sentiray.config",
    "DatasetSplits": "sentiray.data",
    "TextDataset": "sentiray.data",
    "load_splits": "sentiray.data",
    "ArtifactError": "sentiray.errors",
    "ConfigError": "sentiray.errors",
    "DataError": "sentiray.errors",
    "InputError": "sentiray.errors",
    "ModelLoadError": "sentiray.errors",
    "RunStateError": "sentiray.errors",
    "SentirayError": "sentiray.errors",
    "ID2LABEL": "sentiray.labels",
    "LABEL2ID": "sentiray.labels",
    "Label": "sentiray.labels",
    "Predictor": "sentiray.predictor",
}

__all__ = [
    "ArtifactError",
    "ArtifactManifest",
    "ConfigError",
    "DataError",
    "DatasetSplits",
    "ID2LABEL",
    "InputError",
    "LABEL2ID",
    "Label",
    "ModelLoadError",
    "Precision",
    "Predictor",
    "RunStateError",
    "SentirayError",
    "TextDataset",
    "TrainJobConfig",
    "Truncation",
    "build_config",
    "fetch_artifact",
    "load_splits",
    "verify_artifact",
    "write_artifact",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sentiray' has no attribute {name!r}")


if TYPE_CHECKING:
    from sentiray.artifact import ArtifactManifest, fetch_artifact, verify_artifact, write_artifact
    from sentiray.config import TrainJobConfig, Truncation, build_config
    from sentiray.data import DatasetSplits, TextDataset, load_splits
    from sentiray.errors import (
        ArtifactError,
        ConfigError,
        DataError,
        InputError,
        ModelLoadError,
        RunStateError,
        SentirayError,
    )
    from sentiray.labels import ID2LABEL, LABEL2ID, Label
    from sentiray.numerics import Precision
    from sentiray.predictor import Predictor
