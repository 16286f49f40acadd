"""The scored table: the columns the scoring job and the UI add to a table of texts, and why a row has none.

After the input columns come `label` (the most probable label), `score` (its probability), one
`score_<label>` per label of the model, in id order (`score_negative`, `score_positive` for the binary
default), and `error`: why the row has no label (its label and scores are then null), null otherwise.
Rows are never dropped, so input and output have the same rows. Both `ray_jobs.score` (pyarrow batches
on Ray Data) and `sentiray.ui` (a DataFrame scored through the endpoint) build their columns here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sentiray.errors import ConfigError, InputError
from sentiray.labels import BINARY, LabelSet
from sentiray.text import validate_texts

LABEL_COLUMN = "label"
SCORE_COLUMN = "score"  # probability of the row's label
ERROR_COLUMN = "error"  # why the row has no label; null otherwise
MISSING_TEXT = "missing text"


def score_column(label: str) -> str:
    """The column holding a label's probability."""
    return f"score_{label.lower()}"


@dataclass(frozen=True)
class ScoredSchema:
    """The columns added for a label set (the model's, from its config: `LabelSet.from_model_config`)."""

    labels: LabelSet = BINARY

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for name in self.labels.names:
            column = score_column(name)
            if column in seen:
                raise ConfigError(
                    f"labels {seen[column]!r} and {name!r} would share the column {column!r}; "
                    "label names must differ in more than case"
                )
            seen[column] = name

    @property
    def score_columns(self) -> dict[str, str]:
        """Label name -> its probability column, in id order."""
        return {name: score_column(name) for name in self.labels.names}

    @property
    def columns(self) -> tuple[str, ...]:
        """The added columns, in order."""
        return (LABEL_COLUMN, SCORE_COLUMN, *self.score_columns.values(), ERROR_COLUMN)

    def clashes(self, existing: Iterable[object]) -> list[str]:
        """The added columns the input already has (the input is refused: they would be overwritten)."""
        names = {str(c) for c in existing}
        return [c for c in self.columns if c in names]


BINARY_SCHEMA = ScoredSchema(BINARY)


def row_problem(value: object) -> str | None:
    """Why a cell cannot be classified (the checks the endpoint makes before tokenizing), or None."""
    if value is None or (isinstance(value, float) and value != value):  # None or NaN: a missing cell
        return MISSING_TEXT
    try:
        validate_texts([value])
    except InputError as e:
        return e.reason
    return None


class ScoredColumns:
    """The added columns of `n` rows, filled row by row; a row with neither scores nor error stays null."""

    def __init__(self, schema: ScoredSchema, n: int) -> None:
        self.schema = schema
        self.labels: list[str | None] = [None] * n
        self.top: list[float | None] = [None] * n
        self.probs: dict[str, list[float | None]] = {name: [None] * n for name in schema.labels.names}
        self.errors: list[str | None] = [None] * n

    def set_scores(self, row: int, scores: Sequence[float]) -> None:
        """One row's probabilities, in label id order; its label is the most probable one."""
        names = self.schema.labels.names
        if len(scores) != len(names):
            raise ValueError(f"{len(scores)} scores for {len(names)} labels")
        best = max(range(len(names)), key=lambda j: float(scores[j]))
        self.labels[row], self.top[row] = names[best], float(scores[best])
        for name, score in zip(names, scores, strict=True):
            self.probs[name][row] = float(score)

    def set_ranked(self, row: int, ranked: Sequence[Mapping[str, object]]) -> None:
        """One row from an endpoint's answer, `[{"label", "score"}, ...]` highest first; labels it left out
        (a top_k below the label count) stay null. A label the schema does not know raises ValueError."""
        known = self.schema.labels.label2id
        unknown = [str(r["label"]) for r in ranked if r["label"] not in known]
        if unknown or not ranked:
            raise ValueError(f"labels {unknown or '[]'} are not the model's {list(known)}")
        top = ranked[0]
        self.labels[row], self.top[row] = str(top["label"]), float(top["score"])  # type: ignore[arg-type]
        for entry in ranked:
            self.probs[str(entry["label"])][row] = float(entry["score"])  # type: ignore[arg-type]

    def set_error(self, row: int, reason: str) -> None:
        self.errors[row] = reason

    @property
    def bad_rows(self) -> int:
        return sum(e is not None for e in self.errors)

    def columns(self) -> dict[str, list[object]]:
        """Column name -> values, in the schema's column order."""
        out: dict[str, list[object]] = {LABEL_COLUMN: list(self.labels), SCORE_COLUMN: list(self.top)}
        for name, column in self.schema.score_columns.items():
            out[column] = list(self.probs[name])
        out[ERROR_COLUMN] = list(self.errors)
        return out


__all__ = [
    "BINARY_SCHEMA",
    "ERROR_COLUMN",
    "LABEL_COLUMN",
    "MISSING_TEXT",
    "SCORE_COLUMN",
    "ScoredColumns",
    "ScoredSchema",
    "row_problem",
    "score_column",
]
