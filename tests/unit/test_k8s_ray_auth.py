"""What the charts and manifests give KubeRay: Ray token auth on every cluster, credentials only from Secrets.

On Kubernetes the dashboard binds 0.0.0.0 (the operator and `ray job submit` reach it through a Service)
and Ray binds its other ports on the pod IP; KubeRay's `authOptions.mode: token` is what makes every one of
them ask for the token (KubeRay generates it into a Secret and sets RAY_AUTH_MODE/RAY_AUTH_TOKEN).
tests/integration/test_security.py shows, on a real local cluster, that Ray in token mode refuses clients
without it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.k8s_support import (
    KUBERAY_KINDS,
    KUSTOMIZE_DIRS,
    MATRIX,
    REPO,
    chart_objects,
    embedded_pods,
    kustomize_objects,
)

SCORE_DIR = REPO / "k8s" / "score"
# Variants that turn Ray auth off on purpose (a value the user sets; the default is on).
AUTH_OFF = "auth-off"
# Env vars that would carry a credential if given a literal value.
_CREDENTIAL = re.compile(r"(TOKEN|SECRET|PASSWORD|ACCESS_KEY(_ID)?|CREDENTIALS?)$")


def _rendered() -> list[tuple[str, list[dict[str, Any]]]]:
    out = [(f"{chart}-{variant}", chart_objects(chart, values)) for chart, variant, values in MATRIX]
    out += [(f"kustomize-{d.relative_to(REPO)}", kustomize_objects(d)) for d in [*KUSTOMIZE_DIRS, SCORE_DIR]]
    return out


RENDERED = _rendered()


def _cluster_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    cluster: dict[str, Any] = {"RayJob": spec.get("rayClusterSpec"), "RayService": spec.get("rayClusterConfig")}.get(
        obj["kind"], spec
    )
    return cluster


@pytest.mark.parametrize(("name", "objects"), RENDERED, ids=[n for n, _ in RENDERED])
def test_every_ray_cluster_requires_the_token(name: str, objects: list[dict[str, Any]]) -> None:
    clusters = [o for o in objects if o["kind"] in KUBERAY_KINDS]
    assert clusters, name
    for obj in clusters:
        cluster = _cluster_spec(obj)
        if name.endswith(AUTH_OFF):
            assert "authOptions" not in cluster
            continue
        assert cluster.get("authOptions") == {"mode": "token"}, (name, obj["metadata"]["name"])


@pytest.mark.parametrize(("name", "objects"), RENDERED, ids=[n for n, _ in RENDERED])
def test_no_pod_turns_ray_auth_off_or_carries_a_literal_credential(name: str, objects: list[dict[str, Any]]) -> None:
    pods = [p for o in objects if o["kind"] in KUBERAY_KINDS for p in embedded_pods(o)]
    pods += [
        {"metadata": o["metadata"], "spec": o["spec"]["template"]["spec"]}
        for o in objects
        if o["kind"] in ("Deployment", "Job", "StatefulSet")
    ]
    pods += [o for o in objects if o["kind"] == "Pod"]
    assert pods, name
    for pod in pods:
        for container in pod["spec"].get("containers", []) + pod["spec"].get("initContainers", []):
            for env in container.get("env", []):
                where = (name, pod["metadata"].get("name"), container["name"], env["name"])
                if env["name"] == "RAY_AUTH_MODE":
                    assert env.get("value") != "disabled", where
                if _CREDENTIAL.search(env["name"]) and "value" in env:
                    # Only a path to a mounted Secret may be spelled out, never the credential itself.
                    assert env["value"].startswith("/"), where
