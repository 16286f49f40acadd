"""The training driver's own decisions: which checkpoint becomes the artifact, and what its export gets."""

from __future__ import annotations

import pytest

from ray_jobs.train import export_cpus, pick_best
from sentiray.config import build_config


def test_the_best_validation_accuracy_wins() -> None:
    candidates = [("a", {"eval_accuracy": 0.80, "eval_loss": 0.3}), ("b", {"eval_accuracy": 0.85, "eval_loss": 0.5})]
    assert pick_best(candidates)[0] == "b"


def test_a_tie_in_accuracy_goes_to_the_lower_validation_loss() -> None:
    # The cpu recipe's whole-split run: 0.888 at steps 400 and 554; step 554 had the lower loss.
    step_400 = ("step-400", {"step": 400, "eval_accuracy": 0.888, "eval_loss": 0.2732})
    step_554 = ("step-554", {"step": 554, "eval_accuracy": 0.888, "eval_loss": 0.2628})
    assert pick_best([step_400, step_554])[0] == "step-554"
    assert pick_best([step_554, step_400])[0] == "step-554"


@pytest.mark.parametrize(
    ("workers", "cpus_per_worker", "nodes", "expected"),
    [
        (2, 1, [2.0], 2.0),  # the 2-core laptop: both cores score the test split
        (1, 2, [2.0], 2.0),
        (8, 4, [16.0, 16.0], 16.0),  # capped at the largest node, or the task could never be placed
        (2, 8, [4.0], 8.0),  # never below one worker's share, which the cluster already placed
        (2, 1, [], 1.0),  # no node reported: one worker's share
    ],
)
def test_the_export_takes_the_freed_training_cpus_up_to_one_node(
    workers: int, cpus_per_worker: float, nodes: list[float], expected: float
) -> None:
    cfg = build_config(overrides={"num_workers": workers, "cpus_per_worker": cpus_per_worker})
    assert export_cpus(cfg, nodes) == expected
