"""Which rows each worker trains on at each step, and their tensors, prepared ahead of the device.

Sharding: each epoch the train rows are shuffled with (seed, epoch), cut into global batches of
batch_size x world_size rows, and each global batch is dealt round-robin to the ranks. Every rank thus
runs the same number of steps (DDP needs that), the ranks' rows are disjoint, and together they cover
the split. A rank whose share of the last global batch is empty runs one zero-weight row instead. The
loss is normalised by the global row count of each optimizer step (`PreparedStep.rows`), so the gradient
is the exact mean over the rows, however unevenly they fall.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from queue import Full, Queue
from typing import Any

import numpy as np
import torch

from sentiray.config import TrainJobConfig
from sentiray.data import TextDataset
from sentiray.text import collate, encode, token_lengths
from sentiray.training.context import WorkerContext, all_gather

# Rows sorted together when batches are grouped by length. A fixed row count (not a number of
# batches) keeps the epoch's order independent of the world size, as it is without grouping.
GROUP_CHUNK_ROWS = 2048


def global_batches(
    n_rows: int, epoch: int, seed: int, global_batch_size: int, lengths: np.ndarray | None = None
) -> list[np.ndarray]:
    """The epoch's shuffled row ids cut into global batches (the last may be short).

    With `lengths` (tokens per row), the shuffled order is cut into chunks of GROUP_CHUNK_ROWS rows and
    each chunk is sorted longest first, so a batch holds reviews of similar length and pads little.
    Every row still comes once per epoch, and which rows share a chunk changes with the seed and epoch.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n_rows)
    if lengths is not None:
        if len(lengths) != n_rows:
            raise ValueError(f"lengths has {len(lengths)} entries for {n_rows} rows")
        chunks = [order[i : i + GROUP_CHUNK_ROWS] for i in range(0, n_rows, GROUP_CHUNK_ROWS)]
        order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
    return [order[i : i + global_batch_size] for i in range(0, n_rows, global_batch_size)]


def rank_share(global_batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's rows of a global batch (round-robin deal: sizes differ by at most one)."""
    return global_batch[rank::world_size]


def steps_per_epoch(n_rows: int, batch_size: int, world_size: int) -> int:
    return math.ceil(n_rows / (batch_size * world_size))


class Schedule:
    """Step counts derived from the config and the data size (identical on every rank)."""

    def __init__(self, cfg: TrainJobConfig, n_rows: int, world_size: int) -> None:
        o = cfg.optim
        self.micro_per_epoch = steps_per_epoch(n_rows, o.batch_size, world_size)
        self.accum = o.grad_accum_steps
        opt_per_epoch = math.ceil(self.micro_per_epoch / self.accum)
        self.total_steps = o.max_steps or max(1, math.ceil(o.epochs * opt_per_epoch))
        self.eval_every = o.eval_every_steps or opt_per_epoch
        self.warmup_steps = round(o.warmup_ratio * self.total_steps)
        self.global_batch = o.batch_size * world_size

    def epoch_of(self, opt_step: int) -> float:
        return opt_step * self.accum / self.micro_per_epoch


def shared_token_lengths(tokenizer: Any, data: TextDataset, cfg: TrainJobConfig, ctx: WorkerContext) -> np.ndarray:
    """Every row's token count, the same array on every rank: each rank tokenizes its stride of rows and
    the ranks gather the rest, so a large split costs each worker 1/world_size of the tokenizing."""
    ids = np.arange(ctx.rank, len(data), ctx.world_size)
    mine = token_lengths(tokenizer, [data.texts[i] for i in ids], cfg.model.max_length, cfg.model.truncation)
    lengths = np.zeros(len(data), dtype=np.int32)
    for rank_ids, rank_lengths in all_gather((ids.tolist(), mine.tolist()), ctx):
        lengths[rank_ids] = rank_lengths
    return lengths


@dataclass(frozen=True)
class PreparedStep:
    """One optimizer step's input on this rank: host tensors for each micro-batch (input ids, attention
    mask, `labels`, and `weights`, 0 for a padding row), and the step's global row count."""

    step: int
    rows: int
    micro_batches: list[dict[str, torch.Tensor]]


class StepBatches:
    """This rank's micro-batches of each optimizer step, tokenized and padded (and pinned, for a GPU)."""

    def __init__(
        self,
        data: TextDataset,
        tokenizer: Any,
        cfg: TrainJobConfig,
        ctx: WorkerContext,
        schedule: Schedule,
        lengths: np.ndarray | None,
    ) -> None:
        self.data, self.tokenizer, self.cfg, self.ctx = data, tokenizer, cfg, ctx
        self.schedule, self.lengths = schedule, lengths
        self.pad = tokenizer.pad_token_id or 0
        self._epoch_cache: dict[int, list[np.ndarray]] = {}

    def rows(self, opt_step: int) -> Iterator[tuple[np.ndarray, int]]:
        """(this rank's row ids, global row count) for each micro-batch of an optimizer step."""
        s = self.schedule
        for a in range(s.accum):
            epoch, pos = divmod(opt_step * s.accum + a, s.micro_per_epoch)
            if epoch not in self._epoch_cache:  # one epoch's order at a time
                self._epoch_cache.clear()
                self._epoch_cache[epoch] = global_batches(
                    len(self.data), epoch, self.cfg.optim.seed, s.global_batch, self.lengths
                )
            gb = self._epoch_cache[epoch][pos]
            yield rank_share(gb, self.ctx.rank, self.ctx.world_size), len(gb)

    def labels(self, row_ids: np.ndarray) -> torch.Tensor:
        """The target tensor of a micro-batch's rows."""
        return torch.from_numpy(self.data.label_array(row_ids))

    def prepare(self, opt_step: int) -> PreparedStep:
        shares = list(self.rows(opt_step))
        prepared = []
        for row_ids, _ in shares:
            weights = torch.ones(max(1, len(row_ids)))
            if len(row_ids) == 0:  # this rank's share of a short last batch is empty
                row_ids, weights = np.asarray([0]), torch.zeros(1)
            m = self.cfg.model
            encoded = encode(self.tokenizer, [self.data.texts[i] for i in row_ids], m.max_length, m.truncation)
            host = {**collate(encoded, self.pad), "labels": self.labels(row_ids), "weights": weights}
            prepared.append({k: v.pin_memory() for k, v in host.items()} if self.ctx.pins_memory else host)
        return PreparedStep(opt_step, sum(n for _, n in shares), prepared)

    def stream(self, start_step: int, stop_step: int) -> Iterator[PreparedStep]:
        """The steps from start_step (a resumed run's) to stop_step, prepared two ahead in a thread."""
        return prefetch((self.prepare(step) for step in range(start_step, stop_step)), depth=2)


_DONE = object()


def prefetch(items: Iterable[Any], depth: int) -> Iterator[Any]:
    """Yield `items` in order while a background thread computes up to `depth` of them ahead.

    The training loop's host work (tokenizing, padding, pinning the next batches) then overlaps the
    device's compute instead of adding to it: on a GPU it took a large share of each step
    (docs/benchmarks.md, "GPU: the Ray-free core on one H200"). The fast tokenizer releases the GIL, so
    the thread runs beside the main one. An exception in the producer is raised here; closing the
    generator (or an exception in the consumer) stops the thread.
    """
    queue: Queue[Any] = Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:  # the consumer is busy; look at `stop` again
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((None, item)):
                    return
            put((None, _DONE))
        except BaseException as e:  # handed to the consumer, which raises it
            put((e, None))

    thread = threading.Thread(target=produce, name="sentiray-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            error, item = queue.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join()
