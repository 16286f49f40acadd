from pathlib import Path

from sentiray.predictor import Predictor


def test_tiny_artifact_separates_synthetic_reviews(tiny_artifact: Path) -> None:
    predictor = Predictor.from_artifact(str(tiny_artifact), precision="fp32")
    assert predictor.manifest is not None
    assert predictor.manifest.test_metrics is not None
    assert predictor.manifest.test_metrics["accuracy"] >= 0.95
    out = predictor.predict(["a wonderful superb film", "awful boring dull movie"])
    assert [o[0]["label"] for o in out] == ["POSITIVE", "NEGATIVE"]
