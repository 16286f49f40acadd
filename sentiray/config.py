"""Typed configuration of a training job, built from a preset, a YAML file and CLI flags (in that order),
and of a batch scoring job (`ScoreConfig`, from CLI flags).

Every option lives in exactly one pydantic model below; the CLI flags (`add_model_arguments`, the one
pydantic-to-argparse generator), their `--help` text and the YAML keys are all generated from these
fields, so there is one place to add or document an option. The file is longer than most (~480 lines)
for that reason: every option model sits beside the one generator that turns it into flags.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import itertools
import json
import re
import types
from enum import StrEnum
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sentiray.errors import ConfigError


class Truncation(StrEnum):
    """How a review longer than max_length is cut."""

    HEAD = "head"  # keep the first tokens
    HEAD_TAIL = "head_tail"  # keep the first quarter and the last three quarters (Sun et al., 2019)


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


class Scheduler(StrEnum):
    """Learning-rate schedule after warmup."""

    LINEAR = "linear"
    COSINE = "cosine"
    CONSTANT = "constant"


_BIN = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:-\s*(-?\d+(?:\.\d+)?)\s*)?$")


def parse_bins(bins: tuple[str, ...] | list[str]) -> list[tuple[float, float]]:
    """`("1-2", "3-4", "10")` -> [(1, 2), (3, 4), (10, 10)]: inclusive ranges, none overlapping."""
    if len(bins) < 2:
        raise ValueError(f"at least 2 label bins are needed, got {list(bins)}")
    ranges = []
    for spec in bins:
        match = _BIN.match(spec)
        if match is None:
            raise ValueError(f"label bin {spec!r} is not LOW-HIGH or a single number (e.g. 1-2,3-4)")
        low = float(match.group(1))
        high = float(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise ValueError(f"label bin {spec!r} ends below its start")
        ranges.append((low, high))
    ordered = sorted(ranges)
    for (_, a_high), (b_low, _) in itertools.pairwise(ordered):
        if b_low <= a_high:
            raise ValueError(f"label bins overlap: {list(bins)}")
    return ranges


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class DataConfig(_Section):
    """Where the labelled reviews come from and how they are split."""

    dataset: str = Field(
        "imdb",
        description="Hugging Face Hub dataset id, or a local folder holding train/test files "
        "(parquet, csv or jsonl) or an aclImdb-style tree (train/pos, train/neg, test/...)",
    )
    train_file: str | None = Field(None, description="Explicit train file (overrides --dataset)")
    validation_file: str | None = Field(
        None, description="Explicit validation file (default: carved from train)"
    )
    test_file: str | None = Field(None, description="Explicit test file")
    text_column: str = Field("text", min_length=1, description="Column holding the review text")
    label_column: str = Field(
        "label", min_length=1,
        description="Column holding the label: 0/1, neg/pos or NEGATIVE/POSITIVE for the binary default; "
        "otherwise class names or integer ids, the classes being those of the train split",
    )
    label_names: tuple[str, ...] | None = Field(
        None, description="Class names in id order, comma-separated (a,b,c): the label column then holds "
        "these names or integer ids 0..n-1 (with --label-bins: the name of each bin)",
    )
    label_bins: tuple[str, ...] | None = Field(
        None, description="Bin a numeric label column into classes, comma-separated inclusive ranges in "
        "class order, e.g. 1-2,3-4,7-8,9-10 for IMDB's rating column (a value in no bin is an error)",
    )
    multi_label: bool = Field(
        False, description="Texts may carry several classes (or none): the label column holds a list of "
        "class names or ids (or a comma-separated string of them); one sigmoid per class",
    )
    validation_fraction: float = Field(
        0.1, gt=0.0, lt=0.5, description="Share of train carved out for validation (seeded)"
    )
    max_train_samples: int | None = Field(None, gt=0, description="Use at most this many train rows")
    max_eval_samples: int | None = Field(None, gt=0, description="Use at most this many validation rows")
    max_test_samples: int | None = Field(None, gt=0, description="Use at most this many test rows")
    data_seed: int = Field(42, description="Seed of the shuffle before the validation split and limits")

    @field_validator("label_names", "label_bins", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        # A flag gives one string, a YAML file a list or a string; both mean the same.
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(","))
        return value

    @field_validator("label_names")
    @classmethod
    def _distinct_names(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if names is not None:
            if any(not n for n in names):
                raise ValueError(f"label names must be non-empty, got {list(names)}")
            if len(set(names)) != len(names):
                raise ValueError(f"label names must be distinct, got {list(names)}")
            if len(names) < 2:
                raise ValueError(f"at least 2 label names are needed, got {list(names)}")
        return names

    @field_validator("label_bins")
    @classmethod
    def _valid_bins(cls, bins: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if bins is not None:
            parse_bins(bins)
        return bins

    @model_validator(mode="after")
    def _names_match_bins(self) -> DataConfig:
        if self.multi_label and self.label_bins:
            raise ValueError("label_bins give each text one class; they do not go with multi_label")
        if self.label_bins and self.label_names and len(self.label_bins) != len(self.label_names):
            raise ValueError(
                f"label_names has {len(self.label_names)} names for {len(self.label_bins)} label_bins; "
                "give one name per bin"
            )
        return self


class ModelConfig(_Section):
    """The base model and how text becomes tokens."""

    base_model: str = Field(
        "distilbert-base-uncased", min_length=1, description="Hugging Face Hub id or local model folder"
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of the base model")
    max_length: int = Field(256, ge=16, le=8192, description="Tokens per review, special tokens included")
    truncation: Truncation = Field(Truncation.HEAD_TAIL, description="How long reviews are cut")
    allow_pickle: bool = Field(
        False, description="Allow pickle (.bin) weights; only safetensors load without it"
    )


class OptimConfig(_Section):
    """Optimisation hyper-parameters (per worker batch; the global batch is batch x workers x accum)."""

    epochs: float = Field(2.0, gt=0, le=100, description="Passes over the train split")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps")
    batch_size: int = Field(16, ge=1, le=4096, description="Reviews per worker per micro-batch")
    grad_accum_steps: int = Field(1, ge=1, le=1024, description="Micro-batches per optimizer step")
    learning_rate: float = Field(5e-5, gt=0, lt=1, description="Peak learning rate (AdamW)")
    weight_decay: float = Field(0.01, ge=0, lt=1, description="AdamW weight decay")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps spent warming up")
    scheduler: Scheduler = Field(Scheduler.LINEAR, description="Decay after warmup")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm")
    precision: Precision = Field(Precision.AUTO, description="Mixed precision of training")
    eval_every_steps: int | None = Field(
        None, gt=0, description="Evaluate and checkpoint every N optimizer steps (default: each epoch)"
    )
    log_every_steps: int = Field(10, gt=0, description="Print loss and throughput every N steps")
    seed: int = Field(42, description="Seed of weights init, shuffling and dropout")
    torch_threads: int | None = Field(
        None, gt=0, description="Intra-op threads per worker (default: the worker's CPUs)"
    )
    group_by_length: bool = Field(
        False, description="Batch reviews of similar token length together: less padding, same rows "
        "per epoch (the order stays seeded-random at the scale of a few thousand rows)",
    )
    freeze_layers: int = Field(
        0, ge=0, le=1024, description="Freeze the embeddings and the first N transformer layers "
        "(0: train every weight); backpropagation then stops above them, which saves compute",
    )


class RunConfig(_Section):
    """Where and how the job runs: workers, storage, fault tolerance, output."""

    num_workers: int = Field(2, ge=1, le=1024, description="Ray Train workers (one process each)")
    use_gpu: bool = Field(False, description="One GPU per worker")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per worker")
    storage_path: str = Field(
        "./runs", min_length=1, description="Checkpoint storage: a local/shared path or an s3:// URI"
    )
    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="Run name (default: unique)"
    )
    resume: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="Continue the named run from its latest checkpoint",
    )
    resume_if_exists: bool = Field(
        False, description="With --name: continue that run if it exists unfinished, else start it "
        "(one command for a first try and its retries, as a RayJob needs)",
    )
    max_failures: int = Field(1, ge=-1, description="Worker-group restarts allowed (-1: unlimited)")
    keep_checkpoints: int = Field(
        2, ge=1, description="Checkpoints kept: the best by validation accuracy, a tie to the lower loss"
    )
    output: str | None = Field(
        None, description="Artifact destination, a path or URI (default: <storage>/<name>/artifact)"
    )
    push_to_hub: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$",
        description="After training, publish the artifact to this Hub repository, NAMESPACE/NAME "
        "(token from HF_TOKEN; a failed push keeps the artifact and exits 1)",
    )

    @model_validator(mode="after")
    def _name_or_resume(self) -> RunConfig:
        if self.name and self.resume and self.name != self.resume:
            raise ValueError(f"name ({self.name!r}) and resume ({self.resume!r}) name different runs")
        return self


# Options that say where, under which name and how robustly a run goes, or what happens to its artifact,
# but not what it trains: left out of the fingerprint, so a run resumes after they change.
NOT_FINGERPRINTED = frozenset(
    f"run.{name}"
    for name in (
        "name", "resume", "resume_if_exists", "max_failures", "storage_path", "output", "keep_checkpoints",
        "push_to_hub",
    )
)


class TrainJobConfig(_Section):
    """The whole training job."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    run: RunConfig = RunConfig()

    def fingerprint(self) -> str:
        """Hash of everything that changes the trained model (not where or under which name it runs)."""
        payload = self.model_dump(mode="json")
        for key in NOT_FINGERPRINTED:
            section, name = key.split(".")
            payload[section].pop(name)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def flat(self) -> dict[str, Any]:
        """Field name -> value across all sections (field names are unique project-wide)."""
        return {k: v for section in self.model_dump(mode="json").values() for k, v in section.items()}


SECTIONS: dict[str, type[_Section]] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "run": RunConfig,
}

# Named starting points. `quick` finishes within minutes on a 2-core laptop with a MiniLM-size model.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {},
    "quick": {
        "data": {"max_train_samples": 1200, "max_eval_samples": 200, "max_test_samples": 500},
        "model": {"max_length": 128},
        "optim": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-4, "log_every_steps": 5},
        "run": {"num_workers": 2},
    },
    # The CPU fine-tuning recipe (docs/benchmarks.md, "The CPU recipe on the whole train split"): the
    # whole train split once in under an hour on 2 cores. 256 tokens cut head+tail (longer inputs were
    # worth +4 to +7 points in the sweep), paid for by grouping batches by length (0.80x the padded
    # tokens of random batches on IMDB) and freezing the embeddings and the first layer (0.84x the step
    # time of full fine-tuning; bench/cpu_recipe_levers.py). 2 workers x 1 thread (DDP) beat 1 x 2.
    "cpu": {
        "data": {"max_eval_samples": 500},
        "model": {"max_length": 256, "truncation": "head_tail"},
        "optim": {
            "epochs": 1, "batch_size": 16, "learning_rate": 1e-4, "eval_every_steps": 400, "log_every_steps": 25,
            "group_by_length": True, "freeze_layers": 1,
        },
        "run": {"num_workers": 2, "cpus_per_worker": 1},
    },
}


def _field_section() -> dict[str, str]:
    owner: dict[str, str] = {}
    for section, model in SECTIONS.items():
        for field in model.model_fields:
            if field in owner:  # pragma: no cover - guarded by a unit test
                raise RuntimeError(f"option {field!r} is defined in both {owner[field]} and {section}")
            owner[field] = section
    return owner


FIELD_SECTION = _field_section()


def format_validation_error(err: ValidationError) -> str:
    """One line per problem: `section.field: message (got VALUE)`."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "config"
        got = "" if e["type"] == "missing" else f" (got {e['input']!r})"
        if e["type"] == "extra_forbidden":
            section = SECTIONS.get(str(e["loc"][0])) if len(e["loc"]) == 2 else None
            allowed = f"; allowed: {', '.join(section.model_fields)}" if section else ""
            lines.append(f"{loc}: unknown option{allowed}")
        elif e["type"] == "value_error" and not e["loc"]:
            # A rule across fields (a model validator): its own message names the fields.
            lines.append(str(e["ctx"]["error"]))
        else:
            lines.append(f"{loc}: {e['msg']}{got}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML file of sections (`data:`, `model:`, `optim:`, `run:`)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        loaded = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections {sorted(SECTIONS)}")
    unknown = sorted(set(loaded) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"config file {p}: unknown section(s) {unknown}; allowed: {sorted(SECTIONS)}")
    return loaded


def build_config(
    preset: str = "default",
    yaml_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainJobConfig:
    """Preset, then YAML, then flat `field: value` overrides; validated here, errors name the field."""
    if preset not in PRESETS:
        raise ConfigError(f"preset: unknown preset {preset!r}; allowed: {sorted(PRESETS)}")
    raw: dict[str, Any] = _deep_merge({}, PRESETS[preset])
    if yaml_path is not None:
        raw = _deep_merge(raw, load_yaml_config(yaml_path))
    nested: dict[str, dict[str, Any]] = {}
    for key, value in (overrides or {}).items():
        if key not in FIELD_SECTION:
            close = difflib.get_close_matches(key, FIELD_SECTION, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(f"{key}: unknown option; {hint}allowed: {', '.join(FIELD_SECTION)}")
        nested.setdefault(FIELD_SECTION[key], {})[key] = value
    raw = _deep_merge(raw, nested)
    try:
        return TrainJobConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None


# --- CLI flags generated from the fields -------------------------------------------------------------


def _scalar_type(annotation: Any) -> Any:
    """The non-None member of `X | None`."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        return members[0]
    return annotation


def add_model_arguments(group: Any, model: type[BaseModel]) -> None:
    """One flag per field of a pydantic model (`--field-name`), its help from the field's description.

    The one generator of the training, scoring and serving flags. Unset flags stay out of the
    namespace (argparse.SUPPRESS), so they never override a preset, a YAML file or a Serve config with
    a default; the model applies its own defaults when built. A field without a default is a required
    flag.
    """
    for name, field in model.model_fields.items():
        flag = "--" + name.replace("_", "-")
        kind = _scalar_type(field.annotation)
        if get_origin(kind) in (list, tuple):
            kind = str  # a comma-separated flag; the field's validator splits it
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
        if field.is_required():
            kwargs["required"] = True
            kwargs["help"] = f"{field.description} (required)"
        elif "(default:" in (field.description or ""):  # the description says what unset means
            kwargs["help"] = field.description
        else:
            default = field.default.value if isinstance(field.default, StrEnum) else field.default
            kwargs["help"] = f"{field.description} (default: {default})"
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(kind, type) and issubclass(kind, StrEnum):
            kwargs["choices"] = [m.value for m in kind]
        else:
            kwargs["type"] = kind
            kwargs["metavar"] = name.upper()
        group.add_argument(flag, **kwargs)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--config`, `--preset` and one flag per training config field, grouped by section."""
    parser.add_argument("--config", metavar="YAML", help="YAML file with data/model/optim/run sections")
    parser.add_argument(
        "--preset", default="default", choices=sorted(PRESETS), help="Named starting point (default: none)"
    )
    for section, model in SECTIONS.items():
        add_model_arguments(parser.add_argument_group(f"{section} options", model.__doc__), model)


def config_from_namespace(args: argparse.Namespace) -> TrainJobConfig:
    """Build the config from parsed flags (the ones the user set) over the preset and YAML file."""
    values = vars(args)
    overrides = {k: v for k, v in values.items() if k in FIELD_SECTION}
    return build_config(values.get("preset", "default"), values.get("config"), overrides)


# --- the batch scoring job -----------------------------------------------------------------------------


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
