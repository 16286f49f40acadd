"""The scoring job's parquet writer: Ray's own, or one that keeps the dataset's row order (--preserve-order)."""

from __future__ import annotations

from typing import Any


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


__all__ = ["write_output"]
