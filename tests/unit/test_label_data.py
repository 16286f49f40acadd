"""Label sets from the data: names, integer ids with names, rating bins; fixed from train, mapped on eval/test."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sentiray.config import DataConfig, add_config_arguments, build_config, config_from_namespace
from sentiray.data import load_splits
from sentiray.errors import ConfigError, DataError
from sentiray.labels import BINARY, LabelSet


def _files(folder: Path, train: dict[str, list[Any]], test: dict[str, list[Any]] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(train), folder / "train.parquet")
    if test is not None:
        pq.write_table(pa.table(test), folder / "test.parquet")
    return folder


def _rows(labels: list[Any], column: str = "label") -> dict[str, list[Any]]:
    return {"text": [f"review number {i}" for i in range(len(labels))], column: labels}


def test_class_names_come_sorted_from_the_train_split(tmp_path: Path) -> None:
    train = ["positive", "neutral", "negative"] * 10
    folder = _files(tmp_path, _rows(train), _rows(["neutral", "positive", "neutral"]))
    splits = load_splits(DataConfig(dataset=str(folder), max_eval_samples=5))
    assert splits.label_set == LabelSet.of(["negative", "neutral", "positive"])
    assert splits.test is not None
    assert sorted(splits.test.labels) == [1, 1, 2]  # the test split is shuffled
    assert splits.test.label_set == splits.validation.label_set == splits.label_set
    # Every row keeps its own class: ids are positions in the sorted names.
    names = splits.label_set.names
    by_text = dict(zip(_rows(train)["text"], train, strict=True))
    for part in (splits.train, splits.validation):
        assert all(names[y] == by_text[t] for t, y in zip(part.texts, part.labels, strict=True))
    counts = splits.summary()["label_counts"]
    assert sum(counts["train"].values()) + sum(counts["validation"].values()) == 30
    assert counts["test"] == {"negative": 0, "neutral": 2, "positive": 1}


def test_a_test_label_the_train_split_lacks_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = _files(tmp_path, _rows(["a", "b", "c"] * 4), _rows(["a", "d", "b"]))
    with pytest.raises(DataError) as excinfo:
        load_splits(DataConfig(dataset=str(folder)))
    message = str(excinfo.value)
    assert str(folder / "test.parquet") in message
    assert "1 of 3 rows" in message and "'d'" in message and "['a', 'b', 'c']" in message


def test_integer_ids_with_names(tmp_path: Path) -> None:
    folder = _files(tmp_path, _rows([0, 1, 2, 2, 1, 0] * 3), _rows([2, 0]))
    splits = load_splits(DataConfig(dataset=str(folder), label_names=("neg", "mixed", "pos")))
    assert splits.label_set.names == ("neg", "mixed", "pos")
    assert splits.test is not None and sorted(splits.test.labels) == [0, 2]
    # An id past the names is refused, naming the allowed ids.
    bad = _files(tmp_path / "bad", _rows([0, 1, 2, 3] * 3))
    with pytest.raises(DataError, match=r"3 of \d+ rows .*an id 0\.\.2; found 3"):
        load_splits(DataConfig(dataset=str(bad), label_names=("neg", "mixed", "pos")))


def test_names_listed_may_be_absent_from_train_and_keep_their_ids(tmp_path: Path) -> None:
    # The names fix the classes: a class with no train row still has its id (and its head output).
    folder = _files(tmp_path, _rows(["low", "high"] * 6))
    splits = load_splits(DataConfig(dataset=str(folder), label_names=("low", "mid", "high")))
    assert splits.label_set.num_labels == 3
    assert set(splits.train.labels) | set(splits.validation.labels) == {0, 2}


def test_integer_labels_without_names_are_their_own_names(tmp_path: Path) -> None:
    folder = _files(tmp_path, _rows([0, 1, 2] * 5), _rows([1.0, 2]))
    splits = load_splits(DataConfig(dataset=str(folder)))
    assert splits.label_set.names == ("0", "1", "2")
    assert splits.test is not None and sorted(splits.test.labels) == [1, 2]


def test_binary_labels_keep_the_binary_default(tmp_path: Path) -> None:
    # Any of the binary spellings, mixed: the two sentiment classes, as before label sets.
    folder = _files(tmp_path, _rows(["neg", "POSITIVE", "pos", "0", "negative", "1"] * 3))
    splits = load_splits(DataConfig(dataset=str(folder)))
    assert splits.label_set == BINARY
    assert splits.train.label_counts().keys() == {"NEGATIVE", "POSITIVE"}


def test_rating_bins_on_the_rating_column(tmp_path: Path) -> None:
    ratings = [1, 2, 3, 4, 7, 8, 9, 10] * 3
    folder = _files(tmp_path, {**_rows(ratings, "rating"), "label": [int(r > 5) for r in ratings]})
    cfg = DataConfig(dataset=str(folder), label_column="rating", label_bins=("1-2", "3-4", "7-8", "9-10"))
    splits = load_splits(cfg)
    assert splits.label_set.names == ("1-2", "3-4", "7-8", "9-10")
    rating_of = dict(zip(_rows(ratings)["text"], ratings, strict=True))
    bin_of = {1: 0, 2: 0, 3: 1, 4: 1, 7: 2, 8: 2, 9: 3, 10: 3}
    for part in (splits.train, splits.validation):
        assert all(bin_of[rating_of[t]] == y for t, y in zip(part.texts, part.labels, strict=True))
    named = load_splits(cfg.model_copy(update={"label_names": ("awful", "poor", "good", "great")}))
    assert named.label_set.names == ("awful", "poor", "good", "great")
    # A rating in no bin is counted and named, never dropped.
    with pytest.raises(DataError, match=r"6 of \d+ rows have a label that is not a number in one of the bins"):
        load_splits(cfg.model_copy(update={"label_bins": ("1-2", "3-4", "9-10")}))


def test_rating_from_aclimdb_file_names(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for folder, ratings in (("neg", (1, 2, 4)), ("pos", (7, 9, 10))):
            (tmp_path / split / folder).mkdir(parents=True)
            for i, r in enumerate(ratings):
                (tmp_path / split / folder / f"{i}_{r}.txt").write_text(f"{split} {folder} review {i}")
    splits = load_splits(
        DataConfig(dataset=str(tmp_path), label_column="rating", label_bins=("1-4", "7-8", "9-10"))
    )
    assert splits.test is not None
    assert sorted(splits.test.labels) == [0, 0, 0, 1, 2, 2]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"label_bins": "1-2,2-3"}, "overlap"),
        ({"label_bins": "1-2,x"}, "'x' is not LOW-HIGH"),
        ({"label_bins": "4-1,5"}, "ends below its start"),
        ({"label_bins": "1-10"}, "at least 2 label bins"),
        ({"label_names": "a,a"}, "distinct"),
        ({"label_names": "a,,b"}, "non-empty"),
        ({"label_names": "a,b", "label_bins": "1-2,3-4,5-6"}, "2 names for 3 label_bins"),
    ],
)
def test_bad_label_options_name_the_field(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        build_config(overrides=options)
    assert "data" in str(excinfo.value) and message in str(excinfo.value)


def test_label_flags_and_yaml_lists_mean_the_same(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    from_flags = config_from_namespace(
        parser.parse_args(["--label-column", "rating", "--label-bins", "1-4, 7-10", "--label-names", "neg,pos"])
    )
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("data:\n  label_column: rating\n  label_bins: ['1-4', '7-10']\n  label_names: [neg, pos]\n")
    from_yaml = build_config(yaml_path=yaml_file)
    assert from_flags == from_yaml
    assert from_flags.data.label_bins == ("1-4", "7-10")


def test_the_label_options_are_in_the_run_fingerprint() -> None:
    base = build_config()
    fingerprints = {
        base.fingerprint(),
        build_config(overrides={"label_column": "rating"}).fingerprint(),
        build_config(overrides={"label_column": "rating", "label_bins": "1-4,7-10"}).fingerprint(),
        build_config(overrides={"label_column": "rating", "label_bins": "1-5,6-10"}).fingerprint(),
        build_config(overrides={"label_names": "a,b"}).fingerprint(),
        build_config(overrides={"label_names": "b,a"}).fingerprint(),
    }
    assert len(fingerprints) == 6
