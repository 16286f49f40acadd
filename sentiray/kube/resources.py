"""KubeRay resource coordinates, terminal states and the training job's result line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sentiray.runs import RESULT_PREFIX  # the training job writes its result line with it

GROUP = "ray.io"
VERSION = "v1"


@dataclass(frozen=True)
class Resource:
    """A namespaced custom resource of KubeRay."""

    kind: str
    plural: str


RAYJOB = Resource("RayJob", "rayjobs")
RAYSERVICE = Resource("RayService", "rayservices")

# KubeRay's JobDeploymentStatus values after which nothing changes any more.
TERMINAL_DEPLOYMENT_STATUSES = frozenset({"Complete", "Failed"})


def parse_result_line(log: str) -> dict[str, Any] | None:
    """The JSON of the last `SENTIRAY_RESULT {...}` line of a log, or None when there is none."""
    for line in reversed(log.splitlines()):
        _, sep, payload = line.partition(RESULT_PREFIX)
        if not sep:
            continue
        try:
            value = json.loads(payload)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def is_terminal(rayjob: dict[str, Any]) -> bool:
    """True once KubeRay has finished with the RayJob (Complete or Failed)."""
    return rayjob.get("status", {}).get("jobDeploymentStatus") in TERMINAL_DEPLOYMENT_STATUSES


def succeeded(rayjob: dict[str, Any]) -> bool:
    """True when the job reached Complete with the Ray job SUCCEEDED."""
    status = rayjob.get("status", {})
    return status.get("jobDeploymentStatus") == "Complete" and status.get("jobStatus") == "SUCCEEDED"
