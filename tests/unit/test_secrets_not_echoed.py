"""Credentials come from the environment (or a mounted Secret) and never show up in errors or logs.

Error paths a credential passes through: a Hub that refuses the push (and echoes the Authorization header
back, as a hostile or misconfigured mirror might), a Hub that fails, and S3 refusing the keys. The CLI
runs in a subprocess, so what is checked is exactly what a user or a log collector sees. The API's bearer
token is checked against real Serve, logs included, in tests/integration/test_security.py.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sentiray.artifact import fetch_artifact, write_artifact
from sentiray.model import load_model, load_tokenizer
from tests.support import write_tiny_artifact


def _run_cli(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    return subprocess.run(
        [sys.executable, "-m", "sentiray.cli", *argv],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def artifact(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("secrets") / "artifact"
    write_tiny_artifact(out, tiny_model_dir, truncation="head", base_model="tiny")
    return out


@pytest.fixture
def echoing_hub(request: pytest.FixtureRequest) -> Iterator[str]:
    """A Hub that answers every call with `request.param` and the caller's Authorization header in the body."""
    status: int = request.param

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _echo(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            auth = self.headers.get("authorization", "")
            body = json.dumps({"error": f"rejected credentials: {auth}", "token": auth.split()[-1:]}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("x-error-message", f"bad token {auth}")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_HEAD = _echo  # noqa: N815 - http.server's naming

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("echoing_hub", [401, 403, 500], indirect=True, ids=["401", "403", "500"])
def test_a_refused_hub_push_does_not_echo_the_token(artifact: Path, echoing_hub: str) -> None:
    token = "hf_" + secrets.token_hex(16)
    r = _run_cli(
        "push", str(artifact), "org/repo", env={"HF_TOKEN": token, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": echoing_hub}
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "sentiray push: error:" in r.stderr
    assert token not in r.stdout + r.stderr
    assert token[3:] not in r.stdout + r.stderr  # nor its body alone


@pytest.fixture
def s3_refusing_keys(s3_bucket: tuple[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, str]]:
    """The moto bucket with S3 checking credentials (ours are unknown to it), and those credentials."""
    import moto.settings

    bucket, client = s3_bucket
    client.put_object(Bucket=bucket, Key="m/sentiray.json", Body=b"{}")
    creds = {
        "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
        "AWS_SESSION_TOKEN": secrets.token_urlsafe(40),
    }
    for name, value in creds.items():
        monkeypatch.setenv(name, value)
    # The moto server runs in this process: from now on it authenticates every request.
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    return bucket, creds


def _leaks(text: str, creds: dict[str, str]) -> list[str]:
    return [name for name, value in creds.items() if value in text]


def test_s3_refusing_the_keys_does_not_echo_them(
    s3_refusing_keys: tuple[str, dict[str, str]], tmp_path: Path, tiny_model_dir: Path
) -> None:
    bucket, creds = s3_refusing_keys
    model, tokenizer = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    attempts = {
        "read": lambda: fetch_artifact(f"s3://{bucket}/m", cache_root=tmp_path),
        "write": lambda: write_artifact(
            f"s3://{bucket}/new", model, tokenizer, max_length=32, truncation="head", base_model="tiny"
        ),
    }
    for what, attempt in attempts.items():
        with pytest.raises(Exception) as excinfo:  # noqa: PT011 - any error will do; its text is the point
            attempt()
        assert "ACCESS_DENIED" in str(excinfo.value) or "AccessDenied" in str(excinfo.value), (what, excinfo.value)
        shown = "".join(traceback.format_exception(excinfo.value))  # the chained causes too
        assert _leaks(shown, creds) == [], what


def test_s3_refusing_the_keys_through_the_cli(s3_refusing_keys: tuple[str, dict[str, str]]) -> None:
    bucket, creds = s3_refusing_keys
    r = _run_cli("push", f"s3://{bucket}/m", "org/repo", env={"HF_HUB_OFFLINE": "1", **creds})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ACCESS_DENIED" in r.stderr, r.stderr
    assert _leaks(r.stdout + r.stderr, creds) == []
