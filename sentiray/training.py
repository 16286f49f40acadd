"""The training loop, free of Ray: one worker's part of data-parallel fine-tuning.

Ray Train (ray_jobs.train) runs this on each worker after setting up torch.distributed; a bare GPU box or
a notebook runs it with world_size 1. Checkpoints and metrics leave through a `Reporter`, so the loop
does not know where they are stored.

Sharding: each epoch the train rows are shuffled with (seed, epoch), cut into global batches of
batch_size x world_size rows, and each global batch is dealt round-robin to the ranks. Every rank thus
runs the same number of steps (DDP needs that), the ranks' rows are disjoint, and together they cover
the split. A rank whose share of the last global batch is empty runs one zero-weight row instead. The
loss is normalised by the global row count of each optimizer step, so the gradient is the exact mean
over the rows, however unevenly they fall.

Speed: the next micro-batches are tokenized, padded (and pinned, on a GPU) in a background thread
(`prefetch`) while the device computes the current one, and nothing reads a value back from the device
between logging intervals, so the host never makes the device wait (1.25-1.30x on an H200,
docs/benchmarks.md "GPU").
"""

from __future__ import annotations

import hashlib
import json
import math
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from queue import Full, Queue
from typing import Any, Protocol, cast

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from sentiray.config import Scheduler, TrainJobConfig
from sentiray.data import TextDataset
from sentiray.metrics import classification_metrics
from sentiray.model import freeze_lower_layers, load_model, load_tokenizer, resolve_precision
from sentiray.runs import CHECKPOINT_SCORE, checkpoint_score
from sentiray.text import collate, encode, token_lengths

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"


class Reporter(Protocol):
    """Where metrics and checkpoints go. Every rank calls report; only rank 0 passes a checkpoint."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None: ...


@dataclass(frozen=True)
class WorkerContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


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


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over all parameters and buffers, to prove ranks hold identical weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _all_gather(obj: Any, ctx: WorkerContext) -> list[Any]:
    if ctx.world_size == 1 or not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def _print(ctx: WorkerContext, message: str) -> None:
    # sys.stdout.write, not print: Ray Train patches print() to also log, and workers' output would
    # reach the driver twice.
    if ctx.is_main:
        sys.stdout.write(message + "\n")
        sys.stdout.flush()


_DONE = object()


def prefetch(items: Iterable[Any], depth: int) -> Iterator[Any]:
    """Yield `items` in order while a background thread computes up to `depth` of them ahead.

    The training loop's host work (tokenizing, padding, pinning the next batches) then overlaps the
    device's compute instead of adding to it: on a GPU it was two thirds of a step (docs/benchmarks.md,
    "GPU"). The fast tokenizer releases the GIL, so the thread runs beside the main one. An exception in
    the producer is raised here; closing the generator (or an exception in the consumer) stops the thread.
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


def _progress_bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / max(total, 1))
    return f"[{'#' * filled}{'.' * (width - filled)}] {100 * done / max(total, 1):5.1f}%"


class _Schedule:
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


def _make_scheduler(optimizer: torch.optim.Optimizer, kind: Scheduler, warmup: int, total: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == Scheduler.CONSTANT:
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == Scheduler.COSINE:
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return max(0.0, 1.0 - progress)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # No decay on biases and normalisation weights (the usual BERT recipe).
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def evaluate(
    model: torch.nn.Module,
    tokenizer: Any,
    data: TextDataset,
    cfg: TrainJobConfig,
    ctx: WorkerContext,
    autocast: Callable[[], Any],
    batch_size: int = 64,
) -> dict[str, Any]:
    """Metrics over the whole dataset, each rank scoring its stride of rows (results gathered)."""
    model.eval()
    ids = np.arange(ctx.rank, len(data), ctx.world_size)
    n_classes = data.label_set.num_labels
    logits = np.zeros((len(ids), n_classes), dtype=np.float32)
    pad = tokenizer.pad_token_id or 0
    with torch.inference_mode():
        # A split smaller than the world leaves some ranks no rows; they still join the gather below.
        texts = [data.texts[i] for i in ids]
        encoded = encode(tokenizer, texts, cfg.model.max_length, cfg.model.truncation) if texts else []
        # Length-sorted batches: less padding, same results.
        order = sorted(range(len(ids)), key=lambda j: len(encoded[j]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = {k: v.to(ctx.device) for k, v in collate([encoded[j] for j in chunk], pad).items()}
            with autocast():
                logits[chunk] = model(**batch).logits.float().cpu().numpy()
    model.train()
    gathered = _all_gather((ids.tolist(), logits.tolist()), ctx)
    all_ids = np.concatenate([np.asarray(g[0], dtype=np.int64) for g in gathered])
    all_logits = np.concatenate([np.asarray(g[1], dtype=np.float32).reshape(-1, n_classes) for g in gathered])
    labels = data.label_array(all_ids)
    multi = data.label_set.multi_label
    metrics = classification_metrics(labels, all_logits, data.label_set.names, multi_label=multi)
    metrics["loss"] = float(per_row_loss(torch.from_numpy(all_logits), torch.from_numpy(labels), multi).mean())
    return metrics


def per_row_loss(logits: torch.Tensor, labels: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Each row's loss: cross-entropy over the classes, or for multi-label the mean over the classes of
    each one's binary cross-entropy (the mean of all is what transformers' BCEWithLogitsLoss gives)."""
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(dim=-1)
    return F.cross_entropy(logits, labels, reduction="none")


def _shared_token_lengths(tokenizer: Any, data: TextDataset, cfg: TrainJobConfig, ctx: WorkerContext) -> np.ndarray:
    """Every row's token count, the same array on every rank: each rank tokenizes its stride of rows and
    the ranks gather the rest, so a large split costs each worker 1/world_size of the tokenizing."""
    ids = np.arange(ctx.rank, len(data), ctx.world_size)
    mine = token_lengths(tokenizer, [data.texts[i] for i in ids], cfg.model.max_length, cfg.model.truncation)
    lengths = np.zeros(len(data), dtype=np.int32)
    for rank_ids, rank_lengths in _all_gather((ids.tolist(), mine.tolist()), ctx):
        lengths[rank_ids] = rank_lengths
    return lengths


def _save_checkpoint(
    folder: Path, model: Any, tokenizer: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]
) -> None:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    torch.save(optimizer.state_dict(), folder / OPTIMIZER_FILE)
    torch.save(scheduler.state_dict(), folder / SCHEDULER_FILE)
    # Written last: a checkpoint without its state file is incomplete.
    (folder / STATE_FILE).write_text(json.dumps(state))


def read_checkpoint_state(folder: str | Path) -> dict[str, Any]:
    path = Path(folder, STATE_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: checkpoint has no {STATE_FILE} (incomplete)")
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def _peak_memory_mb(device: torch.device) -> dict[str, float]:
    """This worker's peak resident memory so far (and peak GPU memory on CUDA), in MiB."""
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # Linux: KiB
    if device.type == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def run_training(
    cfg: TrainJobConfig,
    train: TextDataset,
    validation: TextDataset,
    ctx: WorkerContext,
    reporter: Reporter,
    resume_from: str | None = None,
) -> dict[str, Any]:
    """Train until the configured steps are done; returns the last reported metrics."""
    o = cfg.optim
    torch.manual_seed(o.seed)
    torch.set_num_threads(o.torch_threads or max(1, int(cfg.run.cpus_per_worker)))
    schedule = _Schedule(cfg, len(train), ctx.world_size)
    compute_dtype = resolve_precision(o.precision, ctx.device)

    base = resume_from or cfg.model.base_model
    tokenizer = load_tokenizer(base, None if resume_from else cfg.model.revision)
    model = load_model(
        base, labels=train.label_set, allow_pickle=cfg.model.allow_pickle and not resume_from,
        revision=None if resume_from else cfg.model.revision,
    ).to(ctx.device)
    freeze_lower_layers(model, o.freeze_layers)
    model.train()
    optimizer = _optimizer(model, o.learning_rate, o.weight_decay)
    scheduler = _make_scheduler(optimizer, o.scheduler, schedule.warmup_steps, schedule.total_steps)

    state: dict[str, Any] = {"step": 0, "history": [], "attempts": []}
    if resume_from:
        state = read_checkpoint_state(resume_from)
        optimizer.load_state_dict(torch.load(Path(resume_from, OPTIMIZER_FILE), weights_only=True))
        scheduler.load_state_dict(torch.load(Path(resume_from, SCHEDULER_FILE), weights_only=True))
    start_step = int(state["step"])
    state["attempts"].append({"start_step": start_step, "world_size": ctx.world_size})

    ddp_model: torch.nn.Module = model
    if ctx.world_size > 1 and dist.is_initialized():
        ddp_model = DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )

    use_autocast = compute_dtype != torch.float32

    def autocast() -> Any:
        if not use_autocast:
            return nullcontext()
        return torch.autocast(device_type=ctx.device.type, dtype=compute_dtype)

    scaler = torch.amp.GradScaler("cuda") if compute_dtype == torch.float16 else None
    pad = tokenizer.pad_token_id or 0
    _print(
        ctx,
        f"training {cfg.model.base_model} on {len(train)} rows x {schedule.epoch_of(schedule.total_steps):.2f} "
        f"epochs = {schedule.total_steps} steps (global batch {schedule.global_batch * schedule.accum}, "
        f"{ctx.world_size} worker(s), {compute_dtype}, device {ctx.device}); "
        f"{'resuming from step ' + str(start_step) if start_step else 'from scratch'}",
    )

    lengths = _shared_token_lengths(tokenizer, train, cfg, ctx) if o.group_by_length else None
    epoch_cache: dict[int, list[np.ndarray]] = {}

    def micro_batches(opt_step: int) -> Iterator[tuple[np.ndarray, int]]:
        """(this rank's row ids, global row count) for each micro-batch of an optimizer step."""
        for a in range(schedule.accum):
            micro = opt_step * schedule.accum + a
            epoch, pos = divmod(micro, schedule.micro_per_epoch)
            if epoch not in epoch_cache:
                epoch_cache.clear()
                epoch_cache[epoch] = global_batches(len(train), epoch, o.seed, schedule.global_batch, lengths)
            gb = epoch_cache[epoch][pos]
            yield rank_share(gb, ctx.rank, ctx.world_size), len(gb)

    pin = ctx.device.type == "cuda"  # pinned host memory lets the copy to the GPU run asynchronously

    def prepared_steps() -> Iterator[tuple[int, int, list[dict[str, torch.Tensor]]]]:
        """(step, global rows of the step, host tensors of each micro-batch), built in the prefetch thread."""
        for step in range(start_step, schedule.total_steps):
            batches = list(micro_batches(step))
            prepared = []
            for row_ids, _ in batches:
                weights = torch.ones(max(1, len(row_ids)))
                if len(row_ids) == 0:  # this rank's share of a short last batch is empty
                    row_ids, weights = np.asarray([0]), torch.zeros(1)
                encoded = encode(
                    tokenizer, [train.texts[i] for i in row_ids], cfg.model.max_length, cfg.model.truncation
                )
                host = {
                    **collate(encoded, pad),
                    "labels": torch.from_numpy(train.label_array(row_ids)),
                    "weights": weights,
                }
                prepared.append({k: v.pin_memory() for k, v in host.items()} if pin else host)
            yield step, sum(n for _, n in batches), prepared

    # The interval's loss stays on the device until it is logged: reading it each step would make the
    # host wait for the device, and the next batch could not be prepared meanwhile.
    interval_loss = torch.zeros((), device=ctx.device)
    interval_rows, interval_started = 0, time.perf_counter()
    run_started, rows_seen = time.perf_counter(), 0
    last_metrics: dict[str, Any] = {}
    for step, window_rows, prepared in prefetch(prepared_steps(), depth=2):
        for a, host in enumerate(prepared):
            batch = {k: v.to(ctx.device, non_blocking=pin) for k, v in host.items()}
            labels, weights = batch.pop("labels"), batch.pop("weights")
            # Gradients are all-reduced only on the last micro-batch of an optimizer step.
            sync = a == len(prepared) - 1 or not isinstance(ddp_model, DistributedDataParallel)
            no_sync = nullcontext() if sync else cast(DistributedDataParallel, ddp_model).no_sync()
            with no_sync, autocast():
                logits = ddp_model(**batch).logits
                per_row = per_row_loss(logits.float(), labels, train.label_set.multi_label)
                # DDP averages gradients over ranks; x world_size / global rows makes it the exact mean.
                loss = (per_row * weights).sum() * ctx.world_size / window_rows
            (scaler.scale(loss) if scaler else loss).backward()
            interval_loss += (per_row.detach() * weights).sum()
            interval_rows += int(host["weights"].sum())
        if scaler:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.max_grad_norm)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        rows_seen += window_rows
        done = step + 1

        if done % o.log_every_steps == 0 or done == schedule.total_steps:
            loss_sum = float(interval_loss)  # waits for the device, so the interval's time is all counted
            elapsed = time.perf_counter() - interval_started
            entry = {
                "step": done,
                "epoch": round(schedule.epoch_of(done), 4),
                "loss": loss_sum / max(interval_rows, 1),
                "learning_rate": scheduler.get_last_lr()[0],
                "samples_per_s": interval_rows * ctx.world_size / max(elapsed, 1e-9),
                **_peak_memory_mb(ctx.device),
            }
            state["history"].append(entry)
            _print(
                ctx,
                f"{_progress_bar(done, schedule.total_steps)} step {done}/{schedule.total_steps} "
                f"epoch {entry['epoch']:.2f} loss {entry['loss']:.4f} lr {entry['learning_rate']:.2e} "
                f"{entry['samples_per_s']:.1f} samples/s",
            )
            interval_loss.zero_()
            interval_rows, interval_started = 0, time.perf_counter()

        if done % schedule.eval_every == 0 or done == schedule.total_steps:
            throughput = rows_seen / max(time.perf_counter() - run_started, 1e-9)
            last_metrics = _evaluate_and_report(
                cfg, ctx, reporter, model, tokenizer, optimizer, scheduler, validation, state, done,
                schedule, autocast, final=done == schedule.total_steps, train_samples_per_s=throughput,
            )
    wall = time.perf_counter() - run_started
    _print(
        ctx,
        f"training finished: {schedule.total_steps - start_step} steps in {wall:.1f}s "
        f"({rows_seen / max(wall, 1e-9):.1f} samples/s over {ctx.world_size} worker(s))",
    )
    sys.stdout.flush()
    return last_metrics


def _evaluate_and_report(
    cfg: TrainJobConfig,
    ctx: WorkerContext,
    reporter: Reporter,
    model: torch.nn.Module,
    tokenizer: Any,
    optimizer: Any,
    scheduler: Any,
    validation: TextDataset,
    state: dict[str, Any],
    step: int,
    schedule: _Schedule,
    autocast: Callable[[], Any],
    final: bool,
    train_samples_per_s: float,
) -> dict[str, Any]:
    started = time.perf_counter()
    m = evaluate(model, tokenizer, validation, cfg, ctx, autocast)
    entry = {
        "step": step,
        "epoch": round(schedule.epoch_of(step), 4),
        "eval_accuracy": m["accuracy"],
        "eval_f1": m["f1"],
        "eval_loss": m["loss"],
        "eval_roc_auc": m["roc_auc"],
    }
    state["history"].append(entry)
    state["step"] = step
    metrics: dict[str, Any] = {
        **entry,
        CHECKPOINT_SCORE: checkpoint_score(m["accuracy"], m["loss"], len(validation)),
        "total_steps": schedule.total_steps,
        "done": final,
        "attempt_start_steps": [a["start_step"] for a in state["attempts"]],
        "seconds_in_eval": time.perf_counter() - started,
        "train_samples_per_s": train_samples_per_s,
    }
    if final:
        metrics["weight_fingerprints"] = _all_gather(weights_fingerprint(model), ctx)
    _print(
        ctx,
        f"eval @ step {step}: accuracy {m['accuracy']:.4f} f1 {m['f1']:.4f} loss {m['loss']:.4f} "
        f"({len(validation)} rows)",
    )
    tmp = tempfile.mkdtemp(prefix="sentiray-ckpt-") if ctx.is_main else None
    try:
        if tmp is not None:
            _save_checkpoint(Path(tmp), model, tokenizer, optimizer, scheduler, state)
        reporter.report(metrics, tmp)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return metrics
