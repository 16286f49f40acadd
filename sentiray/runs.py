"""A training run's bookkeeping and decisions, free of Ray: its name, its state in storage, which
checkpoints are kept, which becomes the artifact, the export's CPUs, and the result line it ends with.

A run's checkpoints live in `<storage>/<name>/` (Ray Train's layout) next to `sentiray_run.json`, which
records the config fingerprint and whether the run finished, so that `--resume NAME` continues only an
unfinished run of the same configuration. ray_jobs.train hands these decisions to Ray Train and acts on
them; here they are plain functions, tested without a cluster.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sentiray import storage
from sentiray.config import NOT_FINGERPRINTED, TrainJobConfig
from sentiray.errors import RunStateError

RUN_STATE_FILE = "sentiray_run.json"
# The training job's last line: this prefix, then its result as JSON (`sentiray k8s` reads it from a
# RayJob's log).
RESULT_PREFIX = "SENTIRAY_RESULT "


# --- run names and state --------------------------------------------------------------------------------


def new_run_name() -> str:
    """A unique name for a run started without one: its UTC start time and a random suffix."""
    return f"sentiray-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def _run_state_uri(cfg: TrainJobConfig, name: str) -> str:
    return storage.join(cfg.run.storage_path, name, RUN_STATE_FILE)


def read_run_state(cfg: TrainJobConfig, name: str) -> dict[str, Any] | None:
    """The recorded state of run `name` under the configured storage, or None if there is no such run."""
    uri = _run_state_uri(cfg, name)
    if not storage.exists(uri):
        return None
    state: dict[str, Any] = json.loads(storage.read_bytes(uri))
    return state


def write_run_state(cfg: TrainJobConfig, name: str, status: str, **extra: Any) -> None:
    """Record the run's status (running, failed, succeeded), its config and fingerprint, and `extra`."""
    previous = read_run_state(cfg, name) or {}
    state = {
        **previous,
        "name": name,
        "status": status,
        "fingerprint": cfg.fingerprint(),
        "config": cfg.model_dump(mode="json"),
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }
    state.setdefault("created_at", state["updated_at"])
    storage.write_bytes(_run_state_uri(cfg, name), json.dumps(state, indent=2).encode())


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`section.field: old -> new` for each fingerprinted option that differs between two dumped configs."""
    changed = []
    for section, fields in new.items():
        for key, value in fields.items():
            before = old.get(section, {}).get(key)
            if before != value and f"{section}.{key}" not in NOT_FINGERPRINTED:
                changed.append(f"{section}.{key}: {before!r} -> {value!r}")
    return changed


def resolve_run_name(cfg: TrainJobConfig) -> tuple[str, bool]:
    """(run name, resuming?) after checking the storage: refuses what would silently go wrong."""
    target = cfg.run.resume or cfg.run.name
    if target is None:
        return new_run_name(), False
    state = read_run_state(cfg, target)
    wants_resume = cfg.run.resume is not None or cfg.run.resume_if_exists
    if state is None:
        if cfg.run.resume is not None:
            raise RunStateError(
                f"resume: no run named {target!r} under {cfg.run.storage_path} (no {RUN_STATE_FILE})"
            )
        return target, False
    if not wants_resume:
        raise RunStateError(
            f"name: a run named {target!r} already exists under {cfg.run.storage_path}; "
            f"continue it with --resume {target}, or choose another name"
        )
    if state.get("status") == "succeeded":
        raise RunStateError(
            f"resume: run {target!r} already finished (artifact: {state.get('artifact')}); "
            "start a new run instead of resuming it"
        )
    if state.get("fingerprint") != cfg.fingerprint():
        diff = config_diff(state.get("config", {}), cfg.model_dump(mode="json"))
        raise RunStateError(
            f"resume: run {target!r} was started with a different configuration; resuming would mix "
            f"two trainings. Changed: {'; '.join(diff) or 'unknown'}"
        )
    return target, True


# --- checkpoints ----------------------------------------------------------------------------------------

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


# --- the export and the result ---------------------------------------------------------------------------


def export_cpus(cfg: TrainJobConfig, node_cpus: Sequence[float]) -> float:
    """CPUs for the export task, which scores the test split once the workers are done.

    It may take the training's whole reservation, free by then (on a 2-core machine, 2 threads score
    5,000 reviews in 4 minutes where 1 took 7), capped at the largest node so the task stays schedulable.
    """
    wanted = cfg.run.cpus_per_worker * cfg.run.num_workers
    return max(cfg.run.cpus_per_worker, min(wanted, max(node_cpus, default=0.0)))


def result_line(result: dict[str, Any]) -> str:
    """The job's last line: RESULT_PREFIX and the result as JSON, on one line."""
    return RESULT_PREFIX + json.dumps(result, sort_keys=True)


__all__ = [
    "CHECKPOINT_SCORE",
    "RESULT_PREFIX",
    "RUN_STATE_FILE",
    "checkpoint_retention",
    "checkpoint_score",
    "config_diff",
    "export_cpus",
    "new_run_name",
    "pick_best",
    "read_run_state",
    "resolve_run_name",
    "result_line",
    "write_run_state",
]
