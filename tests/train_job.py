"""The training job as the tests drive it: its flags, its result line, and the held-out accuracy of the
artifact it wrote. Shared by the single-node, multi-node, head-loss and autoscaler tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from sentiray.predictor import Predictor
from sentiray.runs import RESULT_PREFIX


def job_args(model: Path, data: Path, storage: str, **overrides: Any) -> list[str]:
    """`python -m ray_jobs.train` flags: a small fp32 run of the tiny model; `overrides` by field name."""
    args = {
        "dataset": str(data), "base_model": str(model), "max_length": 64, "epochs": 3, "batch_size": 16,
        "learning_rate": 3e-3, "num_workers": 2, "storage_path": storage, "log_every_steps": 5,
        "precision": "fp32", **overrides,
    }
    out = []
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        else:
            out += [flag, str(value)]
    return out


def parse_result(stdout: str) -> dict[str, Any]:
    """The job's last result line (`sentiray.runs.RESULT_PREFIX`), parsed."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    assert lines, f"no {RESULT_PREFIX.strip()} line in output:\n{stdout[-3000:]}"
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    return result


def held_out_accuracy(artifact: str, test_file: Path) -> tuple[float, int]:
    """(accuracy, rows) of the artifact on a labelled parquet file, in fp32."""
    table = pq.read_table(test_file)
    texts, labels = table.column("text").to_pylist(), table.column("label").to_pylist()
    predictor = Predictor.from_artifact(artifact, precision="fp32")
    predicted = predictor.logits(texts).argmax(axis=1)
    return float(np.mean(predicted == np.asarray(labels))), len(labels)


__all__ = ["held_out_accuracy", "job_args", "parse_result"]
