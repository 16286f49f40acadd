"""The training loop, free of Ray: one worker's part of data-parallel fine-tuning.

Ray Train (ray_jobs.train) runs it on each worker after setting up torch.distributed; a bare GPU box or
a notebook runs it with world_size 1. Checkpoints and metrics leave through a `Reporter`, so the loop
does not know where they are stored.

- `loop`: the `Trainer` (set up, step, log, evaluate, checkpoint) and `run_training`, its one call.
- `batches`: which rows each rank trains on at each step (the sharding rule), prepared ahead in a thread.
- `evaluation`: the training loss per row and the validation metrics.
- `state`: `TrainerState`, what a checkpoint carries to a resumed run, and the checkpoint's files.
- `context`: the worker's rank and device, the reporter, gathering across ranks.
"""

from sentiray.training.batches import (
    GROUP_CHUNK_ROWS,
    PreparedStep,
    Schedule,
    StepBatches,
    global_batches,
    prefetch,
    rank_share,
    shared_token_lengths,
    steps_per_epoch,
)
from sentiray.training.context import Reporter, WorkerContext, weights_fingerprint
from sentiray.training.evaluation import evaluate, row_losses, validation_metrics
from sentiray.training.loop import Trainer, run_training
from sentiray.training.state import (
    OPTIMIZER_FILE,
    SCHEDULER_FILE,
    STATE_FILE,
    Attempt,
    TrainerState,
    read_checkpoint_state,
)

__all__ = [
    "GROUP_CHUNK_ROWS",
    "OPTIMIZER_FILE",
    "SCHEDULER_FILE",
    "STATE_FILE",
    "Attempt",
    "PreparedStep",
    "Reporter",
    "Schedule",
    "StepBatches",
    "Trainer",
    "TrainerState",
    "WorkerContext",
    "evaluate",
    "global_batches",
    "prefetch",
    "rank_share",
    "read_checkpoint_state",
    "row_losses",
    "run_training",
    "shared_token_lengths",
    "steps_per_epoch",
    "validation_metrics",
    "weights_fingerprint",
]
