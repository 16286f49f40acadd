"""Typed configuration of a training job, built from a preset, a YAML file and CLI flags (in that order),
and the one pydantic-to-argparse generator (`add_model_arguments`) that the training, scoring
(`sentiray.score_config`) and serving flags are made by.

Over 350 lines because the training job's four option sections (data, model, optim, run), their
cross-field rules, the presets and the generator are one schema: every option lives in exactly one
pydantic model here, and its flag, `--help` text and YAML key are generated from that field, so there
is one place to add or document an option. Precision and the inference runtime are in
`sentiray.numerics`, label-bin parsing in `sentiray.labels`, the scoring options in
`sentiray.score_config`.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import types
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sentiray.errors import ConfigError
from sentiray.labels import parse_bins
from sentiray.numerics import Precision


class Truncation(StrEnum):
    """How a review longer than max_length is cut."""

    HEAD = "head"  # keep the first tokens
    HEAD_TAIL = "head_tail"  # keep the first quarter and the last three quarters (Sun et al., 2019)


class Scheduler(StrEnum):
    """Learning-rate schedule after warmup."""

    LINEAR = "linear"
    COSINE = "cosine"
    CONSTANT = "constant"


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


def add_model_arguments(
    group: Any,
    model: type[BaseModel],
    fields: Sequence[str] | None = None,
    defaults_shown: Mapping[str, str] | None = None,
) -> None:
    """One flag per field of a pydantic model (`--field-name`), its help from the field's description.

    The one generator of the training, scoring and serving flags. Unset flags stay out of the
    namespace (argparse.SUPPRESS), so they never override a preset, a YAML file or a Serve config with
    a default; the model applies its own defaults when built. A field without a default is a required
    flag. fields: only these (default: all); defaults_shown: what the help says for a field's default
    where it is not the model's (e.g. "the config's" for options a Serve config file sets).
    """
    for name in fields or model.model_fields:
        field = model.model_fields[name]
        flag = "--" + name.replace("_", "-")
        kind = _scalar_type(field.annotation)
        if get_origin(kind) in (list, tuple):
            kind = str  # a comma-separated flag; the field's validator splits it
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
        if field.is_required():
            kwargs["required"] = True
            kwargs["help"] = f"{field.description} (required)"
        elif defaults_shown and name in defaults_shown:
            kwargs["help"] = f"{field.description} (default: {defaults_shown[name]})"
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
