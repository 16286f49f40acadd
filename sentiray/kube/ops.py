"""Cluster operations with the `kubernetes` client: create and follow a RayJob, read its result, status.

Every API failure is turned into a KubeError that says what to check: no cluster (nothing configured
or nothing answering), no KubeRay CRDs (the ray.io/v1 group is not served) or no permission (403).

Over 350 lines because each cluster operation keeps its API calls and the translation of their
failures side by side (create, follow with a watch that resumes after a 410, logs, result, status).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sentiray.kube.errors import ForbiddenError, KubeError, MissingCRDError, NoClusterError
from sentiray.kube.manifests import add_helm_ownership
from sentiray.kube.resources import (
    GROUP,
    RAYJOB,
    VERSION,
    Resource,
    is_terminal,
    parse_result_line,
)

log = logging.getLogger(__name__)

HTTP_CONFLICT = 409
HTTP_GONE = 410


@contextmanager
def _api_errors(action: str) -> Iterator[None]:
    """Map client and transport errors to KubeError subclasses naming `action`."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as e:
        if e.status in (401, 403):
            reason = _api_message(e)
            raise ForbiddenError(
                f"{action}: {'forbidden' if e.status == 403 else 'unauthorized'} ({reason}); "
                "check your credentials and that your RBAC role allows it",
                status=e.status,
            ) from None
        raise KubeError(f"{action}: HTTP {e.status} {_api_message(e)}", status=e.status) from None
    except HTTPError as e:
        raise NoClusterError(f"{action}: cannot reach the Kubernetes API server ({e})") from None


def _api_message(e: Any) -> str:
    import json

    try:
        return str(json.loads(e.body).get("message") or e.reason)
    except (TypeError, ValueError, AttributeError):
        return str(e.reason)


@dataclass
class Cluster:
    """A connection to one cluster, with the API groups the operations use."""

    api_client: Any
    namespace: str
    custom: Any = field(init=False)
    core: Any = field(init=False)

    def __post_init__(self) -> None:
        from kubernetes import client

        self.custom = client.CustomObjectsApi(self.api_client)
        self.core = client.CoreV1Api(self.api_client)


def connect(
    kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None
) -> Cluster:
    """Load a kubeconfig (KUBECONFIG, ~/.kube/config) or the in-cluster service account."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    # The client reads KUBECONFIG once, at import; read it here so a changed environment counts.
    explicit = bool(kubeconfig or context)
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
    try:
        api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
        default_ns = (active or {}).get("context", {}).get("namespace")
        if context:
            contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
            chosen = next((c for c in contexts if c["name"] == context), None)
            default_ns = (chosen or {}).get("context", {}).get("namespace")
    except (ConfigException, FileNotFoundError) as e:
        if explicit:
            raise NoClusterError(f"kubeconfig: {e}") from None
        try:
            config.load_incluster_config()
        except ConfigException:
            raise NoClusterError(
                "no cluster configured: no kubeconfig (KUBECONFIG or ~/.kube/config) and not running in a pod"
            ) from None
        api_client = client.ApiClient()
        default_ns = _incluster_namespace()
    return Cluster(api_client, namespace or default_ns or "default")


def _incluster_namespace() -> str | None:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip() or None
    except OSError:
        return None


def require_kuberay(cluster: Cluster, *resources: Resource) -> None:
    """Fail clearly unless the cluster serves ray.io/v1 with the given resources."""
    from kubernetes.client.exceptions import ApiException

    with _api_errors("checking for the KubeRay CRDs"):
        try:
            served = cluster.custom.get_api_resources(GROUP, VERSION)
        except ApiException as e:
            if e.status == 404:
                raise MissingCRDError(
                    f"the cluster does not serve {GROUP}/{VERSION}: install the KubeRay operator "
                    "and its CRDs (helm install kuberay-operator kuberay/kuberay-operator)"
                ) from None
            raise
    names = {r.name for r in (served.resources or [])}
    missing = [r.plural for r in resources if r.plural not in names]
    if missing:
        raise MissingCRDError(
            f"the cluster serves {GROUP}/{VERSION} without {', '.join(missing)}: upgrade the KubeRay CRDs"
        )


# --- training ------------------------------------------------------------------------------------


def create_objects(
    cluster: Cluster, docs: list[dict[str, Any]], *, attach: bool = False, release: str | None = None
) -> dict[str, Any]:
    """Create the RayJob of `docs` (and the PVCs it mounts); returns the RayJob as stored.

    The PVCs outlive the job, and a later `helm install` of the chart would meet them: they get Helm's
    ownership metadata for `release` (see add_helm_ownership), so Helm adopts them.
    """
    from kubernetes.client.exceptions import ApiException

    rayjobs = [d for d in docs if d.get("kind") == RAYJOB.kind]
    if len(rayjobs) != 1:
        raise KubeError(f"expected exactly one RayJob in the manifests, found {len(rayjobs)}")
    for doc in docs:
        kind = doc.get("kind")
        if kind == "PersistentVolumeClaim":
            add_helm_ownership(doc, release=release, namespace=cluster.namespace)
            with _api_errors(f"creating PersistentVolumeClaim {doc['metadata']['name']}"):
                try:
                    cluster.core.create_namespaced_persistent_volume_claim(cluster.namespace, doc)
                    log.info("created PersistentVolumeClaim %s", doc["metadata"]["name"])
                except ApiException as e:
                    if e.status != 409:
                        raise
        elif kind != RAYJOB.kind:
            log.warning(
                "skipping %s %s: apply it with helm or kubectl", kind, doc.get("metadata", {}).get("name")
            )
    body = rayjobs[0]
    name = body["metadata"]["name"]
    body["metadata"]["namespace"] = cluster.namespace
    with _api_errors(f"creating RayJob {name}"):
        try:
            created: dict[str, Any] = cluster.custom.create_namespaced_custom_object(
                GROUP, VERSION, cluster.namespace, RAYJOB.plural, body
            )
            return created
        except ApiException as e:
            if e.status != 409:
                raise
    if not attach:
        raise KubeError(
            f"RayJob {name} already exists in {cluster.namespace}: follow it with --attach, "
            f"or delete it (kubectl -n {cluster.namespace} delete rayjob {name})"
        )
    return get_object(cluster, RAYJOB, name)


def get_object(cluster: Cluster, resource: Resource, name: str) -> dict[str, Any]:
    """Read one custom object; a missing one is a KubeError naming it."""
    from kubernetes.client.exceptions import ApiException

    with _api_errors(f"reading {resource.kind} {name}"):
        try:
            obj: dict[str, Any] = cluster.custom.get_namespaced_custom_object(
                GROUP, VERSION, cluster.namespace, resource.plural, name
            )
            return obj
        except ApiException as e:
            if e.status == 404:
                raise KubeError(
                    f"{resource.kind} {name} not found in namespace {cluster.namespace}"
                ) from None
            raise


def _job_summary(obj: dict[str, Any]) -> tuple[Any, ...]:
    status = obj.get("status") or {}
    conditions = tuple(
        (c.get("type"), c.get("status"), c.get("reason")) for c in status.get("conditions") or []
    )
    return (
        status.get("jobDeploymentStatus") or "New",
        status.get("jobStatus") or "-",
        status.get("reason"),
        status.get("message"),
        status.get("failed"),
        (status.get("rayClusterStatus") or {}).get("state"),
        conditions,
    )


def describe_job_change(obj: dict[str, Any]) -> str:
    """One line for a RayJob status: deployment status, Ray job status, attempts, reason."""
    deployment, job, reason, message, failed, cluster_state, conditions = _job_summary(obj)
    parts = [f"deployment={deployment}", f"job={job}"]
    if cluster_state:
        parts.append(f"cluster={cluster_state}")
    if failed:
        parts.append(f"failed attempts={failed}")
    parts += [f"{t}={s}" + (f" ({r})" if r else "") for t, s, r in conditions]
    if reason:
        parts.append(f"reason={reason}")
    if message:
        parts.append(f"message={message}")
    return " ".join(parts)


def follow_rayjob(
    cluster: Cluster,
    name: str,
    *,
    timeout_s: float | None = None,
    on_change: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Watch the RayJob until it is Complete or Failed; calls `on_change` on every status change."""
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    obj = get_object(cluster, RAYJOB, name)
    watch_from = obj["metadata"].get("resourceVersion")
    last = _job_summary(obj)
    if on_change:
        on_change(obj)
    while not is_terminal(obj):
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise KubeError(f"RayJob {name} did not finish within {timeout_s:.0f}s (it keeps running)")
        w = watch.Watch()
        try:
            with _api_errors(f"watching RayJob {name}"):
                for event in w.stream(
                    cluster.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    cluster.namespace,
                    RAYJOB.plural,
                    field_selector=f"metadata.name={name}",
                    resource_version=watch_from,
                    timeout_seconds=int(min(remaining or 60, 60)) or 1,
                ):
                    if event["type"] == "DELETED":
                        raise KubeError(f"RayJob {name} was deleted while being followed")
                    if event["type"] not in ("ADDED", "MODIFIED"):
                        continue
                    obj = event["object"]
                    watch_from = obj["metadata"].get("resourceVersion")
                    summary = _job_summary(obj)
                    if summary != last:
                        last = summary
                        if on_change:
                            on_change(obj)
                    if is_terminal(obj):
                        break
        except KubeError as e:
            # 410 Gone: the watch's resourceVersion is older than the server keeps (etcd compaction).
            if e.status != HTTP_GONE:
                raise
        except ApiException as e:  # pragma: no cover - _api_errors maps these
            raise KubeError(str(e)) from None
        finally:
            w.stop()
        if not is_terminal(obj):
            # The watch ended (its timeout, or 410): list again and watch from the list's resourceVersion.
            # Not from the object's: an object that has not changed for a while keeps a resourceVersion
            # older than what the server still holds, and a watch from it would get 410 forever.
            obj, watch_from = _list_one(cluster, name)
            summary = _job_summary(obj)
            if summary != last:
                last = summary
                if on_change:
                    on_change(obj)
    return obj


def _list_one(cluster: Cluster, name: str) -> tuple[dict[str, Any], str | None]:
    """The RayJob `name` by a list (for the list's resourceVersion, which is current)."""
    with _api_errors(f"reading RayJob {name}"):
        listed = cluster.custom.list_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, RAYJOB.plural, field_selector=f"metadata.name={name}"
        )
    items = listed.get("items") or []
    if not items:
        raise KubeError(f"RayJob {name} was deleted while being followed")
    return items[0], (listed.get("metadata") or {}).get("resourceVersion")


def _pods(cluster: Cluster, selector: str) -> list[Any]:
    with _api_errors(f"listing pods ({selector})"):
        pods = cluster.core.list_namespaced_pod(cluster.namespace, label_selector=selector).items
    return sorted(pods, key=lambda p: p.metadata.creation_timestamp or 0, reverse=True)


def read_job_result(cluster: Cluster, rayjob: dict[str, Any]) -> dict[str, Any] | None:
    """The `SENTIRAY_RESULT` JSON from the job's output, read through the pod log API.

    In K8sJobMode the submitter pod (of the Kubernetes Job named like the RayJob) tails the Ray job's
    output, so the line is in its log; the newest pod is the last attempt's.
    """
    name = rayjob["metadata"]["name"]
    candidates: list[tuple[Any, str | None]] = [(p, None) for p in _pods(cluster, f"job-name={name}")]
    cluster_name = (rayjob.get("status") or {}).get("rayClusterName")
    if cluster_name:
        candidates += [
            (p, "ray-head") for p in _pods(cluster, f"ray.io/cluster={cluster_name},ray.io/node-type=head")
        ]
    for pod, container in candidates:
        with _api_errors(f"reading the log of pod {pod.metadata.name}"):
            text = cluster.core.read_namespaced_pod_log(
                pod.metadata.name, cluster.namespace, **({"container": container} if container else {})
            )
        result = parse_result_line(text or "")
        if result is not None:
            return result
    return None


def list_objects(cluster: Cluster, resource: Resource) -> list[dict[str, Any]]:
    """All objects of a KubeRay resource in the namespace."""
    with _api_errors(f"listing {resource.plural}"):
        listed = cluster.custom.list_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, resource.plural
        )
    return list(listed.get("items", []))
