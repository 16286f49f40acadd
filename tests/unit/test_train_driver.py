"""A training run's decisions (sentiray.runs), without Ray: its name and state, which checkpoints are kept,
which becomes the artifact, what its export gets, and the result line."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from sentiray.config import build_config
from sentiray.errors import RunStateError
from sentiray.runs import (
    CHECKPOINT_SCORE,
    RUN_STATE_FILE,
    checkpoint_retention,
    checkpoint_score,
    export_cpus,
    pick_best,
    read_run_state,
    resolve_run_name,
    result_line,
    write_run_state,
)


def _evaluation(name: str, accuracy: float, loss: float, rows: int = 500, **extra: Any) -> tuple[str, dict[str, Any]]:
    """A checkpoint and the metrics its evaluation reports (as sentiray.training does)."""
    metrics = {"eval_accuracy": accuracy, "eval_loss": loss, CHECKPOINT_SCORE: checkpoint_score(accuracy, loss, rows)}
    return name, {**metrics, **extra}


def test_the_best_validation_accuracy_wins() -> None:
    candidates = [_evaluation("a", 0.80, 0.3), _evaluation("b", 0.85, 0.5)]
    assert pick_best(candidates)[0] == "b"


def test_a_tie_in_accuracy_goes_to_the_lower_validation_loss() -> None:
    # The cpu recipe's whole-split run: 0.888 at steps 400 and 554; step 554 had the lower loss.
    step_400 = _evaluation("step-400", 0.888, 0.2732, step=400)
    step_554 = _evaluation("step-554", 0.888, 0.2628, step=554)
    assert pick_best([step_400, step_554])[0] == "step-554"
    assert pick_best([step_554, step_400])[0] == "step-554"


@pytest.mark.parametrize("rows", [1, 7, 500, 25_000])
def test_one_more_right_answer_beats_any_loss(rows: int) -> None:
    step = 1 / rows
    for accuracy in (0.0, 0.5, 1 - step):
        assert checkpoint_score(accuracy + step, 1e6, rows) > checkpoint_score(accuracy, 0.0, rows)
    assert checkpoint_score(0.5, 0.30, rows) > checkpoint_score(0.5, 0.31, rows)


def _surely_kept(reports: list[tuple[str, dict[str, Any]]], chosen: str, retention: dict[str, Any]) -> bool:
    """Whether Ray Train keeps `chosen` whatever it does with ties: fewer than num_to_keep other reports
    rank at least as high by the metric it was told to rank by."""
    metric, sign = retention["checkpoint_score_attribute"], 1 if retention["checkpoint_score_order"] == "max" else -1
    [mine] = [m for name, m in reports if name == chosen]
    level = sign * mine[metric]
    return sum(1 for name, m in reports if name != chosen and sign * m[metric] >= level) < retention["num_to_keep"]


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_the_chosen_checkpoint_is_one_ray_keeps(keep: int) -> None:
    retention = checkpoint_retention(build_config(overrides={"keep_checkpoints": keep}))
    assert retention["num_to_keep"] == keep
    rng = random.Random(keep)
    runs = [[_evaluation("step-400", 0.888, 0.2732), _evaluation("step-554", 0.888, 0.2628)]]
    for _ in range(200):  # 200 validation rows: accuracies collide often
        runs.append([_evaluation(f"step-{i}", rng.randint(170, 180) / 200, rng.uniform(0.2, 0.4), rows=200)
                     for i in range(rng.randint(1, 8))])
    for reports in runs:
        chosen, _ = pick_best(reports)
        assert _surely_kept(reports, chosen, retention), reports


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


# --- run names and run state (no Ray: the storage layer only) ------------------------------------------


def _run_cfg(storage: Path, **overrides: Any) -> Any:
    return build_config(overrides={"storage_path": str(storage), "max_length": 64, **overrides})


def test_a_resume_names_only_what_changes_the_trained_model(tmp_path: Path) -> None:
    write_run_state(_run_cfg(tmp_path, name="half"), "half", "running")
    # Besides the learning rate, only fields left out of the fingerprint change.
    changed = _run_cfg(tmp_path, resume="half", learning_rate=1e-4, push_to_hub="org/model", max_failures=3,
                       keep_checkpoints=5, output=str(tmp_path / "elsewhere"))
    with pytest.raises(RunStateError) as caught:
        resolve_run_name(changed)
    assert str(caught.value) == (
        "resume: run 'half' was started with a different configuration; resuming would mix two trainings. "
        "Changed: optim.learning_rate: 5e-05 -> 0.0001"
    )
    # Those fields alone change nothing that was trained: the run resumes.
    same = _run_cfg(tmp_path, resume="half", push_to_hub="org/model", max_failures=3, keep_checkpoints=5)
    assert resolve_run_name(same) == ("half", True)


def test_a_run_without_a_name_gets_a_fresh_one(tmp_path: Path) -> None:
    name, resuming = resolve_run_name(_run_cfg(tmp_path))
    assert re.fullmatch(r"sentiray-\d{8}-\d{6}-[0-9a-f]{6}", name) and not resuming
    assert resolve_run_name(_run_cfg(tmp_path))[0] != name


def test_run_names_are_checked_against_the_storage(tmp_path: Path) -> None:
    assert resolve_run_name(_run_cfg(tmp_path, name="first")) == ("first", False)
    with pytest.raises(RunStateError, match="^resume: no run named 'first' under .* \\(no sentiray_run.json\\)$"):
        resolve_run_name(_run_cfg(tmp_path, resume="first"))
    write_run_state(_run_cfg(tmp_path, name="first"), "first", "running", artifact=None)
    assert (tmp_path / "first" / RUN_STATE_FILE).is_file()
    with pytest.raises(RunStateError, match="^name: a run named 'first' already exists .*--resume first"):
        resolve_run_name(_run_cfg(tmp_path, name="first"))
    assert resolve_run_name(_run_cfg(tmp_path, name="first", resume_if_exists=True)) == ("first", True)
    assert resolve_run_name(_run_cfg(tmp_path, resume="first")) == ("first", True)
    write_run_state(_run_cfg(tmp_path, name="first"), "first", "succeeded", artifact="/a")
    state = read_run_state(_run_cfg(tmp_path), "first")
    assert state is not None and (state["status"], state["artifact"]) == ("succeeded", "/a")
    assert state["created_at"] <= state["updated_at"]
    with pytest.raises(RunStateError, match=r"^resume: run 'first' already finished \(artifact: /a\)"):
        resolve_run_name(_run_cfg(tmp_path, resume="first"))


def test_the_result_line_is_what_sentiray_k8s_reads() -> None:
    from sentiray.kube.resources import parse_result_line

    result = {"run": "r", "artifact": "s3://b/a", "test_metrics": {"accuracy": 0.9}}
    line = result_line(result)
    assert "\n" not in line
    assert parse_result_line(f"INFO starting\n{line}\nINFO done\n") == result
