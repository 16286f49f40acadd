"""Fine-tune a sentiment classifier with Ray Train: `python -m ray_jobs.train [options]`.

The same entrypoint runs on a laptop (a local Ray is started if none is running), under
`ray job submit`, and as a KubeRay RayJob. Ray plumbing only: data loading, the training loop and the
artifact live in the Ray-free core (`sentiray`), and so do the run's bookkeeping and decisions
(`sentiray.runs`: its name and state in storage, which checkpoints are kept and exported).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from ray_jobs._cluster import init_ray
from sentiray import storage
from sentiray.config import TrainJobConfig, add_config_arguments, config_from_namespace
from sentiray.data import DatasetSplits, load_splits
from sentiray.entrypoint import run_entrypoint
from sentiray.errors import SentirayError
from sentiray.metrics import format_metrics_table
from sentiray.runs import (
    RESULT_PREFIX,
    RUN_STATE_FILE,
    checkpoint_retention,
    export_cpus,
    pick_best,
    resolve_run_name,
    result_line,
    write_run_state,
)

# Where a worker copies the checkpoint it resumes from (in its temp folder).
RESUME_COPY_PREFIX = "sentiray-resume-"

log = logging.getLogger("sentiray.train")


# --- the worker -------------------------------------------------------------------------------------


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker function: set up the context, resume if Ray hands a checkpoint, train."""
    import ray
    import ray.train
    import ray.train.torch

    from sentiray.training import WorkerContext, run_training

    cfg = TrainJobConfig.model_validate(config["cfg"])
    splits: DatasetSplits = ray.get(config["splits_ref"])
    context = ray.train.get_context()
    ctx = WorkerContext(
        rank=context.get_world_rank(),
        world_size=context.get_world_size(),
        device=ray.train.torch.get_device(),
    )

    class RayReporter:
        def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
            checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
            ray.train.report(metrics, checkpoint=checkpoint)

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        run_training(cfg, splits.train, splits.validation, ctx, RayReporter())
        return
    # A private copy for the attempt: Ray may delete the checkpoint it handed over (once it falls out of
    # the kept ones) while the weights loaded from it are still memory-mapped. Removed when the attempt
    # ends, or each restart would leave one more copy on the node's disk.
    local = tempfile.mkdtemp(prefix=RESUME_COPY_PREFIX)
    try:
        with checkpoint.as_directory() as folder:
            shutil.copytree(folder, local, dirs_exist_ok=True)
        run_training(cfg, splits.train, splits.validation, ctx, RayReporter(), resume_from=local)
    finally:
        shutil.rmtree(local, ignore_errors=True)


def _export_task(
    best_checkpoint: Any, latest_checkpoint: Any, cfg_json: dict[str, Any], splits: DatasetSplits, output: str,
    validation_metrics: dict[str, Any], model_name: str,
) -> tuple[str, dict[str, Any] | None]:
    """Runs as a Ray task (on a GPU when training used GPUs): test evaluation + artifact write.

    `splits` arrives resolved: Ray passes the object behind a top-level ObjectRef argument.
    """
    from sentiray.export import export_checkpoint
    from sentiray.training import read_checkpoint_state

    cfg = TrainJobConfig.model_validate(cfg_json)
    with latest_checkpoint.as_directory() as latest:
        history = read_checkpoint_state(latest).get("history", [])
    with best_checkpoint.as_directory() as best:
        return export_checkpoint(
            best, cfg, output, test=splits.test, dataset_summary=splits.summary(),
            history=history, validation_metrics=validation_metrics, model_name=model_name,
            device="cuda" if cfg.run.use_gpu else "cpu",
        )


# --- the driver -------------------------------------------------------------------------------------


def run(cfg: TrainJobConfig) -> dict[str, Any]:
    """Train, evaluate the best checkpoint on the test split, write the artifact; returns the result."""
    started = time.perf_counter()
    name, resuming = resolve_run_name(cfg)
    output = cfg.run.output or storage.join(cfg.run.storage_path, name, "artifact")
    splits = load_splits(cfg.data)  # validated before Ray is even imported
    if cfg.optim.freeze_layers:  # a bad value fails here, not in every worker after Ray starts
        from sentiray.model import check_freeze_layers, model_depth

        check_freeze_layers(cfg.optim.freeze_layers, model_depth(cfg.model.base_model, cfg.model.revision))

    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if splits.test is None:
        log.warning("no test split: the artifact will carry no test metrics")
    print(
        f"run {name!r} ({'resuming' if resuming else 'new'}): train {len(splits.train)}, "
        f"validation {len(splits.validation)}, test {len(splits.test) if splits.test else 0} rows "
        f"from {splits.description}; {splits.label_set.num_labels} classes {splits.train.label_counts()}",
        flush=True,
    )
    init_ray()
    write_run_state(cfg, name, "running", artifact=None)
    splits_ref = ray.put(splits)
    # The same pyarrow filesystem as the run state and artifact (an S3 endpoint from AWS_ENDPOINT_URL).
    storage_fs, storage_path = storage.filesystem(cfg.run.storage_path)
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"cfg": cfg.model_dump(mode="json"), "splits_ref": splits_ref},
        scaling_config=ScalingConfig(
            num_workers=cfg.run.num_workers,
            use_gpu=cfg.run.use_gpu,
            resources_per_worker={"CPU": cfg.run.cpus_per_worker, **({"GPU": 1} if cfg.run.use_gpu else {})},
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            # The same rule as pick_best below, so the checkpoint it prefers is never one Ray deleted.
            checkpoint_config=CheckpointConfig(**checkpoint_retention(cfg)),
            failure_config=FailureConfig(max_failures=cfg.run.max_failures),
        ),
    )
    try:
        result = trainer.fit()
    except Exception as e:
        write_run_state(cfg, name, "failed", error=f"{type(e).__name__}: {e}")
        raise TrainingFailedError(f"run {name!r} failed: {e}. Continue it with --resume {name}") from e
    train_seconds = time.perf_counter() - started
    if not result.best_checkpoints or result.checkpoint is None:
        write_run_state(cfg, name, "failed", error="no checkpoint")
        raise TrainingFailedError(f"run {name!r} reported no checkpoint")
    best_checkpoint, best_metrics = pick_best(result.best_checkpoints)
    final_metrics = result.metrics or {}

    node_cpus = [float(n["Resources"].get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")]
    export = ray.remote(_export_task).options(
        num_cpus=export_cpus(cfg, node_cpus), num_gpus=1 if cfg.run.use_gpu else 0, max_retries=2
    )
    location, test_metrics = ray.get(
        export.remote(best_checkpoint, result.checkpoint, cfg.model_dump(mode="json"), splits_ref, output,
                      {k: v for k, v in best_metrics.items() if k.startswith("eval_")}, name)
    )
    # The step each attempt started from: more than one means a worker or node was lost and the run resumed.
    write_run_state(
        cfg, name, "succeeded", artifact=location, test_metrics=test_metrics,
        attempt_start_steps=final_metrics.get("attempt_start_steps", []),
    )
    wall = time.perf_counter() - started
    if test_metrics:
        print(format_metrics_table(test_metrics, f"test metrics (best checkpoint, step {best_metrics['step']})"))
    print(f"artifact: {location}")
    print(
        f"done in {wall:.1f}s (training {train_seconds:.1f}s at "
        f"{final_metrics.get('train_samples_per_s', 0.0):.1f} samples/s over {cfg.run.num_workers} worker(s))"
    )
    summary = {
        "run": name,
        "artifact": location,
        "storage": storage.join(storage.normalize_location(cfg.run.storage_path), name),
        "test_metrics": test_metrics,
        "best_step": best_metrics.get("step"),
        "validation": {k: v for k, v in best_metrics.items() if k.startswith("eval_")},
        "attempt_start_steps": final_metrics.get("attempt_start_steps", []),
        "weight_fingerprints": final_metrics.get("weight_fingerprints", []),
        "train_samples_per_s": final_metrics.get("train_samples_per_s"),
        "wall_seconds": round(wall, 2),
    }
    print(result_line(summary), flush=True)
    if cfg.run.push_to_hub:
        from sentiray.hub import push_artifact

        # After the result line: a failed push (HubError, exit 1) keeps the artifact and the run's record.
        pushed = push_artifact(location, cfg.run.push_to_hub)
        print(f"pushed to the Hub: {pushed.repo_url} ({pushed.commit_url})", flush=True)
    return summary


class TrainingFailedError(SentirayError):
    """The Ray Train run failed (after its allowed restarts)."""


def build_parser(prog: str = "python -m ray_jobs.train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Fine-tune a sentiment classifier on Ray Train and write a served artifact. "
        "Options come from --preset, then --config YAML, then flags.",
    )
    add_config_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m ray_jobs.train") -> int:
    args = build_parser(prog).parse_args(argv)

    def work() -> None:
        run(config_from_namespace(args))

    return run_entrypoint(work)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["RESULT_PREFIX", "RUN_STATE_FILE", "main", "resolve_run_name", "run"]
