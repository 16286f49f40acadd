"""Data loading: local files, folders, aclImdb trees, the seeded validation split, limits and bad data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sentiray.config import DataConfig
from sentiray.data import load_file, load_splits
from sentiray.errors import DataError
from sentiray.labels import ID2LABEL, LABEL2ID, LABELS, Label, parse_label
from tests.support import synthetic_reviews, write_parquet

SHARED_IMDB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "imdb"


def _unique_reviews(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """Synthetic reviews made unique by an index word, so rows can be followed by their text."""
    texts, labels = synthetic_reviews(n, seed=seed)
    return [f"review{i} {t}" for i, t in enumerate(texts)], labels


def _write(path: Path, columns: dict[str, list[Any]]) -> Path:
    """Write columns as parquet, csv or jsonl, chosen by the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pq.write_table(pa.table(columns), path)
    elif path.suffix == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(pa.table(columns), path)
    else:
        rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cfg(**kwargs: Any) -> DataConfig:
    return DataConfig(**kwargs)


# --- labels -----------------------------------------------------------------------------------------


def test_labels_are_a_str_enum_in_id_order() -> None:
    assert [label.value for label in LABELS] == ["NEGATIVE", "POSITIVE"]
    assert Label.POSITIVE == "POSITIVE"
    assert isinstance(Label.NEGATIVE, str)
    assert ID2LABEL == {0: "NEGATIVE", 1: "POSITIVE"}
    assert {v: k for k, v in LABEL2ID.items()} == ID2LABEL


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, 0),
        (1, 1),
        (0.0, 0),
        (1.0, 1),
        (True, 1),
        (False, 0),
        ("0", 0),
        ("1", 1),
        ("neg", 0),
        ("pos", 1),
        ("NEGATIVE", 0),
        ("POSITIVE", 1),
        (" Positive ", 1),
        (2, None),
        (-1, None),
        (0.5, None),
        ("2", None),
        ("neutral", None),
        ("", None),
        (None, None),
        (float("nan"), None),
    ],
)
def test_parse_label(raw: object, expected: int | None) -> None:
    assert parse_label(raw) == expected


# --- formats ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_load_file_each_format(tmp_path: Path, suffix: str) -> None:
    texts = ["a great film", "an awful, boring film", 'quotes "inside", and a comma']
    raw_labels = ["pos", "NEGATIVE", "positive"]
    path = _write(tmp_path / f"train{suffix}", {"text": texts, "label": raw_labels})
    ds = load_file(str(path))
    assert ds.texts == texts
    assert ds.labels == [1, 0, 1]
    assert ds.source == str(path)


def test_csv_reviews_spanning_lines_beyond_one_read_block(tmp_path: Path) -> None:
    """Quoted newlines are common in reviews; pyarrow reads CSV in 1 MB blocks that may split them."""
    import csv

    texts = [f"review {i}: " + "so-so film " * (5 + i % 40) + "\n\nSecond paragraph." for i in range(12_000)]
    labels = [i % 2 for i in range(12_000)]
    path = tmp_path / "train.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels, strict=True))
    assert path.stat().st_size > 3 * (1 << 20)
    ds = load_file(str(path))
    assert ds.texts == texts
    assert ds.labels == labels


def test_load_file_custom_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.parquet", {"review": ["good", "bad"], "sentiment": [1, 0], "other": [5, 6]})
    ds = load_file(str(path), text_column="review", label_column="sentiment")
    assert ds.texts == ["good", "bad"]
    assert ds.labels == [1, 0]


def test_folder_with_train_and_test(tmp_path: Path) -> None:
    train_texts, train_labels = _unique_reviews(200, seed=1)
    test_texts, test_labels = _unique_reviews(50, seed=2)
    write_parquet(tmp_path / "train.parquet", train_texts, train_labels)
    _write(tmp_path / "test.jsonl", {"text": test_texts, "label": test_labels})
    splits = load_splits(_cfg(dataset=str(tmp_path)))
    assert splits.description == f"folder:{tmp_path}"
    assert len(splits.train) + len(splits.validation) == 200
    assert len(splits.validation) == 20  # validation_fraction 0.1
    assert splits.test is not None
    assert sorted(splits.test.texts) == sorted(test_texts)
    # Labels follow their texts through the shuffles.
    truth = dict(zip(train_texts + test_texts, train_labels + test_labels, strict=True))
    for part in (splits.train, splits.validation, splits.test):
        assert all(truth[t] == y for t, y in zip(part.texts, part.labels, strict=True))
    summary = splits.summary()
    assert summary["rows"] == {"train": 180, "validation": 20, "test": 50}
    assert set(summary["sha256"]) == {str(tmp_path / "train.parquet"), str(tmp_path / "test.jsonl")}
    assert sum(summary["label_counts"]["train"].values()) == 180


def test_folder_with_its_own_validation_file(tmp_path: Path) -> None:
    write_parquet(tmp_path / "train.parquet", *_unique_reviews(40, seed=1))
    val_texts, val_labels = _unique_reviews(10, seed=3)
    _write(tmp_path / "validation.csv", {"text": val_texts, "label": val_labels})
    splits = load_splits(_cfg(dataset=str(tmp_path)))
    assert len(splits.train) == 40  # nothing carved out
    assert sorted(splits.validation.texts) == sorted(val_texts)
    assert splits.test is None


def test_explicit_files_override_the_folder(tmp_path: Path) -> None:
    train = write_parquet(tmp_path / "mine" / "a.parquet", *_unique_reviews(30, seed=1))
    test = write_parquet(tmp_path / "mine" / "b.parquet", *_unique_reviews(12, seed=2))
    splits = load_splits(_cfg(dataset="imdb", train_file=str(train), test_file=str(test)))
    assert splits.description == f"files:{train}"
    assert len(splits.train) + len(splits.validation) == 30
    assert splits.test is not None
    assert len(splits.test) == 12


def _write_aclimdb(root: Path, split: str, n_per_class: int) -> dict[str, int]:
    truth = {}
    for label, folder in ((0, "neg"), (1, "pos")):
        (root / split / folder).mkdir(parents=True)
        for i in range(n_per_class):
            text = f"{split} {folder} review number {i}.<br /><br />The end."
            (root / split / folder / f"{i}_{7 if label else 2}.txt").write_text(text)
            truth[text] = label
    return truth


def test_aclimdb_tree(tmp_path: Path) -> None:
    train_truth = _write_aclimdb(tmp_path, "train", 15)
    test_truth = _write_aclimdb(tmp_path, "test", 5)
    (tmp_path / "train" / "unsup").mkdir()  # ignored, as in the real archive
    (tmp_path / "train" / "unsup" / "0_0.txt").write_text("unlabelled")
    splits = load_splits(_cfg(dataset=str(tmp_path)))
    assert splits.description == f"aclImdb:{tmp_path}"
    assert len(splits.train) + len(splits.validation) == 30
    assert splits.test is not None
    assert len(splits.test) == 10
    for part, truth in (
        (splits.train, train_truth),
        (splits.validation, train_truth),
        (splits.test, test_truth),
    ):
        assert all(truth[t] == y for t, y in zip(part.texts, part.labels, strict=True))
    assert splits.test.label_counts() == {"NEGATIVE": 5, "POSITIVE": 5}
    assert set(splits.sha256) == {"aclImdb/train", "aclImdb/test"}


def test_aclimdb_tree_with_an_empty_class_folder(tmp_path: Path) -> None:
    (tmp_path / "train" / "pos").mkdir(parents=True)
    (tmp_path / "train" / "neg").mkdir(parents=True)
    (tmp_path / "train" / "pos" / "1_9.txt").write_text("great")
    with pytest.raises(DataError, match=r"train/neg: no \.txt reviews"):
        load_splits(_cfg(dataset=str(tmp_path)))


def test_aclimdb_review_that_is_not_utf8(tmp_path: Path) -> None:
    _write_aclimdb(tmp_path, "train", 3)
    bad = tmp_path / "train" / "pos" / "99_8.txt"
    bad.write_bytes(b"caf\xe9 au lait")
    with pytest.raises(DataError, match="not valid UTF-8") as excinfo:
        load_splits(_cfg(dataset=str(tmp_path)))
    assert str(bad) in str(excinfo.value)


# --- the validation split and limits ----------------------------------------------------------------


def test_validation_split_is_seeded_disjoint_and_complete(tmp_path: Path) -> None:
    texts, labels = _unique_reviews(300)
    path = write_parquet(tmp_path / "train.parquet", texts, labels)
    first = load_splits(_cfg(train_file=str(path), validation_fraction=0.2, data_seed=7))
    again = load_splits(_cfg(train_file=str(path), validation_fraction=0.2, data_seed=7))
    other = load_splits(_cfg(train_file=str(path), validation_fraction=0.2, data_seed=8))
    assert first.train.texts == again.train.texts
    assert first.validation.texts == again.validation.texts
    assert len(first.validation) == 60
    assert set(first.train.texts).isdisjoint(first.validation.texts)
    assert sorted(first.train.texts + first.validation.texts) == sorted(texts)
    assert set(other.validation.texts) != set(first.validation.texts)
    # Shuffled, not the file's head.
    assert set(first.validation.texts) != set(texts[:60])


def test_row_limits(tmp_path: Path) -> None:
    write_parquet(tmp_path / "train.parquet", *_unique_reviews(300, seed=1))
    write_parquet(tmp_path / "test.parquet", *_unique_reviews(100, seed=2))
    full = load_splits(_cfg(dataset=str(tmp_path)))
    limited = load_splits(
        _cfg(dataset=str(tmp_path), max_train_samples=50, max_eval_samples=7, max_test_samples=11)
    )
    assert (len(limited.train), len(limited.validation)) == (50, 7)
    assert limited.test is not None
    assert full.test is not None
    assert len(limited.test) == 11
    # Limits take from the same validation carve: a limited run never trains on validation rows.
    assert set(limited.train.texts) <= set(full.train.texts)
    assert set(limited.validation.texts) <= set(full.validation.texts)
    assert set(limited.test.texts) <= set(full.test.texts)
    # A limit above the row count keeps everything.
    big = load_splits(_cfg(dataset=str(tmp_path), max_train_samples=10_000, max_test_samples=10_000))
    assert len(big.train) == len(full.train)
    assert big.test is not None
    assert len(big.test) == 100


def test_too_few_rows_for_a_validation_split(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "train.parquet", ["only one review"], [1])
    with pytest.raises(DataError, match="too few to carve a validation split"):
        load_splits(_cfg(train_file=str(path)))


# --- bad data ---------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    with pytest.raises(DataError, match="file not found") as excinfo:
        load_splits(_cfg(train_file=str(missing)))
    assert str(missing) in str(excinfo.value)


def test_unsupported_file_type(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_text("text,label\n")
    with pytest.raises(DataError, match=r"unsupported file type '\.txt'"):
        load_file(str(path))


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match="cannot be read as parquet") as excinfo:
        load_file(str(path))
    assert str(path) in str(excinfo.value)


def test_missing_column_names_file_and_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.csv", {"review": ["good", "bad"], "label": [1, 0]})
    with pytest.raises(DataError) as excinfo:
        load_file(str(path))
    message = str(excinfo.value)
    assert str(path) in message
    assert "missing column(s) ['text']" in message
    assert "['review', 'label']" in message


@pytest.mark.parametrize(
    ("labels", "count", "found"),
    [
        ([0, 1, 2, 1, 2, 0], "2 of 6", "2"),
        (["pos", "neg", "neutral", "pos", "neg", "pos"], "1 of 6", "'neutral'"),
        ([1, 0, None, 1, 0, 1], "1 of 6", "None"),
    ],
)
def test_bad_labels_are_counted_not_dropped(
    tmp_path: Path, labels: list[Any], count: str, found: str
) -> None:
    path = _write(tmp_path / "train.parquet", {"text": [f"review {i}" for i in range(6)], "label": labels})
    with pytest.raises(DataError) as excinfo:
        load_file(str(path))
    message = str(excinfo.value)
    assert str(path) in message
    assert "column 'label'" in message
    assert f"{count} rows have a label that is not one of the two classes" in message
    assert f"found {found}" in message


@pytest.mark.parametrize(
    ("texts", "count", "first_row"),
    [
        (["good", "", "bad", "ok"], "1 of 4", 1),
        (["good", "bad", "   \n", None], "2 of 4", 2),
    ],
)
def test_empty_or_missing_text_is_counted(
    tmp_path: Path, texts: list[Any], count: str, first_row: int
) -> None:
    path = _write(tmp_path / "train.parquet", {"text": texts, "label": [0, 1, 0, 1]})
    with pytest.raises(DataError) as excinfo:
        load_file(str(path))
    message = str(excinfo.value)
    assert str(path) in message
    assert "column 'text'" in message
    assert f"{count} rows are empty or not strings" in message
    assert f"first at row {first_row}" in message


def test_non_string_text_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.parquet", {"text": [7, 42, 9], "label": [1, 0, 1]})
    with pytest.raises(
        DataError, match=r"column 'text': 3 of 3 rows are empty or not strings \(first at row 0: 7\)"
    ):
        load_file(str(path))
    mixed = _write(tmp_path / "train.jsonl", {"text": ["fine", 42, "also fine"], "label": [1, 0, 1]})
    with pytest.raises(DataError, match="cannot be read as json.*text") as excinfo:
        load_file(str(mixed))
    assert str(mixed) in str(excinfo.value)


def test_bad_rows_in_a_folder_split_name_that_file(tmp_path: Path) -> None:
    write_parquet(tmp_path / "train.parquet", *_unique_reviews(20))
    bad_test = _write(tmp_path / "test.parquet", {"text": ["a", "b", "c"], "label": [0, 1, 5]})
    with pytest.raises(DataError) as excinfo:
        load_splits(_cfg(dataset=str(tmp_path)))
    assert str(bad_test) in str(excinfo.value)
    assert "1 of 3" in str(excinfo.value)


def test_empty_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "train.parquet", {"text": pa.array([], pa.string()), "label": pa.array([], pa.int64())}
    )
    with pytest.raises(DataError, match="no rows") as excinfo:
        load_file(str(path))
    assert str(path) in str(excinfo.value)


def test_folder_without_train_file(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("nothing here")
    with pytest.raises(DataError, match="no train.parquet/.csv/.jsonl and no aclImdb") as excinfo:
        load_splits(_cfg(dataset=str(tmp_path)))
    assert str(tmp_path) in str(excinfo.value)


def test_dataset_that_is_a_file_not_a_folder(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "train.parquet", ["good", "bad"], [1, 0])
    with pytest.raises(DataError, match="expected a folder"):
        load_splits(_cfg(dataset=str(path)))


def test_unreachable_hub_id_says_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as excinfo:
        load_splits(_cfg(dataset="sentiray-tests/no-such-dataset"))
    message = str(excinfo.value)
    assert "'sentiray-tests/no-such-dataset'" in message
    assert "cannot load from the Hugging Face Hub" in message
    assert "Offline? Point --dataset at a local folder" in message


# --- object store -----------------------------------------------------------------------------------


def test_train_and_test_files_on_s3(s3_bucket: tuple[str, Any], tmp_path: Path) -> None:
    bucket, client = s3_bucket
    texts, labels = _unique_reviews(40)
    local = write_parquet(tmp_path / "train.parquet", texts, labels)
    client.upload_file(str(local), bucket, "data/train.parquet")
    client.put_object(
        Bucket=bucket,
        Key="data/test.jsonl",
        Body="".join(
            json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts[:8], labels[:8], strict=True)
        ),
    )
    splits = load_splits(
        _cfg(train_file=f"s3://{bucket}/data/train.parquet", test_file=f"s3://{bucket}/data/test.jsonl")
    )
    assert sorted(splits.train.texts + splits.validation.texts) == sorted(texts)
    assert splits.test is not None
    assert sorted(splits.test.texts) == sorted(texts[:8])
    assert f"s3://{bucket}/data/train.parquet" in splits.sha256
    with pytest.raises(DataError, match="file not found"):
        load_file(f"s3://{bucket}/data/missing.parquet")
    with pytest.raises(DataError, match="use --train-file/--test-file"):
        load_splits(_cfg(dataset=f"s3://{bucket}/data"))


# --- the real IMDB sample ---------------------------------------------------------------------------


@pytest.mark.skipif(not SHARED_IMDB.is_dir(), reason=f"IMDB sample not found at {SHARED_IMDB}")
def test_real_imdb_sample_loads_as_a_folder() -> None:
    splits = load_splits(
        _cfg(dataset=str(SHARED_IMDB), max_train_samples=300, max_eval_samples=100, max_test_samples=200)
    )
    assert splits.description == f"folder:{SHARED_IMDB}"
    assert (len(splits.train), len(splits.validation)) == (300, 100)
    assert splits.test is not None
    assert len(splits.test) == 200
    summary = splits.summary()
    for part in ("train", "validation", "test"):
        counts = summary["label_counts"][part]
        assert counts["NEGATIVE"] > 0
        assert counts["POSITIVE"] > 0
    assert set(splits.train.texts).isdisjoint(splits.validation.texts)
    assert set(splits.train.texts).isdisjoint(splits.test.texts)
    assert any("<br />" in t for t in splits.train.texts)  # raw text: tags go at tokenization
    # The file hashes recorded for the manifest are of the whole files, limits notwithstanding.
    assert set(splits.sha256) == {str(SHARED_IMDB / "train.parquet"), str(SHARED_IMDB / "test.parquet")}
    rows = pq.read_metadata(SHARED_IMDB / "train.parquet").num_rows
    assert rows == 19_683
    assert pq.read_metadata(SHARED_IMDB / "test.parquet").num_rows == 5_000
