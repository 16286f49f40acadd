"""Validation helpers for the Kubernetes packaging: render charts with the real Helm engine, validate
core objects against the Kubernetes schemas and KubeRay objects strictly against the CRD schemas,
turn the Ray pod templates inside custom resources into Pods for scanners, and run checkov.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[1]
CHARTS = REPO / "helm"
KUSTOMIZE_DIRS = [REPO / "k8s" / "base", REPO / "k8s" / "overlays" / "cpu", REPO / "k8s" / "overlays" / "gpu"]
KUBE_VERSION = "1.32.0"  # the kubectl client of the development machine; KubeRay 1.7 supports it
KUBERAY_KINDS = {"RayJob", "RayService", "RayCluster"}
# Kinds whose schemas are not available offline (Prometheus Operator CRDs): checked for shape only.
UNCHECKED_KINDS = {"PodMonitor", "ServiceMonitor"}


def crd_dir() -> Path:
    """KubeRay CRD folder: $SENTIRAY_KUBERAY_CRDS, else ../shared/kuberay/crds beside the repository."""
    env = os.environ.get("SENTIRAY_KUBERAY_CRDS")
    return Path(env) if env else REPO.parent / "shared" / "kuberay" / "crds"


# --- rendering -----------------------------------------------------------------------------------


def render_chart(
    chart: str, values: dict[str, Any] | None = None, *, release: str = "rel", namespace: str = "ml"
) -> dict[str, str]:
    """Template path -> rendered text, by Helm v4's engine (schema validated first, as install does)."""
    import helm_python as helm

    with helm.Chart.load(str(CHARTS / chart)) as loaded:
        loaded.validate_schema(values or {})
        return loaded.render(values or {}, name=release, namespace=namespace, is_install=True)


def chart_objects(chart: str, values: dict[str, Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
    """The Kubernetes objects a chart renders (NOTES.txt left out, test hooks included); a fresh copy."""
    key = json.dumps([chart, values or {}, kw], sort_keys=True)
    return copy.deepcopy(_chart_objects(key))


@functools.cache
def _chart_objects(key: str) -> list[dict[str, Any]]:
    chart, values, kw = json.loads(key)
    docs = []
    for path, text in sorted(render_chart(chart, values, **kw).items()):
        if not path.endswith(".txt"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def kustomize_objects(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR` parsed; a fresh copy."""
    return copy.deepcopy(_kustomize_objects(str(directory)))


@functools.cache
def _kustomize_objects(directory: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", directory], check=True, capture_output=True, text=True, timeout=60
    )
    return [d for d in yaml.safe_load_all(out.stdout) if d]


# --- strict CRD validation -----------------------------------------------------------------------


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every served version of the CRDs in crd_dir()."""
    folder = crd_dir()
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(folder.glob("*.yaml")):
        # libyaml: the three CRDs are 3 MB of YAML (30 s with the pure-Python loader, 5 s with it).
        for crd in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    if not schemas:
        raise FileNotFoundError(f"no CRDs under {folder} (set SENTIRAY_KUBERAY_CRDS)")
    return schemas


def _to_json_schema(schema: Any) -> Any:
    """OpenAPI v3 (structural) -> JSON Schema: `nullable` becomes a null type."""
    if isinstance(schema, list):
        return [_to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _to_json_schema(v) for k, v in schema.items()}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def unknown_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the schema does not declare: the API server prunes them silently (or refuses them with
    strict field validation), so a misspelt field would be lost. Subtrees marked
    x-kubernetes-preserve-unknown-fields, and maps (additionalProperties), accept any key."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    errors: list[str] = []
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            sub = f"{path}.{key}" if path else key
            if props is not None and key in props:
                errors += unknown_fields(value, props[key], sub)
            elif isinstance(extra, dict):
                errors += unknown_fields(value, extra, sub)
            elif props is not None or extra is False:
                errors.append(f"{sub}: unknown field (not in the schema)")
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            errors += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return errors


def crd_errors(obj: dict[str, Any]) -> list[str]:
    """Every schema violation and undeclared field of a KubeRay object (empty: valid)."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    schemas = crd_schemas()
    if key not in schemas:
        return [f"no CRD schema for {key[0]} {key[1]} under {crd_dir()}"]
    schema = schemas[key]
    validator = jsonschema.Draft7Validator(_to_json_schema(schema))
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in validator.iter_errors(obj)
    ]
    # metadata is `type: object` in CRD schemas; the API server checks it as ObjectMeta.
    body = {k: v for k, v in obj.items() if k != "metadata"}
    return errors + unknown_fields(body, schema)


# --- core objects --------------------------------------------------------------------------------


def core_errors(obj: dict[str, Any], version: str = KUBE_VERSION) -> list[str]:
    """kubernetes-validate in strict mode (unknown fields are errors)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(str(p) for p in e.path) or '<root>'}: {e.message}"]
    return []


def validate_objects(objects: list[dict[str, Any]]) -> list[str]:
    """Errors of every object: KubeRay kinds against the CRDs, the rest against Kubernetes."""
    errors = []
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if obj.get("kind") in KUBERAY_KINDS:
            errors += [f"{name}: {e}" for e in crd_errors(obj)]
        elif obj.get("kind") in UNCHECKED_KINDS:
            if not obj.get("apiVersion", "").startswith("monitoring.coreos.com/") or "spec" not in obj:
                errors.append(f"{name}: not a monitoring.coreos.com object")
        else:
            errors += [f"{name}: {e}" for e in core_errors(obj)]
    return errors


# --- pod templates inside custom resources -------------------------------------------------------


def _ray_cluster_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    spec = obj.get("spec", {})
    return {
        "RayJob": spec.get("rayClusterSpec"),
        "RayService": spec.get("rayClusterConfig"),
        "RayCluster": spec,
    }.get(obj.get("kind", ""))


def embedded_pods(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The pod templates of a KubeRay object as Pods (head with its autoscaler sidecar, each worker
    group, the RayJob submitter), so scanners that do not look inside custom resources see them."""
    cluster = _ray_cluster_spec(obj)
    name, ns = obj["metadata"]["name"], obj["metadata"].get("namespace", "default")
    templates: list[tuple[str, dict[str, Any]]] = []
    if cluster:
        head = copy.deepcopy(cluster["headGroupSpec"]["template"])
        autoscaler = cluster.get("autoscalerOptions")
        if cluster.get("enableInTreeAutoscaling") and autoscaler is not None:
            # KubeRay injects this container into the head pod from autoscalerOptions.
            head["spec"]["containers"].append(
                {
                    "name": "autoscaler",
                    "image": autoscaler.get("image", head["spec"]["containers"][0]["image"]),
                    "imagePullPolicy": autoscaler.get("imagePullPolicy", "IfNotPresent"),
                    "resources": autoscaler.get("resources", {}),
                    "securityContext": autoscaler.get("securityContext", {}),
                    "volumeMounts": autoscaler.get("volumeMounts", []),
                }
            )
        templates.append(("head", head))
        templates += [(g["groupName"], g["template"]) for g in cluster.get("workerGroupSpecs", [])]
    if obj.get("kind") == "RayJob" and obj["spec"].get("submitterPodTemplate"):
        templates.append(("submitter", obj["spec"]["submitterPodTemplate"]))
    for part, template in templates:
        meta = copy.deepcopy(template.get("metadata", {}))
        meta.update(name=f"{name}-{part}", namespace=ns)
        yield {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(template["spec"])}


# --- checkov -------------------------------------------------------------------------------------

CHECKOV_CANDIDATES = ("/opt/sentiray-tools/checkov/bin/checkov",)


def checkov_executable() -> str | None:
    """checkov from $SENTIRAY_CHECKOV, PATH, or the tool venv (it pins packages the project's venv
    cannot take, so it lives in its own environment)."""
    env = os.environ.get("SENTIRAY_CHECKOV")
    if env:
        return env
    found = shutil.which("checkov")
    if found:
        return found
    return next((c for c in CHECKOV_CANDIDATES if Path(c).is_file()), None)


def run_checkov(folder: Path) -> dict[str, Any]:
    """Scan every YAML file under `folder` with checkov's kubernetes framework and .checkov.yaml."""
    exe = checkov_executable()
    assert exe, "checkov not found"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false", LOG_LEVEL="WARNING")
    proc = subprocess.run(
        [
            exe,
            "-d",
            str(folder),
            "--framework",
            "kubernetes",
            "--config-file",
            str(REPO / ".checkov.yaml"),
            "-o",
            "json",
            "--compact",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    if not proc.stdout.strip():
        raise RuntimeError(f"checkov printed nothing (rc {proc.returncode}): {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    merged: dict[str, Any] = {"passed": [], "failed": [], "skipped": [], "passed_count": 0}
    for r in reports:
        results = r.get("results", {})
        merged["passed_count"] += r.get("summary", {}).get("passed", 0)
        merged["passed"] += results.get("passed_checks", [])
        merged["failed"] += results.get("failed_checks", [])
        merged["skipped"] += results.get("skipped_checks", [])
    return merged


# --- the values matrix every chart is rendered over ----------------------------------------------

_CPU_SERVE = {
    "worker": {"gpu": {"enabled": False}, "tolerations": []},
    "rayActorOptions": {
        "SentimentIngress": {"num_cpus": 0.1},
        "SentimentModel": {"num_cpus": 2, "num_gpus": 0},
    },
}
SERVE_MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cpu": _CPU_SERVE,
    "gpu": {
        "worker": {
            "gpu": {"enabled": True, "perWorker": 1},
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
        }
    },
    "autoscaling-off": {
        "autoscaling": {"enabled": False},
        "worker": {"replicas": 2, "minReplicas": 2, "maxReplicas": 2},
    },
    "auth-off": {"rayAuth": {"enabled": False}, "apiAuth": {"enabled": False}},
    "everything-on": {
        "apiAuth": {"enabled": True, "existingSecret": "sentiray-api-token"},
        "hubToken": {"existingSecret": "hf-token"},
        "objectStore": {"credentialsSecret": "s3-credentials", "endpoint": "http://minio.storage:9000"},
        "model": {"uri": "s3://models/sentiray/artifact"},
        "modelVolume": {"claimName": ""},
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "host": "sentiray.example.com",
            "tls": {"enabled": True, "secretName": "sentiray-tls"},
        },
        "monitoring": {"podMonitor": {"enabled": True}, "serviceMonitor": {"enabled": True}},
        "gcsFaultTolerance": {
            "enabled": True,
            "redisAddress": "redis.storage:6379",
            "redisPassword": {"existingSecret": "redis-password"},
        },
        "ui": {"enabled": True},
        "imagePullSecrets": [{"name": "registry"}],
        "image": {"digest": "sha256:" + "a" * 64},
    },
}
TRAIN_MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cpu": {
        "workers": {"gpu": {"enabled": False}, "tolerations": []},
        "job": {"config": {"precision": "fp32"}},
    },
    "gpu": {"workers": {"replicas": 4, "gpu": {"enabled": True}}},
    "single-worker-rwo": {"workers": {"replicas": 1}, "storage": {"pvc": {"accessModes": ["ReadWriteOnce"]}}},
    "auth-off": {"rayAuth": {"enabled": False}},
    "object-store": {
        "storage": {
            "type": "objectStore",
            "objectStore": {"uri": "s3://bucket/sentiray/runs", "credentialsSecret": "s3-credentials"},
        },
        "hubToken": {"existingSecret": "hf-token"},
        "job": {"submissionMode": "HTTPMode"},
        "monitoring": {"podMonitor": {"enabled": True}},
    },
}
MATRIX: list[tuple[str, str, dict[str, Any]]] = [
    ("sentiray-serve", name, values) for name, values in SERVE_MATRIX.items()
] + [("sentiray-train", name, values) for name, values in TRAIN_MATRIX.items()]


# --- chart READMEs -------------------------------------------------------------------------------


def values_table(chart: str) -> str:
    """The markdown table of a chart's values from its `# --` comments (helm-docs style).

    Regenerate a README's table with:
    python -c "from tests.k8s_support import values_table; print(values_table('sentiray-serve'))"
    """
    path = CHARTS / chart / "values.yaml"
    lines = path.read_text().splitlines()
    values = yaml.safe_load(path.read_text())
    key = re.compile(r"^(\s*)([A-Za-z][A-Za-z0-9]*):")
    rows, stack, doc = [], [], []  # type: ignore[var-annotated]
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("# --"):
            doc = [stripped[4:].strip()]
            continue
        if stripped.startswith("#") and doc:
            doc.append(stripped[1:].strip())
            continue
        m = key.match(line)
        if not m:
            continue
        stack = [*stack[: len(m.group(1)) // 2], m.group(2)]
        if doc:
            value: Any = values
            for k in stack:
                value = value[k]
            default = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
            default = default.removesuffix("...").strip().replace("''", '""')
            rows.append(f"| `{'.'.join(stack)}` | `{default}` | {' '.join(doc)} |")
            doc = []
    return "\n".join(["| key | default | description |", "| --- | --- | --- |", *rows])
