"""The artifact contract: `save_pretrained` model + tokenizer + `sentiray.json`, written last.

The manifest lists the sha256 of every other file. Loaders refuse a folder without a valid manifest, with
a file missing, changed or not listed, so a crash mid-write (or tampering) never yields a model that
serving would load.

Over 350 lines because the manifest schema, its writer, its verifying loader and the serving-metrics
rule read from it are one contract: split, the file hashing and its checks would live in two places.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sentiray import storage
from sentiray.config import Truncation
from sentiray.errors import ArtifactError, ConfigError
from sentiray.labels import LabelSet
from sentiray.numerics import Runtime

MANIFEST_NAME = "sentiray.json"
SCHEMA_VERSION = 1
# Optional confinement: when set (a folder or URI prefix, or several separated by commas), artifacts are
# read and written only inside it.
ROOT_ENV = "SENTIRAY_ARTIFACT_ROOT"
_CACHE_ROOT = Path.home() / ".cache" / "sentiray" / "artifacts"


# The serving runtime whose test metrics `test_metrics` has always held: PyTorch in fp32.
REFERENCE_RUNTIME = "torch-fp32"
_TORCH_NUMERICS = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def runtime_key(runtime: Runtime | str, numerics: str) -> str:
    """The name a serving runtime's metrics go under: torch-fp32, torch-bf16, torch-fp16, onnx, onnx-int8.

    numerics as the predictor reports it (float32, bfloat16, float16, int8); names match the runtime and
    precision options a server is started with.
    """
    runtime = Runtime(runtime)
    if runtime == Runtime.TORCH:
        if numerics not in _TORCH_NUMERICS:
            raise ValueError(f"runtime torch computes in one of {sorted(_TORCH_NUMERICS)}, not {numerics!r}")
        return f"torch-{_TORCH_NUMERICS[numerics]}"
    if runtime == Runtime.AUTO:
        raise ValueError("runtime auto names no numerics; resolve it first (sentiray.runtime.resolve_runtime)")
    return runtime.value


class RuntimeMetrics(BaseModel):
    """The test split scored through one serving runtime."""

    model_config = ConfigDict(extra="forbid")

    metrics: dict[str, Any]
    device: str = Field(description="where it was scored: cpu, cuda:0, ...")
    seconds: float | None = None


class ArtifactManifest(BaseModel):
    """What `sentiray.json` holds (schema_version 1)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = Field(SCHEMA_VERSION)
    # id -> class name: a copy of the model config's id2label, which is the record (LabelSet.from_model_config).
    labels: dict[int, str]
    max_length: int
    truncation: Truncation
    base_model: str
    dataset: dict[str, Any] = Field(default_factory=dict)
    # PyTorch fp32's test metrics (REFERENCE_RUNTIME), as in every artifact; runtime_metrics adds each runtime
    # the artifact is served with where it was trained (int8 ONNX on most CPUs, bf16 on GPUs), keyed by
    # runtime_key. Artifacts written before it have test_metrics only: read them with serving_metrics.
    test_metrics: dict[str, Any] | None = None
    runtime_metrics: dict[str, RuntimeMetrics] = Field(default_factory=dict)
    validation_metrics: dict[str, Any] | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    training_config: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str = ""
    files: dict[str, str] = Field(description="relative path -> sha256 of every other file")

    @field_validator("files")
    @classmethod
    def _files_stay_inside(cls, files: dict[str, str]) -> dict[str, str]:
        for rel in files:
            check_relative_path(rel)
        return files

    def fingerprint(self) -> str:
        """One hash of the artifact's content (every file's sha256), for caches derived from it."""
        return hashlib.sha256(json.dumps(sorted(self.files.items())).encode()).hexdigest()


class ServingMetrics(BaseModel):
    """The test metrics that describe a serving runtime, and whether they were measured with it."""

    runtime: str = Field(description="the runtime asked about (runtime_key)")
    metrics: dict[str, Any] | None = Field(description="None when the artifact carries no test metrics")
    measured_with: str | None = Field(description="the runtime the metrics were scored with")
    exact: bool = Field(description="measured with this runtime; false: the fp32 reference stands in for it")
    device: str | None = None


def serving_metrics(manifest: ArtifactManifest, runtime: Runtime | str, numerics: str) -> ServingMetrics:
    """The test metrics of the artifact served by runtime (concrete) computing in numerics.

    The metrics scored with that runtime when the export scored it; otherwise (an artifact older than
    runtime_metrics, or trained where auto picks another runtime) the fp32 reference's, flagged
    exact=False, since int8 or bf16 scores can differ from fp32's.
    """
    key = runtime_key(runtime, numerics)
    if key in manifest.runtime_metrics:
        scored = manifest.runtime_metrics[key]
        return ServingMetrics(runtime=key, metrics=scored.metrics, measured_with=key, exact=True, device=scored.device)
    reference = manifest.runtime_metrics.get(REFERENCE_RUNTIME)
    if manifest.test_metrics is None:
        return ServingMetrics(runtime=key, metrics=None, measured_with=None, exact=False)
    return ServingMetrics(
        runtime=key,
        metrics=manifest.test_metrics,
        measured_with=REFERENCE_RUNTIME,
        exact=key == REFERENCE_RUNTIME,
        device=reference.device if reference else None,
    )


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the model's numbers."""
    out = {"python": platform.python_version()}
    for dist in ("sentiray", "torch", "transformers", "tokenizers", "ray", "safetensors"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def check_relative_path(rel: str) -> str:
    """rel, when it names a file inside a folder: relative, `/`-separated, no `.`/`..`/empty segments.

    Raises ValueError otherwise; manifest entries and extra files must pass, so none can point outside the
    artifact folder.
    """
    if not rel or "\\" in rel or "\0" in rel or any(p in ("", ".", "..") for p in rel.split("/")):
        raise ValueError(f"{rel!r} is not a plain relative path inside the artifact folder")
    return rel


def artifact_roots() -> list[str]:
    """The normalized locations of SENTIRAY_ARTIFACT_ROOT (empty when unset: no confinement)."""
    raw = os.environ.get(ROOT_ENV, "")
    try:
        return [storage.normalize_location(r.strip()) for r in raw.split(",") if r.strip()]
    except ConfigError as e:
        raise ConfigError(f"{ROOT_ENV}: {e}") from None


def resolve_location(location: str) -> str:
    """The normalized artifact location (absolute path, symlinks resolved, or URI), checked.

    Refused (ArtifactError): credentials in a URI; `..` segments in URIs, and in local paths too once a
    root is configured; with SENTIRAY_ARTIFACT_ROOT set, anything outside its roots.
    """
    if storage.is_uri(location) and "@" in location.split("://", 1)[1].split("/", 1)[0]:
        # pyarrow reads `scheme://KEY:SECRET@bucket/...`; a location is echoed in logs and errors, so
        # credentials never travel in one (and this message leaves them out).
        scheme, rest = location.split("://", 1)
        masked = f"{scheme}://***@{rest.split('@', 1)[1]}"
        raise ArtifactError(
            f"{masked}: credentials in an artifact URI are refused; set them in the environment or a Secret"
        )
    roots = artifact_roots()
    raw = location[len("file://") :] if location.startswith("file://") else location
    if roots and ".." in raw.replace("\\", "/").split("/"):
        raise ArtifactError(f"{location}: '..' is not allowed in artifact locations while {ROOT_ENV} is set")
    try:
        resolved = storage.normalize_location(location)
    except ConfigError as e:
        raise ArtifactError(str(e)) from None
    if roots and not any(_inside(resolved, root) for root in roots):
        raise ArtifactError(
            f"{location}: outside the artifact root(s) {', '.join(roots)} ({ROOT_ENV}); "
            "artifacts are read and written only there"
        )
    return resolved


def _inside(location: str, root: str) -> bool:
    if storage.is_uri(location) != storage.is_uri(root):
        return False
    if storage.is_uri(location):
        scheme, rest = location.split("://", 1)
        root_scheme, root_rest = root.split("://", 1)
        return scheme.lower() == root_scheme.lower() and (rest == root_rest or rest.startswith(root_rest + "/"))
    return Path(location).is_relative_to(Path(root))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _hash_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }


def write_artifact(
    destination: str,
    model: Any,
    tokenizer: Any,
    *,
    max_length: int,
    truncation: Truncation | str,
    base_model: str,
    extra_files: dict[str, bytes] | None = None,
    **manifest_fields: Any,
) -> str:
    """Save model, tokenizer and extra files to destination (path or URI), then the manifest last.

    Returns the normalized destination. An existing manifest there is removed first, so a crash while
    overwriting leaves a folder that loaders refuse rather than a mix of old and new files.
    """
    destination = resolve_location(destination)
    for rel in extra_files or {}:
        try:
            check_relative_path(rel)
        except ValueError as e:
            raise ArtifactError(f"extra file {e}") from None
    with tempfile.TemporaryDirectory(prefix="sentiray-artifact-") as tmp:
        staging = Path(tmp)
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        for rel, data in (extra_files or {}).items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).write_bytes(data)
        manifest = ArtifactManifest(
            labels=LabelSet.from_model_config(model.config).id2label,  # the config is the record
            max_length=max_length,
            truncation=Truncation(truncation),
            base_model=base_model,
            versions=library_versions(),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            files=_hash_tree(staging),
            **manifest_fields,
        )
        manifest_path = storage.join(destination, MANIFEST_NAME)
        _clear_destination(destination, manifest_path)
        storage.upload_dir(staging, destination)
        storage.write_bytes(manifest_path, manifest.model_dump_json(indent=2).encode())
    return destination


def _clear_destination(destination: str, manifest_path: str) -> None:
    """Make room for a new artifact: only an earlier artifact (or nothing) may be overwritten."""
    fs, path = storage.filesystem(destination)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return
    if info.type != pafs.FileType.Directory:
        raise ArtifactError(f"{destination}: exists and is not a folder")
    entries = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    if entries and not storage.exists(manifest_path):
        raise ArtifactError(
            f"{destination}: folder is not empty and holds no {MANIFEST_NAME}; refusing to overwrite"
        )
    # The manifest goes first: from here until the new one is written, loaders refuse the folder.
    storage.delete_file(manifest_path)
    fs.delete_dir_contents(path, missing_dir_ok=True)


def verify_artifact(local_dir: str | Path, *, source: str | None = None) -> ArtifactManifest:
    """Check a local artifact folder against its manifest; raise ArtifactError naming what is wrong.

    `source` names the artifact in messages when local_dir is a download of it.
    """
    root = Path(local_dir)
    name = source or str(root)
    manifest_path = root / MANIFEST_NAME
    manifest_name = f"{source}/{MANIFEST_NAME}" if source else str(manifest_path)
    if not manifest_path.is_file():
        raise ArtifactError(
            f"{name}: no {MANIFEST_NAME}; not a sentiray artifact, or its write did not finish"
        )
    try:
        raw = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{manifest_name}: not valid JSON ({e})") from e
    if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION:
        got = raw.get("schema_version") if isinstance(raw, dict) else None
        raise ArtifactError(
            f"{manifest_name}: schema_version {got!r} is not supported (expected {SCHEMA_VERSION})"
        )
    try:
        manifest = ArtifactManifest.model_validate(raw)
    except ValidationError as e:
        raise ArtifactError(f"{manifest_name}: invalid manifest: {e}") from e
    actual = _hash_tree(root)
    missing = sorted(set(manifest.files) - set(actual))
    unlisted = sorted(set(actual) - set(manifest.files))
    changed = sorted(f for f in manifest.files if f in actual and actual[f] != manifest.files[f])
    problems = []
    if missing:
        problems.append(f"missing {missing}")
    if changed:
        problems.append(f"sha256 mismatch {changed}")
    if unlisted:
        problems.append(f"not in the manifest {unlisted}")
    if problems:
        raise ArtifactError(f"{name}: artifact does not match {MANIFEST_NAME}: {'; '.join(problems)}")
    if not any(f.endswith(".safetensors") for f in manifest.files):
        raise ArtifactError(f"{name}: no safetensors weights in the artifact")
    return manifest


def fetch_artifact(location: str, cache_root: Path | None = None) -> tuple[Path, ArtifactManifest]:
    """A verified local copy of the artifact at a path, URI or Hub id (downloaded to a cache)."""
    if storage.is_hub_id(location):
        location = storage.hub_snapshot(location)
    location = resolve_location(location)
    if not storage.is_uri(location):
        if not Path(location).is_dir():
            raise ArtifactError(f"{location}: no such artifact folder")
        return Path(location), verify_artifact(location)
    cache = (cache_root or _CACHE_ROOT) / hashlib.sha256(location.encode()).hexdigest()[:24]
    manifest_uri = storage.join(location, MANIFEST_NAME)
    try:
        remote_manifest = storage.read_bytes(manifest_uri)
    except (FileNotFoundError, OSError) as e:
        raise ArtifactError(f"{location}: no {MANIFEST_NAME} ({e})") from e
    if (cache / MANIFEST_NAME).is_file() and (cache / MANIFEST_NAME).read_bytes() == remote_manifest:
        try:
            return cache, verify_artifact(cache)
        except ArtifactError:
            pass  # a damaged cache is downloaded again
    if cache.exists():
        shutil.rmtree(cache)
    # Staged beside the cache, not in the system temp folder: the rename below cannot cross filesystems.
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="download-", dir=cache.parent))
    try:
        try:
            storage.download_dir(location, staging)
        except (OSError, ValueError) as e:
            raise ArtifactError(f"{location}: download failed: {e}") from e
        manifest = verify_artifact(staging, source=location)
        try:
            staging.rename(cache)
        except OSError:
            # Another process (a second replica on this node) finished the same download first.
            winner = cache / MANIFEST_NAME
            if not winner.is_file() or winner.read_bytes() != remote_manifest:
                raise
            manifest = verify_artifact(cache, source=location)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return cache, manifest
