"""Label sets in the predictor: labels from the model's config, top_k and function_to_apply as Hugging
Face's text-classification pipeline computes them (checked against the pipeline itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest

from sentiray.labels import BINARY, LabelSet
from sentiray.predictor import Predictor, ScoreFunction, default_function, scores_to_predictions
from serve.schemas import FunctionToApply
from tests.label_models import THREE, write_labelled_artifact
from tests.support import write_tiny_artifact

TEXTS = ["a wonderful superb film", "awful boring dull movie", "the plot and the actor"]
MULTI = LabelSet.of(["acting", "plot", "music"], multi_label=True)


@pytest.fixture(scope="module")
def three_label_artifact(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_labelled_artifact(tmp_path_factory.mktemp("three") / "artifact", tiny_model_dir, THREE)


def _pipeline_output(predictor: Predictor, **kwargs: Any) -> list[list[dict[str, Any]]]:
    from transformers import pipeline

    pipe = pipeline("text-classification", model=predictor.model, tokenizer=predictor.tokenizer, device="cpu")
    return pipe(TEXTS, top_k=kwargs.pop("top_k", None), **kwargs)  # type: ignore[no-any-return]


def _assert_same(ours: list[list[dict[str, Any]]], theirs: list[list[dict[str, Any]]]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert [p["label"] for p in a] == [p["label"] for p in b]
        np.testing.assert_allclose([p["score"] for p in a], [p["score"] for p in b], rtol=1e-4, atol=1e-5)


def test_three_label_artifact_predicts_its_own_labels(three_label_artifact: str) -> None:
    predictor = Predictor.from_artifact(three_label_artifact, device="cpu", precision="fp32", runtime="torch")
    assert predictor.labels == THREE
    out = predictor.predict(TEXTS)
    assert [sorted(p["label"] for p in row) for row in out] == [sorted(THREE.names)] * len(TEXTS)
    assert all(abs(sum(p["score"] for p in row) - 1) < 1e-5 for row in out)
    assert predictor.logits(TEXTS).shape == (len(TEXTS), 3)


@pytest.mark.parametrize("function_to_apply", [None, "softmax", "sigmoid", "none"])
@pytest.mark.parametrize("top_k", [None, 1, 2, 5])
def test_matches_the_hugging_face_pipeline(
    three_label_artifact: str, function_to_apply: str | None, top_k: int | None
) -> None:
    predictor = Predictor.from_artifact(three_label_artifact, device="cpu", precision="fp32", runtime="torch")
    kwargs = {} if function_to_apply is None else {"function_to_apply": function_to_apply}
    ours = predictor.predict(TEXTS, top_k=top_k, **kwargs)  # type: ignore[arg-type]
    _assert_same(ours, _pipeline_output(predictor, top_k=top_k, **kwargs))
    assert all(len(row) == min(top_k or 3, 3) for row in ours)  # above the label count: all, as HF


def test_multi_label_defaults_to_sigmoid_like_the_pipeline(tiny_model_dir: Path, tmp_path: Path) -> None:
    artifact = write_labelled_artifact(tmp_path / "multi", tiny_model_dir, MULTI)
    predictor = Predictor.from_artifact(artifact, device="cpu", precision="fp32", runtime="torch")
    assert predictor.labels == MULTI
    assert default_function(predictor.labels) == ScoreFunction.SIGMOID
    ours = predictor.predict(TEXTS)
    _assert_same(ours, _pipeline_output(predictor))
    assert any(abs(sum(p["score"] for p in row) - 1) > 1e-2 for row in ours)  # not a softmax


def test_binary_default_is_unchanged(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A binary artifact with default parameters: softmax over NEGATIVE/POSITIVE, ranked, as before."""
    artifact = write_tiny_artifact(tmp_path / "binary", tiny_model_dir)
    predictor = Predictor.from_artifact(artifact, device="cpu", precision="fp32", runtime="torch")
    assert predictor.labels == BINARY
    logits = predictor.logits(TEXTS)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    for row, p in zip(predictor.predict(TEXTS), probs, strict=True):
        order = np.argsort(-p, kind="stable")
        assert [d["label"] for d in row] == [BINARY.names[j] for j in order]
        np.testing.assert_allclose([d["score"] for d in row], p[order], rtol=1e-6)
    assert predictor.predict(TEXTS, raw_scores=True) == predictor.predict(TEXTS, function_to_apply="none")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"top_k": 0}, "top_k"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 1.5}, "top_k"),
        ({"top_k": True}, "top_k"),
        ({"function_to_apply": "relu"}, "function_to_apply"),
        ({"function_to_apply": "sigmoid", "raw_scores": True}, "raw_scores"),
    ],
)
def test_bad_parameters_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        scores_to_predictions(np.zeros((1, 3), dtype=np.float32), labels=THREE, **kwargs)


def test_logits_of_another_width_are_refused() -> None:
    with pytest.raises(ValueError, match="3 labels"):
        scores_to_predictions(np.zeros((1, 2), dtype=np.float32), labels=THREE)


def test_sigmoid_of_extreme_logits_is_finite() -> None:
    out = scores_to_predictions(
        np.array([[-1e4, 0.0, 1e4]], dtype=np.float32), labels=THREE, function_to_apply="sigmoid"
    )
    assert [(p["label"], p["score"]) for p in out[0]] == [("positive", 1.0), ("neutral", 0.5), ("negative", 0.0)]


def test_http_schema_spells_the_same_functions() -> None:
    assert set(get_args(FunctionToApply)) == {f.value for f in ScoreFunction}
