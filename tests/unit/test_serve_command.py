"""`sentiray serve`: the default replica layout, and a local Ray sized so every replica asked for is placed."""

from __future__ import annotations

import argparse

import pytest

from sentiray.commands.serve import (
    MAX_DEFAULT_REPLICAS,
    default_cpu_layout,
    local_ray_cpus,
    register,
    replica_layout,
)
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


def _parse(*flags: str) -> argparse.Namespace:
    """`sentiray serve` flags as the CLI's own parser reads them."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["serve", "artifact", *flags])


@pytest.mark.parametrize(
    ("cores", "expected"),
    [(1, (1, 1)), (2, (2, 1)), (3, (3, 1)), (4, (4, 1)), (8, (4, 2)), (16, (4, 4)), (6, (4, 1))],
)
def test_default_layout_fills_the_cores_with_at_most_four_replicas(cores: int, expected: tuple[int, int]) -> None:
    replicas, cpus = default_cpu_layout(cores)
    assert (replicas, cpus) == expected
    assert replicas <= MAX_DEFAULT_REPLICAS and replicas * cpus <= cores


def test_a_local_cpu_serve_without_layout_flags_gets_one_replica_per_core() -> None:
    cpus, layout = replica_layout(_parse(), cores=2)
    assert (cpus, layout) == (1.0, {"min_replicas": 2, "max_replicas": 2})
    # and its local Ray has room for both replicas and the ingress
    assert local_ray_cpus(cpus, AppArgs(model="m", **layout), cores=2) == 3


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--num-cpus", "2"], (2.0, {})),  # a CPU count alone: one replica of that size, as asked
        (["--num-cpus", "0"], (0.0, {})),  # zero is a CPU count too (Ray places such replicas anywhere)
        (["--min-replicas", "3"], (1.0, {})),  # replica flags alone: 1 CPU each, the flags as given
        (["--max-replicas", "2"], (1.0, {})),
        (["--address", "ray://head:10001"], (1.0, {})),  # a cluster: no local machine to fill
        (["--num-gpus", "1"], (1.0, {})),  # a GPU replica: one per GPU, not one per core
    ],
)
def test_explicit_flags_a_cluster_or_a_gpu_keep_the_layout_as_given(
    flags: list[str], expected: tuple[float, dict[str, int]]
) -> None:
    assert replica_layout(_parse(*flags), cores=8) == expected
