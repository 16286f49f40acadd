"""The RayService's serveConfigV2 is serve/config.yaml with only the allowed overrides, and valid."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sentiray.kube.serveconfig import (
    CHART_COPY,
    SOURCE,
    apply_overrides,
    load_serve_config,
    serve_config_differences,
    sync,
)
from tests.k8s_support import KUSTOMIZE_DIRS, REPO, SERVE_MATRIX, chart_objects, kustomize_objects


def _serve_config_v2(values: dict[str, Any]) -> dict[str, Any]:
    service = next(o for o in chart_objects("sentiray-serve", values) if o["kind"] == "RayService")
    parsed: dict[str, Any] = yaml.safe_load(service["spec"]["serveConfigV2"])
    return parsed


def test_chart_copy_and_kustomize_copies_are_in_sync() -> None:
    """helm/sentiray-serve/files/serve-config.yaml and k8s/**/serve-config.yaml follow serve/config.yaml;
    if this fails, run `sentiray k8s sync-serve-config`."""
    assert (REPO / CHART_COPY).read_text() == (REPO / SOURCE).read_text()
    assert sync(REPO, check=True) == []


@pytest.mark.parametrize("variant", sorted(SERVE_MATRIX))
def test_rendered_serve_config_differs_only_in_allowed_overrides(variant: str) -> None:
    source = load_serve_config(REPO / SOURCE)
    rendered = _serve_config_v2(SERVE_MATRIX[variant])
    assert serve_config_differences(source, rendered) == []
    app = rendered["applications"][0]
    values = SERVE_MATRIX[variant]
    assert app["args"]["model"] == values.get("model", {}).get(
        "uri", "/mnt/sentiray/runs/sentiray-imdb/artifact"
    )
    assert rendered["http_options"]["host"] == "0.0.0.0"
    options = {d["name"]: d["ray_actor_options"] for d in app["deployments"]}
    expected = values.get("rayActorOptions") or {
        "SentimentIngress": {"num_cpus": 0.1},
        "SentimentModel": {"num_cpus": 1, "num_gpus": 1},
    }
    assert options == expected


def test_chart_rendering_matches_the_python_overrides() -> None:
    """The template and sentiray.kube.serveconfig.apply_overrides implement the same rule."""
    values = SERVE_MATRIX["everything-on"]
    expected = apply_overrides(
        load_serve_config(REPO / SOURCE),
        model_uri=values["model"]["uri"],
        ray_actor_options={
            "SentimentIngress": {"num_cpus": 0.1},
            "SentimentModel": {"num_cpus": 1, "num_gpus": 1},
        },
        api_token_file="/var/run/secrets/sentiray/api-token/token",
    )
    assert _serve_config_v2(values) == expected


def test_the_diff_catches_a_forbidden_change() -> None:
    source = load_serve_config(REPO / SOURCE)
    changed = apply_overrides(source, model_uri="s3://x")
    changed["applications"][0]["deployments"][1]["autoscaling_config"]["max_replicas"] = 99
    changed["applications"][0]["args"]["max_batch_size"] = 1
    diffs = serve_config_differences(source, changed)
    assert len(diffs) == 2
    assert any("autoscaling_config.max_replicas" in d for d in diffs)
    assert any("args.max_batch_size" in d for d in diffs)


@pytest.mark.parametrize("variant", ["defaults", "everything-on"])
def test_serve_config_v2_is_a_valid_serve_config(variant: str) -> None:
    from ray.serve.schema import ServeDeploySchema

    from serve.schemas import AppArgs

    rendered = _serve_config_v2(SERVE_MATRIX[variant])
    schema = (
        ServeDeploySchema.model_validate(rendered)
        if hasattr(ServeDeploySchema, "model_validate")
        else ServeDeploySchema.parse_obj(rendered)
    )
    assert [a.name for a in schema.applications] == ["sentiray"]
    assert schema.applications[0].import_path == "serve.app:app_builder"
    args = AppArgs.model_validate(rendered["applications"][0]["args"])
    if variant == "everything-on":
        assert args.api_token_file == "/var/run/secrets/sentiray/api-token/token"


@pytest.mark.parametrize("directory", KUSTOMIZE_DIRS, ids=lambda d: d.name)
def test_kustomize_serve_config_matches_the_source(directory: Any) -> None:
    service = next(o for o in kustomize_objects(directory) if o["kind"] == "RayService")
    rendered = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert serve_config_differences(load_serve_config(REPO / SOURCE), rendered) == []
    model = {d["name"]: d["ray_actor_options"] for d in rendered["applications"][0]["deployments"]}[
        "SentimentModel"
    ]
    assert model["num_gpus"] == (1 if directory.name == "gpu" else 0)
