"""Fixtures of the unit tests: an S3 endpoint (moto) on loopback for the object-store paths."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def model_and_tokenizer(tiny_model_dir: Path) -> tuple[Any, Any]:
    """The tiny model and tokenizer, loaded once for the tests that write artifacts of it."""
    from sentiray.model import load_model, load_tokenizer

    return load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (a free port), shared by the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    """(a fresh empty bucket's name, a boto3 client), with the AWS environment pointing at moto."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = f"sentiray-test-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=bucket)
    return bucket, client
