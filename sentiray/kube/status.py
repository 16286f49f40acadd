"""What `sentiray k8s status` prints about RayJobs and RayServices: states, replicas, endpoint, the
serving artifact and the one before it."""

from __future__ import annotations

from typing import Any

from sentiray.kube.ops import Cluster, describe_job_change
from sentiray.kube.promotion import artifact_lines

SERVE_PORT = 8000


def serve_endpoint(cluster: Cluster, rayservice: dict[str, Any]) -> str:
    """In-cluster URL of the RayService's Serve Service (KubeRay names it <name>-serve-svc)."""
    name = rayservice["metadata"]["name"]
    return f"http://{name}-serve-svc.{cluster.namespace}.svc:{SERVE_PORT}"


def job_report(rayjob: dict[str, Any]) -> list[str]:
    """Human-readable lines about a RayJob."""
    status = rayjob.get("status") or {}
    meta = rayjob["metadata"]
    spec = rayjob.get("spec") or {}
    workers = sum(
        int(g.get("replicas", 0)) for g in (spec.get("rayClusterSpec") or {}).get("workerGroupSpecs", [])
    )
    cluster_status = status.get("rayClusterStatus") or {}
    lines = [
        f"RayJob {meta['name']}: {describe_job_change(rayjob)}",
        f"  cluster: {status.get('rayClusterName') or '-'} "
        f"(workers ready {cluster_status.get('readyWorkerReplicas', 0)}/{workers})",
        f"  attempts: succeeded {status.get('succeeded') or 0}, failed {status.get('failed') or 0} "
        f"(backoffLimit {spec.get('backoffLimit', 0)})",
    ]
    if status.get("dashboardURL"):
        lines.append(f"  dashboard: http://{status['dashboardURL']}")
    for c in cluster_status.get("conditions") or []:
        lines.append(
            f"  cluster condition {c.get('type')}={c.get('status')} {c.get('reason') or ''}".rstrip()
        )
    return lines


def service_report(cluster: Cluster, rayservice: dict[str, Any]) -> list[str]:
    """Human-readable lines about a RayService: conditions, applications, replicas, endpoint."""
    status = rayservice.get("status") or {}
    name = rayservice["metadata"]["name"]
    active = status.get("activeServiceStatus") or {}
    pending = status.get("pendingServiceStatus") or {}
    cluster_status = active.get("rayClusterStatus") or {}
    lines = [f"RayService {name}: {status.get('serviceStatus') or 'NotReady'}"]
    for c in status.get("conditions") or []:
        lines.append(f"  condition {c.get('type')}={c.get('status')} {c.get('reason') or ''}".rstrip())
    lines.append(f"  active cluster: {active.get('rayClusterName') or '-'}")
    if pending.get("rayClusterName"):
        lines.append(f"  pending cluster (upgrade in progress): {pending['rayClusterName']}")
    lines.append(
        f"  workers: ready {cluster_status.get('readyWorkerReplicas', 0)}, "
        f"desired {cluster_status.get('desiredWorkerReplicas', 0)} "
        f"(min {cluster_status.get('minWorkerReplicas', '-')}, "
        f"max {cluster_status.get('maxWorkerReplicas', '-')}), "
        f"GPUs {cluster_status.get('desiredGPU', '0')}"
    )
    lines.append(f"  serve endpoints: {status.get('numServeEndpoints', 0)}")
    for app, app_status in (active.get("applicationStatuses") or {}).items():
        deployments = ", ".join(
            f"{d}={s.get('status')}" for d, s in (app_status.get("serveDeploymentStatuses") or {}).items()
        )
        lines.append(f"  application {app}: {app_status.get('status')} [{deployments}]")
    lines += artifact_lines(rayservice)
    lines.append(f"  endpoint: {serve_endpoint(cluster, rayservice)}")
    lines += [f"  ingress: {url}" for url in _ingress_urls(cluster, f"{name}-serve-svc")]
    return lines


def _ingress_urls(cluster: Cluster, service: str) -> list[str]:
    """URLs of Ingresses routing to `service`; none when Ingresses may not be listed."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        items = client.NetworkingV1Api(cluster.api_client).list_namespaced_ingress(cluster.namespace).items
    except ApiException:
        return []
    urls = []
    for ing in items:
        if ing.spec is None:
            continue
        tls_hosts = {h for t in (ing.spec.tls or []) for h in (t.hosts or [])}
        for rule in ing.spec.rules or []:
            for path in (rule.http.paths if rule.http else []) or []:
                if path.backend.service and path.backend.service.name == service:
                    scheme = "https" if rule.host in tls_hosts else "http"
                    urls.append(f"{scheme}://{rule.host}{path.path or '/'}")
    return urls
