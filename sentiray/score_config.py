"""Typed options of the batch scoring job (`sentiray score`, `python -m ray_jobs.score`): one pydantic
model, its flags made by the one generator (`sentiray.config.add_model_arguments`), validated where built.
"""

from __future__ import annotations

import argparse
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sentiray.config import add_model_arguments, format_validation_error
from sentiray.errors import ConfigError
from sentiray.numerics import Precision, Runtime, runtime_conflict


class InputFormat(StrEnum):
    """How the scoring job reads its input files."""

    AUTO = "auto"  # from the file extensions (.parquet, .csv, .jsonl/.json)
    PARQUET = "parquet"
    CSV = "csv"
    JSONL = "jsonl"


class ScoreConfig(BaseModel):
    """The options of a batch scoring job (`sentiray score`, `python -m ray_jobs.score`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model: str = Field(..., min_length=1, description="Artifact folder, URI (s3://...) or Hub id")
    input: str = Field(
        ..., min_length=1, description="File, folder or glob of parquet/csv/jsonl; local or URI"
    )
    output: str = Field(..., min_length=1, description="Folder or URI the parquet files are written to")
    format: InputFormat = Field(InputFormat.AUTO, description="Input format (auto: from the file extensions)")
    text_column: str = Field("text", min_length=1, description="Column holding the reviews")
    batch_size: int = Field(64, ge=1, le=4096, description="Rows per batch and forward pass")
    use_gpu: bool = Field(False, description="One GPU per actor")
    cpus_per_actor: float = Field(1.0, gt=0, description="CPUs (and torch threads) per actor")
    min_actors: int = Field(1, ge=1, description="Smallest actor pool")
    max_actors: int | None = Field(
        None, ge=1, description="Largest actor pool (default: as many as the cluster's CPUs or GPUs allow)"
    )
    precision: Precision = Field(
        Precision.AUTO, description="auto (bf16 where the hardware runs it fast), fp32, bf16, fp16 (GPU)"
    )
    runtime: Runtime = Field(
        Runtime.AUTO,
        description="Forward-pass engine: auto (onnx-int8 on CPUs without fast bf16, else torch), torch, "
        "onnx, onnx-int8",
    )
    truncate: bool = Field(
        True,
        description="Cut reviews longer than the model's max_length (--no-truncate: mark them as bad rows)",
    )
    overwrite: bool = Field(False, description="Replace what is at --output")
    preserve_order: bool = Field(
        False,
        description="Write rows in input order: input files in path order, rows in file order; read the "
        "output files in name order. Slower: finished batches wait for earlier ones, and each output file "
        "is written on one thread",
    )
    fail_on_bad_rows: bool = Field(
        False, description="Exit 1 if any row could not be scored (the output is still written)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ScoreConfig:
        from sentiray import storage

        if self.max_actors is not None and self.max_actors < self.min_actors:
            raise ValueError(f"max_actors: {self.max_actors} is smaller than min_actors ({self.min_actors})")
        if self.precision == Precision.FP16 and not self.use_gpu:
            raise ValueError("precision: fp16 is for GPUs; allowed on CPU: auto, fp32, bf16")
        problem = runtime_conflict(self.runtime, self.precision, "cuda" if self.use_gpu else "cpu")
        if problem:
            raise ValueError(f"runtime: {problem}")
        if storage.normalize_location(self.input) == storage.normalize_location(self.output):
            raise ValueError(f"output: {self.output!r} is the input; write the scores somewhere else")
        return self

    @classmethod
    def build(cls, **values: Any) -> ScoreConfig:
        """Validated here; a bad value raises ConfigError naming the field and what is allowed."""
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            raise ConfigError(format_validation_error(e)) from None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ScoreConfig:
        """From flags made by `add_score_arguments` (the ones the user set; the rest take their default)."""
        return cls.build(**{k: v for k, v in vars(args).items() if k in cls.model_fields})


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    """The scoring job's flags, one per ScoreConfig field."""
    add_model_arguments(parser, ScoreConfig)
