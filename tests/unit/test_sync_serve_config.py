"""Keeping the Kubernetes copies of serve/config.yaml in sync is a repository step (scripts/), not a
command of the installed CLI, which cannot know where a checkout is."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sentiray.cli import main
from sentiray.kube.serveconfig import CHART_COPY, KUSTOMIZE_VARIANTS, SOURCE
from tests.k8s_support import REPO

SCRIPT = REPO / "scripts" / "sync_serve_config.py"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def test_the_script_checks_and_rewrites_stale_copies(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    for rel in (SOURCE, CHART_COPY, *KUSTOMIZE_VARIANTS):
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, checkout / rel)
    stale = checkout / "k8s/base/serve-config.yaml"
    stale.write_text(stale.read_text().replace("max_replicas", "max_replicaz"))
    # Run from elsewhere: the script finds nothing through the working directory.
    checked = _run("--check", "--repo", str(checkout), cwd=tmp_path)
    assert checked.returncode == 1, checked.stderr
    assert checked.stdout.strip() == "stale: k8s/base/serve-config.yaml"
    written = _run("--repo", str(checkout), cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert stale.read_text() == (REPO / "k8s/base/serve-config.yaml").read_text()
    assert _run("--check", "--repo", str(checkout), cwd=tmp_path).returncode == 0


def test_the_script_finds_its_own_checkout(tmp_path: Path) -> None:
    result = _run("--check", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


def test_the_installed_cli_has_no_repository_step(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["k8s", "sync-serve-config", "--check"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'sync-serve-config'" in capsys.readouterr().err
