"""What a run carries from step to step and from one attempt to the next, and the checkpoint that holds it.

A checkpoint is a folder: the model and tokenizer (`save_pretrained`, safetensors), the optimizer's and
the learning-rate scheduler's state, and STATE_FILE (the `TrainerState`), written last.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field, ValidationError

from sentiray.errors import RunStateError

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"


class Attempt(BaseModel):
    """One start of the loop. More than one in a run means a worker or node was lost and the run resumed."""

    start_step: int = Field(ge=0)
    world_size: int = Field(ge=1)


class TrainerState(BaseModel):
    """The optimizer steps done, the log and evaluation entries so far, and the attempts: saved in every
    checkpoint and carried on by a resumed run, so its history is continued, not restarted."""

    step: int = Field(default=0, ge=0)
    history: list[dict[str, Any]] = Field(default_factory=list)
    attempts: list[Attempt] = Field(default_factory=list)

    @classmethod
    def load(cls, folder: str | Path) -> TrainerState:
        """A checkpoint's state, checked: a resumed run must not start from a step or history it made up."""
        try:
            return cls.model_validate(read_checkpoint_state(folder))
        except ValidationError as e:
            raise RunStateError(f"{Path(folder, STATE_FILE)}: not a sentiray trainer state: {e}") from e


def read_checkpoint_state(folder: str | Path) -> dict[str, Any]:
    """A checkpoint's state file as written (`TrainerState` fields)."""
    path = Path(folder, STATE_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: checkpoint has no {STATE_FILE} (incomplete)")
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def save_checkpoint(
    folder: Path, model: Any, tokenizer: Any, optimizer: Any, scheduler: Any, state: TrainerState
) -> None:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    torch.save(optimizer.state_dict(), folder / OPTIMIZER_FILE)
    torch.save(scheduler.state_dict(), folder / SCHEDULER_FILE)
    # Written last: a checkpoint without its state file is incomplete. json.dumps, not pydantic's JSON
    # mode: a diverged run's NaN loss stays NaN in the history instead of null.
    (folder / STATE_FILE).write_text(json.dumps(state.model_dump()))


def load_checkpoint(folder: str | Path, optimizer: Any, scheduler: Any) -> TrainerState:
    """Restore the optimizer and scheduler from a checkpoint (its weights are loaded with the model)."""
    state = TrainerState.load(folder)
    optimizer.load_state_dict(torch.load(Path(folder, OPTIMIZER_FILE), weights_only=True))
    scheduler.load_state_dict(torch.load(Path(folder, SCHEDULER_FILE), weights_only=True))
    return state
