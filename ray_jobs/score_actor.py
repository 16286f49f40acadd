"""The scoring job's actor: one per pool slot, it holds a Predictor and classifies Ray Data batches."""

from __future__ import annotations

import time
from typing import Any

from sentiray.errors import InputError
from sentiray.scored import ERROR_COLUMN, LABEL_COLUMN, ScoredColumns, ScoredSchema, row_problem


class Scorer:
    """One actor of the pool: loads the artifact once, then classifies pyarrow batches.

    Each batch comes back with the scored columns (sentiray.scored) for the model's own label set, read
    from the artifact's model config.
    """

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
                )  # fmt: skip
                break
            except OSError:
                # Actors on one node share the download cache of a URI artifact; a rename race there
                # resolves on the next try, which finds the verified copy.
                if attempt == 2:
                    raise
                time.sleep(1 + attempt)
        self.schema = ScoredSchema(self.predictor.labels)

    def __call__(self, batch: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        from sentiray.metrics import softmax

        texts = batch.column(self.text_column).to_pylist()
        scored = ScoredColumns(self.schema, len(texts))
        for i, text in enumerate(texts):
            problem = row_problem(text)
            if problem is not None:
                scored.set_error(i, problem)
        good = [i for i, error in enumerate(scored.errors) if error is None]
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
                    scored.set_error(i, e.reason)
            good = kept
        if good:
            logits = self.predictor.logits_for_ids(encoded)
            # Hugging Face's text-classification defaults: softmax over single-label classes, a sigmoid
            # per label for multi-label models.
            probs = 1.0 / (1.0 + np.exp(-logits)) if self.schema.labels.multi_label else softmax(logits)
            for i, row in zip(good, probs, strict=True):
                scored.set_scores(i, row.tolist())
        out = batch
        for name, values in scored.columns().items():
            kind = pa.string() if name in (LABEL_COLUMN, ERROR_COLUMN) else pa.float32()
            out = out.append_column(name, pa.array(values, kind))
        return out


__all__ = ["Scorer"]
