"""How raw values of a data file's label column become ids of a label set (see `sentiray.data`).

The mapping is fixed once from the train split: labels that all read as binary sentiment give the
binary default; otherwise the sorted distinct names, integer ids 0..n-1 with `label_names`, or
`label_bins` that cut a numeric column (IMDB's 1-10 `rating`) into classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sentiray.config import DataConfig
from sentiray.errors import ConfigError, DataError
from sentiray.labels import BINARY, LabelSet, parse_bins, parse_label


def _integer(value: object) -> int | None:
    """An integral number (1, 1.0; not True, not "1") as an int, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if float(value).is_integer() else None


@dataclass(frozen=True)
class LabelMapping:
    """How raw values of the label column become ids of a label set; fixed once from the train split."""

    label_set: LabelSet
    id_of: Callable[[object], int | None]  # one class name or id -> its id
    allowed: str  # what the column may hold, for error messages

    def parse(self, value: object) -> int | tuple[int, ...] | None:
        """A cell's label: an id, or for a multi-label set the sorted ids of its classes; None if invalid."""
        if not self.label_set.multi_label:
            return self.id_of(value)
        items = _multi_items(value)
        if items is None:
            return None
        ids = [self.id_of(v) for v in items]
        known = [i for i in ids if i is not None]
        return tuple(sorted(set(known))) if len(known) == len(ids) else None

    @classmethod
    def binary(cls) -> LabelMapping:
        """The default: two sentiment classes under their usual spellings."""
        return cls(BINARY, parse_label, "one of the two classes (0/1, neg/pos, NEGATIVE/POSITIVE)")

    @classmethod
    def from_train(cls, values: list[Any], cfg: DataConfig, source: str) -> LabelMapping:
        """The label set of the train split's label column, under cfg's label_names / label_bins / multi_label."""
        try:
            if cfg.label_bins:
                return cls._bins(cfg.label_bins, cfg.label_names)
            if cfg.label_names:
                return cls._named(cfg.label_names, multi_label=cfg.multi_label)
        except ConfigError as e:
            raise DataError(f"{source}: {e}") from e
        if cfg.multi_label:
            cells = [_multi_items(v) for v in values]
            bad = sum(c is None for c in cells)
            if bad:
                raise DataError(
                    f"{source}: column {cfg.label_column!r}: {bad} of {len(values)} rows are not a list of "
                    "classes (multi_label: a list of names or ids, or a comma-separated string)"
                )
            values = [v for c in cells for v in c or ()]
        elif all(parse_label(v) is not None for v in values):
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
        if len(names) < 2 and not cfg.multi_label:
            raise DataError(
                f"{source}: column {cfg.label_column!r}: the train split has a single class {names}; "
                "a classifier needs at least 2"
            )
        try:
            label_set = LabelSet.of(names, multi_label=cfg.multi_label)
        except ConfigError as e:
            raise DataError(f"{source}: column {cfg.label_column!r}: {e}") from e
        lookup = label_set.label2id

        def id_of(value: object) -> int | None:
            number = _integer(value)
            if number is not None:
                return lookup.get(str(number))
            return lookup.get(value) if isinstance(value, str) else None

        allowed = "a list of" if cfg.multi_label else "one of"
        return cls(label_set, id_of, f"{allowed} the train split's classes {list(names)}")

    @classmethod
    def _named(cls, names: tuple[str, ...], *, multi_label: bool = False) -> LabelMapping:
        label_set = LabelSet.of(names, multi_label=multi_label)
        lookup = label_set.label2id

        def id_of(value: object) -> int | None:
            if isinstance(value, str):
                if value in lookup:
                    return lookup[value]
                # An id written as text (a csv cell, a comma-separated multi-label cell).
                value = int(value) if value.isdigit() else None
            number = _integer(value)
            return number if number is not None and 0 <= number < len(names) else None

        ids = f"0..{len(names) - 1}"
        allowed = (
            f"a list of names in {list(names)} or ids {ids}" if multi_label else f"one of {list(names)} or an id {ids}"
        )
        return cls(label_set, id_of, allowed)

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


def _multi_items(value: object) -> list[Any] | None:
    """A multi-label cell's classes: a list (parquet list column, JSON array) or a comma-separated string."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple | np.ndarray):
        return list(value)
    return None
