"""Score a table of reviews with an artifact on Ray Data: `python -m ray_jobs.score [options]`.

Ray Data reads parquet, CSV or JSON lines (a file, a folder or a glob; local or s3://), a pool of actors
each holding one Predictor classifies the text column batch by batch (`map_batches`, on CPUs or one GPU
per actor), and the rows are written as parquet: the input columns, then `label`, `score` (probability
of the label), one `score_<label>` per label and `error`.

Rows that cannot be classified (missing or empty text, non-text, too long with `--no-truncate`) are
kept: their `error` says why and their label and scores are null. The job reports how many there were,
with the first examples, and exits 1 with `--fail-on-bad-rows`. The same entrypoint runs on a laptop
(local Ray), under `ray job submit`, and as a KubeRay RayJob (k8s/score/); `sentiray score` runs it too.

This module is the driver (read, size the actor pool, write, summarize). The options are
`sentiray.score_config.ScoreConfig`, the actor is `ray_jobs.score_actor`, the order-keeping writer
`ray_jobs.score_writer`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ray_jobs._cluster import init_ray
from ray_jobs.score_actor import Scorer
from ray_jobs.score_writer import write_output
from sentiray import storage
from sentiray.entrypoint import run_entrypoint
from sentiray.errors import ConfigError, DataError, SentirayError
from sentiray.labels import LabelSet
from sentiray.score_config import InputFormat, ScoreConfig, add_score_arguments
from sentiray.scored import ERROR_COLUMN, ScoredSchema

RESULT_PREFIX = "SENTIRAY_SCORE_RESULT "
BAD_EXAMPLES = 5
# Rows of a block that the actor pool hands out = batches * batch_size. A few batches per block keep Ray
# Data's per-block cost (one task submission) small next to the block's forward passes, while a big file
# still makes many blocks for the pool to spread.
BATCHES_PER_BLOCK = 8
DESCRIPTION = (
    "Score a table of reviews with a sentiray artifact on Ray Data and write parquet with label, score, "
    "per-label scores and error columns beside the input columns."
)

log = logging.getLogger("sentiray.score")


# --- the driver -----------------------------------------------------------------------------------------


def _detect_format(location: str) -> InputFormat:
    """The format from the file extension; for a folder, from the files in it."""
    fs, path = storage.filesystem(location)
    import pyarrow.fs as pafs

    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"input: {location} does not exist")
    names = [path]
    if info.type == pafs.FileType.Directory:
        names = [
            i.path for i in fs.get_file_info(pafs.FileSelector(path, recursive=True)) if i.type == pafs.FileType.File
        ]
    found = set()
    for name in names:
        lower = name.lower()
        for fmt, exts in (
            (InputFormat.PARQUET, (".parquet",)),
            (InputFormat.CSV, (".csv", ".csv.gz")),
            (InputFormat.JSONL, (".jsonl", ".json", ".jsonl.gz", ".json.gz")),
        ):
            if lower.endswith(exts):
                found.add(fmt)
    if len(found) != 1:
        what = f"several formats ({', '.join(sorted(found))})" if found else "no .parquet, .csv or .jsonl file"
        raise DataError(f"input: {location} holds {what}; pass --format parquet|csv|jsonl")
    return found.pop()


def read_input(cfg: ScoreConfig, fmt: InputFormat) -> Any:
    import ray.data

    fs, path = storage.filesystem(cfg.input)
    if fmt == InputFormat.PARQUET:
        return ray.data.read_parquet(path, filesystem=fs)
    if fmt == InputFormat.CSV:
        return ray.data.read_csv(path, filesystem=fs, file_extensions=["csv", "csv.gz"])
    # Arrow's JSON reader takes newline-delimited JSON; Ray's lines=True path cannot take a filesystem.
    return ray.data.read_json(path, filesystem=fs)


def _artifact_labels(local_dir: Any) -> LabelSet:
    """The artifact's label set, from its model config (the record of its labels)."""
    from transformers import AutoConfig

    return LabelSet.from_model_config(AutoConfig.from_pretrained(str(local_dir), trust_remote_code=False))


def _check_columns(ds: Any, cfg: ScoreConfig, scored: ScoredSchema) -> None:
    schema = ds.schema()
    names = list(schema.names) if schema is not None else []
    if cfg.text_column not in names:
        raise DataError(
            f"text_column: {cfg.text_column!r} is not a column of {cfg.input}; columns: {', '.join(names) or 'none'}"
        )
    clash = scored.clashes(names)
    if clash:
        raise DataError(f"{cfg.input}: already has column(s) {clash}, which the scores are written to; rename them")


def _pool_size(cfg: ScoreConfig) -> tuple[int, int]:
    """(smallest, largest) actor pool; refuses a pool the cluster cannot hold.

    Ray Data waits for the smallest pool to start, so an actor that fits no node (a GPU actor on a cluster
    without GPUs) would wait forever. Judged from the resources the cluster has now: the job's manifests
    run without the Ray autoscaler, which could otherwise add the nodes on demand.
    """
    import ray

    resources = ray.cluster_resources()
    unit, per_actor = ("GPU", 1.0) if cfg.use_gpu else ("CPU", cfg.cpus_per_actor)
    have, need = float(resources.get(unit, 0.0)), cfg.min_actors * per_actor
    if have < need:
        field = "use_gpu" if cfg.use_gpu and have == 0 else "min_actors"
        fix = "run without --use-gpu, or on a cluster with GPU nodes" if field == "use_gpu" else (
            "lower --min-actors or --cpus-per-actor" if unit == "CPU" else "lower --min-actors"
        )
        raise ConfigError(
            f"{field}: {cfg.min_actors} actor(s) need {need:g} {unit}(s) and the Ray cluster has {have:g}, "
            f"so scoring would wait forever; {fix}"
        )
    if cfg.max_actors is not None:
        return cfg.min_actors, cfg.max_actors
    fits = int(have // per_actor)
    return cfg.min_actors, max(cfg.min_actors, fits)


@dataclass
class ScoreSummary:
    rows: int
    bad_rows: int
    bad_examples: list[dict[str, Any]]
    seconds: float
    output: str

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def _summarize(cfg: ScoreConfig, seconds: float) -> ScoreSummary:
    """Count rows and bad rows from what was written (one column read back), with the first examples."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    fs, path = storage.filesystem(cfg.output)
    data = pads.dataset(path, filesystem=fs, format="parquet")
    rows = data.count_rows()
    bad_filter = pc.field(ERROR_COLUMN).is_valid()
    bad = data.count_rows(filter=bad_filter)
    examples: list[dict[str, Any]] = []
    if bad:
        head = data.head(BAD_EXAMPLES, columns=[cfg.text_column, ERROR_COLUMN], filter=bad_filter)
        for row in head.to_pylist():
            text = row[cfg.text_column]
            shown = text[:80] + "..." if isinstance(text, str) and len(text) > 80 else text
            examples.append({cfg.text_column: shown, ERROR_COLUMN: row[ERROR_COLUMN]})
    return ScoreSummary(rows=rows, bad_rows=bad, bad_examples=examples, seconds=seconds, output=cfg.output)


def run(cfg: ScoreConfig) -> ScoreSummary:
    """Read, score with an actor pool, write parquet; returns what was written, with throughput."""
    import ray.data
    from ray.data import ActorPoolStrategy

    from sentiray.artifact import fetch_artifact

    local_dir, manifest = fetch_artifact(cfg.model)  # fail fast, before any actor starts, on a bad artifact
    schema = ScoredSchema(_artifact_labels(local_dir))
    out_fs, out_path = storage.filesystem(cfg.output)
    if storage.exists(cfg.output) and not cfg.overwrite:
        import pyarrow.fs as pafs

        if out_fs.get_file_info(pafs.FileSelector(out_path, allow_not_found=True)):
            raise ConfigError(f"output: {cfg.output} exists and is not empty; pass --overwrite to replace it")
    # Before Ray starts: a missing input or an unknown format fails at once.
    fmt = _detect_format(cfg.input) if cfg.format == InputFormat.AUTO else cfg.format
    init_ray()
    ctx = ray.data.DataContext.get_current()
    # Keeps blocks in input order between operators (files in path order, then each file's blocks);
    # write_output keeps the rows within each block and orders the files.
    ctx.execution_options.preserve_order = cfg.preserve_order
    started = time.perf_counter()
    ds = read_input(cfg, fmt)
    _check_columns(ds, cfg, schema)
    low, high = _pool_size(cfg)
    # Ray Data 2.60 reads a parquet file as one block whatever its row groups, and a block goes to one
    # actor: a single input file was scored by one actor while the others idled (docs/reliability.md,
    # "Scoring"). Blocks of a few batches give every actor work from the start and bound what a lost
    # actor's retry redoes; the streaming split keeps block order (preserve_order).
    ds = ds.repartition(target_num_rows_per_block=cfg.batch_size * BATCHES_PER_BLOCK)
    print(
        f"scoring {cfg.input} -> {cfg.output} with {cfg.model} (base {manifest.base_model}), "
        f"{low}-{high} actor(s) on {'GPU' if cfg.use_gpu else 'CPU'}, batches of {cfg.batch_size}; "
        f"labels: {', '.join(schema.labels.names)}",
        flush=True,
    )
    scored = ds.map_batches(
        Scorer,
        fn_constructor_kwargs={
            "model": cfg.model,
            "text_column": cfg.text_column,
            "precision": cfg.precision.value,
            "runtime": cfg.runtime.value,
            "use_gpu": cfg.use_gpu,
            "truncate": cfg.truncate,
            "batch_size": cfg.batch_size,
            "threads": max(1, int(cfg.cpus_per_actor)),
        },
        batch_size=cfg.batch_size,
        batch_format="pyarrow",
        compute=ActorPoolStrategy(min_size=low, max_size=high),
        num_cpus=cfg.cpus_per_actor,
        num_gpus=1 if cfg.use_gpu else 0,
        udf_modifying_row_count=False,
    )
    write_output(scored, out_fs, out_path, overwrite=cfg.overwrite)
    summary = _summarize(cfg, time.perf_counter() - started)
    print(
        f"scored {summary.rows:,} rows in {summary.seconds:.1f}s ({summary.rows_per_s:,.1f} rows/s); "
        f"{summary.bad_rows:,} bad row(s); output: {summary.output}",
        flush=True,
    )
    if summary.bad_rows:
        print(
            f"bad rows (their `{ERROR_COLUMN}` column says why; label and scores are null), first "
            f"{len(summary.bad_examples)}:",
            flush=True,
        )
        for example in summary.bad_examples:
            print(f"  {example[cfg.text_column]!r}: {example[ERROR_COLUMN]}", flush=True)
    result = {
        "output": summary.output,
        "rows": summary.rows,
        "bad_rows": summary.bad_rows,
        "seconds": round(summary.seconds, 2),
        "rows_per_s": round(summary.rows_per_s, 2),
    }
    print(RESULT_PREFIX + json.dumps(result, sort_keys=True), flush=True)
    return summary


class BadRowsError(SentirayError):
    """--fail-on-bad-rows and the input had rows that could not be scored (the output is written)."""


def build_parser(prog: str = "python -m ray_jobs.score") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_score_arguments(p)
    return p


def score(cfg: ScoreConfig) -> ScoreSummary:
    """`run`, then --fail-on-bad-rows: what `sentiray score` and this module's main do."""
    summary = run(cfg)
    if cfg.fail_on_bad_rows and summary.bad_rows:
        raise BadRowsError(f"{summary.bad_rows} row(s) could not be scored; see the `{ERROR_COLUMN}` column")
    return summary


def main(argv: Sequence[str] | None = None, prog: str = "python -m ray_jobs.score") -> int:
    args = build_parser(prog).parse_args(argv)

    def work() -> None:
        score(ScoreConfig.from_args(args))

    return run_entrypoint(work)


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "RESULT_PREFIX", "InputFormat", "ScoreConfig", "ScoreSummary", "main", "run", "score",
    "write_output",
]
