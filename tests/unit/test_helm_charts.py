"""The Helm charts rendered by Helm v4's engine (helm-python-sdk): matrix, lint, schema, fail rules."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.k8s_support import CHARTS, MATRIX, chart_objects, render_chart

CHART_NAMES = ["sentiray-serve", "sentiray-train"]


def _by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.mark.parametrize(("chart", "variant", "values"), MATRIX, ids=[f"{c}-{v}" for c, v, _ in MATRIX])
def test_chart_renders_over_the_matrix(chart: str, variant: str, values: dict[str, Any]) -> None:
    objects = chart_objects(chart, values)
    kinds = {o["kind"] for o in objects}
    assert ("RayService" if chart == "sentiray-serve" else "RayJob") in kinds
    for obj in objects:
        assert obj["metadata"]["namespace"] == "ml", obj["metadata"]["name"]
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == chart
        assert labels["app.kubernetes.io/instance"] == "rel"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == f"{chart}-0.1.0"


@pytest.mark.parametrize("chart", CHART_NAMES)
def test_lint_is_clean(chart: str) -> None:
    report = helm.lint(str(CHARTS / chart), strict=True, kube_version="v1.32.0")
    assert report["errors"] == []
    assert report["messages"] == []


@pytest.mark.parametrize("chart", CHART_NAMES)
def test_every_value_is_documented(chart: str) -> None:
    """Every key of values.yaml has a `# --` comment above it, or is a section of such keys; keys inside a
    documented value (e.g. `resources.requests`) are part of that value."""
    lines = (CHARTS / chart / "values.yaml").read_text().splitlines()
    key = re.compile(r"^(\s*)(?:- )?([A-Za-z][A-Za-z0-9./-]*):")
    undocumented: list[str] = []
    documented_at: list[int] = []  # indents of documented keys enclosing the current line
    for i, line in enumerate(lines):
        m = key.match(line)
        if not m:
            continue
        indent = len(m.group(1))
        documented_at = [d for d in documented_at if d < indent]
        if documented_at:
            continue
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#") and not lines[j].strip().startswith("# --"):
            j -= 1
        if j >= 0 and j < i and lines[j].strip().startswith("# --"):
            documented_at.append(indent)
            continue
        child = next((ln for ln in lines[i + 1 :] if ln.strip() and not ln.strip().startswith("#")), "")
        is_section = line.rstrip().endswith(":") and len(child) - len(child.lstrip()) > indent
        if not is_section:
            undocumented.append(line.strip())
    assert undocumented == []


@pytest.mark.parametrize("chart", CHART_NAMES)
def test_schema_covers_every_default_key(chart: str) -> None:
    """The schema refuses unknown keys, so every default key must be declared in it."""
    schema = json.loads((CHARTS / chart / "values.schema.json").read_text())
    values = yaml.safe_load((CHARTS / chart / "values.yaml").read_text())

    def walk(value: Any, sch: dict[str, Any], path: str) -> list[str]:
        if not isinstance(value, dict) or "properties" not in sch:
            return []
        missing = [f"{path}{k}" for k in value if k not in sch["properties"]]
        for k, v in value.items():
            if k in sch["properties"]:
                missing += walk(v, sch["properties"][k], f"{path}{k}.")
        return missing

    assert walk(values, schema, "") == []
    helm.Chart.load(str(CHARTS / chart)).validate_schema({})


# Each schema rule with a bad value; the error names the key.
SCHEMA_REFUSALS = [
    ("sentiray-serve", {"worker": {"replicas": -1}}, "/worker/replicas"),
    ("sentiray-serve", {"worker": {"maxReplicas": 0}}, "/worker/maxReplicas"),
    ("sentiray-serve", {"replicaCount": 2}, "replicaCount"),
    ("sentiray-serve", {"worker": {"gpus": 1}}, "gpus"),
    ("sentiray-serve", {"image": {"repository": ""}}, "/image/repository"),
    ("sentiray-serve", {"image": None}, "image"),
    ("sentiray-serve", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ("sentiray-serve", {"upgradeStrategy": "BlueGreen"}, "/upgradeStrategy"),
    ("sentiray-serve", {"autoscaling": {"enabled": "yes"}}, "/autoscaling/enabled"),
    ("sentiray-serve", {"rayActorOptions": {"SentimentModel": {"num_gpus": -1}}}, "num_gpus"),
    # Issue 13 item 1: a budget over Ray pods cannot use maxUnavailable (RayCluster has no /scale
    # subresource; Kubernetes disruption controller getExpectedPodCount): the key is gone.
    ("sentiray-serve", {"podDisruptionBudget": {"maxUnavailable": 1}}, "maxUnavailable"),
    # Item 2: KubeRay's ValidateClusterUpgradeOptions refuses NewClusterWithIncrementalUpgrade without
    # clusterUpgradeOptions and an autoscaler (validation.go); the chart does not offer it.
    ("sentiray-serve", {"upgradeStrategy": "NewClusterWithIncrementalUpgrade"}, "/upgradeStrategy"),
    ("sentiray-serve", {"serve": {"minReplicas": -1}}, "/serve/minReplicas"),
    ("sentiray-serve", {"serve": {"maxBatchSize": 0}}, "/serve/maxBatchSize"),
    ("sentiray-serve", {"modelVolume": {"accessMode": "ReadSometimes"}}, "/modelVolume/accessMode"),
    # Promotion: a run's artifact always goes to its own folder; no --output to overwrite another.
    ("sentiray-train", {"job": {"output": "/mnt/sentiray/runs/served/artifact"}}, "output"),
    ("sentiray-serve", {"metricsPort": 70000}, "/metricsPort"),
    ("sentiray-train", {"workers": {"replicas": 0}}, "/workers/replicas"),
    ("sentiray-train", {"workers": {"replicas": "two"}}, "/workers/replicas"),
    ("sentiray-train", {"job": {"backoffLimit": -1}}, "/job/backoffLimit"),
    ("sentiray-train", {"job": {"submissionMode": "InteractiveMode"}}, "/job/submissionMode"),
    ("sentiray-train", {"job": {"config": {"precision": "int8"}}}, "/job/config/precision"),
    ("sentiray-train", {"job": {"config": {"maxLength": 8}}}, "/job/config/maxLength"),
    ("sentiray-train", {"job": {"config": {"numWorkers": 3}}}, "numWorkers"),
    ("sentiray-train", {"job": {"runName": "bad name"}}, "/job/runName"),
    ("sentiray-train", {"storage": {"type": "nfs"}}, "/storage/type"),
    (
        "sentiray-train",
        {"storage": {"pvc": {"accessModes": ["ReadWriteSometimes"]}}},
        "/storage/pvc/accessModes",
    ),
    ("sentiray-train", {"image": {"repository": ""}}, "/image/repository"),
]


@pytest.mark.parametrize(("chart", "values", "key"), SCHEMA_REFUSALS, ids=[k for _, _, k in SCHEMA_REFUSALS])
def test_schema_refuses_bad_values(chart: str, values: dict[str, Any], key: str) -> None:
    with pytest.raises(helm.HelmValuesError) as err:
        render_chart(chart, values)
    assert key in str(err.value)


# Cross-field rules (`fail` in the templates); the message names the key.
FAIL_RULES = [
    (
        "sentiray-serve",
        {"worker": {"minReplicas": 5, "maxReplicas": 4}},
        "worker.minReplicas (5) must not be above",
    ),
    ("sentiray-serve", {"worker": {"replicas": 9}}, "worker.replicas (9) must lie between"),
    ("sentiray-serve", {"worker": {"gpu": {"enabled": False}}}, "rayActorOptions.SentimentModel.num_gpus"),
    ("sentiray-serve", {"apiAuth": {"enabled": True}}, "apiAuth.existingSecret is required"),
    ("sentiray-serve", {"ingress": {"enabled": True}}, "ingress.host is required"),
    (
        "sentiray-serve",
        {"ingress": {"enabled": True, "host": "a.example.com"}},
        "ingress.tls.secretName is required",
    ),
    (
        "sentiray-serve",
        {"gcsFaultTolerance": {"enabled": True}},
        "gcsFaultTolerance.redisAddress is required",
    ),
    (
        "sentiray-serve",
        {"worker": {"replicas": 2, "minReplicas": 2}, "podDisruptionBudget": {"minAvailable": 2}},
        "podDisruptionBudget.minAvailable (2) must be below worker.minReplicas (2)",
    ),
    # Item 3: one ReadWriteOnce claim on several worker pods fails with Multi-Attach (Kubernetes
    # attach/detach controller); a NewCluster upgrade doubles them.
    (
        "sentiray-serve",
        {"modelVolume": {"accessMode": "ReadWriteOnce"}},
        "modelVolume.accessMode ReadWriteOnce attaches to one node, but up to 8 worker pods",
    ),
    (
        "sentiray-serve",
        {"modelVolume": {"accessMode": "ReadWriteOncePod"}, "worker": {"maxReplicas": 1}},
        "modelVolume.accessMode ReadWriteOncePod admits one pod, but up to 2",
    ),
    ("sentiray-serve", {"model": {"uri": "/data/artifact"}}, "model.uri /data/artifact is a path outside"),
    # Item 9: without the autoscaler no pod is added, so Serve replicas above the fixed workers wait forever.
    (
        "sentiray-serve",
        {"autoscaling": {"enabled": False}, "serve": {"maxReplicas": 4}},
        "serve.maxReplicas (4) model replicas do not fit the 1 fixed worker(s) (room for 1)",
    ),
    ("sentiray-serve", {"serve": {"minReplicas": 5}}, "serve.minReplicas (5) must not be above serve.maxReplicas (4)"),
    (
        "sentiray-serve",
        {"serve": {"maxBatchSize": 128}},
        "serve.maxBatchSize (128) is above SentimentModel's max_ongoing_requests (64)",
    ),
    (
        "sentiray-serve",
        {"serve": {"modelDeployment": "Tokenizer"}},
        'serve.modelDeployment "Tokenizer" is not a deployment',
    ),
    # Item 7: Ray's object store (80% of /dev/shm) needs 75 MiB; /dev/shm is charged to the memory limit.
    ("sentiray-serve", {"worker": {"shmSize": "64Mi"}}, "worker.shmSize (64Mi) must be at least 100Mi"),
    ("sentiray-train", {"head": {"shmSize": "8Gi"}}, "head.shmSize (8Gi) must be below the memory limit"),
    (
        "sentiray-train",
        {"workers": {"replicas": 2}, "storage": {"pvc": {"accessModes": ["ReadWriteOnce"]}}},
        "storage.pvc.accessModes [ReadWriteOnce] cannot be shared",
    ),
    ("sentiray-train", {"storage": {"type": "objectStore"}}, "storage.objectStore.uri is required"),
    (
        "sentiray-train",
        {"workers": {"replicas": 1}, "storage": {"pvc": {"accessModes": ["ReadWriteOncePod"]}}},
        "storage.pvc.accessModes ReadWriteOncePod admits one pod",
    ),
    (
        "sentiray-train",
        {"storage": {"pvc": {"accessModes": ["ReadOnlyMany"]}}, "workers": {"replicas": 1}},
        "storage.pvc.accessModes [ReadOnlyMany] cannot be written",
    ),
    # Item 5: Ray Train's workers reserve cpusPerWorker each; above the pod's CPUs they never schedule.
    ("sentiray-train", {"workers": {"cpusPerWorker": 8}}, "workers.cpusPerWorker (8) is above the 6 CPUs"),
    (
        "sentiray-train",
        {"job": {"shutdownAfterJobFinishes": False}},
        "job.ttlSecondsAfterFinished only applies",
    ),
]


@pytest.mark.parametrize(("chart", "values", "message"), FAIL_RULES, ids=[m.split(" ")[0] for *_, m in FAIL_RULES])
def test_cross_field_rules_fail_with_the_key(chart: str, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError) as err:
        render_chart(chart, values)
    assert message in str(err.value)


def test_training_accepts_read_write_once_with_one_worker_beside_the_head() -> None:
    """Issue 13 item 3: head and worker both mount the claim; a ReadWriteOnce claim attaches to one node
    (Multi-Attach otherwise), so the head follows the one worker onto its node by a required pod affinity,
    tolerating the GPU taint to get there (KubeRay creates workers without waiting for the head:
    raycluster_controller.go reconcilePods)."""
    objects = chart_objects(
        "sentiray-train", {"workers": {"replicas": 1}, "storage": {"pvc": {"accessModes": ["ReadWriteOnce"]}}}
    )
    assert _by_kind(objects, "PersistentVolumeClaim")[0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    cluster = _by_kind(objects, "RayJob")[0]["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]
    term = head["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    worker_labels = cluster["workerGroupSpecs"][0]["template"]["metadata"]["labels"]
    assert term["labelSelector"]["matchLabels"].items() <= worker_labels.items()
    assert head["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    # The serving head runs no replica, so it mounts no model claim: one pod fewer on the claim.
    serve = _by_kind(chart_objects("sentiray-serve"), "RayService")[0]["spec"]["rayClusterConfig"]
    assert "model" not in {v["name"] for v in serve["headGroupSpec"]["template"]["spec"]["volumes"]}
    assert "model" in {v["name"] for v in serve["workerGroupSpecs"][0]["template"]["spec"]["volumes"]}
    rwx = _by_kind(chart_objects("sentiray-train"), "RayJob")[0]["spec"]["rayClusterSpec"]
    assert not {"affinity", "tolerations"} & set(rwx["headGroupSpec"]["template"]["spec"])


def _pod_specs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from tests.k8s_support import embedded_pods

    specs = [p["spec"] for o in objects if o["kind"] in ("RayJob", "RayService") for p in embedded_pods(o)]
    specs += [o["spec"]["template"]["spec"] for o in _by_kind(objects, "Deployment")]
    specs += [o["spec"] for o in _by_kind(objects, "Pod")]
    return specs


@pytest.mark.parametrize(("chart", "variant", "values"), MATRIX, ids=[f"{c}-{v}" for c, v, _ in MATRIX])
def test_secure_by_default(chart: str, variant: str, values: dict[str, Any]) -> None:
    for spec in _pod_specs(chart_objects(chart, values)):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert c["resources"]["limits"]
            assert c["resources"]["requests"]
            for e in c.get("env", []):
                assert "secretKeyRef" not in e.get("valueFrom", {}), "secrets are mounted as files"
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        if "shm" in volumes:
            assert volumes["shm"]["emptyDir"]["medium"] == "Memory"


def test_ray_pods_have_writable_ray_and_cache_dirs() -> None:
    objects = chart_objects("sentiray-serve")
    for spec in _pod_specs(_by_kind(objects, "RayService")):
        ray = spec["containers"][0]
        mounts = {m["mountPath"] for m in ray["volumeMounts"]}
        assert {"/tmp", "/dev/shm", "/home/ray/.cache"} <= mounts
        assert {"name": "HF_HOME", "value": "/home/ray/.cache/huggingface"} in ray["env"]


def test_gpu_workers_ask_for_gpus_and_tolerate_the_taint() -> None:
    service = _by_kind(chart_objects("sentiray-serve"), "RayService")[0]
    group = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert (group["minReplicas"], group["maxReplicas"]) == (1, 4)
    pod = group["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"]["upscalingMode"] == "Default"
    assert service["spec"]["upgradeStrategy"]["type"] == "NewCluster"

    job = _by_kind(chart_objects("sentiray-train"), "RayJob")[0]
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert workers["replicas"] == workers["minReplicas"] == workers["maxReplicas"] == 2
    assert workers["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "--use-gpu" in job["spec"]["entrypoint"].split()


def test_cpu_variant_has_no_gpu() -> None:
    from tests.k8s_support import SERVE_MATRIX, TRAIN_MATRIX

    for chart, values in (("sentiray-serve", SERVE_MATRIX["cpu"]), ("sentiray-train", TRAIN_MATRIX["cpu"])):
        text = yaml.safe_dump(chart_objects(chart, values))
        assert "nvidia.com/gpu" not in text
    # Issue 13 item 9: the GPU toleration follows gpu.enabled, without clearing `tolerations` by hand.
    for chart, values in (
        (
            "sentiray-serve",
            {"worker": {"gpu": {"enabled": False}}, "rayActorOptions": {"SentimentModel": {"num_gpus": 0}}},
        ),
        ("sentiray-train", {"workers": {"gpu": {"enabled": False}}}),
    ):
        assert "nvidia.com/gpu" not in yaml.safe_dump(chart_objects(chart, values))


def test_rayjob_lifecycle_and_shared_storage() -> None:
    job = _by_kind(chart_objects("sentiray-train"), "RayJob")[0]
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] == 300
    assert spec["backoffLimit"] == 2
    assert spec["activeDeadlineSeconds"] == 21600
    argv = spec["entrypoint"].split()
    assert argv[:3] == ["python", "-m", "ray_jobs.train"]
    assert argv[argv.index("--name") + 1] == "sentiray-imdb"
    assert "--resume-if-exists" in argv
    assert argv[argv.index("--storage-path") + 1] == "/mnt/sentiray/runs"
    cluster = spec["rayClusterSpec"]
    for template in [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]:
        claims = [
            v["persistentVolumeClaim"]["claimName"] for v in template["spec"]["volumes"] if "persistentVolumeClaim" in v
        ]
        assert claims == ["sentiray-runs"]


def test_ray_token_authentication_follows_values() -> None:
    on = _by_kind(chart_objects("sentiray-serve"), "RayService")[0]
    assert on["spec"]["rayClusterConfig"]["authOptions"] == {"mode": "token"}
    off = _by_kind(chart_objects("sentiray-serve", {"rayAuth": {"enabled": False}}), "RayService")[0]
    assert "authOptions" not in off["spec"]["rayClusterConfig"]
    job = _by_kind(chart_objects("sentiray-train"), "RayJob")[0]
    assert job["spec"]["rayClusterSpec"]["authOptions"] == {"mode": "token"}


def _ports(rule: dict[str, Any]) -> set[int]:
    return {p["port"] for p in rule.get("ports", [])}


@pytest.mark.parametrize("chart", CHART_NAMES)
def test_network_policy_keeps_control_ports_in_the_namespace(chart: str) -> None:
    policy = next(o for o in _by_kind(chart_objects(chart), "NetworkPolicy") if o["metadata"]["name"].endswith("-ray"))
    rules = policy["spec"]["ingress"]
    for rule in rules:
        peers = rule.get("from")
        if peers is None:  # open to all: the serve port only
            assert _ports(rule) == {8000}
            continue
        if not rule.get("ports"):  # every port: the release's Ray pods only
            assert [p["podSelector"]["matchExpressions"] for p in peers] == [
                [{"key": "app.kubernetes.io/component", "operator": "In", "values": ["ray-head", "ray-worker"]}]
            ]
        # GCS (6379) is reachable from the Ray pods only, never from the namespace or outside it.
        elif 6379 in _ports(rule):
            raise AssertionError(rule)
    # Issue 13 item 4: the operator is allowed by its pod labels in any namespace (its quickstart installs
    # it in the current one); KubeRay's Helm chart and kustomize base both set this component label.
    operator = next(r for r in rules if any("namespaceSelector" in p and "podSelector" in p for p in r.get("from", [])))
    assert operator["from"] == [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/component": "kuberay-operator"}}}
    ]
    assert _ports(operator) == {8265}
    monitoring = [
        r
        for r in rules
        if any(
            p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "monitoring"
            for p in r.get("from", [])
        )
    ]
    assert len(monitoring) == 1 and 8080 in _ports(monitoring[0])
    scoped = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ray-system"}}, "podSelector": {}}
    other = chart_objects(chart, {"networkPolicy": {"operator": scoped}})
    assert "ray-system" in yaml.safe_dump(_by_kind(other, "NetworkPolicy"))


def test_pdb_only_where_it_can_work() -> None:
    """Issue 13 item 1: Ray pods are owned by a RayCluster, which has no /scale subresource, so the
    disruption controller (Kubernetes pkg/controller/disruption, getExpectedPodCount) can apply only an
    integer minAvailable; with one worker any budget only blocks drains (KubeRay issue 2662)."""
    assert _by_kind(chart_objects("sentiray-serve"), "PodDisruptionBudget") == []
    objects = chart_objects("sentiray-serve", {"worker": {"minReplicas": 3, "replicas": 3}})
    pdb = _by_kind(objects, "PodDisruptionBudget")[0]["spec"]
    assert "maxUnavailable" not in pdb
    assert pdb["minAvailable"] == 2
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    worker = _by_kind(objects, "RayService")[0]["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert pdb["selector"]["matchLabels"].items() <= worker["template"]["metadata"]["labels"].items()
    assert pdb["selector"]["matchLabels"]["app.kubernetes.io/component"] == "ray-worker"


def _templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = obj["spec"].get("rayClusterConfig") or obj["spec"]["rayClusterSpec"]
    return [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]


@pytest.mark.parametrize("chart", CHART_NAMES)
def test_ray_pods_keep_kuberays_labels(chart: str) -> None:
    """Issue 13 item 6: KubeRay's labelPod (common/pod.go) lets a template label override its own
    app.kubernetes.io/name=kuberay, and the <name>-head-svc it builds selects on it (common/service.go
    HeadServiceLabels; KubeRay issues 2648, 2564). Ray pod templates must not set it, nor the chart's
    version labels (item 8: they would change KubeRay's cluster hash on every chart bump)."""
    obj = next(o for o in chart_objects(chart) if o["kind"] in ("RayService", "RayJob"))
    for template in _templates(obj):
        labels = template["metadata"]["labels"]
        assert not {
            "app.kubernetes.io/name",
            "app.kubernetes.io/created-by",
            "helm.sh/chart",
            "app.kubernetes.io/version",
        } & set(labels)
        assert labels["app.kubernetes.io/instance"] == "rel"


def test_object_store_memory_follows_shm() -> None:
    """Issue 13 item 7: Ray 2.60 puts the object store (default 30% of the memory) on disk when /dev/shm is
    smaller (ray/_private/services.py determine_plasma_store_config): the chart sets it from shmSize."""
    for chart in CHART_NAMES:
        obj = next(o for o in chart_objects(chart) if o["kind"] in ("RayService", "RayJob"))
        cluster = obj["spec"].get("rayClusterConfig") or obj["spec"]["rayClusterSpec"]
        for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
            shm = next(v for v in group["template"]["spec"]["volumes"] if v["name"] == "shm")["emptyDir"]["sizeLimit"]
            gib = float(shm.removesuffix("Gi")) * 2**30
            assert int(group["rayStartParams"]["object-store-memory"]) == round(gib * 0.8)


def test_optional_objects_when_enabled() -> None:
    from tests.k8s_support import SERVE_MATRIX

    objects = chart_objects("sentiray-serve", SERVE_MATRIX["everything-on"])
    ingress = _by_kind(objects, "Ingress")[0]
    assert ingress["spec"]["tls"] == [{"hosts": ["sentiray.example.com"], "secretName": "sentiray-tls"}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "rel-sentiray-serve-serve-svc", "port": {"number": 8000}}
    assert {o["kind"] for o in objects} >= {"PodMonitor", "ServiceMonitor", "Deployment", "Service"}
    cluster = _by_kind(objects, "RayService")[0]["spec"]["rayClusterConfig"]
    assert cluster["gcsFaultToleranceOptions"] == {
        "redisAddress": "redis.storage:6379",
        "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "redis-password", "key": "password"}}},
    }
    ui = _by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]
    # Listening on 0.0.0.0 inside the pod: the probes and the Service reach it on the pod IP.
    assert ui["containers"][0]["command"] == [
        "sentiray",
        "ui",
        "--host",
        "0.0.0.0",
        "--port",
        "8501",
        "--endpoint",
        "http://rel-sentiray-serve-serve-svc:8000",
    ]
    assert ui["automountServiceAccountToken"] is False
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in head["env"]}
    assert env["SENTIRAY_API_TOKEN_FILE"] == "/var/run/secrets/sentiray/api-token/token"
    assert env["HF_TOKEN_PATH"] == "/var/run/secrets/sentiray/hub-token/token"
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == "/var/run/secrets/sentiray/object-store/credentials"
    assert head["image"] == "sentiray@sha256:" + "a" * 64
    default_kinds = {o["kind"] for o in chart_objects("sentiray-serve")}
    assert not default_kinds & {"Ingress", "PodMonitor", "ServiceMonitor", "Deployment"}


def test_helm_test_pod_calls_health_and_predict() -> None:
    pod = next(
        o
        for o in chart_objects("sentiray-serve", {"apiAuth": {"enabled": True, "existingSecret": "tok"}})
        if o["kind"] == "Pod"
    )
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert '"/health"' in script
    assert '"/predict"' in script
    assert '"inputs"' in script
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["ENDPOINT"] == "http://rel-sentiray-serve-serve-svc.ml.svc:8000"
    # Issue 13 item 11: a small Python image, not the multi-GB project image.
    assert pod["spec"]["containers"][0]["image"] == "python:3.12-slim"
    assert env["SENTIRAY_API_TOKEN_FILE"].endswith("/token")
    compile(script, "helm-test", "exec")


@pytest.mark.parametrize("chart", CHART_NAMES)
def test_notes_say_how_to_follow(chart: str) -> None:
    notes = render_chart(chart)[f"{chart}/templates/NOTES.txt"]
    assert "--reuse-values" not in notes  # issue 13 item 11: it keeps stale defaults across chart versions
    if chart == "sentiray-serve":
        assert "port-forward svc/rel-sentiray-serve-serve-svc 8000:8000" in notes
        assert "helm test rel" in notes
        assert "--set model.uri=" in notes
        assert "any namespace" in notes
    else:
        assert "sentiray k8s status --job rel-sentiray-train" in notes
        assert "logs -f job/rel-sentiray-train" in notes


def test_long_release_names_are_cut_for_kuberay() -> None:
    name = "a-very-long-release-name-for-the-sentiment-service"
    service = _by_kind(chart_objects("sentiray-serve", release=name), "RayService")[0]
    assert len(service["metadata"]["name"]) <= 40
    for obj in chart_objects("sentiray-serve", release=name):
        assert len(obj["metadata"]["name"]) <= 63


@pytest.mark.parametrize("chart", CHART_NAMES)
def test_readme_lists_the_values(chart: str) -> None:
    """The README's table is the one generated from values.yaml (see tests.k8s_support.values_table)."""
    from tests.k8s_support import values_table

    assert values_table(chart) in (CHARTS / chart / "README.md").read_text()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def test_training_schema_follows_the_job_config() -> None:
    """Every data/model/optim option of the job, and every preset, can be set through the chart."""
    from sentiray.config import PRESETS, SECTIONS

    job = json.loads((CHARTS / "sentiray-train" / "values.schema.json").read_text())["properties"]["job"]
    declared = set(job["properties"]["config"]["properties"])
    # The run section is the chart's own (workers, storage, name, resume): set through its other keys.
    options = {_camel(f) for section in ("data", "model", "optim") for f in SECTIONS[section].model_fields}
    assert options - declared == set()
    assert set(job["properties"]["preset"]["enum"]) == set(PRESETS)


def test_training_options_reach_the_job_parser() -> None:
    """The cpu preset with the recipe's switches set explicitly renders into flags the job accepts."""
    from ray_jobs.train import build_parser
    from sentiray.config import config_from_namespace

    values = {"job": {"preset": "cpu", "config": {"groupByLength": False, "freezeLayers": 2, "maxLength": 200}}}
    job = _by_kind(chart_objects("sentiray-train", values), "RayJob")[0]
    argv = job["spec"]["entrypoint"].split()[3:]
    cfg = config_from_namespace(build_parser().parse_args(argv))
    assert (cfg.optim.group_by_length, cfg.optim.freeze_layers, cfg.model.max_length) == (False, 2, 200)
    assert cfg.optim.eval_every_steps == 400  # the rest comes from the cpu preset


def test_ingress_allows_the_apps_body_limit() -> None:
    """Issue 13 item 11: ingress-nginx refuses bodies above 1m, below serve/config.yaml's max_body_bytes."""
    from tests.k8s_support import SERVE_MATRIX

    ingress = _by_kind(chart_objects("sentiray-serve", SERVE_MATRIX["everything-on"]), "Ingress")[0]
    limit = yaml.safe_load((CHARTS / "sentiray-serve" / "files" / "serve-config.yaml").read_text())
    max_body = limit["applications"][0]["args"]["max_body_bytes"]
    size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert int(size.removesuffix("m")) * 2**20 > max_body
    mine = {"nginx.ingress.kubernetes.io/proxy-body-size": "50m"}
    values = {
        **SERVE_MATRIX["everything-on"],
        "ingress": {**SERVE_MATRIX["everything-on"]["ingress"], "annotations": mine},
    }
    assert _by_kind(chart_objects("sentiray-serve", values), "Ingress")[0]["metadata"]["annotations"] == mine


@pytest.mark.parametrize("chart", CHART_NAMES)
def test_service_account_and_head_metrics(chart: str) -> None:
    """Issue 13 item 11: a service account for workload identity; the autoscaler's and dashboard's metrics
    (Ray's AUTOSCALER_METRIC_PORT 44217, DASHBOARD_METRIC_PORT 44227) are scraped on the head."""
    objects = chart_objects(
        chart, {"serviceAccountName": "sentiray-sa", "monitoring": {"podMonitor": {"enabled": True}}}
    )
    obj = next(o for o in objects if o["kind"] in ("RayService", "RayJob"))
    for template in _templates(obj):
        assert template["spec"]["serviceAccountName"] == "sentiray-sa"
    head_ports = {p["name"]: p["containerPort"] for p in _templates(obj)[0]["spec"]["containers"][0]["ports"]}
    monitor = _by_kind(objects, "PodMonitor")[0]["spec"]
    scraped = {e["port"] for e in monitor["podMetricsEndpoints"]}
    assert head_ports["dash-metrics"] == 44227 and "dash-metrics" in scraped
    if chart == "sentiray-serve":
        assert head_ports["as-metrics"] == 44217 and "as-metrics" in scraped
    assert all(
        "serviceAccountName" not in t["spec"]
        for t in _templates(next(o for o in chart_objects(chart) if o["kind"] in ("RayService", "RayJob")))
    )


def test_ray_containers_bound_slow_request_headers() -> None:
    """Issue 14 item 8 on the cluster: Serve's proxy (ray/serve/_private/proxy.py) calls the function named
    by RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH at start; ours puts a deadline on request headers. Every
    Ray container of the chart's RayService (the head's proxy and each worker's) and of the plain manifests
    sets it, and the import path resolves to the installer in this package."""
    import importlib

    from tests.k8s_support import REPO, kustomize_objects

    chart = [o for o in chart_objects("sentiray-serve", {"serve": {"headerTimeoutS": 7}}) if o["kind"] == "RayService"]
    plain = [o for o in kustomize_objects(REPO / "k8s/base") if o["kind"] == "RayService"]
    assert len(chart) == len(plain) == 1
    for service, timeout_s in ((chart[0], 7.0), (plain[0], 10.0)):
        for template in _templates(service):
            env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
            module, _, name = env["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"].partition(":")
            assert callable(getattr(importlib.import_module(module), name))
            assert float(env["SENTIRAY_HEADER_TIMEOUT_S"]) == timeout_s
