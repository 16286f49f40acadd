"""User-facing errors of the cluster operations; `sentiray` prints them without a traceback."""

from __future__ import annotations

from sentiray.errors import SentirayError


class KubeError(SentirayError):
    """A Kubernetes operation failed (the message says what to check)."""


class NoClusterError(KubeError):
    """No cluster configured or reachable."""


class MissingCRDError(KubeError):
    """The KubeRay custom resources are not installed in the cluster."""


class ForbiddenError(KubeError):
    """The credentials may not do what was asked (RBAC)."""
