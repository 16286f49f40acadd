"""Score a table of reviews with an artifact on Ray Data: `python -m ray_jobs.score [options]`.

Ray Data reads parquet, CSV or JSON lines (a file, a folder or a glob; local or s3://), a pool of actors
each holding one Predictor classifies the text column batch by batch (`map_batches`, on CPUs or one GPU
per actor), and the rows are written as parquet: the input columns, then `label`, `score` (probability
of the label), one `score_<label>` per label and `error`.

Rows that cannot be classified (missing or empty text, non-text, too long with `--no-truncate`) are
kept: their `error` says why and their label and scores are null. The job reports how many there were,
with the first examples, and exits 1 with `--fail-on-bad-rows`. The same entrypoint runs on a laptop
(local Ray), under `ray job submit`, and as a KubeRay RayJob (k8s/score/).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ray_jobs._cluster import init_ray
from sentiray import storage
from sentiray.config import Precision, Runtime, runtime_conflict
from sentiray.entrypoint import run_entrypoint
from sentiray.errors import ConfigError, DataError, InputError, SentirayError
from sentiray.labels import ID2LABEL

RESULT_PREFIX = "SENTIRAY_SCORE_RESULT "
LABEL_COLUMN = "label"
SCORE_COLUMN = "score"
ERROR_COLUMN = "error"
PROB_COLUMNS = {name: f"score_{name.lower()}" for name in ID2LABEL.values()}
OUTPUT_COLUMNS = (LABEL_COLUMN, SCORE_COLUMN, *PROB_COLUMNS.values(), ERROR_COLUMN)
BAD_EXAMPLES = 5

log = logging.getLogger("sentiray.score")


class InputFormat(StrEnum):
    """How the input files are read."""

    AUTO = "auto"  # from the file extension (.parquet, .csv, .jsonl/.json)
    PARQUET = "parquet"
    CSV = "csv"
    JSONL = "jsonl"


@dataclass(frozen=True)
class ScoreConfig:
    """The job's options, validated where built (`from_args`)."""

    model: str
    input: str
    output: str
    text_column: str = "text"
    input_format: InputFormat = InputFormat.AUTO
    batch_size: int = 64
    use_gpu: bool = False
    cpus_per_actor: float = 1.0
    min_actors: int = 1
    max_actors: int | None = None
    precision: Precision = Precision.AUTO
    runtime: Runtime = Runtime.AUTO
    truncate: bool = True
    overwrite: bool = False
    preserve_order: bool = False
    fail_on_bad_rows: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 4096:
            raise ConfigError(f"batch_size: {self.batch_size} is out of range; allowed: 1 to 4096")
        if self.cpus_per_actor <= 0:
            raise ConfigError(f"cpus_per_actor: {self.cpus_per_actor} must be greater than 0")
        if self.min_actors < 1:
            raise ConfigError(f"min_actors: {self.min_actors} must be at least 1")
        if self.max_actors is not None and self.max_actors < self.min_actors:
            raise ConfigError(f"max_actors: {self.max_actors} is smaller than min_actors ({self.min_actors})")
        if self.precision == Precision.FP16 and not self.use_gpu:
            raise ConfigError("precision: fp16 is for GPUs; allowed on CPU: auto, fp32, bf16")
        problem = runtime_conflict(self.runtime, self.precision, "cuda" if self.use_gpu else "cpu")
        if problem:
            raise ConfigError(f"runtime: {problem}")
        if not self.text_column:
            raise ConfigError("text_column: empty; name the column holding the reviews")
        if storage.normalize_location(self.input) == storage.normalize_location(self.output):
            raise ConfigError(f"output: {self.output!r} is the input; write the scores somewhere else")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ScoreConfig:
        return cls(
            model=args.model,
            input=args.input,
            output=args.output,
            text_column=args.text_column,
            input_format=InputFormat(args.format),
            batch_size=args.batch_size,
            use_gpu=args.use_gpu,
            cpus_per_actor=args.cpus_per_actor,
            min_actors=args.min_actors,
            max_actors=args.max_actors,
            precision=Precision(args.precision),
            runtime=Runtime(args.runtime),
            truncate=args.truncate,
            overwrite=args.overwrite,
            preserve_order=args.preserve_order,
            fail_on_bad_rows=args.fail_on_bad_rows,
        )


# --- the actor ------------------------------------------------------------------------------------------


class Scorer:
    """One actor of the pool: loads the artifact once, then classifies pyarrow batches."""

    def __init__(
        self,
        model: str,
        text_column: str,
        precision: str,
        runtime: str,
        use_gpu: bool,
        truncate: bool,
        batch_size: int,
        threads: int,
    ) -> None:
        import torch

        from sentiray.predictor import Predictor

        torch.set_num_threads(max(1, threads))
        self.text_column = text_column
        self.truncate = truncate
        for attempt in range(3):
            try:
                self.predictor = Predictor.from_artifact(
                    model, device="cuda" if use_gpu else "cpu", precision=precision, max_batch_size=batch_size,
                    runtime=runtime,
                )
                break
            except OSError:
                # Actors on one node share the download cache of a URI artifact; a rename race there
                # resolves on the next try, which finds the verified copy.
                if attempt == 2:
                    raise
                time.sleep(1 + attempt)

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        from sentiray.metrics import softmax
        from sentiray.text import validate_texts

        texts = batch.column(self.text_column).to_pylist()
        n = len(texts)
        errors: list[str | None] = [None] * n
        for i, text in enumerate(texts):
            if text is None:
                errors[i] = "missing text"
                continue
            try:
                validate_texts([text])
            except InputError as e:
                errors[i] = str(e).removeprefix("inputs[0]: ")
        good = [i for i in range(n) if errors[i] is None]
        encoded: list[list[int]] = []
        try:
            encoded = self.predictor.encode([texts[i] for i in good], truncate=self.truncate) if good else []
        except InputError:
            # Only with truncation off: find the over-long rows one by one.
            kept = []
            for i in good:
                try:
                    encoded.extend(self.predictor.encode([texts[i]], truncate=self.truncate))
                    kept.append(i)
                except InputError as e:
                    errors[i] = str(e).removeprefix("inputs[0]: ")
            good = kept
        labels: list[str | None] = [None] * n
        top: list[float | None] = [None] * n
        probs: dict[str, list[float | None]] = {name: [None] * n for name in PROB_COLUMNS}
        if good:
            scores = softmax(self.predictor.logits_for_ids(encoded))
            for row, i in zip(scores, good, strict=True):
                best = int(row.argmax())
                labels[i], top[i] = ID2LABEL[best], float(row[best])
                for j, name in ID2LABEL.items():
                    probs[name][i] = float(row[j])
        out = batch
        out = out.append_column(LABEL_COLUMN, pa.array(labels, pa.string()))
        out = out.append_column(SCORE_COLUMN, pa.array(top, pa.float32()))
        for name, column in PROB_COLUMNS.items():
            out = out.append_column(column, pa.array(probs[name], pa.float32()))
        return out.append_column(ERROR_COLUMN, pa.array(errors, pa.string()))


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


def read_input(cfg: ScoreConfig) -> Any:
    import ray.data

    fmt = _detect_format(cfg.input) if cfg.input_format == InputFormat.AUTO else cfg.input_format
    fs, path = storage.filesystem(cfg.input)
    if fmt == InputFormat.PARQUET:
        return ray.data.read_parquet(path, filesystem=fs)
    if fmt == InputFormat.CSV:
        return ray.data.read_csv(path, filesystem=fs, file_extensions=["csv", "csv.gz"])
    # Arrow's JSON reader takes newline-delimited JSON; Ray's lines=True path cannot take a filesystem.
    return ray.data.read_json(path, filesystem=fs)


def _check_columns(ds: Any, cfg: ScoreConfig) -> None:
    schema = ds.schema()
    names = list(schema.names) if schema is not None else []
    if cfg.text_column not in names:
        raise DataError(
            f"text_column: {cfg.text_column!r} is not a column of {cfg.input}; columns: {', '.join(names) or 'none'}"
        )
    clash = [c for c in OUTPUT_COLUMNS if c in names]
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


def _ordered_parquet_sink(fs: Any, path: str, mode: Any) -> Any:
    """A parquet sink that writes rows in the dataset's order, one file per write task, named in that order.

    Ray Data's `write_parquet` hands a write task's blocks to `pyarrow.dataset.write_dataset` with
    `use_threads=True` and without Arrow's `preserve_order`; where the task has more than one Arrow
    CPU thread (OMP_NUM_THREADS > 1), Arrow writes a block's chunks in whatever order its threads finish
    (apache/arrow#26818), whatever Ray's `preserve_order` says: a batch of 1-row blocks is such a block.
    Here a task's blocks are concatenated in order and written by `pyarrow.parquet.write_table`, which
    keeps table order. The file name holds the write task's index, and with `preserve_order` Ray Data
    starts write tasks in block order.
    """
    import pyarrow.parquet as pq
    from ray.data.datasource import BlockBasedFileDatasink, FilenameProvider

    class TaskOrderNames(FilenameProvider):
        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            # Wide zero padding: name order is task order (Ray's default pads to 6 digits).
            return f"{write_uuid}_{task_index:012d}.parquet"

    class OrderedParquetSink(BlockBasedFileDatasink):
        def write_block_to_file(self, block: Any, file: Any) -> None:
            pq.write_table(block.to_arrow(), file)

    return OrderedParquetSink(path, filesystem=fs, mode=mode, filename_provider=TaskOrderNames())


def write_output(ds: Any, fs: Any, path: str, *, overwrite: bool) -> None:
    """Write `ds` as parquet under `path`. Where Ray Data's `execution_options.preserve_order` is on (the
    one switch: it also keeps blocks in order upstream), file name order then row order is `ds`'s order.
    Otherwise Ray's own writer is used: Arrow's threads make it faster on big blocks, and row order is
    not kept.
    """
    import ray.data
    from ray.data import SaveMode

    mode = SaveMode.OVERWRITE if overwrite else SaveMode.APPEND
    if ray.data.DataContext.get_current().execution_options.preserve_order:
        ds.write_datasink(_ordered_parquet_sink(fs, path, mode))
    else:
        ds.write_parquet(path, filesystem=fs, mode=mode)


def run(cfg: ScoreConfig) -> ScoreSummary:
    """Read, score with an actor pool, write parquet; returns what was written, with throughput."""
    import ray.data
    from ray.data import ActorPoolStrategy

    from sentiray.artifact import fetch_artifact

    _, manifest = fetch_artifact(cfg.model)  # fail fast, before any actor starts, on a bad artifact
    out_fs, out_path = storage.filesystem(cfg.output)
    if storage.exists(cfg.output) and not cfg.overwrite:
        import pyarrow.fs as pafs

        if out_fs.get_file_info(pafs.FileSelector(out_path, allow_not_found=True)):
            raise ConfigError(f"output: {cfg.output} exists and is not empty; pass --overwrite to replace it")
    init_ray()
    ctx = ray.data.DataContext.get_current()
    # Keeps blocks in input order between operators (files in path order, then each file's blocks);
    # write_output keeps the rows within each block and orders the files.
    ctx.execution_options.preserve_order = cfg.preserve_order
    started = time.perf_counter()
    ds = read_input(cfg)
    _check_columns(ds, cfg)
    low, high = _pool_size(cfg)
    print(
        f"scoring {cfg.input} -> {cfg.output} with {cfg.model} (base {manifest.base_model}), "
        f"{low}-{high} actor(s) on {'GPU' if cfg.use_gpu else 'CPU'}, batches of {cfg.batch_size}",
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
    p = argparse.ArgumentParser(
        prog=prog,
        description="Score a table of reviews with a sentiray artifact on Ray Data and write parquet with "
        "label, score, per-label scores and error columns beside the input columns.",
    )
    p.add_argument("--model", required=True, help="Artifact folder or URI (s3://...)")
    p.add_argument("--input", required=True, help="File, folder or glob of parquet/csv/jsonl; local or URI")
    p.add_argument("--output", required=True, help="Folder or URI the parquet files are written to")
    p.add_argument(
        "--format",
        choices=[f.value for f in InputFormat],
        default="auto",
        help="Input format (default: from the file extensions)",
    )
    p.add_argument("--text-column", default="text", help="Column holding the reviews (default: text)")
    p.add_argument("--batch-size", type=int, default=64, help="Rows per batch and forward pass (default: 64)")
    p.add_argument("--use-gpu", action="store_true", help="One GPU per actor")
    p.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs per actor (default: 1)")
    p.add_argument("--min-actors", type=int, default=1, help="Smallest actor pool (default: 1)")
    p.add_argument(
        "--max-actors",
        type=int,
        default=None,
        help="Largest actor pool (default: as many as the cluster's CPUs or GPUs allow)",
    )
    p.add_argument(
        "--precision",
        choices=[p.value for p in Precision],
        default="auto",
        help="auto (bf16 where the hardware runs it fast), fp32, bf16, fp16 (GPU)",
    )
    p.add_argument(
        "--runtime",
        choices=[r.value for r in Runtime],
        default="auto",
        help="Forward-pass engine: auto (onnx-int8 on CPUs without fast bf16, else torch), torch, onnx, onnx-int8",
    )
    p.add_argument(
        "--no-truncate",
        dest="truncate",
        action="store_false",
        help="Mark reviews longer than the model's max_length as bad rows instead of cutting them",
    )
    p.add_argument("--overwrite", action="store_true", help="Replace what is at --output")
    p.add_argument(
        "--preserve-order",
        action="store_true",
        help="Write rows in input order: input files in path order, rows in file order; read the output "
        "files in name order. Slower: finished batches wait for earlier ones, and each output file is "
        "written on one thread",
    )
    p.add_argument(
        "--fail-on-bad-rows",
        action="store_true",
        help="Exit 1 if any row could not be scored (the output is still written)",
    )
    return p


def main(argv: Sequence[str] | None = None, prog: str = "python -m ray_jobs.score") -> int:
    args = build_parser(prog).parse_args(argv)

    def work() -> None:
        cfg = ScoreConfig.from_args(args)
        summary = run(cfg)
        if cfg.fail_on_bad_rows and summary.bad_rows:
            raise BadRowsError(f"{summary.bad_rows} row(s) could not be scored; see the `error` column")

    return run_entrypoint(work)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["OUTPUT_COLUMNS", "RESULT_PREFIX", "ScoreConfig", "ScoreSummary", "main", "run", "write_output"]
