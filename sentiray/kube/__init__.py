"""Kubernetes operations of sentiray (`sentiray k8s`): KubeRay RayJob / RayService, Ray-free.

The `kubernetes` client is imported by `sentiray.kube.ops` only, so the pure parts (the Serve config
overrides and the result-line parser) work without it.
"""

from sentiray.kube.errors import ForbiddenError, KubeError, MissingCRDError, NoClusterError
from sentiray.kube.resources import GROUP, RAYJOB, RAYSERVICE, VERSION, parse_result_line
from sentiray.kube.serveconfig import apply_overrides, serve_config_differences

__all__ = [
    "GROUP",
    "RAYJOB",
    "RAYSERVICE",
    "VERSION",
    "ForbiddenError",
    "KubeError",
    "MissingCRDError",
    "NoClusterError",
    "apply_overrides",
    "parse_result_line",
    "serve_config_differences",
]
