"""Static security scan of everything the charts and kustomize render, Ray pod templates included."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.k8s_support import (
    KUBERAY_KINDS,
    KUSTOMIZE_DIRS,
    MATRIX,
    REPO,
    chart_objects,
    checkov_executable,
    embedded_pods,
    kustomize_objects,
    run_checkov,
)

pytestmark = pytest.mark.skipif(
    checkov_executable() is None,
    reason="checkov not installed: python -m venv /opt/sentiray-tools/checkov && "
    "/opt/sentiray-tools/checkov/bin/pip install checkov (or set SENTIRAY_CHECKOV)",
)


def _write_everything(folder: Path) -> int:
    count = 0
    sources = [(f"{c}-{v}", chart_objects(c, values)) for c, v, values in MATRIX]
    sources += [(f"kustomize-{d.name}", kustomize_objects(d)) for d in KUSTOMIZE_DIRS]
    for name, objects in sources:
        pods = [p for o in objects if o["kind"] in KUBERAY_KINDS for p in embedded_pods(o)]
        (folder / f"{name}.yaml").write_text(yaml.safe_dump_all(objects + pods, sort_keys=False))
        count += len(objects) + len(pods)
    return count


def test_checkov_finds_no_failed_kubernetes_checks(tmp_path: Path) -> None:
    assert _write_everything(tmp_path) > 50
    report = run_checkov(tmp_path)
    failed = sorted({(f["check_id"], f["resource"]) for f in report["failed"]})
    assert failed == []
    assert report["passed_count"] > 500


def test_every_skipped_check_has_a_reason() -> None:
    lines = [ln for ln in (REPO / ".checkov.yaml").read_text().splitlines() if ln.strip().startswith("- CKV")]
    assert lines
    for line in lines:
        check, _, reason = line.strip()[2:].partition("#")
        assert check.strip().startswith("CKV_K8S_"), line
        assert len(reason.strip()) > 20, line


def test_embedded_pods_cover_every_template() -> None:
    job = next(o for o in chart_objects("sentiray-train") if o["kind"] == "RayJob")
    assert [p["metadata"]["name"] for p in embedded_pods(job)] == [
        "rel-sentiray-train-head",
        "rel-sentiray-train-gpu-workers",
        "rel-sentiray-train-submitter",
    ]
    service = next(o for o in chart_objects("sentiray-serve") if o["kind"] == "RayService")
    head = next(embedded_pods(service))
    assert [c["name"] for c in head["spec"]["containers"]] == ["ray-head", "autoscaler"]
