"""User-facing errors of the cluster operations; `sentiray` prints them without a traceback."""

from __future__ import annotations

from sentiray.errors import SentirayError


class KubeError(SentirayError):
    """A Kubernetes operation failed (the message says what to check).

    `status` is the API server's HTTP status when the API answered (409 conflict, 410 gone, ...), so
    callers branch on it rather than on the message text.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NoClusterError(KubeError):
    """No cluster configured or reachable."""


class MissingCRDError(KubeError):
    """The KubeRay custom resources are not installed in the cluster."""


class ForbiddenError(KubeError):
    """The credentials may not do what was asked (RBAC)."""


class PromotionRefusedError(KubeError):
    """The promotion gate refused an artifact (worse test metrics than the serving one's)."""
