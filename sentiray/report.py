"""The training report inside an artifact: curves and confusion matrix as PNG, and a Hub model card."""

from __future__ import annotations

import io
from typing import Any

import yaml

from sentiray.labels import BINARY, LabelSet

LOSS_PLOT = "plots/loss.png"
ACCURACY_PLOT = "plots/eval_accuracy.png"
CONFUSION_PLOT = "plots/confusion_matrix.png"


def _figure_bytes(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def render_plots(
    history: list[dict[str, Any]], test_metrics: dict[str, Any] | None, labels: LabelSet = BINARY
) -> dict[str, bytes]:
    """PNG files (relative path -> bytes): training loss, validation accuracy, test confusion matrix."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    import matplotlib.pyplot as plt

    files: dict[str, bytes] = {}
    train = [h for h in history if "loss" in h]
    evals = [h for h in history if "eval_accuracy" in h]
    for rel, rows, key, title, ylabel in (
        (LOSS_PLOT, train, "loss", "Training loss", "cross-entropy"),
        (ACCURACY_PLOT, evals, "eval_accuracy", "Validation accuracy", "accuracy"),
    ):
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["step"] for r in rows], [r[key] for r in rows], marker="o" if len(rows) < 30 else None)
        ax.set(title=title, xlabel="optimizer step", ylabel=ylabel)
        ax.grid(alpha=0.3)
        files[rel] = _figure_bytes(fig)
        plt.close(fig)
    # Multi-label metrics have no n x n matrix (each class has its own 2 x 2, in the card's table).
    if test_metrics and "confusion_matrix" in test_metrics:
        matrix = test_metrics["confusion_matrix"]
        # Past a few classes the cells and tick names need room: the figure grows with the class count.
        side = max(4.0, 0.6 * len(matrix) + 2.0)
        fig, ax = plt.subplots(figsize=(side, side * 0.9))
        ax.imshow(matrix, cmap="Blues")
        names = list(labels.names)
        ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 4 else 0)
        ax.set_yticks(range(len(names)), names)
        ax.set(xlabel="predicted", ylabel="true", title=f"Test confusion matrix (n={test_metrics.get('n')})")
        peak = max(max(row) for row in matrix) or 1
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                ax.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black")
        files[CONFUSION_PLOT] = _figure_bytes(fig)
        plt.close(fig)
    return files


def model_card(
    *,
    model_name: str,
    base_model: str,
    dataset: dict[str, Any],
    test_metrics: dict[str, Any] | None,
    max_length: int,
    truncation: str,
    training_config: dict[str, Any],
    plots: list[str],
    labels: LabelSet = BINARY,
) -> str:
    """A Hugging Face model card (README.md) with model-index metrics the Hub renders.

    The binary default's card reads as it always has; other label sets name their classes, call the
    averaged metrics macro and add a per-class table.
    """
    source = str(dataset.get("source", "unknown"))
    hub_dataset = source.removeprefix("hub:").split("@")[0] if source.startswith("hub:") else "imdb"
    binary = labels.is_binary

    def metric_name(key: str) -> str:
        name = key.replace("_", " ")
        return name if binary or key == "accuracy" else f"macro {name}"

    results = []
    if test_metrics:
        results.append({
            "task": {"type": "text-classification", "name": "Sentiment analysis" if binary else "Text classification"},
            "dataset": {"type": hub_dataset, "name": source, "split": "test"},
            "metrics": [
                {"type": key, "value": round(float(test_metrics[key]), 4), "name": metric_name(key)}
                for key in ("accuracy", "f1", "precision", "recall", "roc_auc")
                if test_metrics.get(key) is not None
            ],
        })
    front = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": ["sentiment-analysis", "sentiray", "ray"],
        "base_model": base_model,
        "datasets": [hub_dataset],
        "metrics": ["accuracy", "f1"],
        "model-index": [{"name": model_name, "results": results}],
    }
    optim = training_config.get("optim", {})
    run = training_config.get("run", {})
    rows = dataset.get("rows", {})
    metric_lines = (
        "\n".join(
            f"| {key if binary else metric_name(key)} | {test_metrics[key]:.4f} |"
            for key in ("accuracy", "f1", "precision", "recall", "roc_auc")
            if test_metrics.get(key) is not None
        )
        if test_metrics
        else "| (no test split) | |"
    )
    if test_metrics and test_metrics.get("per_class"):
        metric_lines += "\n\n| class | f1 | precision | recall | support |\n| --- | --- | --- | --- | --- |\n"
        metric_lines += "\n".join(
            f"| {name} | {m['f1']:.4f} | {m['precision']:.4f} | {m['recall']:.4f} | {m['support']} |"
            for name, m in test_metrics["per_class"].items()
        )
    plot_lines = "\n".join(f"![{p}]({p})" for p in plots)
    shown_names = " / ".join(f"`{n}`" for n in labels.names)
    what = (
        f"A binary sentiment classifier ({shown_names})"
        if binary
        else f"A {labels.num_labels}-class text classifier ({shown_names})"
        if not labels.multi_label
        else f"A multi-label text classifier over {labels.num_labels} classes ({shown_names}; a text may carry "
        "several or none)"
    )
    scores = "sigmoid probabilities, each class on its own" if labels.multi_label else "softmax probabilities"
    no_class = "there is no neutral class" if binary else "only the classes above exist"
    example = (
        '[{"label": "POSITIVE", "score": 0.99}, {"label": "NEGATIVE", "score": 0.01}]'
        if binary
        else "[" + ", ".join(f'{{"label": "{n}", "score": ...}}' for n in labels.names) + "]"
    )
    return f"""---
{yaml.safe_dump(front, sort_keys=False).strip()}
---

# {model_name}

{what} fine-tuned from
[`{base_model}`](https://huggingface.co/{base_model}) with sentiray on Ray Train.

## Results on the test split

| metric | value |
| --- | --- |
{metric_lines}

{plot_lines}

## Training

- Data: `{source}`; rows: {rows}.
- Tokenization: max_length {max_length}, truncation `{truncation}` (`head_tail` keeps the first quarter
  and the last three quarters of a long review).
- Optimiser: AdamW, learning rate {optim.get("learning_rate")}, {optim.get("epochs")} epoch(s),
  batch {optim.get("batch_size")} per worker x {run.get("num_workers")} worker(s), warmup
  {optim.get("warmup_ratio")}, {optim.get("scheduler")} decay, precision {optim.get("precision")}.

## Intended use

Classifying the sentiment of English movie reviews and similar opinionated text, as a component of a
larger system that tolerates errors. Scores are {scores} from the classifier.

## Limitations

- Trained on IMDB-style movie reviews: expect lower accuracy on other domains, sarcasm, mixed or
  neutral text ({no_class}), and non-English text.
- Reviews longer than {max_length} tokens are truncated (`{truncation}`).
- It inherits the biases of its base model and of the review corpus; do not use it to make decisions
  about people.

## How to use

Served by sentiray (Ray Serve):

```bash
sentiray serve ./artifact            # or: helm install ... --set model.uri=s3://.../artifact
curl -s localhost:8000/predict -H 'content-type: application/json' \\
     -d '{{"inputs": "A wonderful, moving film."}}'
# {example}
```

With transformers (same labels; sentiray also strips `<br />` tags and applies the truncation above):

```python
from transformers import pipeline
clf = pipeline("text-classification", model="PATH_OR_REPO")
clf("A wonderful, moving film.")
```
"""
