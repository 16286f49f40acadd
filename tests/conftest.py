"""Shared fixtures. Tests are marked unit/integration/e2e by their folder.

Ray is started with token authentication set explicitly (RAY_AUTH_MODE) and a temporary HOME: a fresh
`ray.init()` turns token auth on by itself and `ray start` only when a token file exists, so without
this the suite would depend on test order and on the developer's home folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.support import build_tiny_model, train_tiny_artifact, write_synthetic_data

_SESSION_HOME = tempfile.mkdtemp(prefix="sentiray-test-home-")
os.environ["HOME"] = _SESSION_HOME
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAY_TRAIN_V2_ENABLED"] = "1"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray workers on a 2-core machine: keep each process to one BLAS thread unless a test says otherwise.
os.environ.setdefault("OMP_NUM_THREADS", "1")

_FOLDER_MARKS = {"unit": pytest.mark.unit, "integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for folder, mark in _FOLDER_MARKS.items():
            if f"{os.sep}tests{os.sep}{folder}{os.sep}" in str(item.fspath):
                item.add_marker(mark)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 2-layer DistilBERT with its own WordPiece tokenizer (no Hub needed)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train.parquet (600 rows) and test.parquet (240 rows) of separable synthetic reviews."""
    return write_synthetic_data(tmp_path_factory.mktemp("synthetic-data"))


@pytest.fixture(scope="session")
def tiny_artifact(tiny_model_dir: Path, synthetic_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained tiny artifact (in-process, no Ray): separates the synthetic classes."""
    out = tmp_path_factory.mktemp("tiny-artifact") / "artifact"
    return train_tiny_artifact(tiny_model_dir, synthetic_data_dir, out)


@pytest.fixture
def ray_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for a test that starts Ray: auth mode explicit, HOME and temp dirs private."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return dict(os.environ)


# --- leaving the test process ---------------------------------------------------------------------------
# After every test had passed and pytest had printed its summary, CI's interpreter once died with SIGSEGV
# in native teardown (Ray's core worker, ONNX Runtime and torch thread pools destroyed at exit), which made
# a green run exit 139. Once pytest is done, this process leaves with pytest's own exit status and skips
# those destructors; every Ray cluster a test started is stopped by its fixture before this point.
_EXIT_STATUS: dict[str, int] = {}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if "status" in _EXIT_STATUS:
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS["status"])
