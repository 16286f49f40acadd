"""Classification metrics with scikit-learn (offline; `evaluate.load` needs the Hub)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=-1, keepdims=True))


def classification_metrics(labels: Sequence[int] | np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    """Accuracy, F1, precision, recall (positive class), ROC-AUC and the confusion matrix.

    The confusion matrix is [[true neg, false pos], [false neg, true pos]]. ROC-AUC is None when the
    labels hold one class only (it is undefined then).
    """
    # Imported here: sklearn.metrics pulls in scipy.stats (about 2 s of CPU), which every process that
    # only needs softmax (each Serve model replica, through the predictor) or the table (the training
    # driver) would otherwise pay at startup.
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

    y = np.asarray(labels, dtype=np.int64)
    probs = softmax(np.asarray(logits, dtype=np.float64))
    pred = probs.argmax(axis=-1)
    both_classes = len(np.unique(y)) == 2
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, probs[:, 1])) if both_classes else None,
        "confusion_matrix": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
        "n": int(len(y)),
    }


def format_metrics_table(metrics: dict[str, Any], title: str = "test metrics") -> str:
    """A small fixed-width table for logs."""
    rows = [(k, metrics[k]) for k in ("accuracy", "f1", "precision", "recall", "roc_auc", "n") if k in metrics]
    lines = [f"{title}", "-" * 28]
    for key, value in rows:
        shown = "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
        lines.append(f"{key:<12}{shown:>16}")
    if "confusion_matrix" in metrics:
        (tn, fp), (fn, tp) = metrics["confusion_matrix"]
        lines.append(f"{'confusion':<12}{'pred NEG  pred POS':>16}")
        lines.append(f"{'  true NEG':<12}{tn:>8}{fp:>10}")
        lines.append(f"{'  true POS':<12}{fn:>8}{tp:>10}")
    return "\n".join(lines)
