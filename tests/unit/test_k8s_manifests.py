"""Every rendered object validated: KubeRay kinds strictly against the CRDs, the rest against Kubernetes."""

from __future__ import annotations

import argparse
import copy
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from sentiray.config import FIELD_SECTION, add_config_arguments
from tests.k8s_support import (
    KUSTOMIZE_DIRS,
    MATRIX,
    chart_objects,
    crd_dir,
    crd_errors,
    crd_schemas,
    kustomize_objects,
    validate_objects,
)


@pytest.mark.parametrize(("chart", "variant", "values"), MATRIX, ids=[f"{c}-{v}" for c, v, _ in MATRIX])
def test_chart_objects_are_valid(chart: str, variant: str, values: dict[str, Any]) -> None:
    assert validate_objects(chart_objects(chart, values)) == []


@pytest.mark.parametrize("directory", KUSTOMIZE_DIRS, ids=lambda d: d.name)
def test_kustomize_builds_and_is_valid(directory: Path) -> None:
    objects = kustomize_objects(directory)
    assert {o["kind"] for o in objects} == {
        "RayJob",
        "RayService",
        "PersistentVolumeClaim",
        "NetworkPolicy",
    }
    assert all(o["metadata"]["namespace"] == "sentiray" for o in objects)
    assert validate_objects(objects) == []


def _a_rayjob() -> dict[str, Any]:
    return copy.deepcopy(next(o for o in chart_objects("sentiray-train") if o["kind"] == "RayJob"))


def test_crd_folder_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SENTIRAY_KUBERAY_CRDS", str(tmp_path))
    assert crd_dir() == tmp_path
    monkeypatch.delenv("SENTIRAY_KUBERAY_CRDS")
    assert crd_dir().parts[-3:] == ("shared", "kuberay", "crds")
    assert {("ray.io/v1", k) for k in ("RayJob", "RayService", "RayCluster")} <= set(crd_schemas())


@pytest.mark.parametrize(
    ("path", "typo"),
    [
        (("spec",), "shutdownAfterJobFinish"),
        (("spec", "rayClusterSpec"), "enableInTreeAutoscale"),
        (("spec", "rayClusterSpec", "headGroupSpec", "template", "spec", "containers", 0), "imagePullPolice"),
        (("spec", "rayClusterSpec", "workerGroupSpecs", 0), "maxReplica"),
        (("spec", "rayClusterSpec", "headGroupSpec", "template", "spec", "securityContext"), "runAsNonroot"),
    ],
)
def test_a_misspelt_field_is_an_error(path: tuple[Any, ...], typo: str) -> None:
    """The CRDs set no additionalProperties, so plain JSON Schema would accept these; strict mode does not."""
    job = _a_rayjob()
    assert crd_errors(job) == []
    node: Any = job
    for part in path:
        node = node[part]
    node[typo] = True
    errors = crd_errors(job)
    assert len(errors) == 1
    assert typo in errors[0]
    assert "unknown field" in errors[0]


def test_schema_errors_are_reported_too() -> None:
    job = _a_rayjob()
    job["spec"]["backoffLimit"] = "two"
    job["spec"]["rayClusterSpec"]["autoscalerOptions"] = {"upscalingMode": "Sometimes"}
    errors = crd_errors(job)
    assert any("backoffLimit" in e for e in errors)
    assert any("upscalingMode" in e for e in errors)


def test_preserve_unknown_fields_and_maps_accept_any_key() -> None:
    job = _a_rayjob()
    job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["any-ray-flag"] = "1"
    job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["metadata"]["labels"]["team"] = "ml"
    assert crd_errors(job) == []


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ray_jobs.train", exit_on_error=False)
    add_config_arguments(parser)
    return parser


def _entrypoints() -> list[str]:
    jobs = [o for c, _, v in MATRIX if c == "sentiray-train" for o in chart_objects(c, v) if o["kind"] == "RayJob"]
    jobs += [o for d in KUSTOMIZE_DIRS for o in kustomize_objects(d) if o["kind"] == "RayJob"]
    return [j["spec"]["entrypoint"] for j in jobs]


def test_entrypoints_use_only_real_training_flags() -> None:
    """Every RayJob entrypoint parses with the flags generated from sentiray/config.py."""
    assert "resume_if_exists" in FIELD_SECTION
    parser = _train_parser()
    for entrypoint in _entrypoints():
        argv = shlex.split(entrypoint)
        assert argv[:3] == ["python", "-m", "ray_jobs.train"]
        args = parser.parse_args(argv[3:])
        assert args.name == "sentiray-imdb"
        assert args.resume_if_exists is True


def test_plain_manifests_fit_their_pods() -> None:
    """Issue 13 items 5 and 9, on the plain manifests. Ray Train places one {CPU: cpus-per-worker} bundle per
    worker and KubeRay gives each Ray node its pod's CPU limit (common/pod.go generateRayStartCommand):
    the base RayJob asked 4 CPUs of 2-CPU workers and never scheduled. Serve replicas never span nodes:
    the base RayService's 2-CPU model replica filled a 2-CPU worker, so no ingress replica could share it."""
    from tests.kuberay_rules import entrypoint_bundles, ray_groups

    for directory in KUSTOMIZE_DIRS:
        objects = kustomize_objects(directory)
        job = next(o for o in objects if o["kind"] == "RayJob")
        parsed = entrypoint_bundles(job["spec"]["entrypoint"])
        assert parsed is not None
        bundle = parsed[0][0]
        worker = next(g for g in ray_groups(job) if g.node_type == "worker")
        assert bundle["CPU"] <= worker.ray_resources()["CPU"], directory.name
        service = next(o for o in objects if o["kind"] == "RayService")
        config = yaml.safe_load(service["spec"]["serveConfigV2"])
        options = {d["name"]: d["ray_actor_options"] for d in config["applications"][0]["deployments"]}
        together = options["SentimentModel"]["num_cpus"] + options["SentimentIngress"]["num_cpus"]
        serve_worker = next(g for g in ray_groups(service) if g.node_type == "worker")
        assert together <= serve_worker.ray_resources()["CPU"], directory.name
        # The serving head runs no replica: it mounts no model volume (one claim fewer to attach).
        head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
        assert not any("persistentVolumeClaim" in v for v in head["volumes"])
