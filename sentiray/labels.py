"""The two sentiment classes, shared by data loading, training, the artifact and serving."""

from __future__ import annotations

from enum import StrEnum


class Label(StrEnum):
    """Sentiment classes; the integer id is the position (0 negative, 1 positive, as in IMDB)."""

    NEGATIVE = "NEGATIVE"
    POSITIVE = "POSITIVE"


LABELS: tuple[Label, ...] = (Label.NEGATIVE, Label.POSITIVE)
ID2LABEL: dict[int, str] = {i: label.value for i, label in enumerate(LABELS)}
LABEL2ID: dict[str, int] = {name: i for i, name in ID2LABEL.items()}
NUM_LABELS = len(LABELS)

# Spellings accepted in data files, mapped to the label id. Anything else is refused by the loader.
_LABEL_ALIASES: dict[str, int] = {
    "0": 0,
    "neg": 0,
    "negative": 0,
    "1": 1,
    "pos": 1,
    "positive": 1,
}


def parse_label(value: object) -> int | None:
    """Map a raw label (0/1, bool, 'neg'/'pos', 'NEGATIVE'/'POSITIVE') to its id; None if not a label."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    if isinstance(value, str):
        return _LABEL_ALIASES.get(value.strip().lower())
    return None
