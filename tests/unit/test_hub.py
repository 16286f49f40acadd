"""`sentiray push`: offline and unreachable Hubs fail clearly and change nothing; a stand-in Hub receives
the whole verified artifact.

The CLI runs in a subprocess, because huggingface_hub reads HF_HUB_OFFLINE and HF_ENDPOINT at import.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sentiray.artifact import MANIFEST_NAME, sha256_file
from sentiray.errors import ArtifactError, ConfigError
from sentiray.hub import HubError, push_artifact, validate_repo_id
from tests.ray_cluster import free_port

REPO = "sentiray-tests/tiny-sentiment"
CARD = "---\nlicense: apache-2.0\ntags: [sentiment-analysis]\n---\n# tiny sentiment\n"


@pytest.fixture(scope="module")
def artifact(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained) artifact with a model card and a plot, written by the real writer."""
    from tests.support import write_tiny_artifact

    out = tmp_path_factory.mktemp("hub") / "artifact"
    write_tiny_artifact(
        out,
        tiny_model_dir,
        test_metrics={"accuracy": 0.5},
        extra_files={"README.md": CARD.encode(), "plots/loss.png": b"\x89PNG\r\n\x1a\nfake"},
    )
    return out


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {
        p.relative_to(root).as_posix(): (sha256_file(p), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _push(artifact: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    return subprocess.run(
        [sys.executable, "-m", "sentiray.cli", "push", str(artifact), REPO, *extra],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_offline_fails_clearly_and_changes_nothing(artifact: Path) -> None:
    before = _snapshot(artifact)
    r = _push(artifact, {"HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_test"})
    assert r.returncode == 1, r.stderr
    assert "sentiray push: error: cannot push to https://huggingface.co/" in r.stderr
    assert "HF_HUB_OFFLINE is set" in r.stderr
    assert "Traceback" not in r.stderr
    assert _snapshot(artifact) == before


def test_unreachable_hub_fails_clearly_and_changes_nothing(artifact: Path) -> None:
    before = _snapshot(artifact)
    closed = f"http://127.0.0.1:{free_port()}"
    r = _push(artifact, {"HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_test", "HF_ENDPOINT": closed})
    assert r.returncode == 1, r.stderr
    assert f"cannot reach the Hub at {closed}" in r.stderr
    assert (
        f"the artifact at {artifact} is unchanged; retry with `sentiray push {artifact} {REPO}`" in r.stderr
    )
    assert "Traceback" not in r.stderr
    assert _snapshot(artifact) == before


def test_no_token_is_named(artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no saved login either
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    with pytest.raises(HubError, match="no Hub token: set HF_TOKEN"):
        push_artifact(str(artifact), REPO)


def test_unverified_artifact_is_not_pushed(artifact: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(artifact, broken)
    (broken / "README.md").write_text("edited after training\n")
    with pytest.raises(ArtifactError, match=r"sha256 mismatch \['README.md'\]"):
        push_artifact(str(broken), REPO)


@pytest.mark.parametrize("repo_id", ["no-namespace", "a/b/c", "org/..x", "org/-x", "", "org/na me"])
def test_repo_id_rule_is_named(repo_id: str) -> None:
    with pytest.raises(ConfigError, match="NAMESPACE/NAME"):
        validate_repo_id(repo_id)


# --- a stand-in Hub: the four endpoints create_repo + upload_folder call, files committed inline ----------


@dataclass
class FakeHub:
    url: str
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, authorization
    files: dict[str, bytes] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)
    commit_message: str = ""


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    hub = FakeHub(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            hub.requests.append(("POST", self.path, self.headers.get("authorization", "")))
            prefix = f"/api/models/{REPO}/"
            if self.path == "/api/repos/create":
                hub.created.append(json.loads(body))
                self._reply(200, {"url": f"{hub.url}/{REPO}"})
            elif self.path == "/api/validate-yaml":
                self._reply(200, {"errors": [], "warnings": []})
            elif self.path.startswith(prefix + "preupload/"):
                files = json.loads(body)["files"]
                self._reply(
                    200,
                    {
                        "files": [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                        ]
                    },
                )
            elif self.path.startswith(prefix + "commit/"):
                for line in body.splitlines():
                    item = json.loads(line)
                    if item["key"] == "header":
                        hub.commit_message = item["value"]["summary"]
                    elif item["key"] == "file":
                        hub.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                self._reply(200, {"commitUrl": f"{hub.url}/{REPO}/commit/abc123", "commitOid": "abc123"})
            else:
                self._reply(404, {"error": f"stand-in Hub: no route {self.path}"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hub
    server.shutdown()
    server.server_close()


def test_push_uploads_the_whole_artifact_as_one_commit(artifact: Path, fake_hub: FakeHub) -> None:
    before = _snapshot(artifact)
    r = _push(
        artifact, {"HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_secret", "HF_ENDPOINT": fake_hub.url}, "--private"
    )
    assert r.returncode == 0, r.stderr
    assert f"pushed {len(before)} files to {fake_hub.url}/{REPO}" in r.stdout
    assert "commit: " in r.stdout
    # Byte for byte what is on disk, manifest and model card included; nothing changed locally.
    assert fake_hub.files == {rel: (artifact / rel).read_bytes() for rel in before}
    assert MANIFEST_NAME in fake_hub.files
    assert fake_hub.files["README.md"].decode() == CARD
    assert _snapshot(artifact) == before
    assert fake_hub.created == [
        {
            "name": REPO.split("/")[1],
            "organization": REPO.split("/")[0],
            "visibility": "private",
            "type": "model",
        }
    ]
    assert {auth for _, _, auth in fake_hub.requests} == {"Bearer hf_secret"}
    assert fake_hub.commit_message == "sentiray artifact (base tiny-distilbert, test accuracy 0.5000)"


def test_train_flag_reaches_the_run_config_and_not_the_fingerprint() -> None:
    import argparse

    from sentiray.config import add_config_arguments, build_config, config_from_namespace

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    cfg = config_from_namespace(parser.parse_args(["--push-to-hub", REPO]))
    assert cfg.run.push_to_hub == REPO
    # Publishing is operational: a run may be resumed with or without it.
    assert cfg.fingerprint() == build_config().fingerprint()
    with pytest.raises(ConfigError, match="run.push_to_hub"):
        build_config(overrides={"push_to_hub": "no-namespace"})
