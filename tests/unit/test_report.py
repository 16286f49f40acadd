"""The training report inside the artifact: PNG curves and confusion matrix, and the Hub model card."""

from __future__ import annotations

from pathlib import Path

import yaml

from sentiray.artifact import verify_artifact
from sentiray.report import ACCURACY_PLOT, CONFUSION_PLOT, LOSS_PLOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_artifact_carries_plots_listed_in_its_manifest(tiny_artifact: Path) -> None:
    manifest = verify_artifact(tiny_artifact)
    for plot in (LOSS_PLOT, ACCURACY_PLOT, CONFUSION_PLOT):
        assert plot in manifest.files
        data = (tiny_artifact / plot).read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert len(data) > 2000  # a real figure, not an empty canvas


def test_model_card_front_matter_has_the_test_metrics(tiny_artifact: Path) -> None:
    manifest = verify_artifact(tiny_artifact)
    card = (tiny_artifact / "README.md").read_text()
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["pipeline_tag"] == "text-classification"
    assert front["base_model"] == manifest.base_model
    results = front["model-index"][0]["results"][0]
    assert results["dataset"]["split"] == "test"
    metrics = {m["type"]: m["value"] for m in results["metrics"]}
    assert manifest.test_metrics is not None
    assert metrics["accuracy"] == round(manifest.test_metrics["accuracy"], 4)
    assert metrics["f1"] == round(manifest.test_metrics["f1"], 4)
    # The sections a reader of the Hub page expects, and the plots it links.
    for heading in ("## Results on the test split", "## Intended use", "## Limitations", "## How to use"):
        assert heading in card
    assert f"]({LOSS_PLOT})" in card and f"]({CONFUSION_PLOT})" in card
    assert f"max_length {manifest.max_length}" in card
