"""The operator's run-time rules (tests/kuberay_rules.py) over everything the charts and manifests render:
no finding on any value set (defaults, the shared matrix, every ci/*.yaml, every enum choice of the
schemas) or kustomize overlay; and each rule catches the input it exists for."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import kuberay_rules as rules
from tests.k8s_support import CHARTS, KUSTOMIZE_DIRS, MATRIX, REPO, chart_objects, kustomize_objects

# Values an enum choice needs to be a working install (the chart refuses it alone, with a message).
COMPANIONS: dict[tuple[str, str, Any], dict[str, Any]] = {
    ("sentiray-train", "storage.type", "objectStore"): {"storage": {"objectStore": {"uri": "s3://b/runs"}}},
    ("sentiray-serve", "modelVolume.accessMode", "ReadWriteOnce"): {
        "worker": {"maxReplicas": 1},
        "serve": {"maxReplicas": 1},
        "upgradeStrategy": "None",
    },
    ("sentiray-serve", "modelVolume.accessMode", "ReadWriteOncePod"): {
        "worker": {"maxReplicas": 1},
        "serve": {"maxReplicas": 1},
        "upgradeStrategy": "None",
    },
    ("sentiray-train", "storage.pvc.accessModes", "ReadWriteOnce"): {"workers": {"replicas": 1}},
}
# Enum choices a chart refuses whatever else is set (tested in test_helm_charts' fail rules).
REFUSED = {
    ("sentiray-train", "storage.pvc.accessModes", "ReadWriteOncePod"),
    ("sentiray-train", "storage.pvc.accessModes", "ReadOnlyMany"),
}


def _nest(path: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for key in reversed(path.split(".")):
        out = {key: out}
    return dict(out)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _enum_choices(chart: str) -> list[tuple[str, dict[str, Any]]]:
    """A value set per choice of every enum in the chart's schema (an enum of array items: a one-item list)."""
    schema = json.loads((CHARTS / chart / "values.schema.json").read_text())
    out: list[tuple[str, dict[str, Any]]] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for key, sub in (node.get("properties") or {}).items():
            where = f"{path}.{key}" if path else key
            enum, as_list = sub.get("enum"), False
            if enum is None and isinstance(sub.get("items"), dict) and "enum" in sub["items"]:
                enum, as_list = sub["items"]["enum"], True
            for choice in enum or []:
                if (chart, where, choice) in REFUSED:
                    continue
                values = _nest(where, [choice] if as_list else choice)
                values = _merge(values, COMPANIONS.get((chart, where, choice), {}))
                out.append((f"{where}={choice}", values))
            walk(sub, where)

    walk(schema, "")
    return out


def _value_sets() -> list[tuple[str, str, dict[str, Any]]]:
    sets = [(chart, f"matrix-{variant}", values) for chart, variant, values in MATRIX]
    for chart in ("sentiray-serve", "sentiray-train"):
        sets += [
            (chart, f"ci-{p.stem}", yaml.safe_load(p.read_text()))
            for p in sorted((CHARTS / chart / "ci").glob("*.yaml"))
        ]
        sets += [(chart, f"enum-{name}", values) for name, values in _enum_choices(chart)]
    return sets


VALUE_SETS = _value_sets()


def _claims(chart: str, values: dict[str, Any]) -> dict[str, list[str]]:
    """The serve chart mounts a claim it does not create: its access mode is the one the values declare."""
    if chart != "sentiray-serve":
        return {}
    defaults = yaml.safe_load((CHARTS / chart / "values.yaml").read_text())
    volume = _merge(defaults["modelVolume"], values.get("modelVolume", {}))
    return {volume["claimName"]: [volume["accessMode"]]} if volume["claimName"] else {}


@pytest.mark.parametrize(("chart", "name", "values"), VALUE_SETS, ids=[f"{c}-{n}" for c, n, _ in VALUE_SETS])
def test_no_finding_on_any_rendered_value_set(chart: str, name: str, values: dict[str, Any]) -> None:
    assert rules.check(chart_objects(chart, values), claims=_claims(chart, values)) == []


def test_every_enum_and_every_ci_file_is_rendered() -> None:
    names = {n for _, n, _ in VALUE_SETS}
    assert {"enum-upgradeStrategy=None", "enum-storage.type=objectStore", "enum-job.submissionMode=HTTPMode"} <= names
    assert {"ci-kind-values", "ci-cpu-values", "ci-scale-to-zero-values", "ci-gpu-object-store-values"} <= names


KUSTOMIZE = [*KUSTOMIZE_DIRS, REPO / "k8s" / "score"]


@pytest.mark.parametrize("directory", KUSTOMIZE, ids=lambda d: str(d.relative_to(REPO)))
def test_no_finding_on_any_kustomize_overlay(directory: Path) -> None:
    assert rules.check(kustomize_objects(directory)) == []


# --- each rule catches what it exists for ---------------------------------------------------------


def _serve() -> list[dict[str, Any]]:
    return chart_objects("sentiray-serve", {"worker": {"minReplicas": 2, "replicas": 2}})


def _kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def _findings(objects: list[dict[str, Any]], rule: str, **kw: Any) -> list[str]:
    return [f for f in rules.check(objects, **kw) if f.startswith(f"{rule}:")]


def test_the_broken_inputs_start_clean() -> None:
    assert rules.check(_serve()) == []
    assert rules.check(chart_objects("sentiray-train")) == []


def test_validation_rule_catches_refusals() -> None:
    # validation.go ValidateClusterUpgradeOptions: incremental upgrade without its options.
    objects = _serve()
    _kind(objects, "RayService")["spec"]["upgradeStrategy"] = {"type": "NewClusterWithIncrementalUpgrade"}
    assert any("clusterUpgradeOptions" in f for f in _findings(objects, "validation"))
    objects = _serve()
    service = _kind(objects, "RayService")
    service["spec"]["upgradeStrategy"] = {
        "type": "NewClusterWithIncrementalUpgrade",
        "clusterUpgradeOptions": {
            "gatewayClassName": "istio",
            "stepSizePercent": 50,
            "maxSurgePercent": 25,
            "intervalSeconds": 30,
        },
    }
    assert any("stepSizePercent must not exceed" in f for f in _findings(objects, "validation"))
    # ValidateRayClusterSpec: min > max; token auth on an old Ray.
    objects = chart_objects("sentiray-train")
    cluster = _kind(objects, "RayJob")["spec"]["rayClusterSpec"]
    cluster["workerGroupSpecs"][0]["minReplicas"] = 3
    cluster["rayVersion"] = "2.40.0"
    found = _findings(objects, "validation")
    assert any("minReplicas 3 > maxReplicas 2" in f for f in found)
    assert any("2.52.0" in f for f in found)


def test_label_rule_catches_an_overridden_kuberay_label() -> None:
    objects = _serve()
    head = _kind(objects, "RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]
    head["metadata"]["labels"]["app.kubernetes.io/name"] = "sentiray-serve"
    found = _findings(objects, "labels")
    assert any("app.kubernetes.io/name=sentiray-serve over KubeRay's kuberay" in f for f in found)
    assert any("head Service KubeRay builds would select no head pod" in f for f in found)


def test_selector_rule_catches_a_selector_that_selects_nothing() -> None:
    objects = _serve()
    _kind(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = (
        "sentiray-serve"
    )
    assert _findings(objects, "selectors") == [
        "selectors: PodDisruptionBudget/rel-sentiray-serve-workers: selects no pod of this release"
    ]


def test_pdb_rule_catches_what_the_disruption_controller_cannot_count() -> None:
    objects = _serve()
    pdb = _kind(objects, "PodDisruptionBudget")["spec"]
    del pdb["minAvailable"]
    pdb["maxUnavailable"] = 1
    assert any("no /scale subresource" in f for f in _findings(objects, "pdb"))
    pdb.pop("maxUnavailable")
    pdb["minAvailable"] = 2  # both workers at the minimum: nothing may go
    assert any("minAvailable 2 >= the 2 pod(s)" in f for f in _findings(objects, "pdb"))
    # The rule reads the CRD: with a /scale subresource, maxUnavailable would be countable.
    pdb["minAvailable"] = 1
    pdb["maxUnavailable"] = 1
    assert not any("/scale" in f for f in _findings(objects, "pdb", crds={"RayCluster": {"scale": True}}))
    assert rules.crd_facts()["RayCluster"] == {"scale": False}


def test_shm_rule_catches_an_object_store_on_disk() -> None:
    objects = _serve()
    worker = _kind(objects, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    del worker["rayStartParams"]["object-store-memory"]  # Ray's default: 30% of 16Gi > 4Gi of /dev/shm
    assert any("object store 4.80 GiB > /dev/shm 4.00 GiB" in f for f in _findings(objects, "shm"))


def test_serve_rule_catches_replicas_that_fit_no_pod_or_not_all_at_max() -> None:
    objects = _serve()
    service = _kind(objects, "RayService")
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    config["applications"][0]["deployments"][1]["ray_actor_options"] = {"num_cpus": 8, "num_gpus": 1}
    service["spec"]["serveConfigV2"] = yaml.safe_dump(config)
    assert any("SentimentModel" in f and "fits no Ray pod" in f for f in _findings(objects, "serve"))
    # Autoscaling off with Serve's max_replicas above what the fixed workers hold (issue 13, item 9).
    objects = _serve()
    cluster = _kind(objects, "RayService")["spec"]["rayClusterConfig"]
    cluster["enableInTreeAutoscaling"] = False
    cluster.pop("autoscalerOptions")
    assert any("autoscaling off" in f for f in _findings(objects, "serve"))


def test_gpu_rule_catches_idle_cpus_and_a_stray_toleration() -> None:
    objects = chart_objects("sentiray-serve", {"rayActorOptions": {"SentimentModel": {"num_cpus": 1, "num_gpus": 1}}})
    assert any("reserves 4 CPUs but its replicas claim 1.1" in f for f in _findings(objects, "gpu"))
    objects = chart_objects(
        "sentiray-serve",
        {"worker": {"gpu": {"enabled": False}}, "rayActorOptions": {"SentimentModel": {"num_gpus": 0}}},
    )
    worker = _kind(objects, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    worker["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert any("tolerates the GPU taint but asks for no GPU" in f for f in _findings(objects, "gpu"))


def test_rayjob_rule_catches_train_workers_larger_than_the_pods() -> None:
    objects = chart_objects("sentiray-train")
    job = _kind(objects, "RayJob")["spec"]
    job["entrypoint"] = job["entrypoint"].replace("--cpus-per-worker 4", "--cpus-per-worker 8")
    assert any("2 train worker(s) of {'CPU': 8.0, 'GPU': 1.0}" in f for f in _findings(objects, "rayjob"))
    del job["preRunningDeadlineSeconds"]
    assert any("no preRunningDeadlineSeconds" in f for f in _findings(objects, "rayjob"))


def test_rayjob_rule_reads_the_scoring_flags_with_the_jobs_own_parser() -> None:
    objects = kustomize_objects(REPO / "k8s" / "score")
    job = _kind(objects, "RayJob")["spec"]
    assert _findings(objects, "rayjob") == []
    job["entrypoint"] += " --min-actors 64"
    assert any("64 scoring actor(s) of {'CPU': 2.0, 'GPU': 0.0}" in f for f in _findings(objects, "rayjob"))
    # A flag the job does not have is a broken entrypoint, not one the rule skips.
    job["entrypoint"] = job["entrypoint"].replace("--min-actors 64", "--actors 2")
    with pytest.raises(SystemExit):
        _findings(objects, "rayjob")


def test_volume_rule_catches_a_read_write_once_claim_on_several_nodes() -> None:
    objects = chart_objects(
        "sentiray-train", {"workers": {"replicas": 1}, "storage": {"pvc": {"accessModes": ["ReadWriteOnce"]}}}
    )
    assert _findings(objects, "volumes") == []  # the head follows the one worker onto its node
    head = _kind(objects, "RayJob")["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    del head["affinity"]
    assert any("ReadWriteOnce but up to 2 pods" in f for f in _findings(objects, "volumes"))
    # The serve chart's claim is not rendered with it: its mode comes from the values.
    serve = chart_objects("sentiray-serve")
    assert any("Multi-Attach" in f for f in _findings(serve, "volumes", claims={"sentiray-runs": ["ReadWriteOnce"]}))
    assert _findings(serve, "volumes", claims={"sentiray-runs": ["ReadWriteMany"]}) == []


def test_network_rule_catches_a_hard_wired_operator_namespace_and_open_gcs() -> None:
    objects = _serve()
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy")
    operator_rule = next(
        r for r in policy["spec"]["ingress"] if any("namespaceSelector" in p for p in r.get("from", []))
    )
    operator_rule["from"] = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kuberay-operator"}}}
    ]
    found = _findings(objects, "network")
    assert any("operator in namespace 'default' cannot reach the dashboard" in f for f in found)
    objects = _serve()
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy")
    policy["spec"]["ingress"][0]["from"] = [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "rel"}}}]
    found = _findings(objects, "network")
    assert any("test-predict (not a Ray pod) may reach port 6379" in f for f in found)


def test_stable_rule_and_cluster_hash() -> None:
    objects = _serve()
    worker = _kind(objects, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]
    worker["metadata"]["labels"]["helm.sh/chart"] = "sentiray-serve-0.1.0"
    assert any("helm.sh/chart" in f for f in _findings(objects, "stable"))
    # KubeRay's hash mutes replicas, min/max and tolerations, and sees labels.
    a, b = _kind(_serve(), "RayService"), _kind(_serve(), "RayService")
    b["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = 9
    b["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["tolerations"] = []
    assert rules.cluster_hash(a) == rules.cluster_hash(b)
    b["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["metadata"]["labels"]["x"] = "y"
    assert rules.cluster_hash(a) != rules.cluster_hash(b)
