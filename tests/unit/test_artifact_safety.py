"""What the artifact loader refuses: writes cut short by a kill, locations outside the configured root,
manifest entries and object keys that lead out of the artifact folder, code-running checkpoints.

The kill tests run the real `write_artifact` in a child process and SIGKILL it at a chosen point (on
local disk and on S3 through moto); the child only pauses there, it writes nothing differently.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sentiray.artifact import (
    MANIFEST_NAME,
    ROOT_ENV,
    fetch_artifact,
    resolve_location,
    sha256_file,
    verify_artifact,
)
from sentiray.errors import ArtifactError, ConfigError, ModelLoadError
from sentiray.model import load_model
from sentiray.predictor import Predictor
from tests.support import write_loaded_artifact as _write


@pytest.fixture
def artifact(tmp_path: Path, model_and_tokenizer: tuple[Any, Any]) -> Path:
    return Path(_write(tmp_path / "artifact", model_and_tokenizer))


def _rewrite_manifest(folder: Path, **changes: Any) -> None:
    """Make the manifest consistent with the folder as it now is (what a tamperer who edits it does)."""
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["files"] = {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }
    manifest.update(changes)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))


# --- a writer killed mid-write --------------------------------------------------------------------------

# Runs write_artifact; before the N-th file copy (`file:N`) or the manifest write (`manifest`) it prints
# PAUSED and sleeps until the test kills it.
_CHILD = textwrap.dedent(
    """
    import sys, time
    import pyarrow.fs as pafs
    from sentiray import storage
    from sentiray.artifact import MANIFEST_NAME, write_artifact
    from sentiray.model import load_model, load_tokenizer

    model_dir, destination, pause_at, max_length = sys.argv[1:5]
    copies = 0

    def pause():
        print("PAUSED", flush=True)
        time.sleep(3600)

    real_copy, real_write = pafs.copy_files, storage.write_bytes

    def copy_files(*args, **kwargs):
        global copies
        copies += 1
        if pause_at == f"file:{copies}":
            pause()
        return real_copy(*args, **kwargs)

    def write_bytes(location, data):
        if pause_at == "manifest" and location.endswith(MANIFEST_NAME):
            pause()
        return real_write(location, data)

    pafs.copy_files, storage.write_bytes = copy_files, write_bytes
    write_artifact(destination, load_model(model_dir), load_tokenizer(model_dir), max_length=int(max_length),
                   truncation="head", base_model="tiny", extra_files={"notes/a.txt": b"a", "notes/b.txt": b"b"})
    print("FINISHED", flush=True)
    """
)


def _write_and_kill(model_dir: Path, destination: str, pause_at: str, max_length: int = 32) -> None:
    """Start a writer, SIGKILL it once it reports it paused at pause_at."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(model_dir), destination, pause_at, str(max_length)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until PAUSED (or the child ends)
        assert line.strip() == "PAUSED", f"writer did not pause: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _s3_keys(client: Any, bucket: str, prefix: str) -> set[str]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    return {o["Key"][len(prefix) + 1 :] for o in listed}


def test_local_overwrite_killed_mid_write_leaves_nothing_loadable(
    tiny_model_dir: Path, tmp_path: Path, model_and_tokenizer: tuple[Any, Any]
) -> None:
    """Killed with two files of the new artifact written over a good old one: neither version loads."""
    destination = tmp_path / "artifact"
    _write(destination, model_and_tokenizer, max_length=64)
    _write_and_kill(tiny_model_dir, str(destination), "file:3", max_length=32)
    written = {p.relative_to(destination).as_posix() for p in destination.rglob("*") if p.is_file()}
    assert len(written) == 2  # killed mid-write: the first two files are there ...
    assert MANIFEST_NAME not in written  # ... the manifest (old or new) is not
    with pytest.raises(ArtifactError, match="no sentiray.json; not a sentiray artifact, or its write did not finish"):
        Predictor.from_artifact(str(destination), device="cpu", precision="fp32")
    # The remains cannot be told from a foreign folder, so a rerun refuses to write over them.
    with pytest.raises(ArtifactError, match="holds no sentiray.json; refusing to overwrite"):
        _write(destination, model_and_tokenizer)


def test_s3_writer_killed_before_the_manifest_leaves_nothing_loadable(
    tiny_model_dir: Path, tmp_path: Path, s3_bucket: tuple[str, Any]
) -> None:
    """Killed with every file uploaded but the manifest: nothing loads, nothing is cached."""
    bucket, client = s3_bucket
    location = f"s3://{bucket}/models/m"
    _write_and_kill(tiny_model_dir, location, "manifest")
    keys = _s3_keys(client, bucket, "models/m")
    assert {"model.safetensors", "config.json", "notes/a.txt", "notes/b.txt"} <= keys
    assert MANIFEST_NAME not in keys
    cache = tmp_path / "cache"
    with pytest.raises(ArtifactError, match="no sentiray.json"):
        fetch_artifact(location, cache_root=cache)
    assert not (cache.exists() and any(cache.rglob("*")))


# --- locations: URIs, `..`, the configured root ---------------------------------------------------------


def test_uri_with_parent_segments_is_refused(model_and_tokenizer: tuple[Any, Any]) -> None:
    for location in ("s3://bucket/models/../secrets", "s3://bucket/../other-bucket/m"):
        with pytest.raises(ArtifactError, match="contains '..'"):
            fetch_artifact(location)
        with pytest.raises(ArtifactError, match="contains '..'"):
            _write(location, model_and_tokenizer)


def test_credentials_in_a_uri_are_refused_without_echoing_them(model_and_tokenizer: tuple[Any, Any]) -> None:
    location = "s3://AKIAEXAMPLE:wJalrXUtnFEMI-secret@bucket/models/m"
    for attempt in (lambda: fetch_artifact(location), lambda: _write(location, model_and_tokenizer)):
        with pytest.raises(ArtifactError, match="credentials in an artifact URI are refused") as excinfo:
            attempt()
        message = str(excinfo.value)
        assert "wJalrXUtnFEMI-secret" not in message
        assert "AKIAEXAMPLE" not in message
        assert "s3://***@bucket/models/m" in message


def test_without_a_root_local_paths_resolve_as_given(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ROOT_ENV, raising=False)
    monkeypatch.chdir(artifact.parent)
    assert resolve_location(f"../{artifact.parent.name}/{artifact.name}") == str(artifact)
    assert fetch_artifact(f"./{artifact.name}")[0] == artifact


def test_root_confines_reads_and_writes(
    tmp_path: Path, model_and_tokenizer: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "models"
    inside = Path(_write(root / "a", model_and_tokenizer))
    outside = Path(_write(tmp_path / "elsewhere" / "b", model_and_tokenizer))
    sibling = Path(_write(tmp_path / "models-evil" / "c", model_and_tokenizer))  # shares the root's prefix
    monkeypatch.setenv(ROOT_ENV, str(root))

    assert fetch_artifact(str(inside))[0] == inside
    Predictor.from_artifact(str(inside), device="cpu", precision="fp32")
    for refused in (outside, sibling):
        with pytest.raises(ArtifactError, match=f"outside the artifact root.*{ROOT_ENV}"):
            fetch_artifact(str(refused))
        with pytest.raises(ArtifactError, match="outside the artifact root"):
            Predictor.from_artifact(str(refused), device="cpu", precision="fp32")
    # `..` is refused even when the path would resolve inside the root.
    with pytest.raises(ArtifactError, match=r"'\.\.' is not allowed"):
        fetch_artifact(f"{root}/a/../a")
    with pytest.raises(ArtifactError, match=r"'\.\.' is not allowed"):
        fetch_artifact(f"file://{root}/../elsewhere/b")
    # Writes too; nothing is created outside.
    with pytest.raises(ArtifactError, match="outside the artifact root"):
        _write(tmp_path / "new", model_and_tokenizer)
    assert not (tmp_path / "new").exists()
    _write(root / "d", model_and_tokenizer)
    verify_artifact(root / "d")


def test_a_symlink_inside_the_root_does_not_lead_out(
    tmp_path: Path, model_and_tokenizer: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "models"
    root.mkdir()
    outside = Path(_write(tmp_path / "elsewhere" / "b", model_and_tokenizer))
    (root / "link").symlink_to(outside, target_is_directory=True)
    monkeypatch.setenv(ROOT_ENV, str(root))
    with pytest.raises(ArtifactError, match="outside the artifact root"):
        fetch_artifact(str(root / "link"))


def test_uri_roots(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ROOT_ENV, f"s3://bucket/models, {tmp_path}")
    assert resolve_location("s3://bucket/models") == "s3://bucket/models"
    assert resolve_location("s3://bucket/models/imdb/v2/") == "s3://bucket/models/imdb/v2"
    assert resolve_location("S3://bucket/models/x") == "S3://bucket/models/x"
    assert resolve_location(str(tmp_path / "x")) == str(tmp_path / "x")  # the second root
    for refused in (
        "s3://bucket/models-evil/x",
        "s3://bucket/other",
        "s3://other-bucket/models/x",
        "gs://bucket/models/x",
        "/etc",
    ):
        with pytest.raises(ArtifactError, match="outside the artifact root"):
            resolve_location(refused)


def test_a_root_that_is_itself_invalid_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROOT_ENV, "s3://bucket/models/../x")
    with pytest.raises(ConfigError, match=f"{ROOT_ENV}: location: .* contains '..'"):
        resolve_location("s3://bucket/x/m")


# --- manifest entries and object keys that lead out of the artifact folder ---------------------------------


@pytest.mark.parametrize(
    "entry", ["../outside.txt", "notes/../../outside.txt", "/etc/passwd", "./config.json", "a//b", "a\\b", ""]
)
def test_manifest_entries_must_stay_inside_the_folder(artifact: Path, entry: str) -> None:
    manifest = json.loads((artifact / MANIFEST_NAME).read_text())
    manifest["files"][entry] = "0" * 64
    (artifact / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"(?s)invalid manifest.*not a plain relative path inside the artifact"):
        verify_artifact(artifact)


def test_extra_files_must_stay_inside_the_folder(tmp_path: Path, model_and_tokenizer: tuple[Any, Any]) -> None:
    with pytest.raises(ArtifactError, match="not a plain relative path inside the artifact folder"):
        _write(tmp_path / "a", model_and_tokenizer, extra_files={"../escaped.txt": b"x"})
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "a").exists()


def test_s3_keys_with_parent_segments_are_not_downloaded_outside(
    s3_bucket: tuple[str, Any], tmp_path: Path, model_and_tokenizer: tuple[Any, Any]
) -> None:
    """S3 keys may hold `..`; `m/x/../../escaped.txt` must not be written beside the download folder."""
    bucket, client = s3_bucket
    location = _write(f"s3://{bucket}/models/m", model_and_tokenizer)
    client.put_object(Bucket=bucket, Key="models/escaped.txt", Body=b"planted")
    client.put_object(Bucket=bucket, Key="models/m/x/../../escaped.txt", Body=b"planted")
    cache = tmp_path / "cache"
    with pytest.raises(ArtifactError, match="lies outside the folder; refusing to download it"):
        fetch_artifact(location, cache_root=cache)
    assert list(tmp_path.rglob("escaped.txt")) == []


# --- checkpoints that would run code when loaded ---------------------------------------------------------


class _RunsCode:
    """Unpickling this writes a marker file: the stand-in for an attacker's payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "pickle payload ran"))


def _plant_pickle(folder: Path, marker: Path) -> None:
    with (folder / "pytorch_model.bin").open("wb") as f:
        pickle.dump({"weights": _RunsCode(marker)}, f)
    # The payload is real: unpickling the same thing (aimed at another file) runs it.
    probe = marker.with_name(marker.name + "-probe")
    pickle.loads(pickle.dumps(_RunsCode(probe)))
    assert probe.read_text() == "pickle payload ran"


def test_a_pickle_beside_safetensors_never_runs(artifact: Path, tmp_path: Path) -> None:
    """A consistent manifest (the tamperer rewrote it) lists a code-running pickle: loading ignores it."""
    marker = tmp_path / "ran-pickle"
    _plant_pickle(artifact, marker)
    _rewrite_manifest(artifact)
    predictor = Predictor.from_artifact(str(artifact), device="cpu", precision="fp32")
    assert predictor.predict(["a fine film"])
    assert not marker.exists()


def test_a_pickle_only_artifact_is_refused_and_never_runs(artifact: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran-pickle"
    (artifact / "model.safetensors").unlink()
    _plant_pickle(artifact, marker)
    _rewrite_manifest(artifact)
    with pytest.raises(ArtifactError, match="no safetensors weights"):
        Predictor.from_artifact(str(artifact), device="cpu", precision="fp32")
    # Past the artifact check (a bare folder), the model loader refuses it too.
    with pytest.raises(ModelLoadError, match="pytorch_model.bin"):
        load_model(str(artifact))
    assert not marker.exists()


def test_remote_code_in_an_artifact_never_runs(artifact: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran-remote-code"
    config = json.loads((artifact / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "evil.Model", "AutoConfig": "evil.Config"}
    (artifact / "config.json").write_text(json.dumps(config))
    (artifact / "evil.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('remote code ran')\n"
        "from transformers import DistilBertConfig as Config\n"
        "from transformers import DistilBertForSequenceClassification as Model\n"
    )
    _rewrite_manifest(artifact)
    predictor = Predictor.from_artifact(str(artifact), device="cpu", precision="fp32")
    assert type(predictor.model).__module__.startswith("transformers.")
    assert not marker.exists()
    # An architecture only the remote code defines is refused, still without running it.
    config["model_type"] = "evil-bert"
    (artifact / "config.json").write_text(json.dumps(config))
    _rewrite_manifest(artifact)
    with pytest.raises(ModelLoadError, match="custom code"):
        Predictor.from_artifact(str(artifact), device="cpu", precision="fp32")
    assert not marker.exists()


def test_tampered_weights_are_refused_by_the_serving_loader(artifact: Path) -> None:
    weights = artifact / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"sha256 mismatch \['model.safetensors'\]"):
        Predictor.from_artifact(str(artifact), device="cpu", precision="fp32")
