"""Classification metrics with scikit-learn (offline; `evaluate.load` needs the Hub)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=-1, keepdims=True))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0))))


def classification_metrics(
    labels: Sequence[int] | np.ndarray,
    logits: np.ndarray,
    names: Sequence[str] | None = None,
    *,
    multi_label: bool = False,
) -> dict[str, Any]:
    """Accuracy, F1, precision, recall, ROC-AUC and the confusion matrix of single-label predictions.

    Two classes (the binary default): F1, precision and recall of the positive class (id 1), and the
    confusion matrix [[true neg, false pos], [false neg, true pos]]; ROC-AUC is None when the labels hold
    one class only (it is undefined then).

    More classes: F1, precision and recall are macro averages (every class weighs the same, however
    rare), `per_class` holds each class's (keyed by name, from names or the id), the confusion matrix is
    n x n (row: true class, column: predicted, in id order), and ROC-AUC is the macro one-vs-rest
    average, None unless every class occurs in the labels (a class's AUC is undefined without it).
    """
    # Imported here: sklearn.metrics pulls in scipy.stats (about 2 s of CPU), which every process that
    # only needs softmax (each Serve model replica, through the predictor) or the table (the training
    # driver) would otherwise pay at startup.
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    if multi_label:
        return _multi_label_metrics(np.asarray(labels), np.asarray(logits, dtype=np.float64), names)
    y = np.asarray(labels, dtype=np.int64)
    probs = softmax(np.asarray(logits, dtype=np.float64))
    pred = probs.argmax(axis=-1)
    n_classes = probs.shape[-1]
    if n_classes == 2:
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
    ids = list(range(n_classes))
    names = list(names) if names is not None else [str(i) for i in ids]
    if len(names) != n_classes:
        raise ValueError(f"{len(names)} class names for logits of {n_classes} classes")
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=ids, zero_division=0)
    present = set(np.unique(y).tolist())
    per_class_auc = [
        float(roc_auc_score(y == i, probs[:, i])) if i in present and len(present) > 1 else None for i in ids
    ]
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "f1": float(np.mean(f1)),
        "precision": float(np.mean(precision)),
        "recall": float(np.mean(recall)),
        "roc_auc": float(np.mean(per_class_auc)) if present == set(ids) else None,  # type: ignore[arg-type]
        "confusion_matrix": confusion_matrix(y, pred, labels=ids).tolist(),
        "n": int(len(y)),
        "average": "macro",
        "labels": names,
        "per_class": {
            name: {
                "f1": float(f1[i]), "precision": float(precision[i]), "recall": float(recall[i]),
                "roc_auc": per_class_auc[i], "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
    }


def _multi_label_metrics(y: np.ndarray, logits: np.ndarray, names: Sequence[str] | None) -> dict[str, Any]:
    """Multi-label: y is rows x classes of 0/1; a class is predicted where its sigmoid passes 0.5.

    accuracy is the exact-match (subset) accuracy; f1, precision, recall macro averages over the
    classes, f1_micro over every (text, class) decision; roc_auc the macro average of the classes whose
    AUC is defined (the class both present and absent), None if none is. The confusion matrix is one
    [[tn, fp], [fn, tp]] per class (`per_class`), there being no n x n one.
    """
    from sklearn.metrics import f1_score, precision_recall_fscore_support, roc_auc_score

    y = y.astype(np.int64)
    probs = sigmoid(logits)
    pred = (probs >= 0.5).astype(np.int64)
    n_classes = probs.shape[-1]
    names = list(names) if names is not None else [str(i) for i in range(n_classes)]
    if y.shape != probs.shape or len(names) != n_classes:
        raise ValueError(f"multi-label metrics: labels {y.shape}, logits {probs.shape}, {len(names)} class names")
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    aucs = [
        float(roc_auc_score(y[:, i], probs[:, i])) if 0 < y[:, i].sum() < len(y) else None for i in range(n_classes)
    ]
    defined = [a for a in aucs if a is not None]
    per_class = {}
    for i, name in enumerate(names):
        tp = int(((pred[:, i] == 1) & (y[:, i] == 1)).sum())
        fp = int(((pred[:, i] == 1) & (y[:, i] == 0)).sum())
        fn = int(((pred[:, i] == 0) & (y[:, i] == 1)).sum())
        per_class[name] = {
            "f1": float(f1[i]), "precision": float(precision[i]), "recall": float(recall[i]),
            "roc_auc": aucs[i], "support": int(support[i]),
            "confusion_matrix": [[len(y) - tp - fp - fn, fp], [fn, tp]],
        }
    return {
        "accuracy": float((pred == y).all(axis=1).mean()) if len(y) else 0.0,
        "f1": float(np.mean(f1)),
        "f1_micro": float(f1_score(y, pred, average="micro", zero_division=0)),
        "precision": float(np.mean(precision)),
        "recall": float(np.mean(recall)),
        "roc_auc": float(np.mean(defined)) if defined else None,
        "n": int(len(y)),
        "average": "macro",
        "multi_label": True,
        "labels": names,
        "per_class": per_class,
    }


def _shown(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))


def format_metrics_table(metrics: dict[str, Any], title: str = "test metrics") -> str:
    """A small fixed-width table for logs (with per-class rows and an n x n confusion matrix past 2 classes)."""
    keys = ("accuracy", "f1", "f1_micro", "precision", "recall", "roc_auc", "n")
    rows = [(k, metrics[k]) for k in keys if k in metrics]
    lines = [f"{title}", "-" * 28]
    if metrics.get("multi_label"):
        lines[1:1] = ["(multi-label: accuracy is exact match; a class is predicted at sigmoid >= 0.5)"]
    if metrics.get("average") == "macro":
        lines[1:1] = ["(f1, precision, recall, roc_auc: macro averages over the classes)"]
    for key, value in rows:
        lines.append(f"{key:<12}{_shown(value):>16}")
    matrix = metrics.get("confusion_matrix")
    if matrix is not None and len(matrix) == 2 and "per_class" not in metrics:
        (tn, fp), (fn, tp) = matrix
        lines.append(f"{'confusion':<12}{'pred NEG  pred POS':>16}")
        lines.append(f"{'  true NEG':<12}{tn:>8}{fp:>10}")
        lines.append(f"{'  true POS':<12}{fn:>8}{tp:>10}")
        return "\n".join(lines)
    per_class: dict[str, dict[str, Any]] = metrics.get("per_class", {})
    if per_class:
        width = max(12, *(len(name) + 2 for name in per_class))
        lines.append(f"{'class':<{width}}{'f1':>9}{'precision':>11}{'recall':>9}{'roc_auc':>9}{'support':>9}")
        for name, m in per_class.items():
            lines.append(
                f"{name:<{width}}{_shown(m['f1']):>9}{_shown(m['precision']):>11}{_shown(m['recall']):>9}"
                f"{_shown(m['roc_auc']):>9}{m['support']:>9}"
            )
    if matrix is not None:
        names = list(per_class) or [str(i) for i in range(len(matrix))]
        cell = max(7, *(len(n) + 1 for n in names), *(len(str(v)) + 1 for row in matrix for v in row))
        lines.append("confusion (rows: true, columns: predicted)")
        lines.append(" " * cell + "".join(f"{n:>{cell}}" for n in names))
        for name, row in zip(names, matrix, strict=True):
            lines.append(f"{name:>{cell}}" + "".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines)
