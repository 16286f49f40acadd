"""The classical baseline: TF-IDF (unigrams + bigrams) logistic regression on the same IMDB files.

    python bench/tfidf_baseline.py --train ../shared/data/imdb/train.parquet --test ../shared/data/imdb/test.parquet

Uses the same loader (validation included) and the same `<br />` cleaning as the transformer, and the
same metrics function, so the numbers compare directly with the artifact's test metrics.

Any label set (issue 17): with --label-column, --label-names or --label-bins (the training job's data
options) the files are read exactly as a training run with the same options reads them: classes fixed
from the train split, validation carved from train, the seeded shuffle and the row limits, so the
baseline is fitted on the fine-tune's train rows and scored on its test rows. For IMDB's four rating
classes:

    python bench/tfidf_baseline.py --train ../shared/data/imdb/train.parquet \
        --test ../shared/data/imdb/test.parquet --label-column rating --label-bins 1-2,3-4,7-8,9-10 \
        --max-train 2000 --max-test 1000
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
from sentiray.config import DataConfig
from sentiray.data import TextDataset, load_file, load_splits
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
    if scores.ndim == 1:
        logits = np.stack([-scores / 2, scores / 2], axis=1)  # a monotone stand-in for the two-class logits
    else:
        # Multinomial: the decision function is the logits (softmax of it is predict_proba). A class the
        # train rows lack has no column; it gets a logit that never wins, so ids stay positions.
        logits = np.full((len(test.texts), test.label_set.num_labels), -1e9)
        logits[:, clf.classes_] = scores
    metrics = classification_metrics(test.labels, logits, test.label_set.names)
    return {
        "metrics": metrics, "labels": list(test.label_set.names), "train_rows": len(train.texts),
        "test_rows": len(test.texts), "fit_seconds": round(fit_seconds, 1),
    }


def run(
    train_path: str, test_path: str, max_train: int | None = None, data: DataConfig | None = None
) -> dict[str, object]:
    """Fit and score; with data (a training job's data options), on the rows that training run would use."""
    if data is not None:
        splits = load_splits(data)
        if splits.test is None:
            raise SystemExit(f"{test_path}: no test split")
        return fit_and_score(splits.train, splits.test)
    train, test = load_file(train_path), load_file(test_path)
    return fit_and_score(TextDataset(train.texts[:max_train], train.labels[:max_train], train.source), test)


def main() -> None:
    parser = bench_parser(__doc__, out=None)
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--max-test", type=int, default=None, help="with a label option: test rows (seeded)")
    parser.add_argument("--label-column", default=None, help="as the training job's --label-column")
    parser.add_argument("--label-names", default=None, help="as the training job's --label-names")
    parser.add_argument("--label-bins", default=None, help="as the training job's --label-bins")
    args = parser.parse_args()
    data = None
    if args.label_column or args.label_names or args.label_bins:
        options = {"label_column": args.label_column, "label_names": args.label_names, "label_bins": args.label_bins}
        data = DataConfig(
            train_file=args.train, test_file=args.test, max_train_samples=args.max_train,
            max_test_samples=args.max_test, **{k: v for k, v in options.items() if v is not None},
        )
    out = run(args.train, args.test, args.max_train, data)
    print(format_metrics_table(out["metrics"], f"TF-IDF bigram LR ({out['train_rows']} train rows)"))  # type: ignore[arg-type]
    print("BENCH_RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
