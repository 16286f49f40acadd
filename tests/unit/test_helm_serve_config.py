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
    if this fails, run `make sync-serve-config`."""
    assert (REPO / CHART_COPY).read_text() == (REPO / SOURCE).read_text()
    assert sync(REPO, check=True) == []


DEFAULT_ACTOR_OPTIONS = {
    "SentimentIngress": {"num_cpus": 0.1},
    "SentimentModel": {"num_cpus": 3, "num_gpus": 1},
}


def _tuned_source(values: dict[str, Any]) -> dict[str, Any]:
    """serve/config.yaml with the chart's `serve:` settings applied as the chart documents them."""
    source = load_serve_config(REPO / SOURCE)
    tune = values.get("serve", {})
    app = source["applications"][0]
    model = next(d for d in app["deployments"] if d["name"] == tune.get("modelDeployment", "SentimentModel"))
    scaling = model["autoscaling_config"]
    for key, target in (("minReplicas", "min_replicas"), ("maxReplicas", "max_replicas"),
                        ("targetOngoingRequests", "target_ongoing_requests")):  # fmt: skip
        if tune.get(key) is not None:
            scaling[target] = tune[key]
    for key, target in (("maxBatchSize", "max_batch_size"), ("batchWaitTimeoutS", "batch_wait_timeout_s")):
        if tune.get(key) is not None:
            app["args"][target] = tune[key]
    if tune.get("requestTimeoutS") is not None:
        source["http_options"]["request_timeout_s"] = tune["requestTimeoutS"]
    return source


@pytest.mark.parametrize("variant", sorted(SERVE_MATRIX))
def test_rendered_serve_config_differs_only_in_allowed_overrides(variant: str) -> None:
    values = SERVE_MATRIX[variant]
    rendered = _serve_config_v2(values)
    source = _tuned_source(values)
    if values.get("autoscaling", {}).get("enabled") is False:
        # No autoscaler, no pod is ever added: Serve's max_replicas is cut to what the fixed workers hold
        # (2 GPU workers, one model replica each), else the rest would wait forever (issue 13, item 9).
        source["applications"][0]["deployments"][1]["autoscaling_config"]["max_replicas"] = 2
    assert serve_config_differences(source, rendered) == []
    app = rendered["applications"][0]
    assert app["args"]["model"] == values.get("model", {}).get("uri", "/mnt/sentiray/runs/sentiray-imdb/artifact")
    assert rendered["http_options"]["host"] == "0.0.0.0"
    options = {d["name"]: d["ray_actor_options"] for d in app["deployments"]}
    assert options == (values.get("rayActorOptions") or DEFAULT_ACTOR_OPTIONS)


TUNED = {
    "serve": {
        "minReplicas": 0,
        "maxReplicas": 3,
        "targetOngoingRequests": 8,
        "maxBatchSize": 16,
        "batchWaitTimeoutS": 0.005,
        "requestTimeoutS": 20,
    },
    "worker": {"minReplicas": 0, "replicas": 0},
}


def test_serve_settings_are_chart_values() -> None:
    """The settings a platform engineer tunes reach serveConfigV2, and only them; min_replicas 0 (scale to
    zero) is allowed; the result is still a valid Serve config."""
    from ray.serve.schema import ServeDeploySchema

    rendered = _serve_config_v2(TUNED)
    assert serve_config_differences(_tuned_source(TUNED), rendered) == []
    model = rendered["applications"][0]["deployments"][1]["autoscaling_config"]
    assert (model["min_replicas"], model["max_replicas"], model["target_ongoing_requests"]) == (0, 3, 8)
    assert rendered["applications"][0]["args"]["max_batch_size"] == 16
    assert rendered["applications"][0]["args"]["batch_wait_timeout_s"] == 0.005
    assert rendered["http_options"]["request_timeout_s"] == 20
    ServeDeploySchema.model_validate(rendered)
    # Unset, each keeps serve/config.yaml's value.
    assert serve_config_differences(load_serve_config(REPO / SOURCE), _serve_config_v2({})) == []


def _service(values: dict[str, Any], chart_dir: Any = None) -> dict[str, Any]:
    if chart_dir is None:
        return next(o for o in chart_objects("sentiray-serve", values) if o["kind"] == "RayService")
    import helm_python as helm

    with helm.Chart.load(str(chart_dir)) as loaded:
        text = loaded.render(values, name="rel", namespace="ml", is_install=False)[
            "sentiray-serve/templates/rayservice.yaml"
        ]
    return dict(yaml.safe_load(text))


def test_promotion_by_helm_changes_only_serve_config(tmp_path: Any) -> None:
    """`helm upgrade --set model.uri=...`, a chart version bump and a tuned Serve setting leave KubeRay's
    cluster hash as it is (rayservice_controller.go isClusterSpecHashEqual over
    GenerateHashWithoutReplicasAndWorkersToDelete): Serve applies them in place, no second cluster. A
    change of worker min/max, which that hash mutes and KubeRay would otherwise apply to no cluster,
    changes it through the pod template's rollout digest (issue 13, item 8)."""
    import shutil

    from tests.kuberay_rules import cluster_hash

    before = _service({})
    promoted = _service({"model": {"uri": "/mnt/sentiray/runs/imdb-2/artifact"}})
    assert cluster_hash(promoted) == cluster_hash(before)
    assert promoted["spec"]["rayClusterConfig"] == before["spec"]["rayClusterConfig"]
    assert promoted["spec"]["serveConfigV2"] != before["spec"]["serveConfigV2"]
    assert cluster_hash(_service({"serve": {"maxBatchSize": 8}})) == cluster_hash(before)

    bumped = tmp_path / "sentiray-serve"
    shutil.copytree(REPO / "helm" / "sentiray-serve", bumped)
    meta = yaml.safe_load((bumped / "Chart.yaml").read_text())
    meta.update(version="0.2.0", appVersion="0.1.0")
    (bumped / "Chart.yaml").write_text(yaml.safe_dump(meta))
    assert cluster_hash(_service({}, bumped)) == cluster_hash(before)

    assert cluster_hash(_service({"worker": {"maxReplicas": 8}})) != cluster_hash(before)


def test_chart_rendering_matches_the_python_overrides() -> None:
    """The template and sentiray.kube.serveconfig.apply_overrides implement the same rule."""
    values = SERVE_MATRIX["everything-on"]
    expected = apply_overrides(
        load_serve_config(REPO / SOURCE),
        model_uri=values["model"]["uri"],
        ray_actor_options=DEFAULT_ACTOR_OPTIONS,
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
    model = {d["name"]: d["ray_actor_options"] for d in rendered["applications"][0]["deployments"]}["SentimentModel"]
    assert model["num_gpus"] == (1 if directory.name == "gpu" else 0)
