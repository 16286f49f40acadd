"""The entry points' shared handling: a user-facing error exits 1 with its message, Ctrl-C exits 130, a bug
keeps its traceback; the same from `sentiray`, `python -m ray_jobs.train` and `python -m ray_jobs.score`."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from sentiray.entrypoint import run_entrypoint
from sentiray.errors import ConfigError


def test_the_work_sets_the_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_entrypoint(lambda: None) == 0
    assert run_entrypoint(lambda: 3) == 3
    assert capsys.readouterr().err == ""


def _raise(error: BaseException) -> Any:
    def work(*_: Any, **__: Any) -> None:
        raise error

    return work


def test_a_user_facing_error_exits_1_with_its_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_entrypoint(_raise(ConfigError("batch_size: 0 is out of range")), prog="sentiray train") == 1
    assert capsys.readouterr().err == "sentiray train: error: batch_size: 0 is out of range\n"
    assert run_entrypoint(_raise(ConfigError("bad"))) == 1
    assert capsys.readouterr().err == "error: bad\n"


def test_a_bug_keeps_its_traceback() -> None:
    with pytest.raises(ZeroDivisionError):
        run_entrypoint(lambda: 1 // 0)


@pytest.mark.parametrize(
    ("module", "args", "expected"),
    [
        ("ray_jobs.train", [], "interrupted\n"),
        ("ray_jobs.score", ["--model", "m", "--input", "in.parquet", "--output", "out"], "interrupted\n"),
        ("sentiray.cli", ["train"], "sentiray train: interrupted\n"),
    ],
)
def test_every_entry_point_exits_130_on_ctrl_c(
    module: str, args: list[str], expected: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The job's work is replaced by one that is interrupted: what is under test is the entry point around it.
    job = "ray_jobs.score" if module == "ray_jobs.score" else "ray_jobs.train"
    monkeypatch.setattr(importlib.import_module(job), "run", _raise(KeyboardInterrupt()))
    try:
        code = importlib.import_module(module).main(args)
    except KeyboardInterrupt:  # left to propagate, it would stop pytest itself
        pytest.fail("the interrupt escaped the entry point")
    assert code == 130
    assert capsys.readouterr().err == expected
