"""serve/config.yaml is a complete Serve config: Ray's own schema accepts it and its args build the app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from serve.app import _json_depth_exceeds, app_builder
from serve.schemas import AppArgs

CONFIG = Path(__file__).resolve().parents[2] / "serve" / "config.yaml"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return loaded


def test_ray_serve_deploy_schema_accepts_the_config(config: dict[str, Any]) -> None:
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(config)
    (app,) = schema.applications
    assert app.name == "sentiray"
    assert app.route_prefix == "/"
    assert app.import_path == "serve.app:app_builder"
    assert schema.http_options.host == "127.0.0.1"
    assert schema.http_options.port == 8000
    assert schema.http_options.request_timeout_s


def test_every_deployment_is_bounded_and_autoscaled(config: dict[str, Any]) -> None:
    deployments = {d["name"]: d for d in config["applications"][0]["deployments"]}
    assert set(deployments) == {"SentimentIngress", "SentimentModel"}
    for d in deployments.values():
        assert d["max_ongoing_requests"] > 0
        assert d["max_queued_requests"] > 0  # never an unbounded queue
        assert d["autoscaling_config"]["min_replicas"] >= 1
        assert d["health_check_period_s"] > 0
        assert d["graceful_shutdown_timeout_s"] > 0
        assert "num_cpus" in d["ray_actor_options"]
    assert "num_gpus" in deployments["SentimentModel"]["ray_actor_options"]
    assert (
        deployments["SentimentModel"]["max_ongoing_requests"]
        >= config["applications"][0]["args"]["max_batch_size"]
    )


def test_config_args_build_the_application(config: dict[str, Any]) -> None:
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    args = config["applications"][0]["args"]
    AppArgs.model_validate(args)
    builder: Any = app_builder
    app = call_user_app_builder_with_args_if_necessary(builder, args)  # as `serve deploy` does
    assert type(app).__name__ == "Application"


def test_builder_args_are_validated_with_the_field_named() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="max_batch_size"):
        AppArgs.model_validate({"model": "x", "max_batch_size": 0})
    with pytest.raises(ValidationError, match="dtype"):
        AppArgs.model_validate({"model": "x", "dtype": "fp16"})
    with pytest.raises(ValidationError, match="min_replicas"):
        AppArgs.model_validate({"model": "x", "min_replicas": 3, "max_replicas": 2})
    with pytest.raises(ValidationError, match="unknown_option|extra"):
        AppArgs.model_validate({"model": "x", "unknown_option": 1})


@pytest.mark.parametrize(
    ("body", "deep"),
    [
        (b'{"inputs": ["a", "b"]}', False),
        (b'{"inputs": "' + b"[" * 100 + b'"}', False),  # brackets inside a string do not nest
        (b'{"inputs": ' + b"[" * 40 + b"]" * 40 + b"}", True),
        (b"[" * 32 + b"]" * 32, False),
        (b"[" * 33 + b"]" * 33, True),
    ],
)
def test_json_depth_scan(body: bytes, deep: bool) -> None:
    assert _json_depth_exceeds(body, 32) is deep
