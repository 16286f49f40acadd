"""The Ray-free training loop, in process (world size 1, the tiny model): learning, checkpoints, resume."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from sentiray.config import TrainJobConfig, build_config
from sentiray.data import TextDataset
from sentiray.errors import ModelLoadError, RunStateError
from sentiray.runs import CHECKPOINT_SCORE, checkpoint_score
from sentiray.training import STATE_FILE, WorkerContext, prefetch, read_checkpoint_state, run_training
from tests.support import synthetic_reviews

TRAIN_ROWS, VAL_ROWS = 320, 48


@dataclass
class Report:
    metrics: dict[str, Any]
    checkpoint: Path | None


class ListReporter:
    """Keeps every report, with a copy of its checkpoint (the loop deletes its own after report)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.reports: list[Report] = []

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        copy = None
        if checkpoint_dir is not None:
            copy = self.root / f"checkpoint-{metrics['step']:04d}"
            shutil.copytree(checkpoint_dir, copy)
        self.reports.append(Report(dict(metrics), copy))

    def at_step(self, step: int) -> Report:
        [found] = [r for r in self.reports if r.metrics["step"] == step]
        return found


@pytest.fixture(scope="module")
def deterministic_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model without dropout, so a resumed run can be compared bit for bit."""
    folder = tmp_path_factory.mktemp("tiny-no-dropout")
    shutil.copytree(tiny_model_dir, folder, dirs_exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    config.update(dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def data() -> tuple[TextDataset, TextDataset]:
    train = TextDataset(*synthetic_reviews(TRAIN_ROWS, seed=11), source="synthetic-train")
    validation = TextDataset(*synthetic_reviews(VAL_ROWS, seed=12), source="synthetic-validation")
    return train, validation


def _cfg(model_dir: Path, **overrides: Any) -> TrainJobConfig:
    values = {
        "base_model": str(model_dir),
        "max_length": 48,
        "batch_size": 16,
        "learning_rate": 3e-3,
        "epochs": 3,
        "eval_every_steps": 10,
        "log_every_steps": 2,
        "precision": "fp32",
        "num_workers": 1,
        "warmup_ratio": 0.1,
        "seed": 5,
    }
    values.update(overrides)
    return build_config(overrides=values)


@pytest.fixture(scope="module")
def full_run(
    deterministic_model_dir: Path,
    data: tuple[TextDataset, TextDataset],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[TrainJobConfig, ListReporter, dict[str, Any]]:
    """3 epochs of 20 steps, evaluated and checkpointed every 10 steps."""
    cfg = _cfg(deterministic_model_dir)
    reporter = ListReporter(tmp_path_factory.mktemp("full-run"))
    final = run_training(cfg, *data, WorkerContext(), reporter)
    return cfg, reporter, final


def test_loss_falls_and_the_classes_separate(
    full_run: tuple[TrainJobConfig, ListReporter, dict[str, Any]],
) -> None:
    _, reporter, final = full_run
    state = read_checkpoint_state(reporter.reports[-1].checkpoint)  # type: ignore[arg-type]
    train_losses = [h["loss"] for h in state["history"] if "loss" in h]
    assert len(train_losses) == 30  # every 2 of 60 steps
    assert train_losses[0] > 0.6  # about ln 2 at the start
    assert train_losses[-1] < 0.7 * train_losses[0]
    assert sum(train_losses[-3:]) < sum(train_losses[:3])
    # Each log entry carries this worker's peak memory so far (bench/train_overhead.py reports it).
    peaks = [h["peak_rss_mb"] for h in state["history"] if "loss" in h]
    assert peaks[0] > 50 and peaks == sorted(peaks)
    eval_losses = [r.metrics["eval_loss"] for r in reporter.reports]
    assert eval_losses[-1] < eval_losses[0]
    assert final["eval_accuracy"] >= 0.9


def test_reports_and_checkpoints(full_run: tuple[TrainJobConfig, ListReporter, dict[str, Any]]) -> None:
    _, reporter, final = full_run
    assert [r.metrics["step"] for r in reporter.reports] == [10, 20, 30, 40, 50, 60]
    assert [r.metrics["done"] for r in reporter.reports] == [False] * 5 + [True]
    assert all(r.metrics["total_steps"] == 60 for r in reporter.reports)
    assert reporter.reports[1].metrics["epoch"] == pytest.approx(1.0)
    assert final == reporter.reports[-1].metrics
    assert final["attempt_start_steps"] == [0]
    assert len(final["weight_fingerprints"]) == 1
    for report in reporter.reports:
        # The metric Ray Train keeps checkpoints by, from the same rule that picks the artifact's.
        m = report.metrics
        assert m[CHECKPOINT_SCORE] == checkpoint_score(m["eval_accuracy"], m["eval_loss"], VAL_ROWS)
        assert report.checkpoint is not None
        names = {p.name for p in report.checkpoint.iterdir()}
        assert {
            STATE_FILE,
            "model.safetensors",
            "config.json",
            "tokenizer.json",
            "optimizer.pt",
            "scheduler.pt",
        } <= names
        assert not any(n.endswith(".bin") for n in names)
        state = json.loads((report.checkpoint / STATE_FILE).read_text())
        assert state["step"] == report.metrics["step"]
        assert state["attempts"] == [{"start_step": 0, "world_size": 1}]
        evals = [h for h in state["history"] if "eval_accuracy" in h]
        assert [h["step"] for h in evals] == list(range(10, report.metrics["step"] + 1, 10))


def test_checkpoint_without_state_file_is_incomplete(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="incomplete"):
        read_checkpoint_state(tmp_path)


def test_resume_continues_at_the_checkpoint_step(
    full_run: tuple[TrainJobConfig, ListReporter, dict[str, Any]],
    data: tuple[TextDataset, TextDataset],
    tmp_path: Path,
) -> None:
    cfg, reporter, final = full_run
    checkpoint = reporter.at_step(30).checkpoint
    assert checkpoint is not None
    resumed = ListReporter(tmp_path)
    result = run_training(cfg, *data, WorkerContext(), resumed, resume_from=str(checkpoint))
    assert [r.metrics["step"] for r in resumed.reports] == [40, 50, 60]
    assert result["attempt_start_steps"] == [0, 30]
    assert result["total_steps"] == final["total_steps"] == 60
    assert result["step"] == 60
    assert result["done"] is True
    state = read_checkpoint_state(resumed.reports[-1].checkpoint)  # type: ignore[arg-type]
    assert state["attempts"] == [{"start_step": 0, "world_size": 1}, {"start_step": 30, "world_size": 1}]
    # The history of the first attempt is carried on, not restarted.
    assert [h["step"] for h in state["history"] if "eval_accuracy" in h] == [10, 20, 30, 40, 50, 60]
    # Same data order, optimizer and schedule state: the resumed run ends with the same weights.
    assert result["weight_fingerprints"] == final["weight_fingerprints"]
    assert result["eval_accuracy"] == final["eval_accuracy"]


def test_resume_from_the_last_checkpoint_trains_no_more(
    full_run: tuple[TrainJobConfig, ListReporter, dict[str, Any]],
    data: tuple[TextDataset, TextDataset],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg, reporter, _ = full_run
    resumed = ListReporter(tmp_path)
    run_training(cfg, *data, WorkerContext(), resumed, resume_from=str(reporter.reports[-1].checkpoint))
    assert resumed.reports == []
    out = capsys.readouterr().out
    assert "resuming from step 60" in out
    assert "training finished: 0 steps" in out


def test_resuming_from_a_malformed_state_file_names_the_file_and_the_field(
    full_run: tuple[TrainJobConfig, ListReporter, dict[str, Any]],
    data: tuple[TextDataset, TextDataset],
    tmp_path: Path,
) -> None:
    cfg, reporter, _ = full_run
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(reporter.at_step(30).checkpoint, checkpoint)  # type: ignore[arg-type]
    state = json.loads((checkpoint / STATE_FILE).read_text())
    (checkpoint / STATE_FILE).write_text(json.dumps({**state, "step": -30}))
    resumed = ListReporter(tmp_path / "reports")
    with pytest.raises(RunStateError, match=r"trainer_state\.json: not a sentiray trainer state(.|\n)*step"):
        run_training(cfg, *data, WorkerContext(), resumed, resume_from=str(checkpoint))
    assert resumed.reports == []


def test_gradient_accumulation_matches_a_larger_batch(
    deterministic_model_dir: Path, data: tuple[TextDataset, TextDataset], tmp_path: Path
) -> None:
    """batch 8 x 2 micro-batches per step takes the same steps as batch 16 (the exact mean gradient)."""
    weights = []
    for name, overrides in (("big", {"batch_size": 16}), ("accum", {"batch_size": 8, "grad_accum_steps": 2})):
        cfg = _cfg(deterministic_model_dir, max_steps=3, eval_every_steps=3, **overrides)
        reporter = ListReporter(tmp_path / name)
        run_training(cfg, *data, WorkerContext(), reporter)
        assert [r.metrics["step"] for r in reporter.reports] == [3]
        weights.append(load_file(str(reporter.reports[-1].checkpoint / "model.safetensors")))  # type: ignore[operator]
    big, accum = weights
    assert big.keys() == accum.keys()
    initial = load_file(str(deterministic_model_dir / "model.safetensors"))
    for key in big:
        torch.testing.assert_close(accum[key], big[key], rtol=1e-4, atol=1e-5, msg=key)
    assert any(not torch.equal(big[k], initial[k]) for k in big)  # it did train


def test_max_steps_overrides_epochs(
    deterministic_model_dir: Path, data: tuple[TextDataset, TextDataset], tmp_path: Path
) -> None:
    cfg = _cfg(deterministic_model_dir, epochs=50, max_steps=2, eval_every_steps=None, log_every_steps=1)
    reporter = ListReporter(tmp_path)
    result = run_training(cfg, *data, WorkerContext(), reporter)
    assert result["total_steps"] == 2
    assert [r.metrics["step"] for r in reporter.reports] == [2]


def test_fp16_on_cpu_is_refused(tiny_model_dir: Path, data: tuple[TextDataset, TextDataset]) -> None:
    cfg = _cfg(tiny_model_dir, precision="fp16")
    reporter = ListReporter(Path(tempfile.mkdtemp()))
    with pytest.raises(ModelLoadError, match="precision fp16 is for GPUs; use bf16 or fp32 on CPU"):
        run_training(cfg, *data, WorkerContext(), reporter)
    assert reporter.reports == []


def test_frozen_layers_stay_put_and_a_resumed_grouped_run_ends_identical(
    deterministic_model_dir: Path, data: tuple[TextDataset, TextDataset], tmp_path: Path
) -> None:
    """The CPU recipe's switches: freeze_layers keeps the embeddings and layer 0 bit for bit, and a run
    with length-grouped batches resumed halfway ends with the weights of the uninterrupted run."""
    cfg = _cfg(deterministic_model_dir, max_steps=6, eval_every_steps=3, freeze_layers=1, group_by_length=True)
    whole = ListReporter(tmp_path / "whole")
    final = run_training(cfg, *data, WorkerContext(), whole)
    initial = load_file(str(deterministic_model_dir / "model.safetensors"))
    trained = load_file(str(whole.at_step(6).checkpoint / "model.safetensors"))  # type: ignore[operator]
    frozen = [k for k in initial if k.startswith(("distilbert.embeddings.", "distilbert.transformer.layer.0."))]
    assert frozen and all(torch.equal(trained[k], initial[k]) for k in frozen)
    assert not torch.equal(trained["distilbert.transformer.layer.1.ffn.lin1.weight"],
                           initial["distilbert.transformer.layer.1.ffn.lin1.weight"])
    assert not torch.equal(trained["classifier.weight"], initial["classifier.weight"])

    resumed = ListReporter(tmp_path / "resumed")
    result = run_training(cfg, *data, WorkerContext(), resumed, resume_from=str(whole.at_step(3).checkpoint))
    assert result["attempt_start_steps"] == [0, 3]
    assert result["weight_fingerprints"] == final["weight_fingerprints"]


# --- prefetch: the loop prepares the next batches in a background thread -------------------------------


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sentiray-prefetch"]


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.mark.parametrize("depth", [1, 3])
def test_prefetch_yields_every_item_in_order(depth: int) -> None:
    assert list(prefetch(iter(range(50)), depth=depth)) == list(range(50))
    assert _wait_for(lambda: not _prefetch_threads())


def test_prefetch_prepares_items_ahead_of_the_consumer() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for i in range(10):
            produced.append(i)
            yield i

    stream = prefetch(items(), depth=2)
    assert next(stream) == 0
    # While the consumer holds item 0, the thread fills the queue (items 1 and 2) and has made item 3.
    assert _wait_for(lambda: len(produced) >= 4)
    assert len(produced) == 4  # and no further: the queue is bounded
    stream.close()
    assert _wait_for(lambda: not _prefetch_threads())


def test_prefetch_raises_the_producers_error_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 0
        yield 1
        raise ValueError("row 2 cannot be tokenized")

    got: list[int] = []

    def consume() -> None:
        for item in prefetch(items(), depth=2):
            got.append(item)

    with pytest.raises(ValueError, match="row 2 cannot be tokenized"):
        consume()
    assert got == [0, 1]
    assert _wait_for(lambda: not _prefetch_threads())


def test_prefetch_stops_its_thread_when_the_consumer_fails() -> None:
    def endless() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    def consume() -> None:
        for item in prefetch(endless(), depth=2):
            if item == 5:
                raise RuntimeError("consumer failed")

    with pytest.raises(RuntimeError, match="consumer failed"):
        consume()
    assert _wait_for(lambda: not _prefetch_threads())


# --- real gloo process groups -------------------------------------------------------------------------


def _gloo_rank(rank: int, world: int, init_file: str, work: Any, model_dir: str, out_dir: str) -> None:
    """One rank of a real gloo process group running `work(rank, world, model_dir, out_dir)`."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        work(rank, world, model_dir, out_dir)
    finally:
        dist.destroy_process_group()


def _run_ranks(work: Any, world: int, model_dir: Path, out_dir: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_gloo_rank, args=(world, str(out_dir / "init"), work, str(model_dir), str(out_dir)),
             nprocs=world, join=True)


# --- token counts for length grouping, shared across ranks ----------------------------------------------


def _lengths_on_rank(rank: int, world: int, model_dir: str, out_dir: str) -> None:
    """One rank's view of the shared token counts, written to a file."""
    import numpy as np

    from sentiray.model import load_tokenizer
    from sentiray.training import shared_token_lengths

    texts, labels = synthetic_reviews(101, seed=3)
    cfg = _cfg(Path(model_dir), group_by_length=True)
    lengths = shared_token_lengths(
        load_tokenizer(model_dir), TextDataset(texts, labels, source="s"), cfg, WorkerContext(rank, world)
    )
    np.save(Path(out_dir) / f"rank{rank}.npy", lengths)


def test_ranks_share_the_token_counts_each_computed_in_part(tiny_model_dir: Path, tmp_path: Path) -> None:
    import numpy as np

    from sentiray.model import load_tokenizer
    from sentiray.text import token_lengths

    world = 2
    _run_ranks(_lengths_on_rank, world, tiny_model_dir, tmp_path)
    texts, _ = synthetic_reviews(101, seed=3)
    expected = token_lengths(load_tokenizer(str(tiny_model_dir)), texts, 48, "head_tail")
    assert len(set(expected.tolist())) > 5  # the texts differ in length, so a misplaced count shows
    for rank in range(world):
        assert np.array_equal(np.load(tmp_path / f"rank{rank}.npy"), expected)


# --- evaluation with fewer validation rows than ranks ---------------------------------------------------


def _evaluate_on_rank(rank: int, world: int, model_dir: str, out_dir: str) -> None:
    """One rank evaluating a one-row validation split, its metrics written to a file."""
    from contextlib import nullcontext

    from sentiray.model import load_model, load_tokenizer
    from sentiray.training import evaluate

    texts, labels = synthetic_reviews(1, seed=4)
    metrics = evaluate(
        load_model(model_dir), load_tokenizer(model_dir), TextDataset(texts, labels, source="s"),
        _cfg(Path(model_dir)), WorkerContext(rank, world), nullcontext,
    )
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(metrics))


def test_a_rank_with_no_validation_rows_still_evaluates(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`--max-eval-samples 1 --num-workers 2`: rank 1's stride is empty; every rank gets the one row's metrics."""
    from contextlib import nullcontext

    from sentiray.model import load_model, load_tokenizer
    from sentiray.training import evaluate

    world = 2
    _run_ranks(_evaluate_on_rank, world, tiny_model_dir, tmp_path)
    texts, labels = synthetic_reviews(1, seed=4)
    alone = evaluate(
        load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir)), TextDataset(texts, labels, source="s"),
        _cfg(tiny_model_dir), WorkerContext(), nullcontext,
    )
    expected_loss = alone.pop("loss")
    assert alone["n"] == 1
    for rank in range(world):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got.pop("loss") == pytest.approx(expected_loss, rel=1e-5)
        assert got == alone
