"""Paths and URIs through one filesystem layer: local disk and S3 (moto)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sentiray import storage
from sentiray.errors import ConfigError


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("s3://bucket/key", True),
        ("gs://bucket/key", True),
        ("S3://bucket", True),
        ("file:///tmp/x", False),
        ("/tmp/x", False),
        ("relative/path", False),
        ("C:/windows/path", False),
    ],
)
def test_is_uri(location: str, expected: bool) -> None:
    assert storage.is_uri(location) is expected


def test_normalize_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert storage.normalize_location("runs/a") == str(tmp_path / "runs" / "a")
    assert storage.normalize_location("~/models") == str(tmp_path / "home" / "models")
    assert storage.normalize_location(f"file://{tmp_path}/x/../y") == str(tmp_path / "y")
    assert storage.normalize_location("s3://bucket/models/") == "s3://bucket/models"
    with pytest.raises(ConfigError, match="contains '..'"):
        storage.normalize_location("s3://bucket/models/../other")
    with pytest.raises(ConfigError, match="location: empty"):
        storage.normalize_location("")


def test_join() -> None:
    assert storage.join("s3://bucket/runs/", "a", "b.json") == "s3://bucket/runs/a/b.json"
    assert storage.join("/data/runs", "a", "b.json") == str(Path("/data/runs/a/b.json"))


def test_local_files(tmp_path: Path) -> None:
    target = str(tmp_path / "deep" / "er" / "state.json")
    assert not storage.exists(target)
    storage.write_bytes(target, b"v1")
    storage.write_bytes(target, b"version 2")
    assert storage.read_bytes(target) == b"version 2"
    assert storage.exists(target)
    # Written through a temp file and a rename: nothing else is left beside it.
    assert [p.name for p in (tmp_path / "deep" / "er").iterdir()] == ["state.json"]
    storage.delete_file(target)
    assert not storage.exists(target)
    storage.delete_file(target)  # deleting what is not there is fine
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(target)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _make_tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"a", "sub/b.bin": bytes(range(256)), "sub/deeper/c.json": b"{}", "skip.me": b"x"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_local_upload_download_round_trip(tmp_path: Path) -> None:
    files = _make_tree(tmp_path / "src")
    storage.upload_dir(tmp_path / "src", str(tmp_path / "remote"), skip=("skip.me",))
    expected = {k: v for k, v in files.items() if k != "skip.me"}
    assert _tree(tmp_path / "remote") == expected
    copied = storage.download_dir(str(tmp_path / "remote"), tmp_path / "back")
    assert sorted(copied) == sorted(expected)
    assert _tree(tmp_path / "back") == expected
    with pytest.raises(FileNotFoundError, match="no such directory"):
        storage.download_dir(str(tmp_path / "missing"), tmp_path / "nowhere")


def test_s3_round_trip(s3_bucket: tuple[str, Any], tmp_path: Path) -> None:
    bucket, client = s3_bucket
    base = f"s3://{bucket}/runs/r1"
    files = _make_tree(tmp_path / "src")
    storage.upload_dir(tmp_path / "src", base, skip=("skip.me",))
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["runs/r1/a.txt", "runs/r1/sub/b.bin", "runs/r1/sub/deeper/c.json"]

    copied = storage.download_dir(base, tmp_path / "back")
    assert sorted(copied) == ["a.txt", "sub/b.bin", "sub/deeper/c.json"]
    assert _tree(tmp_path / "back") == {k: v for k, v in files.items() if k != "skip.me"}

    state = storage.join(base, "sentiray_run.json")
    assert not storage.exists(state)
    storage.write_bytes(state, b'{"status": "running"}')
    assert storage.exists(state)
    assert storage.read_bytes(state) == b'{"status": "running"}'
    assert (
        client.get_object(Bucket=bucket, Key="runs/r1/sentiray_run.json")["Body"].read()
        == b'{"status": "running"}'
    )
    storage.delete_file(state)
    assert not storage.exists(state)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        storage.download_dir(f"s3://{bucket}/nothing", tmp_path / "x")


def test_s3_endpoint_from_the_service_specific_variable(
    s3_bucket: tuple[str, Any], monkeypatch: pytest.MonkeyPatch, moto_endpoint: str
) -> None:
    bucket, client = s3_bucket
    client.put_object(Bucket=bucket, Key="k", Body=b"v")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)  # ... and this one wins, as in the AWS SDKs
    assert storage.read_bytes(f"s3://{bucket}/k") == b"v"


def test_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot open 'nosuchscheme://bucket/x'"):
        storage.filesystem("nosuchscheme://bucket/x")


# --- Hub repository ids -------------------------------------------------------------------------------

HUB_REPO = "sentiray-test/tiny"


@pytest.fixture
def offline_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, offline (huggingface_hub reads its environment once, at import)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    return cache


def _cached_hub_artifact(cache: Path, repo_id: str, model_and_tokenizer: tuple[Any, Any]) -> Path:
    """An artifact in the Hub cache's layout, as a download of repo_id leaves it."""
    from sentiray.artifact import write_artifact

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    model, tokenizer = model_and_tokenizer
    write_artifact(str(snapshot), model, tokenizer, max_length=64, truncation="head", base_model="tiny")
    return snapshot


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("org/name", True),
        ("org/name.v2", True),
        ("./org/name", False),
        ("org/name/sub", False),
        ("/org/name", False),
        ("s3://org/name", False),
        ("org/../name", False),
        ("name", False),
    ],
)
def test_is_hub_id(location: str, expected: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert storage.is_hub_id(location) is expected


def test_a_hub_id_is_fetched_and_verified_by_fetch_artifact(
    offline_hub_cache: Path, model_and_tokenizer: tuple[Any, Any]
) -> None:
    from sentiray.artifact import fetch_artifact

    snapshot = _cached_hub_artifact(offline_hub_cache, HUB_REPO, model_and_tokenizer)
    folder, manifest = fetch_artifact(HUB_REPO)
    assert folder == snapshot.resolve()
    assert manifest.base_model == "tiny"


def test_a_local_folder_named_like_a_hub_id_wins(
    offline_hub_cache: Path, model_and_tokenizer: tuple[Any, Any]
) -> None:
    from sentiray.artifact import fetch_artifact, write_artifact

    _cached_hub_artifact(offline_hub_cache, HUB_REPO, model_and_tokenizer)
    local = offline_hub_cache.parent / HUB_REPO
    write_artifact(str(local), *model_and_tokenizer, max_length=32, truncation="head", base_model="local")
    folder, manifest = fetch_artifact(HUB_REPO)
    assert (folder, manifest.base_model) == (local, "local")


def test_a_missing_path_shaped_like_a_hub_id_names_both_readings(offline_hub_cache: Path) -> None:
    from sentiray.artifact import fetch_artifact
    from sentiray.errors import ArtifactError

    missing = offline_hub_cache.parent / "runs" / "artifact"
    with pytest.raises(ArtifactError) as caught:
        fetch_artifact("runs/artifact")
    message = str(caught.value)
    assert message.startswith(f"runs/artifact: no such local folder ({missing}), and fetching it as a Hugging Face")
    assert "HF_HUB_OFFLINE" in message  # the Hub's own reason follows


def test_an_unreachable_hub_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    from sentiray.errors import ArtifactError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused
    with pytest.raises(ArtifactError, match=r"^org/name: no such local folder .* Hugging Face Hub repository failed"):
        storage.hub_snapshot("org/name")


@pytest.mark.parametrize("location", ["./runs/artifact", "runs/artifact/v1"])
def test_a_missing_local_path_is_never_sent_to_the_hub(offline_hub_cache: Path, location: str) -> None:
    from sentiray.artifact import fetch_artifact
    from sentiray.errors import ArtifactError

    with pytest.raises(ArtifactError, match=r"no such artifact folder$"):
        fetch_artifact(location)
