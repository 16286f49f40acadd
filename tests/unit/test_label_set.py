"""The label set read from a Hugging Face model config: the one place artifacts record their classes."""

from __future__ import annotations

import pytest
from transformers import BertConfig

from sentiray.errors import ConfigError
from sentiray.labels import BINARY, ID2LABEL, MULTI_LABEL, LabelSet


def test_round_trip_through_a_model_config() -> None:
    three = LabelSet.of(["negative", "neutral", "positive"])
    config = BertConfig(**three.model_config_kwargs())
    assert LabelSet.from_model_config(config) == three
    multi = LabelSet.of(["billing", "bug", "praise"], multi_label=True)
    config = BertConfig(**multi.model_config_kwargs())
    assert config.problem_type == MULTI_LABEL
    assert LabelSet.from_model_config(config) == multi


def test_a_config_from_before_label_sets_reads_as_binary() -> None:
    # What artifacts written before this change carry: the two names, no problem_type.
    config = BertConfig(num_labels=2, id2label=dict(ID2LABEL), label2id={v: k for k, v in ID2LABEL.items()})
    assert config.problem_type is None
    assert LabelSet.from_model_config(config) == BINARY
    # config.json stores the ids as strings; order follows the id, not the file's key order.
    config.id2label = {"1": "POSITIVE", "0": "NEGATIVE"}
    assert LabelSet.from_model_config(config) == BINARY


@pytest.mark.parametrize(
    ("names", "multi_label", "problem"),
    [
        (["only"], False, "at least 2 labels"),
        ([], True, "at least one label"),
        (["a", "a"], False, "distinct"),
        (["a", " "], False, "non-empty"),
    ],
)
def test_bad_label_sets_are_refused(names: list[str], multi_label: bool, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        LabelSet.of(names, multi_label=multi_label)


def test_gapped_ids_are_refused() -> None:
    config = BertConfig(id2label={0: "a", 2: "c"})
    with pytest.raises(ConfigError, match="0..n-1"):
        LabelSet.from_model_config(config)


def test_a_base_model_without_a_trained_head_reads_as_binary() -> None:
    # transformers names the classes of a config without any LABEL_0, LABEL_1: no classes recorded.
    assert LabelSet.from_model_config(BertConfig()) == BINARY
    # A trained head that happens to keep placeholder names but records its problem type keeps them.
    config = BertConfig(num_labels=3, problem_type="single_label_classification")
    assert LabelSet.from_model_config(config).names == ("LABEL_0", "LABEL_1", "LABEL_2")
