"""How raw values of a data file's label column become ids of a label set (see `sentiray.data`).

The mapping is fixed once from the train split: labels that all read as binary sentiment give the
binary default; otherwise the sorted distinct names, integer ids 0..n-1 with `label_names`, or
`label_bins` that cut a numeric column (IMDB's 1-10 `rating`) into classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sentiray.config import DataConfig, parse_bins
from sentiray.errors import ConfigError, DataError
from sentiray.labels import BINARY, LabelSet, parse_label


def _integer(value: object) -> int | None:
    """An integral number (1, 1.0; not True, not "1") as an int, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if float(value).is_integer() else None


@dataclass(frozen=True)
class LabelMapping:
    """How raw values of the label column become ids of a label set; fixed once from the train split."""

    label_set: LabelSet
    id_of: Callable[[object], int | None]
    allowed: str  # what the column may hold, for error messages

    @classmethod
    def binary(cls) -> LabelMapping:
        """The default: two sentiment classes under their usual spellings."""
        return cls(BINARY, parse_label, "one of the two classes (0/1, neg/pos, NEGATIVE/POSITIVE)")

    @classmethod
    def from_train(cls, values: list[Any], cfg: DataConfig, source: str) -> LabelMapping:
        """The label set of the train split's label column, under cfg's label_names / label_bins."""
        try:
            if cfg.label_bins:
                return cls._bins(cfg.label_bins, cfg.label_names)
            if cfg.label_names:
                return cls._named(cfg.label_names)
        except ConfigError as e:
            raise DataError(f"{source}: {e}") from e
        if all(parse_label(v) is not None for v in values):
            return cls.binary()
        distinct = {v for v in values if v is not None}
        if distinct and all(_integer(v) is not None for v in distinct):
            names = [str(i) for i in sorted({_integer(v) for v in distinct})]  # type: ignore[type-var]
        elif distinct and all(isinstance(v, str) for v in distinct):
            names = sorted(distinct)
        else:
            kinds = sorted({type(v).__name__ for v in values})
            raise DataError(
                f"{source}: column {cfg.label_column!r}: labels must be all class names (strings) or all "
                f"integers, found {', '.join(kinds)} (use --label-bins to cut a numeric column into classes)"
            )
        if len(names) < 2:
            raise DataError(
                f"{source}: column {cfg.label_column!r}: the train split has a single class {names}; "
                "a classifier needs at least 2"
            )
        try:
            label_set = LabelSet.of(names)
        except ConfigError as e:
            raise DataError(f"{source}: column {cfg.label_column!r}: {e}") from e
        lookup = label_set.label2id

        def id_of(value: object) -> int | None:
            number = _integer(value)
            if number is not None:
                return lookup.get(str(number))
            return lookup.get(value) if isinstance(value, str) else None

        return cls(label_set, id_of, f"one of the train split's classes {list(names)}")

    @classmethod
    def _named(cls, names: tuple[str, ...]) -> LabelMapping:
        label_set = LabelSet.of(names)
        lookup = label_set.label2id

        def id_of(value: object) -> int | None:
            if isinstance(value, str):
                return lookup.get(value)
            number = _integer(value)
            return number if number is not None and 0 <= number < len(names) else None

        return cls(label_set, id_of, f"one of {list(names)} or an id 0..{len(names) - 1}")

    @classmethod
    def _bins(cls, bins: tuple[str, ...], names: tuple[str, ...] | None) -> LabelMapping:
        try:
            ranges = parse_bins(bins)
        except ValueError as e:
            raise ConfigError(f"label_bins: {e}") from None
        label_set = LabelSet.of(names or bins)

        def id_of(value: object) -> int | None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            return next((i for i, (low, high) in enumerate(ranges) if low <= value <= high), None)

        return cls(label_set, id_of, f"a number in one of the bins {list(bins)}")
