"""Metrics against small cases worked out by hand in each test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sentiray.metrics import classification_metrics, format_metrics_table, softmax


def _logits_for(p_positive: list[float]) -> np.ndarray:
    """Logits whose softmax gives these positive-class probabilities (negative logit 0)."""
    return np.array([[0.0, math.log(p / (1 - p))] for p in p_positive])


def _pairwise_auc(labels: list[int], scores: list[float]) -> float:
    """ROC-AUC as the share of (positive, negative) pairs ranked right, ties counting half."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_six_rows_by_hand() -> None:
    labels = [1, 1, 1, 0, 0, 0]
    p_pos = [0.9, 0.4, 0.3, 0.8, 0.2, 0.1]  # predictions: 1, 0, 0, 1, 0, 0
    m = classification_metrics(labels, _logits_for(p_pos))
    tp, fn, fp, tn = 1, 2, 1, 2
    assert m["confusion_matrix"] == [[tn, fp], [fn, tp]]
    assert m["accuracy"] == pytest.approx((tp + tn) / 6)  # 0.5
    assert m["precision"] == pytest.approx(tp / (tp + fp))  # 0.5
    assert m["recall"] == pytest.approx(tp / (tp + fn))  # 1/3
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))  # 0.4
    # Pairs (pos, neg): 0.9 beats all 3; 0.4 and 0.3 beat 0.2 and 0.1 but not 0.8: 7 of 9.
    assert m["roc_auc"] == pytest.approx(7 / 9)
    assert m["roc_auc"] == pytest.approx(_pairwise_auc(labels, p_pos))
    assert m["n"] == 6


def test_four_labels_all_outcomes_once() -> None:
    # One each of TP, FN, FP, TN: every rate is 1/2; the positives score 0.7 and 0.45, the negatives
    # 0.6 and 0.1, so 3 of 4 (pos, neg) pairs are ranked right.
    labels = [1, 1, 0, 0]
    m = classification_metrics(labels, _logits_for([0.7, 0.45, 0.6, 0.1]))
    assert m["confusion_matrix"] == [[1, 1], [1, 1]]
    for key in ("accuracy", "precision", "recall", "f1"):
        assert m[key] == pytest.approx(0.5), key
    assert m["roc_auc"] == pytest.approx(3 / 4)


def test_ties_count_half_in_roc_auc() -> None:
    labels = [1, 0, 1, 0]
    scores = [0.6, 0.6, 0.9, 0.2]
    m = classification_metrics(labels, _logits_for(scores))
    # (0.6 vs 0.6) tie: 0.5; (0.6 vs 0.2): 1; (0.9 vs both): 2 -> 3.5 of 4.
    assert m["roc_auc"] == pytest.approx(3.5 / 4)


def test_perfect_and_inverted() -> None:
    labels = [0, 1, 0, 1]
    good = classification_metrics(labels, _logits_for([0.1, 0.8, 0.3, 0.6]))
    assert (good["accuracy"], good["f1"], good["roc_auc"]) == (1.0, 1.0, 1.0)
    assert good["confusion_matrix"] == [[2, 0], [0, 2]]
    bad = classification_metrics(labels, _logits_for([0.9, 0.2, 0.7, 0.4]))
    assert (bad["accuracy"], bad["f1"], bad["roc_auc"]) == (0.0, 0.0, 0.0)
    assert bad["confusion_matrix"] == [[0, 2], [2, 0]]


def test_no_positive_prediction_gives_zero_not_a_warning_or_nan() -> None:
    labels = [1, 0, 1]
    m = classification_metrics(labels, _logits_for([0.4, 0.3, 0.2]))
    assert m["precision"] == 0.0  # 0 / 0 predicted positives, defined as 0
    assert m["recall"] == 0.0
    assert m["f1"] == 0.0
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["confusion_matrix"] == [[1, 0], [2, 0]]


def test_single_class_has_no_roc_auc() -> None:
    m = classification_metrics([1, 1, 1], _logits_for([0.9, 0.2, 0.7]))
    assert m["roc_auc"] is None
    assert m["confusion_matrix"] == [[0, 0], [1, 2]]  # 2x2 even with one class present
    assert m["recall"] == pytest.approx(2 / 3)


def test_raw_logits_are_ranked_through_softmax() -> None:
    # Two-column logits not in the (0, x) form: the positive probability is sigmoid(l1 - l0).
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 5.5], [1.0, -1.0]])
    m = classification_metrics([0, 1, 1, 0], logits)
    assert m["accuracy"] == 1.0
    assert m["roc_auc"] == 1.0


def test_softmax_rows_sum_to_one_and_survive_large_logits() -> None:
    probs = softmax(np.array([[1000.0, 1000.0], [0.0, math.log(3.0)], [-1000.0, 0.0]]))
    assert probs[0].tolist() == [0.5, 0.5]
    assert probs[1] == pytest.approx([0.25, 0.75])
    assert probs[2] == pytest.approx([0.0, 1.0])
    assert np.isfinite(probs).all()


def test_metrics_table() -> None:
    m = classification_metrics([1, 1, 0, 0], _logits_for([0.7, 0.45, 0.6, 0.1]))
    table = format_metrics_table(m, "test metrics")
    lines = table.splitlines()
    assert lines[0] == "test metrics"
    assert any(line.split() == ["accuracy", "0.5000"] for line in lines)
    assert any(line.split() == ["roc_auc", "0.7500"] for line in lines)
    assert any(line.split() == ["n", "4"] for line in lines)
    assert any(line.split() == ["true", "NEG", "1", "1"] for line in lines)
    one_class = format_metrics_table(classification_metrics([1], _logits_for([0.9])))
    assert any(line.split() == ["roc_auc", "n/a"] for line in one_class.splitlines())


# --- more than two classes ----------------------------------------------------------------------------


def _one_hot_logits(predicted: list[int], n_classes: int, margin: float = 3.0) -> np.ndarray:
    logits = np.zeros((len(predicted), n_classes))
    logits[np.arange(len(predicted)), predicted] = margin
    return logits


def test_three_classes_by_hand() -> None:
    labels = [0, 0, 1, 1, 2, 2]
    predicted = [0, 1, 1, 1, 0, 2]
    m = classification_metrics(labels, _one_hot_logits(predicted, 3), ["neg", "mid", "pos"])
    # Per class: neg tp1 fp1 fn1; mid tp2 fp1 fn0; pos tp1 fp0 fn1.
    expected = {
        "neg": (0.5, 0.5, 0.5),
        "mid": (2 / 3, 1.0, 0.8),
        "pos": (1.0, 0.5, 2 / 3),
    }
    for name, (precision, recall, f1) in expected.items():
        per = m["per_class"][name]
        assert per["precision"] == pytest.approx(precision)
        assert per["recall"] == pytest.approx(recall)
        assert per["f1"] == pytest.approx(f1)
        assert per["support"] == 2
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(np.mean([0.5, 0.8, 2 / 3]))
    assert m["precision"] == pytest.approx(np.mean([0.5, 2 / 3, 1.0]))
    assert m["recall"] == pytest.approx(np.mean([0.5, 1.0, 0.5]))
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["labels"] == ["neg", "mid", "pos"]
    assert m["average"] == "macro"
    assert m["n"] == 6


def test_one_vs_rest_auc_per_class_and_macro() -> None:
    labels = [0, 1, 2, 0, 1, 2, 0, 1]
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(8, 3))
    m = classification_metrics(labels, logits, ["a", "b", "c"])
    probs = softmax(logits)
    for i, name in enumerate("abc"):
        one_vs_rest = [int(y == i) for y in labels]
        assert m["per_class"][name]["roc_auc"] == pytest.approx(_pairwise_auc(one_vs_rest, list(probs[:, i])))
    assert m["roc_auc"] == pytest.approx(np.mean([m["per_class"][n]["roc_auc"] for n in "abc"]))


def test_one_vs_rest_auc_is_none_where_a_class_is_missing() -> None:
    m = classification_metrics([0, 1, 0, 1], np.random.default_rng(0).normal(size=(4, 4)))
    assert m["roc_auc"] is None
    assert m["labels"] == ["0", "1", "2", "3"]
    assert m["per_class"]["2"]["roc_auc"] is None and m["per_class"]["0"]["roc_auc"] is not None
    assert m["confusion_matrix"][2] == [0, 0, 0, 0] and len(m["confusion_matrix"]) == 4
    with pytest.raises(ValueError, match="2 class names for logits of 4 classes"):
        classification_metrics([0, 1], np.zeros((2, 4)), ["a", "b"])


def test_binary_output_keeps_its_keys() -> None:
    m = classification_metrics([1, 0, 1], _logits_for([0.9, 0.2, 0.4]), ["NEGATIVE", "POSITIVE"])
    assert set(m) == {"accuracy", "f1", "precision", "recall", "roc_auc", "confusion_matrix", "n"}


def test_metrics_table_for_three_classes() -> None:
    m = classification_metrics([0, 0, 1, 1, 2, 2], _one_hot_logits([0, 1, 1, 1, 0, 2], 3), ["neg", "mid", "pos"])
    lines = format_metrics_table(m).splitlines()
    assert any("macro averages" in line for line in lines)
    mid = next(line.split() for line in lines if line.startswith("mid "))
    assert mid[:4] == ["mid", "0.8000", "0.6667", "1.0000"] and mid[-1] == "2"
    # The n x n matrix, rows true and columns predicted, under the class names.
    header = next(i for i, line in enumerate(lines) if line.startswith("confusion"))
    assert lines[header + 1].split() == ["neg", "mid", "pos"]
    assert [line.split() for line in lines[header + 2 : header + 5]] == [
        ["neg", "1", "1", "0"], ["mid", "0", "2", "0"], ["pos", "1", "0", "1"],
    ]
