"""A model's head, artifact, predictor, plots and card follow its label set; binary artifacts from before still load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml

from sentiray.artifact import verify_artifact
from sentiray.labels import BINARY, ID2LABEL, LABEL2ID, LabelSet
from sentiray.metrics import classification_metrics
from sentiray.model import load_model, load_tokenizer
from sentiray.predictor import Predictor
from sentiray.report import CONFUSION_PLOT, model_card, render_plots
from tests.support import write_loaded_artifact

THREE = LabelSet.of(["negative", "neutral", "positive"])
TEXTS = ["a wonderful film", "boring and dull", "it was a film"]


def test_a_label_set_builds_its_head_and_the_artifact_records_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = load_model(str(tiny_model_dir), labels=THREE)
    assert model.classifier.out_features == 3
    assert LabelSet.from_model_config(model.config) == THREE
    artifact = write_loaded_artifact(tmp_path / "artifact", (model, load_tokenizer(str(tiny_model_dir))))
    config = json.loads((Path(artifact) / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert config["problem_type"] == "single_label_classification"
    assert verify_artifact(artifact).labels == THREE.id2label
    # Reloaded without a label set: the artifact's own classes and weights, not the binary default.
    reloaded = load_model(artifact)
    assert LabelSet.from_model_config(reloaded.config) == THREE
    assert torch.equal(reloaded.classifier.weight, model.classifier.weight)
    predictor = Predictor.from_artifact(artifact, precision="fp32", runtime="torch")
    assert predictor.logits(TEXTS).shape == (3, 3)


def test_a_binary_artifact_from_before_label_sets_still_loads(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    # What load_model did before label sets: the binary names passed in, no problem_type recorded.
    old = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_model_dir), num_labels=2, id2label=ID2LABEL, label2id=LABEL2ID
    )
    artifact = write_loaded_artifact(tmp_path / "old", (old, load_tokenizer(str(tiny_model_dir))))
    config = json.loads((Path(artifact) / "config.json").read_text())
    assert config.get("problem_type") is None and config["id2label"] == {"0": "NEGATIVE", "1": "POSITIVE"}
    model = load_model(artifact)
    assert LabelSet.from_model_config(model.config) == BINARY
    assert torch.equal(model.classifier.weight, old.classifier.weight)
    predictor = Predictor.from_artifact(artifact, precision="fp32", runtime="torch")
    assert predictor.logits(TEXTS).shape == (3, 2)
    assert [p["label"] for p in predictor.predict(TEXTS)[0]] in (["NEGATIVE", "POSITIVE"], ["POSITIVE", "NEGATIVE"])


def test_a_base_model_without_classes_gets_the_binary_head(tiny_model_dir: Path) -> None:
    from transformers import AutoConfig

    # The tiny model's config has transformers' placeholder names (LABEL_0, LABEL_1), as base models do.
    assert AutoConfig.from_pretrained(str(tiny_model_dir)).id2label == {0: "LABEL_0", 1: "LABEL_1"}
    model = load_model(str(tiny_model_dir))
    assert model.config.id2label == ID2LABEL


def test_a_model_with_its_own_classes_keeps_them(tiny_model_dir: Path, tmp_path: Path) -> None:
    # A fine-tuned classifier from elsewhere (the Hub's 3-way sentiment models) records names, no problem_type.
    model = load_model(str(tiny_model_dir), labels=THREE)
    model.config.problem_type = None
    model.save_pretrained(tmp_path, safe_serialization=True)
    reloaded = load_model(str(tmp_path))
    assert reloaded.config.num_labels == 3
    assert LabelSet.from_model_config(reloaded.config).names == THREE.names
    # Fine-tuning it into other classes replaces the head.
    five = LabelSet.of([str(i) for i in range(1, 6)])
    assert load_model(str(tmp_path), labels=five).classifier.out_features == 5


def test_plots_and_card_for_three_classes() -> None:
    labels = [0, 0, 1, 1, 2, 2, 2]
    logits = np.eye(3)[[0, 1, 1, 1, 0, 2, 2]] * 3
    metrics = classification_metrics(labels, logits, THREE.names)
    plots = render_plots([{"step": 1, "loss": 1.1}, {"step": 1, "eval_accuracy": 0.5}], metrics, THREE)
    assert plots[CONFUSION_PLOT].startswith(b"\x89PNG")
    card = model_card(
        model_name="m", base_model="b", dataset={"source": "folder:/d"}, test_metrics=metrics, max_length=64,
        truncation="head", training_config={}, plots=sorted(plots), labels=THREE,
    )
    assert "A 3-class text classifier (`negative` / `neutral` / `positive`)" in card
    assert "binary" not in card and "no neutral class" not in card
    front = yaml.safe_load(card.split("---\n")[1])
    names = {m["type"]: m["name"] for m in front["model-index"][0]["results"][0]["metrics"]}
    assert names["f1"] == "macro f1" and names["accuracy"] == "accuracy"
    assert "| neutral | 0.8000 | 0.6667 | 1.0000 | 2 |" in card


def test_the_binary_card_is_unchanged() -> None:
    card = model_card(
        model_name="m", base_model="b", dataset={}, test_metrics=None, max_length=64, truncation="head",
        training_config={}, plots=[],
    )
    assert "A binary sentiment classifier (`NEGATIVE` / `POSITIVE`) fine-tuned from" in card
    assert '# [{"label": "POSITIVE", "score": 0.99}, {"label": "NEGATIVE", "score": 0.01}]' in card
    assert "(there is no neutral class)" in card
