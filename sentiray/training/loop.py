"""The Trainer: set up (model, optimizer, scaler, resume), then step, log, evaluate and checkpoint.

Speed: the next steps' batches are prepared in a background thread (`StepBatches.stream`) while the
device computes the current one, and nothing reads a value back from the device between logging
intervals (the interval's loss stays a device tensor), so the host never makes the device wait. The
gain on a GPU is measured in docs/benchmarks.md, "GPU: the Ray-free core on one H200".
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from sentiray.config import Scheduler, TrainJobConfig
from sentiray.data import TextDataset
from sentiray.model import freeze_lower_layers, load_model, load_tokenizer, resolve_precision
from sentiray.runs import CHECKPOINT_SCORE, checkpoint_score
from sentiray.training import evaluation
from sentiray.training.batches import PreparedStep, Schedule, StepBatches, shared_token_lengths
from sentiray.training.context import Reporter, WorkerContext, all_gather, peak_memory_mb, say, weights_fingerprint
from sentiray.training.state import Attempt, TrainerState, load_checkpoint, save_checkpoint


def make_scheduler(optimizer: torch.optim.Optimizer, kind: Scheduler, warmup: int, total: int) -> Any:
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


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # No decay on biases and normalisation weights (the usual BERT recipe).
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def _progress_bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / max(total, 1))
    return f"[{'#' * filled}{'.' * (width - filled)}] {100 * done / max(total, 1):5.1f}%"


@dataclass
class Progress:
    """This attempt's counters, not saved: a resumed attempt measures its own speed."""

    interval_loss: torch.Tensor  # on the device until logged: reading it each step would sync
    interval_rows: int = 0
    interval_started: float = field(default_factory=time.perf_counter)
    run_started: float = field(default_factory=time.perf_counter)
    rows_seen: int = 0

    def train_samples_per_s(self) -> float:
        return self.rows_seen / max(time.perf_counter() - self.run_started, 1e-9)


class Trainer:
    """One worker's part of data-parallel fine-tuning; `fit` trains until the configured steps are done."""

    def __init__(
        self,
        cfg: TrainJobConfig,
        train: TextDataset,
        validation: TextDataset,
        ctx: WorkerContext,
        reporter: Reporter,
        resume_from: str | None = None,
    ) -> None:
        o = cfg.optim
        torch.manual_seed(o.seed)
        torch.set_num_threads(o.torch_threads or max(1, int(cfg.run.cpus_per_worker)))
        self.cfg, self.train_data, self.validation, self.ctx, self.reporter = cfg, train, validation, ctx, reporter
        self.schedule = Schedule(cfg, len(train), ctx.world_size)
        self.compute_dtype = resolve_precision(o.precision, ctx.device)
        self.model, self.tokenizer = self.build_model(resume_from)
        self.optimizer = make_optimizer(self.model, o.learning_rate, o.weight_decay)
        s = self.schedule
        self.scheduler = make_scheduler(self.optimizer, o.scheduler, s.warmup_steps, s.total_steps)
        self.state = load_checkpoint(resume_from, self.optimizer, self.scheduler) if resume_from else TrainerState()
        self.start_step = self.state.step
        self.state.attempts.append(Attempt(start_step=self.start_step, world_size=ctx.world_size))
        self.ddp_model: torch.nn.Module = self.model
        if ctx.world_size > 1 and dist.is_initialized():
            self.ddp_model = DistributedDataParallel(
                self.model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
            )
        self.scaler = torch.amp.GradScaler("cuda") if self.compute_dtype == torch.float16 else None
        self.progress = Progress(interval_loss=torch.zeros((), device=ctx.device))

    def build_model(self, resume_from: str | None) -> tuple[torch.nn.Module, Any]:
        """The model (on the device, lower layers frozen as configured) and its tokenizer: the base model's,
        or the resumed checkpoint's own (its files: no revision, and no pickle)."""
        m = self.cfg.model
        base = resume_from or m.base_model
        tokenizer = load_tokenizer(base, None if resume_from else m.revision)
        model = load_model(
            base,
            labels=self.train_data.label_set,
            allow_pickle=m.allow_pickle and not resume_from,
            revision=None if resume_from else m.revision,
        ).to(self.ctx.device)
        freeze_lower_layers(model, self.cfg.optim.freeze_layers)
        model.train()
        return model, tokenizer

    def autocast(self) -> Any:
        if self.compute_dtype == torch.float32:
            return nullcontext()
        return torch.autocast(device_type=self.ctx.device.type, dtype=self.compute_dtype)

    def batches(self) -> StepBatches:
        """The step batches; grouped by length, every rank first learns every row's token count."""
        o, ctx = self.cfg.optim, self.ctx
        lengths = shared_token_lengths(self.tokenizer, self.train_data, self.cfg, ctx) if o.group_by_length else None
        return StepBatches(self.train_data, self.tokenizer, self.cfg, ctx, self.schedule, lengths)

    def fit(self) -> dict[str, Any]:
        """Train from the start (or resumed) step to the last; returns the last reported metrics."""
        s, ctx = self.schedule, self.ctx
        say(
            ctx,
            f"training {self.cfg.model.base_model} on {len(self.train_data)} rows x {s.epoch_of(s.total_steps):.2f} "
            f"epochs = {s.total_steps} steps (global batch {s.global_batch * s.accum}, "
            f"{ctx.world_size} worker(s), {self.compute_dtype}, device {ctx.device}); "
            f"{'resuming from step ' + str(self.start_step) if self.start_step else 'from scratch'}",
        )
        batches = self.batches()
        # Timed from here: the token counts above are set-up.
        self.progress = Progress(interval_loss=torch.zeros((), device=ctx.device))
        last_metrics: dict[str, Any] = {}
        for prepared in batches.stream(self.start_step, s.total_steps):
            self.step(prepared)
            done = prepared.step + 1
            if done % self.cfg.optim.log_every_steps == 0 or done == s.total_steps:
                self.log(done)
            if done % s.eval_every == 0 or done == s.total_steps:
                last_metrics = self.evaluate(done)
                self.checkpoint(last_metrics)
        wall = time.perf_counter() - self.progress.run_started
        say(
            ctx,
            f"training finished: {s.total_steps - self.start_step} steps in {wall:.1f}s "
            f"({self.progress.rows_seen / max(wall, 1e-9):.1f} samples/s over {ctx.world_size} worker(s))",
        )
        sys.stdout.flush()
        return last_metrics

    def step(self, prepared: PreparedStep) -> None:
        """One optimizer step over the step's micro-batches; gradients are all-reduced on the last one."""
        ctx, p = self.ctx, self.progress
        last = len(prepared.micro_batches) - 1
        for a, host in enumerate(prepared.micro_batches):
            batch = {k: v.to(ctx.device, non_blocking=ctx.pins_memory) for k, v in host.items()}
            labels, weights = batch.pop("labels"), batch.pop("weights")
            sync = a == last or not isinstance(self.ddp_model, DistributedDataParallel)
            no_sync = nullcontext() if sync else cast(DistributedDataParallel, self.ddp_model).no_sync()
            with no_sync, self.autocast():
                per_row = evaluation.row_losses(
                    self.ddp_model(**batch).logits, labels, self.train_data.label_set.multi_label
                )
                # DDP averages gradients over ranks; x world_size / global rows makes it the exact mean.
                loss = (per_row * weights).sum() * ctx.world_size / prepared.rows
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            p.interval_loss += (per_row.detach() * weights).sum()
            p.interval_rows += int(host["weights"].sum())
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.max_grad_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        p.rows_seen += prepared.rows

    def log(self, step: int) -> None:
        """The interval's mean loss, learning rate and speed, into the history and the progress line."""
        p, s = self.progress, self.schedule
        loss_sum = float(p.interval_loss)  # waits for the device, so the interval's time is all counted
        elapsed = time.perf_counter() - p.interval_started
        entry = {
            "step": step,
            "epoch": round(s.epoch_of(step), 4),
            "loss": loss_sum / max(p.interval_rows, 1),
            "learning_rate": self.scheduler.get_last_lr()[0],
            "samples_per_s": p.interval_rows * self.ctx.world_size / max(elapsed, 1e-9),
            **peak_memory_mb(self.ctx.device),
        }
        self.state.history.append(entry)
        say(
            self.ctx,
            f"{_progress_bar(step, s.total_steps)} step {step}/{s.total_steps} "
            f"epoch {entry['epoch']:.2f} loss {entry['loss']:.4f} lr {entry['learning_rate']:.2e} "
            f"{entry['samples_per_s']:.1f} samples/s",
        )
        p.interval_loss.zero_()
        p.interval_rows, p.interval_started = 0, time.perf_counter()

    def evaluate(self, step: int) -> dict[str, Any]:
        """Validation metrics at `step`, recorded in the state: the metrics its checkpoint is reported with."""
        throughput = self.progress.train_samples_per_s()
        started = time.perf_counter()
        m = evaluation.evaluate(self.model, self.tokenizer, self.validation, self.cfg, self.ctx, self.autocast)
        entry = {
            "step": step,
            "epoch": round(self.schedule.epoch_of(step), 4),
            "eval_accuracy": m["accuracy"],
            "eval_f1": m["f1"],
            "eval_loss": m["loss"],
            "eval_roc_auc": m["roc_auc"],
        }
        self.state.history.append(entry)
        self.state.step = step
        final = step == self.schedule.total_steps
        metrics: dict[str, Any] = {
            **entry,
            CHECKPOINT_SCORE: checkpoint_score(m["accuracy"], m["loss"], len(self.validation)),
            "total_steps": self.schedule.total_steps,
            "done": final,
            "attempt_start_steps": [a.start_step for a in self.state.attempts],
            "seconds_in_eval": time.perf_counter() - started,
            "train_samples_per_s": throughput,
        }
        if final:
            metrics["weight_fingerprints"] = all_gather(weights_fingerprint(self.model), self.ctx)
        say(
            self.ctx,
            f"eval @ step {step}: accuracy {m['accuracy']:.4f} f1 {m['f1']:.4f} loss {m['loss']:.4f} "
            f"({len(self.validation)} rows)",
        )
        return metrics

    def checkpoint(self, metrics: dict[str, Any]) -> None:
        """Report `metrics` from every rank, with a checkpoint from rank 0 (removed once reported)."""
        tmp = tempfile.mkdtemp(prefix="sentiray-ckpt-") if self.ctx.is_main else None
        try:
            if tmp is not None:
                save_checkpoint(Path(tmp), self.model, self.tokenizer, self.optimizer, self.scheduler, self.state)
            self.reporter.report(metrics, tmp)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)


def run_training(
    cfg: TrainJobConfig,
    train: TextDataset,
    validation: TextDataset,
    ctx: WorkerContext,
    reporter: Reporter,
    resume_from: str | None = None,
) -> dict[str, Any]:
    """Train until the configured steps are done; returns the last reported metrics."""
    return Trainer(cfg, train, validation, ctx, reporter, resume_from).fit()
