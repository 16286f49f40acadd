"""sentiray: sentiment analysis fine-tuned with Ray Train and served with Ray Serve.

This package is the Ray-free core: it imports and runs where Ray is not installed.
"""

from sentiray.artifact import ArtifactManifest, fetch_artifact, verify_artifact, write_artifact
from sentiray.config import Precision, TrainJobConfig, Truncation, build_config
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
from sentiray.predictor import Predictor

__version__ = "0.1.0"

__all__ = [
    "ID2LABEL",
    "LABEL2ID",
    "ArtifactError",
    "ArtifactManifest",
    "ConfigError",
    "DataError",
    "DatasetSplits",
    "InputError",
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
