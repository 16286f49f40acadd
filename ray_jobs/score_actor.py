"""The scoring job's actor: one per pool slot, it holds a Predictor and classifies Ray Data batches."""

from __future__ import annotations

import time
from typing import Any

from sentiray.errors import InputError
from sentiray.labels import ID2LABEL

LABEL_COLUMN = "label"
SCORE_COLUMN = "score"
ERROR_COLUMN = "error"
PROB_COLUMNS = {name: f"score_{name.lower()}" for name in ID2LABEL.values()}
OUTPUT_COLUMNS = (LABEL_COLUMN, SCORE_COLUMN, *PROB_COLUMNS.values(), ERROR_COLUMN)


class Scorer:
    """One actor of the pool: loads the artifact once, then classifies pyarrow batches."""

    def __init__(
        self,
        model: str,
        text_column: str,
        precision: str,
        runtime: str,
        use_gpu: bool,
        truncate: bool,
        batch_size: int,
        threads: int,
    ) -> None:
        import torch

        from sentiray.predictor import Predictor

        torch.set_num_threads(max(1, threads))
        self.text_column = text_column
        self.truncate = truncate
        for attempt in range(3):
            try:
                self.predictor = Predictor.from_artifact(
                    model, device="cuda" if use_gpu else "cpu", precision=precision, max_batch_size=batch_size,
                    runtime=runtime,
                )
                break
            except OSError:
                # Actors on one node share the download cache of a URI artifact; a rename race there
                # resolves on the next try, which finds the verified copy.
                if attempt == 2:
                    raise
                time.sleep(1 + attempt)

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        from sentiray.metrics import softmax
        from sentiray.text import validate_texts

        texts = batch.column(self.text_column).to_pylist()
        n = len(texts)
        errors: list[str | None] = [None] * n
        for i, text in enumerate(texts):
            if text is None:
                errors[i] = "missing text"
                continue
            try:
                validate_texts([text])
            except InputError as e:
                errors[i] = str(e).removeprefix("inputs[0]: ")
        good = [i for i in range(n) if errors[i] is None]
        encoded: list[list[int]] = []
        try:
            encoded = self.predictor.encode([texts[i] for i in good], truncate=self.truncate) if good else []
        except InputError:
            # Only with truncation off: find the over-long rows one by one.
            kept = []
            for i in good:
                try:
                    encoded.extend(self.predictor.encode([texts[i]], truncate=self.truncate))
                    kept.append(i)
                except InputError as e:
                    errors[i] = str(e).removeprefix("inputs[0]: ")
            good = kept
        labels: list[str | None] = [None] * n
        top: list[float | None] = [None] * n
        probs: dict[str, list[float | None]] = {name: [None] * n for name in PROB_COLUMNS}
        if good:
            scores = softmax(self.predictor.logits_for_ids(encoded))
            for row, i in zip(scores, good, strict=True):
                best = int(row.argmax())
                labels[i], top[i] = ID2LABEL[best], float(row[best])
                for j, name in ID2LABEL.items():
                    probs[name][i] = float(row[j])
        out = batch
        out = out.append_column(LABEL_COLUMN, pa.array(labels, pa.string()))
        out = out.append_column(SCORE_COLUMN, pa.array(top, pa.float32()))
        for name, column in PROB_COLUMNS.items():
            out = out.append_column(column, pa.array(probs[name], pa.float32()))
        return out.append_column(ERROR_COLUMN, pa.array(errors, pa.string()))


__all__ = ["OUTPUT_COLUMNS", "Scorer"]
