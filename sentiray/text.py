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

# Cutting a long text to the part that can reach the kept tokens (see _text_ids). A window of
# _CHARS_PER_TOKEN characters per needed token: English runs 4-5 characters a WordPiece or BPE token, so
# a window short of tokens (tokenized again whole, after the window) is rare; narrower windows fell back
# often enough on IMDB to lose more than they saved (docs/benchmarks.md, "Tokenization").
_CHARS_PER_TOKEN = 6
# Tokens tokenized beyond the kept ones at each cut and thrown away, so whatever a tokenizer does at the
# edge of a cut (a merge across it, a space it prepends) cannot reach the kept tokens.
_CUT_MARGIN = 8
# Cuts fall only on these characters, where every tokenizer family splits words. Not on all of Python's
# whitespace: it counts control characters (U+001C-U+001F) that BERT's normalizer deletes, which joins
# the words on either side, and a word's tokens depend on the whole word (past 100 characters WordPiece
# makes it one [UNK]).
_CUT_CHARS = " \t\n\r"
# How far back (or forward) from the window's edge a cut looks for one of them; a text with none there
# (CJK, a URL, a long run without spaces) is tokenized whole.
_CUT_SCAN = 256


def validate_texts(texts: Sequence[object]) -> list[str]:
    """Refuse what no tokenizer can take: non-strings, empty or whitespace-only text, lone surrogates."""
    if isinstance(texts, str | bytes):  # a bare string would be read as one text per character
        raise InputError("inputs: expected a list of texts, got a single string; wrap it in a list")
    if len(texts) == 0:
        raise InputError("inputs: empty list; send at least one text")
    clean = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"expected a string, got {type(text).__name__}", i)
        if not text.strip():
            raise InputError("empty or whitespace-only text", i)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InputError(f"not valid Unicode (lone surrogate at position {e.start})", i) from e
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
    cut_text: bool = True,
) -> list[list[int]]:
    """Token ids (special tokens included, unpadded) for each text, at most max_length long.

    With truncate=False a text longer than max_length raises InputError instead of being cut. The ids
    are those of the whole text's tokenization, truncated; cut_text=False tokenizes every text whole to
    get them (slower on long texts, the same ids: the reference the cut is tested and measured against).
    """
    texts = [clean_text(t) for t in validate_texts(texts)]
    prefix, suffix = special_tokens_template(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    if budget < 2:
        raise InputError(f"max_length {max_length} leaves no room for text tokens")
    # Tokens without special tokens or truncation first, so over-long texts can be detected and cut
    # head-only or head+tail the same way everywhere.
    pieces = _text_ids(tokenizer, texts, budget, Truncation(truncation), cut=truncate and cut_text)
    out = []
    for i, ids in enumerate(pieces):
        if len(ids) > budget:
            if not truncate:
                raise InputError(
                    f"{len(ids) + max_length - budget} tokens exceed the model's max_length {max_length}; "
                    "send shorter text or set truncate=true",
                    i,
                )
            ids = ids[:budget] if Truncation(truncation) == Truncation.HEAD else _head_tail(ids, budget)
        out.append(prefix + ids + suffix)
    return out


def _tokenize(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    if not texts:
        return []
    ids: list[list[int]] = tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
    return ids


def _head_cut(text: str, chars: int) -> str | None:
    """text up to the last cut character at or before `chars`; None when text is that short or has none."""
    if len(text) <= chars:
        return None
    stop = max(0, chars - _CUT_SCAN)
    at = max(text.rfind(c, stop, chars + 1) for c in _CUT_CHARS)
    return text[:at] if at > 0 else None


def _tail_cut(text: str, chars: int) -> str | None:
    """text from the first cut character at or after len - `chars` (kept, as the next word's prefix space)."""
    if len(text) <= chars:
        return None
    start = len(text) - chars
    found = [at for c in _CUT_CHARS if (at := text.find(c, start, start + _CUT_SCAN)) >= 0]
    return text[min(found) :] if found else None


def _text_ids(
    tokenizer: Any, texts: Sequence[str], budget: int, truncation: Truncation, *, cut: bool
) -> list[list[int]]:
    """Each text's ids without special tokens: whole, or (cut=True) already truncated to budget when longer.

    A fast tokenizer's cost follows the characters it reads, and a review can be 30x longer than the 128
    tokens kept of it. So with cut=True only a window at the head (and, for head_tail, one at the tail) is
    tokenized, cut at whitespace; a window that does not yield the needed tokens plus _CUT_MARGIN falls back
    to the whole text. The ids are those of tokenizing the whole text and truncating it (tested on every
    IMDB test review and adversarial texts, with WordPiece, byte-level BPE and SentencePiece tokenizers).
    """
    if not cut:
        return _tokenize(tokenizer, texts)
    head_tokens = budget if truncation == Truncation.HEAD else budget // 4
    tail_tokens = budget - head_tokens
    pieces: list[str] = []
    plans: list[tuple[int, int] | None] = []  # per text: where its head and tail pieces are, or None
    for text in texts:
        head = _head_cut(text, (head_tokens + _CUT_MARGIN) * _CHARS_PER_TOKEN)
        tail = _tail_cut(text, (tail_tokens + _CUT_MARGIN) * _CHARS_PER_TOKEN) if tail_tokens else ""
        if head is None or tail is None or len(head) + len(tail) > len(text):
            plans.append(None)  # short enough to read whole (or no whitespace to cut at)
            continue
        plans.append((len(pieces), len(pieces) + 1 if tail_tokens else -1))
        pieces.append(head)
        if tail_tokens:
            pieces.append(tail)
    piece_ids = _tokenize(tokenizer, pieces)
    out: list[list[int] | None] = []
    for plan in plans:
        ids = None
        if plan is not None:
            head_ids = piece_ids[plan[0]]
            tail_ids = piece_ids[plan[1]] if plan[1] >= 0 else []
            # Both windows hold more than they keep, so the whole text holds more than budget tokens.
            if len(head_ids) >= head_tokens + _CUT_MARGIN and (
                not tail_tokens or len(tail_ids) >= tail_tokens + _CUT_MARGIN
            ):
                ids = head_ids[:head_tokens] + tail_ids[len(tail_ids) - tail_tokens :]
        out.append(ids)
    whole = [i for i, ids in enumerate(out) if ids is None]
    for i, ids in zip(whole, _tokenize(tokenizer, [texts[i] for i in whole]), strict=True):
        out[i] = ids
    return [ids for ids in out if ids is not None]


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
