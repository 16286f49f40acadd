"""`sentiray serve` sizes its local Ray so that every model replica asked for can be placed."""

from __future__ import annotations

import pytest

from sentiray.commands.serve import local_ray_cpus
from serve.schemas import AppArgs


@pytest.mark.parametrize(
    ("cpus_per_replica", "replicas", "cores", "expected"),
    [
        (1.0, {}, 2, 2),  # one replica of 1 CPU + the ingress fit the machine's 2 cores
        (2.0, {}, 2, 3),  # one replica of 2 CPUs + the ingress: more than the cores
        (1.0, {"min_replicas": 2, "max_replicas": 2}, 2, 3),  # two replicas + the ingress
        (1.0, {"max_replicas": 4}, 2, 5),  # room for the most replicas autoscaling may start
        (0.5, {"min_replicas": 3}, 16, 16),  # never fewer than the cores
    ],
)
def test_room_for_every_replica_and_the_ingress(
    cpus_per_replica: float, replicas: dict[str, int], cores: int, expected: int
) -> None:
    assert local_ray_cpus(cpus_per_replica, AppArgs(model="m", **replicas), cores) == expected
