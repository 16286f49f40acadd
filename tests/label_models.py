"""Tiny classifiers of any label set (untrained, seeded): what serving tests need beyond the binary default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sentiray.labels import LabelSet

THREE = LabelSet.of(["negative", "neutral", "positive"])


def tiny_bert_classifier(labels: LabelSet, vocab_size: int, *, seed: int = 0) -> Any:
    """A 2-layer, 32-wide BERT with a head for `labels`, written into its config as training writes it.

    initializer_range is raised from BERT's 0.02 so untrained logits are far enough apart for the scores
    of different labels (and functions) to differ clearly.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512, pad_token_id=0, initializer_range=0.5, **labels.model_config_kwargs(),
    )
    return BertForSequenceClassification(config).eval()


def write_labelled_artifact(destination: Path | str, tokenizer_dir: Path, labels: LabelSet, *, seed: int = 0) -> str:
    """An artifact (the real writer) of a tiny BERT for `labels`, with the tokenizer found in tokenizer_dir."""
    from sentiray.model import load_tokenizer
    from tests.support import write_loaded_artifact

    tokenizer = load_tokenizer(str(tokenizer_dir))
    model = tiny_bert_classifier(labels, len(tokenizer), seed=seed)
    return write_loaded_artifact(destination, (model, tokenizer), base_model="tiny-bert")
