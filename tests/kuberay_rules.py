"""The rules KubeRay, Kubernetes and Ray apply at run time to what the charts and manifests render.

A CRD schema says whether an object is well formed; it does not say whether the operator accepts it,
whether KubeRay's Services select its pods, whether a node drain can proceed, whether Ray puts its object
store in memory or whether the Serve replicas and the Ray Train workers fit the pods. Each rule here is
read from the source that enforces it (KubeRay v1.7.0, the Kubernetes controllers, Ray 2.60) and names
it in a comment. `check(objects)` returns the findings ("rule: object: message"; empty: none).
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import json
import math
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

# --- quantities --------------------------------------------------------------------------------------

_SUFFIX = {
    "": 1, "m": 1e-3, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def quantity(value: Any) -> float:
    """A Kubernetes quantity ("4", "500m", "16Gi", 2) as a number (cores or bytes)."""
    if isinstance(value, int | float):
        return float(value)
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value).strip())
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"not a quantity: {value!r}")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


# --- the Ray groups of KubeRay objects ------------------------------------------------------------

KUBERAY_KINDS = ("RayCluster", "RayJob", "RayService")
# KubeRay's own pod labels (v1.7.0 controllers/ray/common/pod.go labelPod; utils/constant.go).
KUBERAY_APP_NAME = ("app.kubernetes.io/name", "kuberay")
KUBERAY_CREATED_BY = ("app.kubernetes.io/created-by", "kuberay-operator")
# Labels KubeRay sets but lets a template override (labelPod copies every template label over its own
# except ray.io/node-type, ray.io/group and ray.io/cluster).
OVERRIDABLE_KUBERAY_LABELS = dict([KUBERAY_APP_NAME, KUBERAY_CREATED_BY])


@dataclass
class Group:
    """One Ray node group: the head or a worker group, with what KubeRay derives from it."""

    owner: str  # Kind/name of the KubeRay object
    name: str
    node_type: str  # head | worker
    template: dict[str, Any]
    start_params: dict[str, Any]
    replicas: int = 1
    min_replicas: int = 1
    max_replicas: int = 1
    cluster: dict[str, Any] = field(default_factory=dict)

    @property
    def container(self) -> dict[str, Any]:
        # KubeRay treats the first container as the Ray container (utils.RayContainerIndex = 0).
        return dict(self.template["spec"]["containers"][0])

    def ray_resources(self) -> dict[str, float]:
        """The logical resources `ray start` gets, as KubeRay builds the command (pod.go
        generateRayStartCommand: num-cpus from the CPU limit, else the request, rounded up by
        Quantity.Value(); memory from the limit; num-gpus from a limit whose name ends in "gpu")."""
        res = self.container.get("resources", {})
        limits, requests = res.get("limits", {}) or {}, res.get("requests", {}) or {}
        p = self.start_params
        out: dict[str, float] = {}
        if "num-cpus" in p:
            out["CPU"] = float(p["num-cpus"])
        elif "cpu" in limits or "cpu" in requests:
            out["CPU"] = float(math.ceil(quantity(limits.get("cpu", requests.get("cpu")))))
        if "num-gpus" in p:
            out["GPU"] = float(p["num-gpus"])
        else:
            gpus = [quantity(v) for k, v in limits.items() if k.endswith("gpu")]
            out["GPU"] = float(math.ceil(gpus[0])) if gpus else 0.0
        if "memory" in p:
            out["memory"] = float(p["memory"])
        elif "memory" in limits:
            out["memory"] = quantity(limits["memory"])
        return out

    def pod_labels(self) -> dict[str, str]:
        """The labels KubeRay gives the pod (pod.go labelPod): its own, then the template's over them."""
        labels = {
            "ray.io/is-ray-node": "yes",
            "ray.io/cluster": f"{self.owner.split('/', 1)[1]}-xxxxx",
            "ray.io/node-type": self.node_type,
            "ray.io/group": "headgroup" if self.node_type == "head" else self.name,
            **OVERRIDABLE_KUBERAY_LABELS,
        }
        for key, value in (self.template.get("metadata", {}).get("labels") or {}).items():
            if key not in ("ray.io/node-type", "ray.io/group", "ray.io/cluster"):
                labels[key] = value
        return labels


def cluster_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    spec = obj.get("spec", {})
    found: dict[str, Any] | None = {
        "RayJob": spec.get("rayClusterSpec"),
        "RayService": spec.get("rayClusterConfig"),
        "RayCluster": spec,
    }.get(obj.get("kind", ""))
    return found


def _name(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def ray_groups(obj: dict[str, Any]) -> list[Group]:
    cluster = cluster_spec(obj)
    if not cluster:
        return []
    owner = _name(obj)
    head = cluster["headGroupSpec"]
    groups = [Group(owner, "head", "head", head["template"], head.get("rayStartParams") or {}, cluster=cluster)]
    for g in cluster.get("workerGroupSpecs") or []:
        replicas = int(g.get("replicas", g.get("minReplicas", 0)) or 0)
        groups.append(
            Group(
                owner, g["groupName"], "worker", g["template"], g.get("rayStartParams") or {},
                replicas=replicas,
                min_replicas=int(g.get("minReplicas", 0) or 0),
                max_replicas=int(g.get("maxReplicas", 2**31 - 1) if g.get("maxReplicas") is not None else 2**31 - 1),
                cluster=cluster,
            )
        )  # fmt: skip
    return groups


def autoscaling_enabled(cluster: dict[str, Any]) -> bool:
    # utils.IsAutoscalingEnabled: enableInTreeAutoscaling set and true.
    return bool(cluster.get("enableInTreeAutoscaling"))


# --- rule 1: the operator's validation refusals ---------------------------------------------------


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def rule_validation(objects: list[dict[str, Any]]) -> Iterator[str]:
    """What KubeRay's webhook-less validation refuses: the object is marked invalid and never runs
    (v1.7.0 ray-operator/controllers/ray/utils/validation.go ValidateRayClusterSpec, ValidateRayJobSpec,
    ValidateRayServiceSpec, ValidateClusterUpgradeOptions; name limits in utils/constant.go)."""
    limits = {"RayCluster": 53, "RayService": 47, "RayJob": 47}  # MaxRay*NameLength
    for obj in objects:
        kind = obj.get("kind")
        if kind not in KUBERAY_KINDS:
            continue
        where, cluster = _name(obj), cluster_spec(obj) or {}
        name = obj["metadata"]["name"]
        if len(name) > limits[kind] or not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name):
            yield f"validation: {where}: name must be a DNS-1035 label of at most {limits[kind]} characters"
        auto = autoscaling_enabled(cluster)
        for g in ray_groups(obj):
            if not g.template.get("spec", {}).get("containers"):
                yield f"validation: {where}: group {g.name} has no container"
            if "labels" in g.start_params:
                yield f"validation: {where}: rayStartParams['labels'] is refused in group {g.name}"
        for g in cluster.get("workerGroupSpecs") or []:
            lo, hi = g.get("minReplicas"), g.get("maxReplicas")
            if not auto and (lo is None or hi is None):
                yield (
                    f"validation: {where}: worker group {g['groupName']} needs minReplicas and maxReplicas "
                    "without autoscaling"
                )
            if lo is not None and hi is not None and lo > hi:
                yield f"validation: {where}: worker group {g['groupName']} has minReplicas {lo} > maxReplicas {hi}"
        idle = (cluster.get("autoscalerOptions") or {}).get("idleTimeoutSeconds")
        if idle is not None and idle < 0:
            yield f"validation: {where}: autoscalerOptions.idleTimeoutSeconds must be non-negative"
        if (cluster.get("authOptions") or {}).get("mode") == "token":
            version = cluster.get("rayVersion")
            if not version or _version_tuple(version) < (2, 52, 0):
                yield f"validation: {where}: authOptions.mode token needs rayVersion >= 2.52.0, got {version!r}"
        spec = obj.get("spec", {})
        if kind == "RayJob":
            if spec.get("ttlSecondsAfterFinished", 0) < 0:
                yield f"validation: {where}: ttlSecondsAfterFinished must be non-negative"
            for key in ("activeDeadlineSeconds", "preRunningDeadlineSeconds"):
                if key in spec and spec[key] <= 0:
                    yield f"validation: {where}: {key} must be positive"
            if spec.get("backoffLimit", 0) < 0:
                yield f"validation: {where}: backoffLimit must be non-negative"
        if kind == "RayService":
            strategy = spec.get("upgradeStrategy") or {}
            kind_ = strategy.get("type")
            if kind_ not in (None, "NewCluster", "NewClusterWithIncrementalUpgrade", "None"):
                yield f"validation: {where}: upgradeStrategy.type {kind_!r} is refused"
            if kind_ == "NewClusterWithIncrementalUpgrade":
                yield from _incremental_upgrade(where, cluster, strategy.get("clusterUpgradeOptions"))
            head_svc = (cluster.get("headGroupSpec") or {}).get("headService") or {}
            if head_svc.get("metadata", {}).get("name"):
                yield f"validation: {where}: headService.metadata.name must not be set on a RayService"


def _incremental_upgrade(where: str, cluster: dict[str, Any], opts: dict[str, Any] | None) -> Iterator[str]:
    # validation.go ValidateClusterUpgradeOptions.
    if not autoscaling_enabled(cluster):
        yield f"validation: {where}: NewClusterWithIncrementalUpgrade needs the Ray autoscaler"
    if opts is None:
        yield f"validation: {where}: NewClusterWithIncrementalUpgrade needs clusterUpgradeOptions"
        return
    surge, step = opts.get("maxSurgePercent", 100), opts.get("stepSizePercent")
    if not 0 <= surge <= 100:
        yield f"validation: {where}: maxSurgePercent must be between 0 and 100"
    if step is None or not 0 <= step <= 100:
        yield f"validation: {where}: stepSizePercent must be between 0 and 100"
    elif step > surge:
        yield f"validation: {where}: stepSizePercent must not exceed maxSurgePercent"
    if not opts.get("intervalSeconds") or opts["intervalSeconds"] <= 0:
        yield f"validation: {where}: intervalSeconds must be greater than 0"
    if not opts.get("gatewayClassName"):
        yield f"validation: {where}: gatewayClassName is required"


# --- rule 2: labels and selectors -----------------------------------------------------------------


def head_service_selector(group: Group) -> dict[str, str]:
    """The selector of the `<name>-head-svc` Service KubeRay builds (common/service.go
    BuildServiceForHeadPod with HeadServiceLabels; BuildHeadServiceForRayService passes no labels, so
    the selector is KubeRay's defaults, app.kubernetes.io/name=kuberay included)."""
    own = group.pod_labels()
    return {
        "ray.io/cluster": own["ray.io/cluster"],
        "ray.io/node-type": "head",
        **dict([KUBERAY_APP_NAME, KUBERAY_CREATED_BY]),
    }


def rule_kuberay_labels(objects: list[dict[str, Any]]) -> Iterator[str]:
    """Ray pods keep KubeRay's own labels: a template label that overrides them (pod.go labelPod lets it)
    makes the head Service KubeRay builds select no pod: no dashboard Service, no stable head address,
    no ServiceMonitor target (KubeRay issues 2648, 2564)."""
    for obj in objects:
        for g in ray_groups(obj):
            labels = g.pod_labels()
            for key, value in OVERRIDABLE_KUBERAY_LABELS.items():
                if labels.get(key) != value:
                    yield (
                        f"labels: {g.owner}: group {g.name} sets {key}={labels.get(key)} over KubeRay's "
                        f"{value}; KubeRay's Services select on it"
                    )
            if g.node_type == "head" and not _matches(head_service_selector(g), labels):
                yield f"labels: {g.owner}: the head Service KubeRay builds would select no head pod"


def _matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics: matchLabels and matchExpressions; a plain map is matchLabels."""
    if selector is None:
        return False
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass
class PodShape:
    """A pod as the cluster will see it: labels, namespace, and how many exist at the minimum."""

    where: str
    labels: dict[str, str]
    namespace: str
    min_count: int
    ray: Group | None = None


def pods(objects: list[dict[str, Any]]) -> list[PodShape]:
    """Every pod the objects create: Ray pods with KubeRay's labels, a RayJob's submitter, Deployment and
    bare Pods."""
    out = []
    for obj in objects:
        ns = obj.get("metadata", {}).get("namespace", "default")
        for g in ray_groups(obj):
            count = 1 if g.node_type == "head" else g.min_replicas
            out.append(PodShape(f"{g.owner}:{g.name}", g.pod_labels(), ns, count, g))
        submitter = obj.get("spec", {}).get("submitterPodTemplate") if obj.get("kind") == "RayJob" else None
        if submitter:
            labels = (submitter.get("metadata") or {}).get("labels") or {}
            out.append(PodShape(f"{_name(obj)}:submitter", labels, ns, 1))
        if obj.get("kind") in ("Deployment", "StatefulSet"):
            labels = obj["spec"]["template"]["metadata"].get("labels") or {}
            out.append(PodShape(_name(obj), labels, ns, int(obj["spec"].get("replicas", 1))))
        if obj.get("kind") == "Pod":
            out.append(PodShape(_name(obj), obj["metadata"].get("labels") or {}, ns, 1))
    return out


def rule_selectors_select(objects: list[dict[str, Any]]) -> Iterator[str]:
    """Each NetworkPolicy, PodDisruptionBudget and PodMonitor selects at least one pod it renders with:
    a selector on a label KubeRay or the chart no longer sets protects or scrapes nothing, silently."""
    shapes = pods(objects)
    for obj in objects:
        kind = obj.get("kind")
        if kind == "NetworkPolicy":
            selector = obj["spec"].get("podSelector")
        elif kind in ("PodDisruptionBudget", "PodMonitor"):
            selector = obj["spec"].get("selector")
        else:
            continue
        ns = obj["metadata"].get("namespace", "default")
        if not any(s.namespace == ns and _matches(selector, s.labels) for s in shapes):
            yield f"selectors: {_name(obj)}: selects no pod of this release"


# --- rule 3: what the disruption controller can count ---------------------------------------------


def rule_pdb(objects: list[dict[str, Any]], *, crds: dict[str, dict[str, Any]] | None = None) -> Iterator[str]:
    """A PDB over Ray pods: their controller is a RayCluster, whose CRD has no /scale subresource, so the
    disruption controller (kubernetes pkg/controller/disruption getExpectedPodCount -> getScaleController)
    cannot count the expected pods for maxUnavailable or a percentage, and allows 0 disruptions: every
    drain stalls (KubeRay issue 2662). Only an integer minAvailable works, and it must stay below the
    pods there are at the minimum, or the budget again allows none."""
    has_scale = bool(((crds or {}).get("RayCluster") or {}).get("scale"))
    shapes = pods(objects)
    for obj in objects:
        if obj.get("kind") != "PodDisruptionBudget":
            continue
        spec, where = obj["spec"], _name(obj)
        ns = obj["metadata"].get("namespace", "default")
        selected = [s for s in shapes if s.namespace == ns and _matches(spec.get("selector"), s.labels)]
        ray = [s for s in selected if s.ray is not None]
        if not ray:
            continue
        if not has_scale and ("maxUnavailable" in spec or isinstance(spec.get("minAvailable"), str)):
            yield (
                f"pdb: {where}: maxUnavailable or a percentage over Ray pods: RayCluster has no /scale "
                "subresource, so the disruption controller allows 0 disruptions"
            )
            continue
        at_min = sum(s.min_count for s in selected)
        min_available = spec.get("minAvailable")
        if isinstance(min_available, int) and min_available >= at_min:
            yield (
                f"pdb: {where}: minAvailable {min_available} >= the {at_min} pod(s) at the minimum: "
                "no drain can proceed"
            )
        if spec.get("unhealthyPodEvictionPolicy") != "AlwaysAllow":
            # A crash-looping Ray pod would otherwise count against the budget and block the drain.
            yield f"pdb: {where}: unhealthyPodEvictionPolicy should be AlwaysAllow"


# --- rule 4: /dev/shm versus the object store -------------------------------------------------------

DEFAULT_OBJECT_STORE_MEMORY_PROPORTION = 0.3  # ray/_private/ray_constants.py
OBJECT_STORE_MINIMUM_MEMORY_BYTES = 75 * 1024 * 1024  # ray/_private/ray_constants.py


def shm_bytes(group: Group) -> float | None:
    """Size of the memory-backed /dev/shm of the Ray container (KubeRay adds one sized to the memory
    limit when the template mounts none: pod.go BuildPod -> addEmptyDir)."""
    c = group.container
    mount = next((m for m in c.get("volumeMounts", []) if m["mountPath"] == "/dev/shm"), None)
    limit = (c.get("resources", {}).get("limits") or {}).get("memory")
    if mount is None:
        return quantity(limit) if limit else None
    volume = next(v for v in group.template["spec"].get("volumes", []) if v["name"] == mount["name"])
    empty = volume.get("emptyDir")
    if not empty or empty.get("medium") != "Memory":
        return 0.0
    size = empty.get("sizeLimit") or limit
    return quantity(size) if size else None


def object_store_bytes(group: Group) -> float | None:
    if "object-store-memory" in group.start_params:
        return float(group.start_params["object-store-memory"])
    memory = group.ray_resources().get("memory")
    return DEFAULT_OBJECT_STORE_MEMORY_PROPORTION * memory if memory else None


def rule_shm(objects: list[dict[str, Any]]) -> Iterator[str]:
    """Ray 2.60 puts the object store in /dev/shm only if it fits (ray/_private/services.py
    determine_plasma_store_config: "shm_avail >= object_store_memory"); otherwise it uses /tmp, on disk
    ("/dev/shm has only N bytes available"), and above REQUIRE_SHM_SIZE_THRESHOLD (10 GB) refuses to
    start. The default object store is 30% of the memory, so a smaller /dev/shm needs
    object-store-memory set from its size."""
    for obj in objects:
        for g in ray_groups(obj):
            shm, store = shm_bytes(g), object_store_bytes(g)
            if shm is None or store is None:
                continue
            where = f"{g.owner}: group {g.name}"
            if store > shm:
                yield (
                    f"shm: {where}: object store {store / 2**30:.2f} GiB > /dev/shm {shm / 2**30:.2f} GiB: "
                    "Ray falls back to disk (or refuses to start above 10 GB); set object-store-memory"
                )
            if store < OBJECT_STORE_MINIMUM_MEMORY_BYTES:
                yield f"shm: {where}: object store below Ray's minimum of 75 MiB"
            memory = g.ray_resources().get("memory")
            if memory and shm >= memory:
                # A memory-backed emptyDir is charged to the pod's memory limit.
                yield f"shm: {where}: /dev/shm is as large as the memory limit: the pod is OOM-killed first"


# --- rule 5: Serve deployments fit the worker pods ------------------------------------------------


def serve_deployments(obj: dict[str, Any]) -> list[dict[str, Any]]:
    text = obj.get("spec", {}).get("serveConfigV2")
    if not text:
        return []
    config = yaml.safe_load(text) or {}
    return [d for app in config.get("applications") or [] for d in app.get("deployments") or []]


def actor_demand(options: dict[str, Any] | None) -> dict[str, float]:
    """A replica's resource demand: Serve defaults num_cpus to 1 (ray/serve/_private/config.py
    ReplicaConfig: "if num_cpus is None: num_cpus = 1")."""
    opts = options or {}
    num_cpus = opts.get("num_cpus")
    demand = {"CPU": float(1 if num_cpus is None else num_cpus), "GPU": float(opts.get("num_gpus") or 0)}
    if opts.get("memory"):
        demand["memory"] = float(opts["memory"])
    for key, value in (opts.get("resources") or {}).items():
        demand[key] = float(value)
    return demand


def _fits(demand: dict[str, float], capacity: dict[str, float]) -> bool:
    return all(v <= capacity.get(k, 0.0) + 1e-9 for k, v in demand.items() if v > 0)


def _pack(demands: list[dict[str, float]], nodes: list[dict[str, float]]) -> bool:
    """First-fit decreasing of `demands` into `nodes` (free resources each; Ray's scheduler places each
    actor on one node; a fragmented node cannot take a larger replica)."""
    free = [dict(n) for n in nodes]
    for d in sorted(demands, key=lambda d: (d.get("GPU", 0), d.get("CPU", 0)), reverse=True):
        node = next((f for f in free if _fits(d, f)), None)
        if node is None:
            return False
        for k, v in d.items():
            node[k] = node.get(k, 0.0) - v
    return True


def rule_serve_fits(objects: list[dict[str, Any]]) -> Iterator[str]:
    """Every Serve deployment's ray_actor_options fit one pod of the cluster (a replica that fits no node
    stays pending forever: Ray's scheduler never splits an actor across nodes), and Serve's max_replicas
    of every deployment fit the most worker pods there can be: maxReplicas with the autoscaler,
    `replicas` without it (KubeRay then keeps the group at its size)."""
    for obj in objects:
        deployments = serve_deployments(obj)
        if not deployments:
            continue
        cluster, groups = cluster_spec(obj) or {}, ray_groups(obj)
        auto = autoscaling_enabled(cluster)
        capacity = [(g, g.ray_resources()) for g in groups]
        demands: list[dict[str, float]] = []
        for d in deployments:
            demand = actor_demand(d.get("ray_actor_options"))
            if not any(_fits(demand, cap) for _, cap in capacity):
                yield f"serve: {_name(obj)}: deployment {d['name']} ({demand}) fits no Ray pod"
            scaling = d.get("autoscaling_config") or {}
            count = scaling.get("max_replicas", d.get("num_replicas", 1))
            if count == "auto":
                count = 1
            demands += [demand] * int(count)
        # Pack onto the head's spare resources and the workers at their largest.
        head = next(cap for g, cap in capacity if g.node_type == "head")
        workers = [(g, cap) for g, cap in capacity if g.node_type == "worker"]
        for g, cap in workers:
            nodes = g.max_replicas if auto else max(min(g.replicas, g.max_replicas), g.min_replicas)
            # Replicas may also take the head's spare resources, where it offers any.
            head_spare = any(v > 0 for v in head.values() if v)
            if not _pack(demands, [cap] * nodes) and not (head_spare and _pack(demands, [head] + [cap] * nodes)):
                mode = (
                    f"at maxReplicas={g.max_replicas}" if auto else f"on the fixed {nodes} worker(s) (autoscaling off)"
                )
                yield f"serve: {_name(obj)}: the deployments' max_replicas do not fit group {g.name} {mode}"


def rule_gpu_sizing(objects: list[dict[str, Any]]) -> Iterator[str]:
    """GPU pods are sized to what runs on them: a GPU worker pod holding the replicas its GPUs admit and
    one replica of each CPU-only deployment leaves at most one CPU unclaimed (Ray reserves a replica's
    resources exclusively, so the rest of the pod's CPUs idle beside an expensive GPU); and a pod that
    asks for no GPU does not tolerate the GPU taint (it would take a GPU node's CPUs), unless a required
    pod affinity ties it to a GPU pod's node."""
    for obj in objects:
        groups = ray_groups(obj)
        for g in groups:
            cap = g.ray_resources()
            tolerates_gpu = any(
                (t.get("key") or "").endswith("gpu") for t in g.template["spec"].get("tolerations") or []
            )
            follows_gpu = any(o.ray_resources().get("GPU") and _pinned(g, o) for o in groups if o is not g)
            if tolerates_gpu and not cap.get("GPU") and not follows_gpu:
                yield f"gpu: {g.owner}: group {g.name} tolerates the GPU taint but asks for no GPU"
        deployments = serve_deployments(obj)
        for g in ray_groups(obj):
            cap = g.ray_resources()
            if not cap.get("GPU") or not deployments:
                continue
            used = 0.0
            for d in deployments:
                demand = actor_demand(d.get("ray_actor_options"))
                if demand["GPU"] > 0:
                    used += demand["CPU"] * math.floor(cap["GPU"] / demand["GPU"])
                else:
                    used += demand["CPU"]
            if cap.get("CPU", 0) - used > 1 + 1e-9:
                yield (
                    f"gpu: {g.owner}: group {g.name} reserves {cap['CPU']:g} CPUs but its replicas claim {used:g}: "
                    "size the pod or the replicas' num_cpus to each other"
                )


# --- rule 6: a RayJob's entrypoint fits its workers ------------------------------------------------


def entrypoint_bundles(entrypoint: str) -> tuple[list[dict[str, float]], str] | None:
    """The resource bundles a RayJob's entrypoint asks Ray for: one {CPU, GPU} bundle per Ray Train worker
    (ScalingConfig num_workers x resources_per_worker, in one placement group), or per batch-scoring
    actor; None for an entrypoint this checker does not know."""
    argv = shlex.split(entrypoint)
    if argv[:3] == ["python", "-m", "ray_jobs.train"]:
        from sentiray.config import add_config_arguments, config_from_namespace

        parser = argparse.ArgumentParser(exit_on_error=False)
        add_config_arguments(parser)
        cfg = config_from_namespace(parser.parse_args(argv[3:]))
        bundle = {"CPU": float(cfg.run.cpus_per_worker), "GPU": 1.0 if cfg.run.use_gpu else 0.0}
        return [bundle] * cfg.run.num_workers, f"{cfg.run.num_workers} train worker(s) of {bundle}"
    if argv[:3] == ["python", "-m", "ray_jobs.score"]:
        from sentiray.score_config import ScoreConfig, add_score_arguments

        parser = argparse.ArgumentParser(exit_on_error=False)
        add_score_arguments(parser)  # the job's own flags: a chart passing one it lacks fails here
        score = ScoreConfig.from_args(parser.parse_args(argv[3:]))
        bundle = {"CPU": float(score.cpus_per_actor), "GPU": 1.0 if score.use_gpu else 0.0}
        return [bundle] * score.min_actors, f"{score.min_actors} scoring actor(s) of {bundle}"
    return None


def rule_rayjob_fits(objects: list[dict[str, Any]]) -> Iterator[str]:
    """The entrypoint's bundles fit the RayJob's workers (at their fixed size: the charts run RayJobs
    without the autoscaler): Ray Train waits for its placement group forever otherwise, until the
    RayJob's deadline (ray/train/v2 worker group: placement group of num_workers bundles)."""
    for obj in objects:
        if obj.get("kind") != "RayJob":
            continue
        parsed = entrypoint_bundles(obj["spec"].get("entrypoint", ""))
        if parsed is None:
            continue
        bundles, what = parsed
        groups = ray_groups(obj)
        caps = [cap for g in groups for cap in [g.ray_resources()] * (1 if g.node_type == "head" else g.replicas)]
        free = [dict(c) for c in caps]
        ok = True
        for b in bundles:
            node = next((f for f in free if _fits(b, f)), None)
            if node is None:
                ok = False
                break
            for k, v in b.items():
                node[k] = node.get(k, 0.0) - v
        if not ok:
            yield f"rayjob: {_name(obj)}: the entrypoint asks for {what}, which the Ray pods {caps} cannot hold"
        if "preRunningDeadlineSeconds" not in obj["spec"]:
            # rayjob_types.go: without it a cluster that never starts (a Pending claim, no node fits)
            # waits out activeDeadlineSeconds before the job is marked Failed.
            yield (
                f"rayjob: {_name(obj)}: no preRunningDeadlineSeconds: a cluster that cannot start hangs "
                "until activeDeadlineSeconds"
            )


# --- rule 7: volumes and their access modes ---------------------------------------------------------


def rule_volumes(objects: list[dict[str, Any]], claims: dict[str, list[str]] | None = None) -> Iterator[str]:
    """A ReadWriteOnce claim attaches to one node: a second pod on another node fails with Multi-Attach
    (Kubernetes attach/detach controller); ReadWriteOncePod admits one pod at all (scheduler
    VolumeRestrictions). Pods of one claim must then be one pod, or a head and one worker held on one
    node by a required pod affinity. Access modes come from the PVCs rendered with the objects, or from `claims`."""
    modes = dict(claims or {})
    for obj in objects:
        if obj.get("kind") == "PersistentVolumeClaim":
            modes[obj["metadata"]["name"]] = obj["spec"].get("accessModes", [])
    for obj in objects:
        users: dict[str, list[Group]] = {}
        for g in ray_groups(obj):
            for v in g.template["spec"].get("volumes") or []:
                claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
                if claim:
                    users.setdefault(claim, []).append(g)
        for claim, groups in users.items():
            access = modes.get(claim)
            if not access or "ReadWriteMany" in access or "ReadOnlyMany" in access:
                continue
            count = sum(1 if g.node_type == "head" else g.max_replicas for g in groups)
            if obj.get("kind") == "RayService" and (obj["spec"].get("upgradeStrategy") or {}).get("type") != "None":
                count *= 2  # a zero-downtime upgrade runs a second cluster beside the first
            if count <= 1:
                continue
            if "ReadWriteOncePod" in access:
                yield f"volumes: {_name(obj)}: claim {claim} is ReadWriteOncePod but {count} pods mount it"
            elif not _on_one_node(groups):
                yield (
                    f"volumes: {_name(obj)}: claim {claim} is ReadWriteOnce but up to {count} pods on "
                    "different nodes mount it (Multi-Attach)"
                )


def _pinned(group: Group, to: Group) -> bool:
    """`group` has a required pod affinity onto `to`'s pods on the same node."""
    affinity = (group.template["spec"].get("affinity") or {}).get("podAffinity") or {}
    return any(
        term.get("topologyKey") == "kubernetes.io/hostname" and _matches(term.get("labelSelector"), to.pod_labels())
        for term in affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or []
    )


def _on_one_node(groups: list[Group]) -> bool:
    """Every pod of `groups` lands on one node: at most one worker pod, and the head and it tied together by
    a required pod affinity one way or the other."""
    workers = [g for g in groups if g.node_type == "worker"]
    head = next((g for g in groups if g.node_type == "head"), None)
    if sum(g.max_replicas for g in workers) > 1:
        return False
    if head is None or not workers:
        return True
    return all(_pinned(head, w) or _pinned(w, head) for w in workers)


# --- rule 8: what reaches the Ray pods ----------------------------------------------------------------

# The operator's pod labels as KubeRay ships them: its Helm chart (helm-chart/kuberay-operator/templates/
# deployment.yaml: name and component kuberay-operator) and its kustomize base (ray-operator/config/
# manager/manager.yaml: name kuberay, component kuberay-operator), each in a namespace of the user's choice.
OPERATOR_PODS = [
    ("default", {"app.kubernetes.io/name": "kuberay-operator", "app.kubernetes.io/component": "kuberay-operator"}),
    ("ray-system", {"app.kubernetes.io/name": "kuberay", "app.kubernetes.io/component": "kuberay-operator"}),
]
GCS_PORT, DASHBOARD_PORT = 6379, 8265
RAY_WORKER_PORT = 10002  # Ray's worker port range starts here (ray start --min-worker-port)


def _allows(
    policy: dict[str, Any], peer_ns: str, peer_labels: dict[str, str], ns_labels: dict[str, str], port: int
) -> bool:
    """Whether one NetworkPolicy's ingress rules admit a peer on a port (networking/v1 semantics)."""
    own_ns = policy["metadata"].get("namespace", "default")
    for rule in policy["spec"].get("ingress") or []:
        ports = rule.get("ports")
        if ports and not any(
            p.get("port") == port or (p.get("endPort") and p["port"] <= port <= p["endPort"]) for p in ports
        ):
            continue
        peers = rule.get("from")
        if peers is None:
            return True
        for peer in peers:
            if "ipBlock" in peer:
                continue
            ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
            ns_ok = _matches(ns_sel, ns_labels) if ns_sel is not None else peer_ns == own_ns
            pod_ok = _matches(pod_sel, peer_labels) if pod_sel is not None else True
            if ns_ok and pod_ok:
                return True
    return False


def _admitted(
    objects: list[dict[str, Any]], target: PodShape, peer_ns: str, peer_labels: dict[str, str], port: int
) -> bool:
    policies = [
        o for o in objects
        if o.get("kind") == "NetworkPolicy"
        and o["metadata"].get("namespace", "default") == target.namespace
        and "Ingress" in (o["spec"].get("policyTypes") or ["Ingress"])
        and _matches(o["spec"].get("podSelector"), target.labels)
    ]  # fmt: skip
    if not policies:
        return True
    ns_labels = {"kubernetes.io/metadata.name": peer_ns}
    return any(_allows(p, peer_ns, peer_labels, ns_labels, port) for p in policies)


def rule_network(objects: list[dict[str, Any]]) -> Iterator[str]:
    """The KubeRay operator reaches the head's dashboard (it submits jobs and Serve configs and polls
    them there: controllers/ray/utils/dashboardclient) wherever it is installed; the UI and test pods of
    the release reach the serve port but neither GCS nor Ray's worker ports."""
    shapes = pods(objects)
    for head in [s for s in shapes if s.ray is not None and s.ray.node_type == "head"]:
        for ns, labels in OPERATOR_PODS:
            if not _admitted(objects, head, ns, labels, DASHBOARD_PORT):
                yield f"network: {head.where}: the KubeRay operator in namespace {ns!r} cannot reach the dashboard"
    others = [s for s in shapes if s.ray is None]
    for target in [s for s in shapes if s.ray is not None]:
        for other in others:
            if other.namespace != target.namespace:
                continue
            for port in (GCS_PORT, RAY_WORKER_PORT):
                if _admitted(objects, target, other.namespace, other.labels, port) and _has_policy(objects, target):
                    yield f"network: {target.where}: {other.where} (not a Ray pod) may reach port {port}"


def _has_policy(objects: list[dict[str, Any]], target: PodShape) -> bool:
    return any(
        o.get("kind") == "NetworkPolicy" and _matches(o["spec"].get("podSelector"), target.labels) for o in objects
    )


# --- rule 9: pod templates stay stable ----------------------------------------------------------------


def cluster_hash(obj: dict[str, Any]) -> str:
    """KubeRay's hash of a RayService's cluster spec: a change of it starts a new cluster (NewCluster) or
    is ignored (None); a change outside it (replicas, min/max, tolerations, upgradeStrategy) is applied to
    neither (rayservice_controller.go isClusterSpecHashEqual; utils/util.go
    GenerateHashWithoutReplicasAndWorkersToDelete mutes exactly these fields)."""
    spec = copy.deepcopy(cluster_spec(obj) or {})
    spec.pop("suspend", None)
    spec.pop("upgradeStrategy", None)
    head = spec.get("headGroupSpec", {}).get("template", {}).get("spec", {})
    head.pop("tolerations", None)
    head.pop("schedulingGates", None)
    for g in spec.get("workerGroupSpecs") or []:
        for key in ("replicas", "minReplicas", "maxReplicas"):
            g.pop(key, None)
        g.get("scaleStrategy", {}).pop("workersToDelete", None)
        g["template"]["spec"].pop("tolerations", None)
        g["template"]["spec"].pop("schedulingGates", None)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


CHART_RELEASE_LABELS = ("helm.sh/chart", "app.kubernetes.io/version")


def rule_stable_templates(objects: list[dict[str, Any]]) -> Iterator[str]:
    """Ray pod templates carry no label that changes with the chart's or app's version: on a RayService
    each would change the cluster hash above, so every chart bump would start a second cluster (twice the
    GPUs during the switch) although nothing about the pods changed."""
    for obj in objects:
        for g in ray_groups(obj):
            labels = g.template.get("metadata", {}).get("labels") or {}
            for key in CHART_RELEASE_LABELS:
                if key in labels:
                    yield f"stable: {g.owner}: group {g.name} has {key} in its pod template"


# --- the checker ----------------------------------------------------------------------------------------


@functools.cache
def crd_facts() -> dict[str, dict[str, Any]]:
    """The subresources of the KubeRay CRDs (the PDB rule needs to know whether RayCluster has /scale)."""
    from tests.k8s_support import crd_dir

    facts: dict[str, dict[str, Any]] = {}
    for path in sorted(crd_dir().glob("*.yaml")):
        for crd in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if crd and crd.get("kind") == "CustomResourceDefinition":
                subresources = [v.get("subresources") or {} for v in crd["spec"]["versions"]]
                facts[crd["spec"]["names"]["kind"]] = {"scale": any("scale" in s for s in subresources)}
    if "RayCluster" not in facts:
        raise FileNotFoundError(f"no RayCluster CRD under {crd_dir()} (set SENTIRAY_KUBERAY_CRDS)")
    return facts


RULES = (
    "validation", "labels", "selectors", "pdb", "shm", "serve", "gpu", "rayjob", "volumes", "network",
    "stable",
)  # fmt: skip


def check(
    objects: list[dict[str, Any]],
    *,
    claims: dict[str, list[str]] | None = None,
    crds: dict[str, dict[str, Any]] | None = None,
) -> list[str]:
    """Every finding of every rule over a rendered set of objects (empty: none)."""
    facts = crds if crds is not None else crd_facts()
    findings: list[str] = []
    findings += rule_validation(objects)
    findings += rule_kuberay_labels(objects)
    findings += rule_selectors_select(objects)
    findings += rule_pdb(objects, crds=facts)
    findings += rule_shm(objects)
    findings += rule_serve_fits(objects)
    findings += rule_gpu_sizing(objects)
    findings += rule_rayjob_fits(objects)
    findings += rule_volumes(objects, claims)
    findings += rule_network(objects)
    findings += rule_stable_templates(objects)
    return findings
