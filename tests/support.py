"""Test material that cannot come from the Hub: a tiny DistilBERT, separable synthetic reviews, a trained
tiny artifact; and the real IMDB reviews where the shared data is present. bench/ uses these too (tests
never import bench/)."""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
# The real IMDB parquet files (train.parquet, test.parquet), beside the checkout (see DESIGN.md).
IMDB_DIR = REPO.parent / "shared" / "data" / "imdb"
IMDB_TEST = IMDB_DIR / "test.parquet"

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


def load_reviews(path: Path, n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """n reviews (text, label) drawn at random, by seed, from a parquet file with text and label columns."""
    table = pq.read_table(path, columns=["text", "label"]).to_pydict()
    idx = list(range(len(table["text"])))
    random.Random(seed).shuffle(idx)
    idx = idx[:n]
    return [table["text"][i] for i in idx], [int(table["label"][i]) for i in idx]


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


class LastCheckpoint:
    """A training-loop reporter that keeps a copy of the newest checkpoint (the loop removes its own
    temporary folder after reporting) and the last metrics."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.metrics: dict[str, Any] = {}

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        self.metrics = metrics
        if checkpoint_dir:
            self.folder = Path(tempfile.mkdtemp(prefix="ckpt-"))
            shutil.copytree(checkpoint_dir, self.folder, dirs_exist_ok=True)


def write_synthetic_data(folder: Path) -> Path:
    """folder/train.parquet (600 rows) and folder/test.parquet (240 rows) of separable synthetic reviews."""
    write_parquet(folder / "train.parquet", *synthetic_reviews(600, seed=1))
    write_parquet(folder / "test.parquet", *synthetic_reviews(240, seed=2))
    return folder


def train_tiny_artifact(model_dir: Path, data_dir: Path, destination: Path) -> Path:
    """A trained tiny artifact (in-process, no Ray): the model in model_dir fine-tuned on data_dir (see
    write_synthetic_data) until it separates the classes, exported to destination."""
    from sentiray.config import build_config
    from sentiray.data import load_splits
    from sentiray.export import export_checkpoint
    from sentiray.training import WorkerContext, run_training

    cfg = build_config(
        overrides={
            "dataset": str(data_dir), "base_model": str(model_dir), "max_length": 64, "epochs": 3,
            "batch_size": 16, "learning_rate": 3e-3, "num_workers": 1, "precision": "fp32",
        }
    )
    splits = load_splits(cfg.data)
    reporter = LastCheckpoint()
    run_training(cfg, splits.train, splits.validation, WorkerContext(), reporter)
    assert reporter.folder is not None
    export_checkpoint(str(reporter.folder), cfg, str(destination), test=splits.test, dataset_summary=splits.summary())
    return destination


def imported_modules(path: Path) -> list[str]:
    """Dotted names of the absolute imports in a Python file, those inside functions included."""
    import ast

    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names
