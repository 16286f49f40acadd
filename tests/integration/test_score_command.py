"""`sentiray score` as a user runs it: its own process, the embedded local Ray it starts, a real artifact."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ray_jobs.score import RESULT_PREFIX

pytestmark = pytest.mark.timeout(300)

POSITIVE = "a wonderful superb film"
NEGATIVE = "awful boring dull movie"


@pytest.fixture
def cli_env(ray_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """No RAY_ADDRESS and a private Ray temp dir: the command starts its own Ray, whatever else runs here."""
    # Short path: Ray's unix sockets live under it and have a ~100-byte path limit.
    temp_dir = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    env = {**ray_env, "RAY_TMPDIR": temp_dir, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    try:
        yield env
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def _sentiray(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`sentiray ARGS` in its own process group, which is killed afterwards (the Ray it started included)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sentiray.cli", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_sentiray_score_scores_a_table_on_the_local_ray_it_starts(
    tiny_artifact: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    src = tmp_path / "reviews.jsonl"
    rows = [{"n": 0, "text": POSITIVE}, {"n": 1, "text": "  "}, {"n": 2, "text": NEGATIVE}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "scored"
    proc = _sentiray(
        ["score", "--model", str(tiny_artifact), "--input", str(src), "--output", str(out),
         "--max-actors", "1", "--batch-size", "2", "--preserve-order"],
        cli_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX))
    result = json.loads(line.removeprefix(RESULT_PREFIX))
    assert (result["rows"], result["bad_rows"]) == (3, 1)
    table = pq.read_table(sorted(out.glob("*.parquet"))).to_pandas()
    assert table["n"].tolist() == [0, 1, 2]
    assert table["label"].fillna("-").tolist() == ["POSITIVE", "-", "NEGATIVE"]
    assert table["error"][1] == "empty or whitespace-only text"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "batch_size: Input should be greater than or equal to 1 (got 0)"),
        (["--min-actors", "2", "--max-actors", "1"], "max_actors: 1 is smaller than min_actors (2)"),
        (["--precision", "fp16"], "precision: fp16 is for GPUs; allowed on CPU: auto, fp32, bf16"),
        (["--input", "missing.parquet"], "input: missing.parquet does not exist"),
    ],
)
def test_sentiray_score_refuses_bad_input_before_starting_ray(
    args: list[str],
    message: str,
    tiny_artifact: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import ray

    from sentiray.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text(json.dumps({"text": POSITIVE}) + "\n")
    code = main(["score", "--model", str(tiny_artifact), "--input", "in.jsonl", "--output", "o", *args])
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(message)
    assert not ray.is_initialized()
    assert not (tmp_path / "o").exists()


def test_sentiray_score_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from sentiray.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["score", "--model", "m", "--input", "i", "--output", "o", "--format", "xml"])
    assert exit_.value.code == 2
    assert "argument --format: invalid choice: 'xml'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["score", "--input", "i", "--output", "o"])
    assert "the following arguments are required: --model" in capsys.readouterr().err
