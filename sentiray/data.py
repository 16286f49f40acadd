"""Load, validate and split labelled reviews: Hub ids, local parquet/csv/jsonl files, aclImdb trees.

Bad data stops the job with an error naming the file, the column and how many rows are bad: no row is
ever dropped silently.

The classes come from the train split (`LabelMapping.from_train`) and are fixed there; the validation
and test splits are mapped through them, so a class they have and train lacks is an error. Labels that
all read as binary sentiment (0/1, neg/pos, NEGATIVE/POSITIVE) give the binary default, as before label
sets; other labels give the sorted distinct names (or integer ids 0..n-1 with `label_names`), or
`label_bins` cut a numeric column (IMDB's 1-10 `rating`) into classes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from sentiray import storage
from sentiray.config import DataConfig
from sentiray.errors import DataError
from sentiray.label_mapping import LabelMapping
from sentiray.labels import BINARY, LabelSet

_READERS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "json", ".json": "json"}


@dataclass(frozen=True)
class TextDataset:
    """Parallel lists of review texts and labels, ids being positions in `label_set` (binary: 0 negative,
    1 positive): an id per text, or for a multi-label set a tuple of the ids each text carries."""

    texts: list[str]
    labels: list[Any]
    source: str
    label_set: LabelSet = BINARY

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{self.source}: {len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: np.ndarray | list[int], source: str | None = None) -> TextDataset:
        return TextDataset(
            [self.texts[i] for i in indices], [self.labels[i] for i in indices], source or self.source,
            self.label_set,
        )

    def label_counts(self) -> dict[str, int]:
        """Texts per class (multi-label: a text counts once for each class it carries)."""
        names = self.label_set.names
        if self.label_set.multi_label:
            counts = self.label_array().sum(axis=0).astype(np.int64)
        else:
            counts = np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=len(names))
        return {names[i]: int(c) for i, c in enumerate(counts)}

    def label_array(self, rows: np.ndarray | list[int] | None = None) -> np.ndarray:
        """The labels of rows (default: all) as the loss takes them: int64 ids, or for a multi-label set
        a float32 0/1 matrix of rows x classes."""
        picked = self.labels if rows is None else [self.labels[i] for i in rows]
        if not self.label_set.multi_label:
            return np.asarray(picked, dtype=np.int64).reshape(len(picked))
        out = np.zeros((len(picked), self.label_set.num_labels), dtype=np.float32)
        for row, ids in enumerate(picked):
            out[row, list(ids)] = 1.0
        return out


@dataclass(frozen=True)
class DatasetSplits:
    """Train, validation and test splits plus where they came from (for the artifact manifest)."""

    train: TextDataset
    validation: TextDataset
    test: TextDataset | None
    description: str
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def label_set(self) -> LabelSet:
        """The classes, fixed from the train split."""
        return self.train.label_set

    def summary(self) -> dict[str, Any]:
        splits = {"train": self.train, "validation": self.validation, "test": self.test}
        return {
            "source": self.description,
            "sha256": self.sha256,
            "rows": {k: len(v) for k, v in splits.items() if v is not None},
            "label_counts": {k: v.label_counts() for k, v in splits.items() if v is not None},
        }


def _sha256_file(location: str) -> str:
    fs, path = storage.filesystem(location)
    h = hashlib.sha256()
    with fs.open_input_stream(path) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _read_table(location: str) -> pa.Table:
    suffix = Path(location.split("?")[0]).suffix.lower()
    kind = _READERS.get(suffix)
    if kind is None:
        raise DataError(f"{location}: unsupported file type {suffix!r}; use one of {sorted(_READERS)}")
    if not storage.exists(location):
        raise DataError(f"{location}: file not found")
    fs, path = storage.filesystem(location)
    try:
        if kind == "parquet":
            return pq.read_table(path, filesystem=fs)
        with fs.open_input_stream(path) as f:
            if kind == "csv":
                # Reviews span lines; without this, a quoted newline at a block boundary breaks parsing.
                return pacsv.read_csv(f, parse_options=pacsv.ParseOptions(newlines_in_values=True))
            return pajson.read_json(f)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{location}: cannot be read as {kind}: {e}") from e


def validate_columns(
    texts: list[Any], labels: list[Any], source: str, text_column: str, label_column: str,
    mapping: LabelMapping | None = None,
) -> TextDataset:
    """Check every row; raise a DataError counting the bad ones, else return the clean dataset.

    Labels are mapped to ids with mapping (default: the binary sentiment classes).
    """
    mapping = mapping or LabelMapping.binary()
    n = len(texts)
    if n == 0:
        raise DataError(f"{source}: no rows")
    bad_text = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad_text:
        raise DataError(
            f"{source}: column {text_column!r}: {len(bad_text)} of {n} rows are empty or not strings "
            f"(first at row {bad_text[0]}: {texts[bad_text[0]]!r})"
        )
    parsed = [mapping.parse(v) for v in labels]
    bad_label = [i for i, v in enumerate(parsed) if v is None]
    if bad_label:
        examples = sorted({repr(labels[i]) for i in bad_label[:1000]})[:5]
        raise DataError(
            f"{source}: column {label_column!r}: {len(bad_label)} of {n} rows have a label that is not "
            f"{mapping.allowed}; found {', '.join(examples)}"
        )
    return TextDataset(list(texts), [v for v in parsed if v is not None], source, mapping.label_set)


@dataclass(frozen=True)
class _RawSplit:
    """A split's columns as read, before its labels are mapped (that waits for the train split's classes)."""

    texts: list[Any]
    labels: list[Any]
    source: str

    def validated(self, cfg: DataConfig, mapping: LabelMapping) -> TextDataset:
        return validate_columns(self.texts, self.labels, self.source, cfg.text_column, cfg.label_column, mapping)


def _read_columns(location: str, text_column: str, label_column: str) -> _RawSplit:
    table = _read_table(location)
    missing = [c for c in (text_column, label_column) if c not in table.column_names]
    if missing:
        raise DataError(
            f"{location}: missing column(s) {missing}; the file has {table.column_names} "
            f"(choose others with --text-column / --label-column)"
        )
    return _RawSplit(table.column(text_column).to_pylist(), table.column(label_column).to_pylist(), location)


def load_file(
    location: str, text_column: str = "text", label_column: str = "label", mapping: LabelMapping | None = None
) -> TextDataset:
    """Read one parquet/csv/jsonl file (local or URI) and validate its text and label columns.

    Labels are mapped with mapping (default: the binary sentiment classes).
    """
    raw = _read_columns(location, text_column, label_column)
    return validate_columns(raw.texts, raw.labels, location, text_column, label_column, mapping)


def load_aclimdb_split(root: Path, split: str, label_column: str = "label") -> tuple[_RawSplit, str]:
    """Read `root/split/{neg,pos}/*.txt` (the layout of the original aclImdb archive).

    The label is 0 (neg) or 1 (pos); with label_column "rating", the 1-10 rating in each file's name
    (`<id>_<rating>.txt`).
    """
    texts: list[str] = []
    labels: list[Any] = []
    digest = hashlib.sha256()
    for label_id, folder in ((0, "neg"), (1, "pos")):
        files = sorted((root / split / folder).glob("*.txt"))
        if not files:
            raise DataError(f"{root / split / folder}: no .txt reviews")
        for f in files:
            raw = f.read_bytes()
            digest.update(f.relative_to(root).as_posix().encode() + b"\0" + raw)
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise DataError(f"{f}: not valid UTF-8 ({e})") from e
            if label_column == "rating":
                rating = f.stem.rpartition("_")[2]
                labels.append(int(rating) if rating.isdigit() else f.name)
            else:
                labels.append(label_id)
    return _RawSplit(texts, labels, str(root / split)), digest.hexdigest()


def _find_split_file(folder: Path, split: str) -> str | None:
    for suffix in _READERS:
        candidate = folder / f"{split}{suffix}"
        if candidate.is_file():
            return str(candidate)
    return None


def _load_hub(cfg: DataConfig) -> tuple[dict[str, _RawSplit], str]:
    # Imported here: `datasets` is heavy and only needed for Hub ids.
    import datasets

    try:
        ds = datasets.load_dataset(cfg.dataset)
    except Exception as e:  # the hub client raises many types; the message is what matters
        raise DataError(
            f"dataset {cfg.dataset!r}: cannot load from the Hugging Face Hub ({type(e).__name__}: {e}). "
            "Offline? Point --dataset at a local folder or use --train-file/--test-file."
        ) from e
    if "train" not in ds:
        raise DataError(f"dataset {cfg.dataset!r} has no 'train' split; it has {list(ds)}")
    out: dict[str, _RawSplit] = {}
    for name in ("train", "validation", "test"):
        if name not in ds:
            continue
        part = ds[name]
        for col in (cfg.text_column, cfg.label_column):
            if col not in part.column_names:
                raise DataError(f"{cfg.dataset}[{name}]: missing column {col!r}; has {part.column_names}")
        out[name] = _RawSplit(part[cfg.text_column], part[cfg.label_column], f"{cfg.dataset}[{name}]")
    fingerprint = ds["train"]._fingerprint  # the Hub revision's content hash as datasets computes it
    return out, f"hub:{cfg.dataset}@{fingerprint}"


def _shuffled(ds: TextDataset, seed: int, limit: int | None) -> TextDataset:
    order = np.random.default_rng(seed).permutation(len(ds))
    if limit is not None:
        order = order[:limit]
    return ds.subset(order)


def load_splits(cfg: DataConfig) -> DatasetSplits:
    """Load train/validation/test as configured, carve validation from train, apply row limits.

    The label set is fixed from the train split; validation and test are mapped through it.
    """
    hashes: dict[str, str] = {}
    raw: dict[str, _RawSplit] = {}  # split name -> rows as read
    files: dict[str, str] = {}  # split name -> file to read (folder discovery, then explicit flags)
    local = Path(cfg.dataset).expanduser()
    if cfg.train_file:
        files["train"] = cfg.train_file
        description = f"files:{cfg.train_file}"
    elif cfg.dataset.startswith(("/", "./", "../", "~")) and not local.exists():
        raise DataError(f"dataset {cfg.dataset!r}: no such folder")
    elif storage.is_uri(cfg.dataset):
        raise DataError(f"dataset {cfg.dataset!r}: for object-store data use --train-file/--test-file")
    elif local.exists():
        if not local.is_dir():
            raise DataError(f"dataset {local}: expected a folder (use --train-file for a single file)")
        if (local / "train" / "pos").is_dir():
            raw["train"], hashes["aclImdb/train"] = load_aclimdb_split(local, "train", cfg.label_column)
            if (local / "test" / "pos").is_dir() and not cfg.test_file:
                raw["test"], hashes["aclImdb/test"] = load_aclimdb_split(local, "test", cfg.label_column)
            description = f"aclImdb:{local}"
        else:
            for split_name in ("train", "validation", "test"):
                if path := _find_split_file(local, split_name):
                    files[split_name] = path
            if "train" not in files:
                raise DataError(
                    f"dataset {local}: no train.parquet/.csv/.jsonl and no aclImdb train/pos folder"
                )
            description = f"folder:{local}"
    else:
        raw, description = _load_hub(cfg)

    for split_name in ("validation", "test"):
        if explicit := getattr(cfg, f"{split_name}_file"):
            files[split_name] = explicit
    for split_name, path in files.items():
        raw[split_name] = _read_columns(path, cfg.text_column, cfg.label_column)
        hashes[path] = _sha256_file(path)
    mapping = LabelMapping.from_train(raw["train"].labels, cfg, raw["train"].source)
    loaded = {name: split.validated(cfg, mapping) for name, split in raw.items()}
    train, validation, test = loaded["train"], loaded.get("validation"), loaded.get("test")

    train = _shuffled(train, cfg.data_seed, None)
    if validation is None:
        n_val = max(1, round(len(train) * cfg.validation_fraction))
        if len(train) - n_val < 1:
            raise DataError(f"{train.source}: {len(train)} rows are too few to carve a validation split")
        validation = train.subset(range(n_val), f"{train.source}[validation]")  # type: ignore[arg-type]
        train = train.subset(range(n_val, len(train)), f"{train.source}[train]")  # type: ignore[arg-type]
    if cfg.max_train_samples is not None:
        train = train.subset(range(min(cfg.max_train_samples, len(train))))  # type: ignore[arg-type]
    validation = _shuffled(validation, cfg.data_seed, cfg.max_eval_samples)
    if test is not None:
        test = _shuffled(test, cfg.data_seed, cfg.max_test_samples)
    return DatasetSplits(train, validation, test, description, hashes)
