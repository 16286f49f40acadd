"""Label sets: the classes a model predicts, shared by data loading, training, the artifact and serving.

A `LabelSet` is the ordered class names (the integer id is the position) and whether a text may carry
several of them at once (multi-label: one sigmoid per class) or exactly one (single-label: softmax).
The model's Hugging Face config is where an artifact records it (`id2label`, `problem_type`), as the
Hub's models, TEI, KServe's Hugging Face server and Triton all read it; `LabelSet.from_model_config`
is the one reader. Binary IMDB sentiment (`BINARY`) stays the default everywhere.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sentiray.errors import ConfigError


class Label(StrEnum):
    """The default (binary sentiment) classes; the integer id is the position (0 negative, 1 positive, as in IMDB)."""

    NEGATIVE = "NEGATIVE"
    POSITIVE = "POSITIVE"


SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"


@dataclass(frozen=True)
class LabelSet:
    """Ordered class names (id = position) and whether texts are multi-label."""

    names: tuple[str, ...]
    multi_label: bool = False

    def __post_init__(self) -> None:
        if len(self.names) < 2 and not self.multi_label:
            raise ConfigError(f"a single-label classifier needs at least 2 labels, got {list(self.names)}")
        if not self.names:
            raise ConfigError("a label set needs at least one label")
        if any(not isinstance(n, str) or not n.strip() for n in self.names):
            raise ConfigError(f"label names must be non-empty strings, got {list(self.names)}")
        if len(set(self.names)) != len(self.names):
            raise ConfigError(f"label names must be distinct, got {list(self.names)}")

    @property
    def num_labels(self) -> int:
        return len(self.names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @property
    def problem_type(self) -> str:
        """The Hugging Face `problem_type` (it picks the loss: cross-entropy or per-label BCE)."""
        return MULTI_LABEL if self.multi_label else SINGLE_LABEL

    @property
    def is_binary(self) -> bool:
        return self.num_labels == 2 and not self.multi_label

    def model_config_kwargs(self) -> dict[str, Any]:
        """What `from_pretrained` / a model config takes to build a head for this label set."""
        return {
            "num_labels": self.num_labels,
            "id2label": self.id2label,
            "label2id": self.label2id,
            "problem_type": self.problem_type,
        }

    @classmethod
    def from_model_config(cls, config: Any) -> LabelSet:
        """The label set a Hugging Face model config records (`id2label` ordered by id, `problem_type`).

        Artifacts made before label sets existed carry the binary names and no `problem_type`: they read
        as `BINARY`, as does a base model without a trained head (transformers' LABEL_0, LABEL_1...).
        """
        raw: Mapping[Any, str] = getattr(config, "id2label", None) or {}
        try:
            by_id = {int(k): str(v) for k, v in raw.items()}
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model config id2label has a non-integer id: {dict(raw)}") from e
        if sorted(by_id) != list(range(len(by_id))):
            raise ConfigError(f"model config id2label ids must be 0..n-1, got {sorted(by_id)}")
        names = tuple(by_id[i] for i in range(len(by_id)))
        problem_type = getattr(config, "problem_type", None)
        if problem_type is None and all(name == f"LABEL_{i}" for i, name in enumerate(names)):
            # transformers' placeholder names: a base model with no trained head reads as the default.
            return BINARY
        return cls(names=names, multi_label=problem_type == MULTI_LABEL)

    @classmethod
    def of(cls, names: Sequence[str], *, multi_label: bool = False) -> LabelSet:
        return cls(names=tuple(names), multi_label=multi_label)


BINARY = LabelSet(names=(Label.NEGATIVE.value, Label.POSITIVE.value))

# The binary default's tables, kept for code and artifacts that predate label sets.
LABELS: tuple[Label, ...] = (Label.NEGATIVE, Label.POSITIVE)
ID2LABEL: dict[int, str] = BINARY.id2label
LABEL2ID: dict[str, int] = BINARY.label2id
NUM_LABELS = BINARY.num_labels

# Spellings accepted in data files for the binary default, mapped to the label id. Anything else is
# refused by the loader.
_LABEL_ALIASES: dict[str, int] = {
    "0": 0,
    "neg": 0,
    "negative": 0,
    "1": 1,
    "pos": 1,
    "positive": 1,
}


def parse_label(value: object) -> int | None:
    """Map a raw binary label (0/1, bool, 'neg'/'pos', 'NEGATIVE'/'POSITIVE') to its id; None if not a label."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    if isinstance(value, str):
        return _LABEL_ALIASES.get(value.strip().lower())
    return None


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
