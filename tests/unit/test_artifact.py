"""The artifact contract: written manifest-last, verified on every load, refused when anything is off."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from sentiray.artifact import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    fetch_artifact,
    sha256_file,
    verify_artifact,
)
from sentiray.config import Truncation
from sentiray.errors import ArtifactError
from tests.support import write_loaded_artifact as _write


@pytest.fixture
def artifact(tmp_path: Path, model_and_tokenizer: tuple[Any, Any]) -> Path:
    return Path(
        _write(tmp_path / "artifact", model_and_tokenizer, extra_files={"notes/readme.txt": b"hello"})
    )


def _manifest(folder: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((folder / MANIFEST_NAME).read_text())
    return loaded


# --- round trip -------------------------------------------------------------------------------------


def test_write_then_verify(artifact: Path) -> None:
    manifest = verify_artifact(artifact)
    assert manifest.schema_version == SCHEMA_VERSION
    assert manifest.labels == {0: "NEGATIVE", 1: "POSITIVE"}
    assert manifest.max_length == 64
    assert manifest.truncation is Truncation.HEAD_TAIL
    assert manifest.base_model == "tiny-distilbert"
    assert "torch" in manifest.versions
    assert "transformers" in manifest.versions
    assert manifest.created_at
    # Every file but the manifest is listed with its real hash.
    on_disk = {p.relative_to(artifact).as_posix() for p in artifact.rglob("*") if p.is_file()}
    assert set(manifest.files) == on_disk - {MANIFEST_NAME}
    assert {"model.safetensors", "config.json", "notes/readme.txt"} <= set(manifest.files)
    for rel, digest in manifest.files.items():
        assert sha256_file(artifact / rel) == digest
    assert not any(name.endswith(".bin") for name in manifest.files)


def test_manifest_fields_round_trip(tmp_path: Path, model_and_tokenizer: tuple[Any, Any]) -> None:
    metrics = {"accuracy": 0.75, "confusion_matrix": [[1, 0], [1, 2]]}
    out = _write(
        tmp_path / "a",
        model_and_tokenizer,
        truncation=Truncation.HEAD,
        test_metrics=metrics,
        dataset={"source": "folder:/x"},
        history=[{"step": 1, "loss": 0.5}],
        training_config={"seed": 3},
    )
    local, manifest = fetch_artifact(out)
    assert local == Path(out)
    assert manifest.test_metrics == metrics
    assert manifest.dataset == {"source": "folder:/x"}
    assert manifest.history == [{"step": 1, "loss": 0.5}]
    assert manifest.training_config == {"seed": 3}
    assert manifest.truncation is Truncation.HEAD


def test_unknown_manifest_field_is_refused_by_the_writer(
    tmp_path: Path, model_and_tokenizer: tuple[Any, Any]
) -> None:
    with pytest.raises(ValueError, match="extra"):
        _write(tmp_path / "a", model_and_tokenizer, colour="blue")
    assert not (tmp_path / "a" / MANIFEST_NAME).exists()


def test_fetch_local_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such artifact folder"):
        fetch_artifact(str(tmp_path / "nothing"))


# --- refusals ---------------------------------------------------------------------------------------


def test_no_manifest_is_a_half_written_artifact(artifact: Path) -> None:
    (artifact / MANIFEST_NAME).unlink()
    with pytest.raises(
        ArtifactError, match="no sentiray.json; not a sentiray artifact, or its write did not finish"
    ):
        verify_artifact(artifact)
    with pytest.raises(ArtifactError, match="no sentiray.json"):
        fetch_artifact(str(artifact))


def test_changed_file(artifact: Path) -> None:
    config = artifact / "config.json"
    config.write_text(config.read_text().replace("NEGATIVE", "NEGATIVF"))
    with pytest.raises(ArtifactError, match=r"sha256 mismatch \['config.json'\]"):
        verify_artifact(artifact)


def test_changed_weights(artifact: Path) -> None:
    weights = artifact / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one flipped bit
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"sha256 mismatch \['model.safetensors'\]"):
        fetch_artifact(str(artifact))


def test_missing_file(artifact: Path) -> None:
    (artifact / "tokenizer.json").unlink()
    with pytest.raises(ArtifactError, match=r"missing \['tokenizer.json'\]"):
        verify_artifact(artifact)


def test_extra_unlisted_file(artifact: Path) -> None:
    (artifact / "sub").mkdir()
    (artifact / "sub" / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ArtifactError, match=r"not in the manifest \['sub/pytorch_model.bin'\]"):
        verify_artifact(artifact)


def test_several_problems_are_all_named(artifact: Path) -> None:
    (artifact / "tokenizer.json").unlink()
    (artifact / "extra.txt").write_text("x")
    (artifact / "notes" / "readme.txt").write_text("changed")
    with pytest.raises(ArtifactError) as excinfo:
        verify_artifact(artifact)
    message = str(excinfo.value)
    assert "missing ['tokenizer.json']" in message
    assert "sha256 mismatch ['notes/readme.txt']" in message
    assert "not in the manifest ['extra.txt']" in message


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_unknown_schema_version(artifact: Path, version: object) -> None:
    manifest = _manifest(artifact)
    manifest["schema_version"] = version
    (artifact / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=f"schema_version {version!r} is not supported"):
        verify_artifact(artifact)


def test_schema_version_missing(artifact: Path) -> None:
    manifest = _manifest(artifact)
    del manifest["schema_version"]
    (artifact / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="schema_version None is not supported"):
        verify_artifact(artifact)


@pytest.mark.parametrize("text", ['{"schema_version": 1, "files": {', "", "\xff\xfe not utf-8"])
def test_invalid_json_manifest(artifact: Path, text: str) -> None:
    (artifact / MANIFEST_NAME).write_bytes(text.encode("latin-1"))
    with pytest.raises(ArtifactError, match="not valid JSON"):
        verify_artifact(artifact)


def test_manifest_that_is_not_an_object(artifact: Path) -> None:
    (artifact / MANIFEST_NAME).write_text("[1, 2]")
    with pytest.raises(ArtifactError, match="schema_version None is not supported"):
        verify_artifact(artifact)


def test_manifest_with_a_bad_field(artifact: Path) -> None:
    manifest = _manifest(artifact)
    manifest["truncation"] = "tail"
    (artifact / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"(?s)invalid manifest.*truncation"):
        verify_artifact(artifact)


def test_artifact_without_safetensors_is_refused(artifact: Path) -> None:
    # A manifest made consistent with a folder whose weights were swapped for a pickle.
    (artifact / "model.safetensors").rename(artifact / "pytorch_model.bin")
    manifest = _manifest(artifact)
    manifest["files"]["pytorch_model.bin"] = manifest["files"].pop("model.safetensors")
    (artifact / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="no safetensors weights"):
        verify_artifact(artifact)


# --- overwriting ------------------------------------------------------------------------------------


def test_overwriting_a_non_artifact_folder_is_refused(
    tmp_path: Path, model_and_tokenizer: tuple[Any, Any]
) -> None:
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    with pytest.raises(
        ArtifactError, match="folder is not empty and holds no sentiray.json; refusing to overwrite"
    ):
        _write(folder, model_and_tokenizer)
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.tex"]
    assert (folder / "thesis.tex").read_text() == "years of work"


def test_writing_into_an_empty_folder(tmp_path: Path, model_and_tokenizer: tuple[Any, Any]) -> None:
    (tmp_path / "empty").mkdir()
    verify_artifact(_write(tmp_path / "empty", model_and_tokenizer))


def test_writing_over_a_file_is_refused(tmp_path: Path, model_and_tokenizer: tuple[Any, Any]) -> None:
    target = tmp_path / "a-file"
    target.write_text("data")
    with pytest.raises(ArtifactError, match="exists and is not a folder"):
        _write(target, model_and_tokenizer)
    assert target.read_text() == "data"


def test_overwriting_an_artifact_replaces_it(artifact: Path, model_and_tokenizer: tuple[Any, Any]) -> None:
    assert (artifact / "notes" / "readme.txt").exists()
    _write(artifact, model_and_tokenizer, max_length=32, truncation="head")
    manifest = verify_artifact(artifact)  # no stale files from the first write
    assert manifest.max_length == 32
    assert manifest.truncation is Truncation.HEAD
    assert not (artifact / "notes").exists()
    assert not list(artifact.glob("*.tmp-*"))


def test_overwriting_a_damaged_artifact_works(artifact: Path, model_and_tokenizer: tuple[Any, Any]) -> None:
    (artifact / "tokenizer.json").unlink()
    _write(artifact, model_and_tokenizer)
    verify_artifact(artifact)


# --- object store -----------------------------------------------------------------------------------


def test_s3_round_trip(
    s3_bucket: tuple[str, Any], tmp_path: Path, model_and_tokenizer: tuple[Any, Any]
) -> None:
    bucket, client = s3_bucket
    uri = f"s3://{bucket}/models/sentiment/"
    location = _write(uri, model_and_tokenizer, extra_files={"notes/readme.txt": b"hello"})
    assert location == f"s3://{bucket}/models/sentiment"
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"models/sentiment/{MANIFEST_NAME}" in keys
    assert "models/sentiment/notes/readme.txt" in keys

    cache = tmp_path / "cache"
    local, manifest = fetch_artifact(location, cache_root=cache)
    assert local.parent == cache
    assert (local / "model.safetensors").is_file()
    assert verify_artifact(local) == manifest
    assert manifest.base_model == "tiny-distilbert"
    # A second fetch is served from the verified cache.
    assert fetch_artifact(location, cache_root=cache)[0] == local

    # Overwriting in place updates the cached copy.
    _write(location, model_and_tokenizer, max_length=48)
    local2, manifest2 = fetch_artifact(location, cache_root=cache)
    assert local2 == local
    assert manifest2.max_length == 48
    assert not (local2 / "notes").exists()


def test_s3_corrupted_object_is_refused(
    s3_bucket: tuple[str, Any], tmp_path: Path, model_and_tokenizer: tuple[Any, Any]
) -> None:
    bucket, client = s3_bucket
    location = _write(f"s3://{bucket}/m", model_and_tokenizer)
    client.put_object(Bucket=bucket, Key="m/config.json", Body=b'{"model_type": "distilbert"}')
    cache = tmp_path / "cache"
    with pytest.raises(ArtifactError, match=r"sha256 mismatch \['config.json'\]") as excinfo:
        fetch_artifact(location, cache_root=cache)
    assert location in str(excinfo.value)  # the message names the artifact, not a temp folder
    assert not (cache.exists() and any(cache.rglob("*")))  # nothing half-downloaded is kept


def test_s3_corruption_after_caching_damages_the_cache_not_the_answer(
    s3_bucket: tuple[str, Any], tmp_path: Path, model_and_tokenizer: tuple[Any, Any]
) -> None:
    bucket, _ = s3_bucket
    location = _write(f"s3://{bucket}/m", model_and_tokenizer)
    cache = tmp_path / "cache"
    local, _ = fetch_artifact(location, cache_root=cache)
    (local / "config.json").write_text("{}")  # the cached copy is damaged: downloaded again
    local2, _ = fetch_artifact(location, cache_root=cache)
    assert local2 == local
    verify_artifact(local2)


def test_s3_missing_artifact(s3_bucket: tuple[str, Any], tmp_path: Path) -> None:
    bucket, _ = s3_bucket
    with pytest.raises(ArtifactError, match="no sentiray.json"):
        fetch_artifact(f"s3://{bucket}/nothing/here", cache_root=tmp_path)


def test_s3_half_written_artifact(
    s3_bucket: tuple[str, Any], tmp_path: Path, model_and_tokenizer: tuple[Any, Any]
) -> None:
    bucket, client = s3_bucket
    location = _write(f"s3://{bucket}/m", model_and_tokenizer)
    client.delete_object(Bucket=bucket, Key=f"m/{MANIFEST_NAME}")
    with pytest.raises(ArtifactError, match="no sentiray.json"):
        fetch_artifact(location, cache_root=tmp_path)
    # ... and it cannot be mistaken for a foreign folder: overwriting it is refused too.
    with pytest.raises(ArtifactError, match="refusing to overwrite"):
        _write(location, model_and_tokenizer)


def test_s3_non_artifact_prefix_is_not_overwritten(
    s3_bucket: tuple[str, Any], model_and_tokenizer: tuple[Any, Any]
) -> None:
    bucket, client = s3_bucket
    client.put_object(Bucket=bucket, Key="data/train.parquet", Body=b"rows")
    with pytest.raises(ArtifactError, match="refusing to overwrite"):
        _write(f"s3://{bucket}/data", model_and_tokenizer)
    assert client.get_object(Bucket=bucket, Key="data/train.parquet")["Body"].read() == b"rows"


def test_download_staging_is_on_the_cache_filesystem(
    s3_bucket: tuple[str, Any],
    tmp_path: Path,
    model_and_tokenizer: tuple[Any, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The download is staged beside the cache and renamed into it: a rename cannot cross filesystems."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a system temp folder on another filesystem than the cache (/dev/shm)")
    other_tmp = Path(tempfile.mkdtemp(dir=shm, prefix="sentiray-test-"))
    monkeypatch.setattr(tempfile, "tempdir", str(other_tmp))
    try:
        bucket, _ = s3_bucket
        location = _write(f"s3://{bucket}/m", model_and_tokenizer)
        local, _ = fetch_artifact(location, cache_root=tmp_path / "fresh" / "cache")
        verify_artifact(local)
    finally:
        monkeypatch.undo()
        import shutil

        shutil.rmtree(other_tmp, ignore_errors=True)


def test_concurrent_fetches_into_one_cache(
    s3_bucket: tuple[str, Any],
    tmp_path: Path,
    model_and_tokenizer: tuple[Any, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two replicas on a node download the same artifact at once: the slower one uses the winner's copy."""
    from sentiray import storage

    bucket, _ = s3_bucket
    location = _write(f"s3://{bucket}/m", model_and_tokenizer)
    cache = tmp_path / "cache"
    real_download = storage.download_dir
    winner: list[Path] = []
    calls: list[str] = []

    def download_while_another_finishes(uri: str, local_dir: str | Path) -> list[str]:
        calls.append(uri)
        copied = real_download(uri, local_dir)
        if len(calls) == 1:  # the other replica's whole fetch completes between our download and rename
            winner.append(fetch_artifact(location, cache_root=cache)[0])
        return copied

    monkeypatch.setattr(storage, "download_dir", download_while_another_finishes)
    local, manifest = fetch_artifact(location, cache_root=cache)
    assert winner == [local]
    assert len(calls) == 2
    assert verify_artifact(local) == manifest
    assert sorted(p.name for p in cache.iterdir()) == [local.name]  # no staging folder left behind
