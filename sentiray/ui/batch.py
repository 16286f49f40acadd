"""Batch files in the Streamlit app, without Streamlit: read a table, find its text column, and score it
through the endpoint chunk by chunk, every row kept, with its error where it could not be scored.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentiray.errors import InputError
from sentiray.labels import BINARY, LabelSet
from sentiray.scored import ERROR_COLUMN, ScoredColumns, ScoredSchema, row_problem
from sentiray.ui.endpoint import EndpointClient, EndpointError, Problem

# Used until /info says how many texts one request may carry.
DEFAULT_CHUNK = 32
# What a row refused by the endpoint carries in its `error` column, before the endpoint's own words.
REFUSED = "refused by the endpoint: "

BATCH_TYPES = ("csv", "tsv", "txt", "jsonl", "parquet")


def read_batch_file(name: str, data: bytes) -> Any:
    """A DataFrame from a file: CSV/TSV with a header, JSON lines, parquet, or text (one review per line)."""
    import pandas as pd

    suffix = Path(name).suffix.lower().lstrip(".")
    try:
        if suffix in ("csv", "tsv"):
            return pd.read_csv(
                io.BytesIO(data),
                sep="\t" if suffix == "tsv" else ",",
                dtype=object,
                keep_default_na=False,
                na_values=[],
            )
        if suffix == "jsonl":
            return pd.read_json(io.BytesIO(data), lines=True, dtype=False)
        if suffix == "parquet":
            return pd.read_parquet(io.BytesIO(data))
        if suffix == "txt":
            text = data.decode("utf-8")
            lines = [line for line in text.splitlines() if line.strip()]
            return pd.DataFrame({"text": lines})
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise InputError(f"{name}: cannot read it as {suffix}: {e}") from e
    raise InputError(f"{name}: unsupported file type {suffix!r}; allowed: {', '.join(BATCH_TYPES)}")


def guess_text_column(df: Any) -> str:
    """`text` if there is one, else `review`/`sentence`/`content`, else the first column of strings."""
    columns = [str(c) for c in df.columns]
    for name in ("text", "review", "sentence", "content"):
        if name in columns:
            return name
    for c in df.columns:
        if df[c].map(lambda v: isinstance(v, str)).any():
            return str(c)
    raise InputError("no column holds text; the file needs a column of reviews (e.g. named 'text')")


@dataclass
class ScoredTable:
    frame: Any  # the input columns, then the scored columns (sentiray.scored)
    bad_rows: int
    scored_rows: int


def score_frame(
    client: EndpointClient,
    df: Any,
    column: str,
    *,
    labels: LabelSet = BINARY,
    chunk_size: int = DEFAULT_CHUNK,
    truncate: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> ScoredTable:
    """Score df[column] through the endpoint, chunk by chunk; unusable rows get an `error`, never vanish.

    `labels` is the served model's label set (`labels_from_info`): one score column each. Rows the
    endpoint would refuse (empty, non-text) are marked without a request. If the endpoint still refuses
    a chunk (e.g. a text too long with truncation off), the row it names (the error body's `index`) gets
    its `reason` and the rest of the chunk is sent again; a refusal that names no row (an older endpoint,
    a count limit) has the chunk retried row by row. An unreachable or failing endpoint aborts the batch.
    """
    schema = ScoredSchema(labels)
    if column not in df.columns:
        raise InputError(f"column {column!r} not in the file; columns: {', '.join(map(str, df.columns))}")
    clash = schema.clashes(df.columns)
    if clash:
        raise InputError(f"the file already has column(s) {clash}; rename them, the scores are written there")
    texts = df[column].tolist()
    n = len(texts)
    scored = ScoredColumns(schema, n)
    for i, text in enumerate(texts):
        problem = row_problem(text)
        if problem is not None:
            scored.set_error(i, problem)
    good = [i for i in range(n) if scored.errors[i] is None]
    done = n - len(good)
    if progress:
        progress(done, n)

    def store(i: int, ranked: list[dict[str, Any]]) -> None:
        try:
            scored.set_ranked(i, ranked)
        except ValueError as e:
            raise EndpointError(Problem.SERVER, f"/predict answered {e} (from /info)") from e

    def score_rows(rows: list[int]) -> None:
        """Score `rows` in one request. A refusal that names its row marks that row and sends the rest
        again; one that names none (an older endpoint, a count limit) is narrowed down row by row."""
        while rows:
            try:
                answers = client.predict([texts[i] for i in rows], truncate=truncate)
            except EndpointError as e:
                if e.problem is not Problem.REFUSED:
                    raise
                if e.index is not None and 0 <= e.index < len(rows):
                    scored.set_error(rows.pop(e.index), REFUSED + (e.reason or e.detail))
                elif len(rows) == 1:
                    scored.set_error(rows.pop(), REFUSED + (e.reason or e.detail))
                else:
                    for i in rows:
                        score_rows([i])
                    return
                continue
            for i, answer in zip(rows, answers, strict=True):
                store(i, answer)
            return

    for start in range(0, len(good), max(1, chunk_size)):
        idx = good[start : start + chunk_size]
        score_rows(list(idx))
        done += len(idx)
        if progress:
            progress(done, n)
    out = df.copy()
    for name, values in scored.columns().items():
        out[name] = values
    return ScoredTable(frame=out, bad_rows=scored.bad_rows, scored_rows=n - scored.bad_rows)


__all__ = [
    "BATCH_TYPES",
    "DEFAULT_CHUNK",
    "ERROR_COLUMN",
    "REFUSED",
    "ScoredTable",
    "guess_text_column",
    "read_batch_file",
    "score_frame",
]
