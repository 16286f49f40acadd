"""The one tokenization path shared by training, evaluation and serving."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sentiray.config import Truncation
from sentiray.errors import InputError

# IMDB reviews carry literal `<br />` tags; they are markup, not words.
_BREAK_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)


def validate_texts(texts: Sequence[object]) -> list[str]:
    """Refuse what no tokenizer can take: non-strings, empty or whitespace-only text, lone surrogates."""
    if isinstance(texts, str | bytes):  # a bare string would be read as one text per character
        raise InputError("inputs: expected a list of texts, got a single string; wrap it in a list")
    if len(texts) == 0:
        raise InputError("inputs: empty list; send at least one text")
    clean = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"inputs[{i}]: expected a string, got {type(text).__name__}")
        if not text.strip():
            raise InputError(f"inputs[{i}]: empty or whitespace-only text")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InputError(f"inputs[{i}]: not valid Unicode (lone surrogate at position {e.start})") from e
        clean.append(text)
    return clean


def clean_text(text: str) -> str:
    return _BREAK_TAG.sub(" ", text)


def _head_tail(ids: list[int], budget: int) -> list[int]:
    # Sun et al. (2019) keep 128 head + 382 tail tokens of 510: a quarter head, the rest tail.
    head = budget // 4
    return ids[:head] + ids[len(ids) - (budget - head) :]


def encode(
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    truncation: Truncation | str,
    *,
    truncate: bool = True,
) -> list[list[int]]:
    """Token ids (special tokens included, unpadded) for each text, at most max_length long.

    With truncate=False a text longer than max_length raises InputError instead of being cut.
    """
    texts = [clean_text(t) for t in validate_texts(texts)]
    prefix, suffix = special_tokens_template(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    if budget < 2:
        raise InputError(f"max_length {max_length} leaves no room for text tokens")
    # Tokenize without special tokens or truncation first, so over-long texts can be detected and cut
    # head-only or head+tail the same way everywhere.
    pieces: list[list[int]] = tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
    out = []
    for i, ids in enumerate(pieces):
        if len(ids) > budget:
            if not truncate:
                raise InputError(
                    f"inputs[{i}]: {len(ids) + max_length - budget} tokens exceed the model's max_length "
                    f"{max_length}; send shorter text or set truncate=true"
                )
            ids = ids[:budget] if Truncation(truncation) == Truncation.HEAD else _head_tail(ids, budget)
        out.append(prefix + ids + suffix)
    return out


def token_lengths(
    tokenizer: Any, texts: Sequence[str], max_length: int, truncation: Truncation | str, chunk: int = 1024
) -> np.ndarray:
    """The length of each text's encoding (what `encode` returns), tokenized a chunk at a time."""
    lengths = np.zeros(len(texts), dtype=np.int32)
    for start in range(0, len(texts), chunk):
        encoded = encode(tokenizer, texts[start : start + chunk], max_length, truncation)
        lengths[start : start + len(encoded)] = [len(ids) for ids in encoded]
    return lengths


def special_tokens_template(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a single text ([CLS] and [SEP] for BERT).

    Read off a probe encoding, because transformers 5 tokenizers no longer all expose
    build_inputs_with_special_tokens.
    """
    probe = "sentiment"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return list(full[:start]), list(full[start + len(bare) :])
    raise InputError("tokenizer adds special tokens in a form sentiray cannot reproduce")


def collate(batch_ids: Sequence[Sequence[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest member; returns input_ids and attention_mask tensors."""
    width = max(len(ids) for ids in batch_ids)
    input_ids = torch.full((len(batch_ids), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch_ids), width), dtype=torch.long)
    for row, ids in enumerate(batch_ids):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}
