"""Multi-label training (several classes per text, one sigmoid each): data, metrics, the loop and the artifact."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sentiray.config import DataConfig, build_config
from sentiray.data import load_splits
from sentiray.errors import ConfigError, DataError
from sentiray.labels import MULTI_LABEL, LabelSet
from sentiray.metrics import classification_metrics, format_metrics_table
from tests.support import FILLER, NEGATIVE_WORDS, POSITIVE_WORDS

CLASSES = ("complaint", "praise")


def _reviews(n: int, seed: int) -> tuple[list[str], list[list[str]]]:
    """Reviews with praise words, complaint words, both or neither; the classes are the cues present."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        carried = [c for c, bit in zip(CLASSES, (i % 4 in (1, 3), i % 4 in (2, 3)), strict=True) if bit]
        words = [rng.choice(FILLER) for _ in range(rng.randint(8, 20))]
        for cls, cues in (("complaint", NEGATIVE_WORDS), ("praise", POSITIVE_WORDS)):
            if cls in carried:
                for _ in range(3):
                    words.insert(rng.randrange(len(words) + 1), rng.choice(cues))
        texts.append(" ".join(words))
        labels.append(carried)
    return texts, labels


def _folder(tmp_path: Path, train: tuple[list[str], list[Any]], test: tuple[list[str], list[Any]]) -> Path:
    for name, (texts, labels) in (("train", train), ("test", test)):
        pq.write_table(pa.table({"text": texts, "label": labels}), tmp_path / f"{name}.parquet")
    return tmp_path


def test_list_labels_give_a_multi_label_set(tmp_path: Path) -> None:
    texts = ["a", "b", "c", "d", "e", "f"]
    labels = [["praise"], ["complaint", "praise"], [], ["bug"], ["praise", "praise"], ["complaint"]]
    folder = _folder(tmp_path, (texts, labels), (["g", "h"], [["bug", "praise"], []]))
    splits = load_splits(DataConfig(dataset=str(folder), multi_label=True, validation_fraction=0.2))
    assert splits.label_set == LabelSet.of(["bug", "complaint", "praise"], multi_label=True)
    assert splits.test is not None
    by_text = dict(zip(splits.test.texts, splits.test.label_array().tolist(), strict=True))
    assert by_text == {"g": [1.0, 0.0, 1.0], "h": [0.0, 0.0, 0.0]}
    every = {**dict(zip(splits.train.texts, splits.train.labels, strict=True)),
             **dict(zip(splits.validation.texts, splits.validation.labels, strict=True))}
    assert every["b"] == (1, 2) and every["c"] == () and every["e"] == (2,)
    # A class the train split lacks, in a test row, is named.
    (tmp_path / "bad").mkdir()
    bad = _folder(tmp_path / "bad", (texts, labels), (["g"], [["spam"]]))
    with pytest.raises(DataError, match=r"1 of 1 rows have a label that is not a list of the train split's classes"):
        load_splits(DataConfig(dataset=str(bad), multi_label=True))


def test_comma_separated_strings_and_ids_with_names(tmp_path: Path) -> None:
    folder = _folder(tmp_path, (["a", "b", "c", "d"], ["0,2", "1", "", "2, 0"]), (["e"], ["1,2"]))
    splits = load_splits(DataConfig(dataset=str(folder), multi_label=True, label_names=("x", "y", "z")))
    assert splits.label_set == LabelSet.of(["x", "y", "z"], multi_label=True)
    assert splits.test is not None and splits.test.labels == [(1, 2)]
    with pytest.raises(ConfigError, match="do not go with multi_label"):
        build_config(overrides={"multi_label": True, "label_bins": "1-2,3-4"})


def test_multi_label_metrics_by_hand() -> None:
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    predicted = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0]])
    logits = np.where(predicted == 1, 2.0, -2.0)
    m = classification_metrics(y, logits, ["a", "b", "c"], multi_label=True)
    assert m["accuracy"] == pytest.approx(2 / 4)  # rows 0 and 3 are exactly right
    # a: tp2 fp0 fn0; b: tp1 fp0 fn1; c: tp1 fp1 fn0.
    assert m["per_class"]["a"]["f1"] == pytest.approx(1.0)
    assert m["per_class"]["b"]["recall"] == pytest.approx(0.5) and m["per_class"]["b"]["precision"] == 1.0
    assert m["per_class"]["c"]["precision"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(np.mean([1.0, 2 / 3, 2 / 3]))
    assert m["f1_micro"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))
    assert m["per_class"]["c"]["confusion_matrix"] == [[2, 1], [0, 1]]
    assert m["per_class"]["a"]["roc_auc"] == 1.0
    assert m["multi_label"] is True and m["labels"] == ["a", "b", "c"]
    table = format_metrics_table(m)
    assert "exact match" in table and any(line.startswith("c ") for line in table.splitlines())


def test_training_and_export_of_a_multi_label_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    from sentiray.artifact import verify_artifact
    from sentiray.export import export_checkpoint
    from sentiray.predictor import Predictor
    from sentiray.training import WorkerContext, run_training

    folder = _folder(tmp_path, _reviews(640, seed=1), _reviews(80, seed=2))
    cfg = build_config(
        overrides={
            "dataset": str(folder), "multi_label": True, "base_model": str(tiny_model_dir), "max_length": 48,
            "epochs": 3, "batch_size": 16, "learning_rate": 2e-3, "num_workers": 1, "precision": "fp32",
            "log_every_steps": 12,
        }
    )
    splits = load_splits(cfg.data)

    class LastCheckpoint:
        folder: Path | None = None

        def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
            import shutil

            if checkpoint_dir:
                self.folder = Path(tempfile.mkdtemp(prefix="ckpt-", dir=tmp_path))
                shutil.copytree(checkpoint_dir, self.folder, dirs_exist_ok=True)

    reporter = LastCheckpoint()
    run_training(cfg, splits.train, splits.validation, WorkerContext(), reporter)
    assert reporter.folder is not None
    location, metrics = export_checkpoint(
        str(reporter.folder), cfg, str(tmp_path / "artifact"), test=splits.test, dataset_summary=splits.summary(),
        serving_runtimes=[],
    )
    config = json.loads((Path(location) / "config.json").read_text())
    assert config["problem_type"] == MULTI_LABEL
    assert config["id2label"] == {"0": "complaint", "1": "praise"}
    manifest = verify_artifact(location)
    assert manifest.labels == {0: "complaint", 1: "praise"}
    losses = [h["loss"] for h in manifest.history if "loss" in h]
    assert losses[-1] < 0.7 * losses[0], losses
    assert metrics is not None and metrics["multi_label"] is True and metrics["n"] == 80
    # A class learnt from its cue words: its scores rank its texts first (ROC-AUC 0.5 by chance). This
    # 2-layer, 32-wide model learns one of the two classes in a few epochs (a plain PyTorch loop with the
    # same loss does the same), so the test asks for one; the loss above shows the sigmoid head trains.
    best = max(m["roc_auc"] or 0.0 for m in metrics["per_class"].values())
    assert best > 0.9, metrics
    assert metrics["accuracy"] > 0.4, metrics  # exact match; guessing one of the 4 combinations: 0.25
    assert "A multi-label text classifier over 2 classes" in (Path(location) / "README.md").read_text()
    predictor = Predictor.from_artifact(location, precision="fp32", runtime="torch")
    assert predictor.logits(["a film"]).shape == (1, 2)
