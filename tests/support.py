"""Test material that cannot come from the Hub: a tiny DistilBERT and separable synthetic reviews."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

POSITIVE_WORDS = ["great", "wonderful", "superb", "brilliant", "delightful", "moving", "excellent", "loved"]
NEGATIVE_WORDS = ["awful", "boring", "terrible", "dreadful", "dull", "horrible", "worst", "hated"]
FILLER = (
    "the movie film plot actor actress scene story director camera music ending was and it this a "
    "of to in with for on at by character script screen time watch"
).split()


def synthetic_reviews(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """Balanced reviews whose label is given away by a few sentiment words among filler."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = [rng.choice(FILLER) for _ in range(rng.randint(8, 30))]
        cue = POSITIVE_WORDS if label else NEGATIVE_WORDS
        for _ in range(rng.randint(2, 4)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(cue))
        texts.append(" ".join(words))
        labels.append(label)
    order = list(range(n))
    rng.shuffle(order)
    return [texts[i] for i in order], [labels[i] for i in order]


def write_parquet(path: Path, texts: list[str], labels: list[int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": texts, "label": labels}), path)
    return path


def build_tiny_model(folder: Path, *, seed: int = 0) -> Path:
    """A 2-layer, 32-wide DistilBERT classifier with a WordPiece tokenizer trained on the fly."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    corpus, _ = synthetic_reviews(400, seed=123)
    corpus += [" ".join(POSITIVE_WORDS + NEGATIVE_WORDS + FILLER)] * 5
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=512,
    )
    fast.save_pretrained(folder)
    torch.manual_seed(seed)
    config = DistilBertConfig(
        vocab_size=tok.get_vocab_size(), dim=32, hidden_dim=64, n_layers=2, n_heads=2,
        max_position_embeddings=512, num_labels=2, pad_token_id=0,
    )
    DistilBertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    return folder


def write_loaded_artifact(destination: Path | str, model_and_tokenizer: tuple[Any, Any], **fields: Any) -> str:
    """An artifact of an already loaded model by the real writer; fields override the manifest defaults
    (max_length 64, head_tail truncation, base model "tiny-distilbert")."""
    from sentiray.artifact import write_artifact

    model, tokenizer = model_and_tokenizer
    fields = {"max_length": 64, "truncation": "head_tail", "base_model": "tiny-distilbert", **fields}
    return write_artifact(str(destination), model, tokenizer, **fields)


def write_tiny_artifact(destination: Path | str, model_dir: Path, **fields: Any) -> str:
    """An artifact of the model in model_dir (the untrained tiny one, usually); see write_loaded_artifact."""
    from sentiray.model import load_model, load_tokenizer

    return write_loaded_artifact(destination, (load_model(str(model_dir)), load_tokenizer(str(model_dir))), **fields)


THREE_LABELS = ("negative", "neutral", "positive")


def write_label_set_artifact(
    destination: Path | str, tokenizer_dir: Path, names: tuple[str, ...] = THREE_LABELS, *, seed: int = 0
) -> str:
    """An artifact of an untrained 2-layer, 32-wide BERT whose head has one output per label in `names`
    (recorded in its config by `LabelSet.model_config_kwargs`), with the tokenizer in tokenizer_dir."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from sentiray.labels import LabelSet
    from sentiray.model import load_tokenizer

    tokenizer = load_tokenizer(str(tokenizer_dir))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, pad_token_id=0,
        **LabelSet.of(names).model_config_kwargs(),
    )  # fmt: skip
    model = BertForSequenceClassification(config).eval()
    return write_loaded_artifact(destination, (model, tokenizer), base_model="tiny-bert")
