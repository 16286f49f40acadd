"""Where this worker stands among the others, and what crosses between them or leaves the loop."""

from __future__ import annotations

import hashlib
import resource
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.distributed as dist


class Reporter(Protocol):
    """Where metrics and checkpoints go. Every rank calls report; only rank 0 passes a checkpoint."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None: ...


@dataclass(frozen=True)
class WorkerContext:
    """This worker's rank, the number of workers and the device it computes on."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def pins_memory(self) -> bool:
        """Batches are built in pinned host memory: the copy to a GPU can then run asynchronously."""
        return self.device.type == "cuda"


def all_gather(obj: Any, ctx: WorkerContext) -> list[Any]:
    """`obj` from every rank, in rank order (every rank must call it)."""
    if ctx.world_size == 1 or not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def say(ctx: WorkerContext, message: str) -> None:
    """A progress line from rank 0 only."""
    # sys.stdout.write, not print: Ray Train patches print() to also log, and workers' output would
    # reach the driver twice.
    if ctx.is_main:
        sys.stdout.write(message + "\n")
        sys.stdout.flush()


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over all parameters and buffers, to prove ranks hold identical weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """This worker's peak resident memory so far (and peak GPU memory on CUDA), in MiB."""
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # Linux: KiB
    if device.type == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out
