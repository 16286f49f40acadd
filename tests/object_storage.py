"""S3 object storage for the training tests: a moto server on 127.0.0.1 (the storage a real cluster's nodes
share, since they share no disk), its credentials, a bucket, and what a run has registered there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sentiray.runs import RUN_STATE_FILE
from tests.ray_cluster import free_port

MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def bucket_client(endpoint: str, bucket: str) -> Any:
    """A boto3 S3 client of the server, with `bucket` created."""
    import boto3

    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    client.create_bucket(Bucket=bucket)
    return client


def registered_steps(s3: Any, bucket: str, name: str) -> list[int]:
    """Steps of the checkpoints Ray Train has registered for run `name` (its snapshot in the bucket)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=f"runs/{name}/checkpoint_manager_snapshot.json")["Body"].read()
        snapshot = json.loads(body)
    except Exception:  # not written yet, or being replaced
        return []
    return sorted(r["metrics"]["step"] for r in snapshot.get("checkpoint_results", []))


def run_state(s3: Any, bucket: str, name: str) -> dict[str, Any]:
    """The run state file of run `name`."""
    state: dict[str, Any] = json.loads(s3.get_object(Bucket=bucket, Key=f"runs/{name}/{RUN_STATE_FILE}")["Body"].read())
    return state
