"""A training run's decisions that need no Ray: which checkpoints are kept and which becomes the artifact.

ray_jobs.train hands these to Ray Train and acts on them; here they are plain functions, tested without
a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sentiray.config import TrainJobConfig

# The metric every evaluation reports for ranking checkpoints (see checkpoint_score).
CHECKPOINT_SCORE = "checkpoint_score"


def checkpoint_score(accuracy: float, loss: float, rows: int) -> float:
    """One number that orders evaluations by validation accuracy, then by lower validation loss.

    Ray Train ranks the checkpoints it keeps by a single metric, and the artifact is chosen among those
    kept; both must follow one rule, or the checkpoint the rule prefers may be the one Ray deleted. A few
    hundred validation reviews move accuracy in coarse steps, so ties happen (the cpu recipe's
    whole-split run scored 0.888 at both of its evaluations): accuracy moves in steps of 1/rows, and the
    loss term, in (0, 1/(2 rows)] and falling as the loss grows, breaks ties without crossing a step.
    """
    if rows < 1:
        raise ValueError(f"rows: {rows}; an evaluation scores at least one row")
    return accuracy + 1.0 / (2 * rows * (1.0 + loss))


def checkpoint_retention(cfg: TrainJobConfig) -> dict[str, Any]:
    """What Ray Train keeps (its CheckpointConfig's arguments): the best by the score pick_best uses."""
    return {
        "num_to_keep": cfg.run.keep_checkpoints,
        "checkpoint_score_attribute": CHECKPOINT_SCORE,
        "checkpoint_score_order": "max",
    }


def pick_best(candidates: Sequence[tuple[Any, dict[str, Any]]]) -> tuple[Any, dict[str, Any]]:
    """The (checkpoint, metrics) with the highest checkpoint score: best accuracy, a tie to the lower loss."""
    return max(candidates, key=lambda cm: cm[1][CHECKPOINT_SCORE])


__all__ = ["CHECKPOINT_SCORE", "checkpoint_retention", "checkpoint_score", "pick_best"]
