"""The classical baseline: TF-IDF (unigrams + bigrams) logistic regression on the same IMDB files.

    python bench/tfidf_baseline.py --train ../shared/data/imdb/train.parquet --test ../shared/data/imdb/test.parquet

Uses the same loader (validation included) and the same `<br />` cleaning as the transformer, and the
same metrics function, so the numbers compare directly with the artifact's test metrics.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from bench.common import bench_parser
from sentiray.data import TextDataset, load_file
from sentiray.metrics import classification_metrics, format_metrics_table
from sentiray.text import clean_text


def fit_and_score(train: TextDataset, test: TextDataset) -> dict[str, object]:
    """Fit on train, score test; metrics as the artifact reports them."""
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_df=0.9, sublinear_tf=True)
    features = vectorizer.fit_transform([clean_text(t) for t in train.texts])
    clf = LogisticRegression(C=4.0, max_iter=2000)
    clf.fit(features, train.labels)
    fit_seconds = time.perf_counter() - started
    scores = clf.decision_function(vectorizer.transform([clean_text(t) for t in test.texts]))
    logits = np.stack([-scores / 2, scores / 2], axis=1)  # a monotone stand-in for the two-class logits
    metrics = classification_metrics(test.labels, logits)
    return {"metrics": metrics, "train_rows": len(train.texts), "fit_seconds": round(fit_seconds, 1)}


def run(train_path: str, test_path: str, max_train: int | None = None) -> dict[str, object]:
    train, test = load_file(train_path), load_file(test_path)
    return fit_and_score(TextDataset(train.texts[:max_train], train.labels[:max_train], train.source), test)


def main() -> None:
    parser = bench_parser(__doc__, out=None)
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--max-train", type=int, default=None)
    args = parser.parse_args()
    out = run(args.train, args.test, args.max_train)
    print(format_metrics_table(out["metrics"], f"TF-IDF bigram LR ({out['train_rows']} train rows)"))  # type: ignore[arg-type]
    print("BENCH_RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
