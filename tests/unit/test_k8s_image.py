"""The image and the manifests name the Ray and Python versions the project is tested with."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import ray
import yaml

import sentiray
from tests.k8s_support import CHARTS, KUSTOMIZE_DIRS, REPO, chart_objects, kustomize_objects


def _dockerfile_args() -> dict[str, str]:
    text = (REPO / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))


def test_base_image_matches_the_installed_ray_and_python() -> None:
    args = _dockerfile_args()
    assert args["RAY_VERSION"] == ray.__version__
    assert args["PYTHON_TAG"] == f"py{sys.version_info.major}{sys.version_info.minor}"
    assert re.fullmatch(r"gpu|cu\d{3}|cpu", args["RAY_VARIANT"])
    from_line = next(ln for ln in (REPO / "Dockerfile").read_text().splitlines() if ln.startswith("FROM "))
    assert from_line == "FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-${RAY_VARIANT}"


def test_image_runs_as_the_ray_user() -> None:
    users = [ln.split()[1] for ln in (REPO / "Dockerfile").read_text().splitlines() if ln.startswith("USER ")]
    assert users == ["1000:100"]
    for chart in ("sentiray-serve", "sentiray-train"):
        values = yaml.safe_load((CHARTS / chart / "values.yaml").read_text())
        assert values["podSecurityContext"]["runAsUser"] == 1000


def test_dockerignore_keeps_secrets_and_venvs_out() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests", "runs"} <= ignored


def test_manifests_name_the_same_ray_version_and_app_version() -> None:
    for chart in ("sentiray-serve", "sentiray-train"):
        meta = yaml.safe_load((CHARTS / chart / "Chart.yaml").read_text())
        assert meta["appVersion"] == sentiray.__version__
        values = yaml.safe_load((CHARTS / chart / "values.yaml").read_text())
        assert values["rayVersion"] == ray.__version__
    objects = [o for d in KUSTOMIZE_DIRS for o in kustomize_objects(d)]
    objects += chart_objects("sentiray-serve") + chart_objects("sentiray-train")
    for obj in objects:
        spec = obj.get("spec", {})
        cluster = spec.get("rayClusterSpec") or spec.get("rayClusterConfig")
        if cluster:
            assert cluster["rayVersion"] == ray.__version__
            image = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
            assert image.endswith(f":{sentiray.__version__}"), image


def test_kind_script_says_it_cannot_run_here() -> None:
    script = (REPO / "scripts" / "kind-e2e.sh").read_text()
    assert "cannot run" in script.split("\n\n")[0].lower() or "not run" in script[:1500].lower()
    assert Path(REPO / "scripts" / "kind-e2e.sh").stat().st_mode & 0o111


def test_torch_comes_from_the_variants_index() -> None:
    """Issue 13 item 10: PyPI's Linux torch is the CUDA build whatever the image; the image installs torch
    from a PyTorch index given as a build argument, before the project, at the version pyproject pins."""
    import torch

    text = (REPO / "Dockerfile").read_text()
    args = _dockerfile_args()
    assert args["TORCH_VERSION"] == torch.__version__.split("+")[0]
    assert f'"torch=={args["TORCH_VERSION"]}"' in (REPO / "pyproject.toml").read_text()
    assert args["TORCH_INDEX_URL"].startswith("https://download.pytorch.org/whl/cu")
    torch_install = text.index('--index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"')
    assert torch_install < text.index('python -m pip install ".[')
    # Declared after FROM too, so that RUN sees them.
    assert text.index("ARG TORCH_INDEX_URL") > text.index("FROM ")


def test_kind_script_builds_cpu_and_stops_on_failure() -> None:
    """Issue 13 item 10: the kind run builds the CPU variant and waits for Complete or Failed (a failed
    job used to burn the whole hour), with the charts' ci/kind-values.yaml, which the rule checker checks."""
    script = (REPO / "scripts" / "kind-e2e.sh").read_text()
    assert "--build-arg RAY_VARIANT=cpu" in script
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in script
    assert "Complete|Failed)" in script
    assert "=Complete --timeout" not in script
    for chart in ("sentiray-train", "sentiray-serve"):
        assert f"helm/{chart}/ci/kind-values.yaml" in script
        assert (CHARTS / chart / "ci" / "kind-values.yaml").is_file()
