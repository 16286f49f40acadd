"""Local paths and object-store URIs (s3://, gs://, ...) through one pyarrow filesystem layer.

Ray Train persists checkpoints through pyarrow filesystems too, so the artifact, the run state and the
checkpoints are all reached the same way. An S3-compatible endpoint (MinIO, moto) is taken from
`AWS_ENDPOINT_URL`, as the AWS SDKs do. A Hugging Face Hub repository id (`namespace/name`) is the third
kind of location, read through the Hub's own client (`hub_snapshot`).
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path

import pyarrow.fs as pafs

from sentiray.errors import ArtifactError, ConfigError

_URI = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<rest>.*)$")
# The Hub's rule for a repository id (huggingface_hub.utils.validate_repo_id): NAMESPACE/NAME.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def is_uri(location: str) -> bool:
    """True for `scheme://...` other than `file://`."""
    m = _URI.match(location)
    return m is not None and m.group("scheme").lower() != "file"


def normalize_location(location: str) -> str:
    """Absolute local path (with `~` expanded) or the URI unchanged; rejects `..` in URIs."""
    if not location:
        raise ConfigError("location: empty path or URI")
    if is_uri(location):
        if ".." in location.split("://", 1)[1].split("/"):
            raise ConfigError(f"location: {location!r} contains '..'")
        return location.rstrip("/")
    if location.startswith("file://"):
        location = location[len("file://") :]
    return str(Path(location).expanduser().resolve())


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and in-filesystem path for a local path or URI."""
    location = normalize_location(location)
    if not is_uri(location):
        return pafs.LocalFileSystem(), location
    scheme = location.split("://", 1)[0].lower()
    if scheme == "s3":
        bucket_and_key = location.split("://", 1)[1]
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        if endpoint:
            fs = pafs.S3FileSystem(
                endpoint_override=endpoint, region=region, allow_bucket_creation=False,
                scheme="https" if endpoint.startswith("https") else "http",
            )
        else:
            fs = pafs.S3FileSystem(region=region)
        return fs, bucket_and_key
    try:
        fs, path = pafs.FileSystem.from_uri(location)
        return fs, path
    except (ValueError, OSError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise ConfigError(f"location: cannot open {location!r}: {e}") from e


def join(location: str, *parts: str) -> str:
    """Join path parts onto a local path or URI."""
    if is_uri(location):
        return posixpath.join(location.rstrip("/"), *parts)
    return str(Path(location, *parts))


def exists(location: str) -> bool:
    fs, path = filesystem(location)
    return bool(fs.get_file_info(path).type != pafs.FileType.NotFound)


def read_bytes(location: str) -> bytes:
    fs, path = filesystem(location)
    with fs.open_input_stream(path) as f:
        return bytes(f.read())


def write_bytes(location: str, data: bytes) -> None:
    """Write a whole file; on local disk via a temp file + rename, so readers never see half of it."""
    fs, path = filesystem(location)
    if isinstance(fs, pafs.LocalFileSystem):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return
    # Object stores make a PUT visible only once complete.
    with fs.open_output_stream(path) as f:
        f.write(data)


def delete_file(location: str) -> None:
    fs, path = filesystem(location)
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)


def upload_dir(local_dir: str | Path, location: str, skip: tuple[str, ...] = ()) -> None:
    """Copy every file under local_dir to location (except the relative paths in skip)."""
    fs, base = filesystem(location)
    root = Path(local_dir)
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(base, recursive=True)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        if rel in skip:
            continue
        dest = posixpath.join(base, rel)
        if isinstance(fs, pafs.LocalFileSystem):
            fs.create_dir(posixpath.dirname(dest), recursive=True)
        pafs.copy_files(str(file), dest, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def download_dir(location: str, local_dir: str | Path) -> list[str]:
    """Copy every file under location into local_dir; returns the relative paths copied."""
    fs, base = filesystem(location)
    info = fs.get_file_info(base)
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"no such directory: {location}")
    copied = []
    for item in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
        if item.type != pafs.FileType.File:
            continue
        rel = posixpath.relpath(item.path, base)
        if rel == ".." or rel.startswith("../"):
            # An object key with `..` segments (S3 allows them) would be written outside local_dir.
            raise ValueError(f"{location}: object {item.path!r} lies outside the folder; refusing to download it")
        target = Path(local_dir, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(item.path, str(target), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        copied.append(rel)
    return copied


def is_hub_id(location: str) -> bool:
    """True for `namespace/name` naming no local path: a Hugging Face Hub repository id.

    A local folder of that relative name wins, as it does for transformers' `from_pretrained`. Anything
    else that names a local path (`./a/b`, `a/b/c`, `/a/b`) is never sent to the Hub.
    """
    return (
        bool(_HUB_ID.match(location))
        and ".." not in location
        and "--" not in location
        and not Path(location).exists()
    )


def hub_snapshot(repo_id: str) -> str:
    """The local folder holding a Hub repository's files: downloaded, or found in the Hugging Face cache.

    HF_TOKEN, HF_ENDPOINT, HF_HUB_CACHE and HF_HUB_OFFLINE apply as they do for huggingface_hub. Any
    failure is an ArtifactError that names both readings of the location, since `namespace/name` may
    also have been meant as a local folder that is missing.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - transformers brings it
        raise ArtifactError(f"{repo_id}: no such local folder, and huggingface_hub is not installed") from e
    try:
        return str(snapshot_download(repo_id))
    except Exception as e:  # noqa: BLE001 - offline, unreachable, not found, gated: all mean no artifact
        detail = " ".join(str(e).split())
        raise ArtifactError(
            f"{repo_id}: no such local folder ({Path(repo_id).resolve()}), and fetching it as a Hugging "
            f"Face Hub repository failed: {type(e).__name__}: {detail}"
        ) from e
