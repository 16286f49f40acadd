"""The promotion gate, the record of an artifact's test data, and the one edit made to a RayService."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sentiray.artifact import ArtifactManifest
from sentiray.errors import ArtifactError
from sentiray.kube.errors import KubeError
from sentiray.kube.promotion import (
    PREVIOUS_ANNOTATION,
    SERVING_ANNOTATION,
    ArtifactRecord,
    Metric,
    gate,
    identify_test_data,
    read_manifest,
    record_of,
    served_artifact,
    serving_record,
    with_artifact,
)
from tests.k8s_support import chart_objects


def _manifest(**overrides: Any) -> ArtifactManifest:
    fields: dict[str, Any] = {
        "labels": {0: "NEGATIVE", 1: "POSITIVE"},
        "max_length": 64,
        "truncation": "head",
        "base_model": "tiny",
        "dataset": {
            "source": "folder:/data/imdb",
            "sha256": {"/data/imdb/train.parquet": "1" * 64, "/data/imdb/test.parquet": "2" * 64},
            "rows": {"train": 100, "validation": 10, "test": 50},
        },
        "test_metrics": {"accuracy": 0.9, "f1": 0.89, "roc_auc": None},
        "training_config": {"data": {"max_test_samples": None, "data_seed": 42}},
        "files": {"model.safetensors": "0" * 64},
    }
    fields.update(overrides)
    return ArtifactManifest(**fields)


def test_the_test_data_identity_is_the_test_file_hash_and_rows() -> None:
    identity = identify_test_data(_manifest())
    assert identity == {"rows": 50, "sha256": ["2" * 64]}  # the train file's hash is not part of it
    sampled = _manifest(training_config={"data": {"max_test_samples": 50, "data_seed": 7}})
    sample = {"max_test_samples": 50, "seed": 7}
    assert identify_test_data(sampled) == {"rows": 50, "sha256": ["2" * 64], "sample": sample}
    hub = _manifest(dataset={"source": "hub:imdb@abc", "rows": {"train": 100, "test": 50}})
    assert identify_test_data(hub) == {"rows": 50, "source": "hub:imdb@abc"}
    acl = _manifest(
        dataset={"source": "aclImdb:/d", "sha256": {"aclImdb/train": "1", "aclImdb/test": "3"}, "rows": {"test": 9}}
    )
    assert identify_test_data(acl) == {"rows": 9, "sha256": ["3"]}
    assert identify_test_data(_manifest(test_metrics=None)) is None


def _record(accuracy: float | None, **identity: Any) -> ArtifactRecord:
    return ArtifactRecord(
        artifact=f"s3://runs/{accuracy}",
        test_metrics=None if accuracy is None else {"accuracy": accuracy, "roc_auc": None},
        test_data={"rows": 50, "sha256": ["2" * 64], **identity},
    )


def test_the_gate_refuses_only_a_lower_metric_on_the_same_test_data() -> None:
    serving = _record(0.90)
    assert gate(_record(0.91), serving, Metric.ACCURACY).allowed
    assert gate(_record(0.90), serving, Metric.ACCURACY).allowed  # equal is not worse
    refused = gate(_record(0.89), serving, Metric.ACCURACY)
    assert not refused.allowed and refused.compared
    assert "0.8900 is worse than the serving artifact's 0.9000" in refused.message
    other = gate(_record(0.5, rows=49), serving, Metric.ACCURACY)
    assert other.allowed and not other.compared
    assert "different data" in other.message
    assert not gate(_record(0.5), None, Metric.ACCURACY).compared
    assert "recorded no test accuracy" in gate(_record(None), serving, Metric.ACCURACY).message
    # A metric that is undefined (None: one class in the test data) is not compared either.
    assert "recorded no test roc_auc" in gate(_record(0.5), serving, Metric.ROC_AUC).message


def _service(model: str = "/mnt/sentiray/runs/a/artifact") -> dict[str, Any]:
    objects = chart_objects("sentiray-serve", {"model": {"uri": model}}, release="sentiray")
    service = next(o for o in objects if o["kind"] == "RayService")
    service["status"] = {"serviceStatus": "Running"}
    return service


def test_with_artifact_changes_the_model_arg_and_the_records_only() -> None:
    service = _service()
    new, previous = ArtifactRecord(artifact="s3://runs/b/artifact"), ArtifactRecord(artifact="/mnt/a")
    out = with_artifact(service, new, previous)
    assert served_artifact(out) == "s3://runs/b/artifact"
    before, after = (yaml.safe_load(s["spec"]["serveConfigV2"]) for s in (service, out))
    before["applications"][0]["args"]["model"] = "s3://runs/b/artifact"
    assert after == before
    assert {k: v for k, v in out["spec"].items() if k != "serveConfigV2"} == {
        k: v for k, v in service["spec"].items() if k != "serveConfigV2"
    }
    annotations = out["metadata"]["annotations"]
    assert json.loads(annotations[SERVING_ANNOTATION])["artifact"] == "s3://runs/b/artifact"
    assert json.loads(annotations[PREVIOUS_ANNOTATION])["artifact"] == "/mnt/a"
    assert "status" not in out
    assert served_artifact(service) == "/mnt/sentiray/runs/a/artifact"  # the input is not changed


def test_a_record_that_no_longer_names_the_served_model_is_ignored() -> None:
    """`helm upgrade --set model.uri=...` changes the model without the annotation."""
    promoted = with_artifact(_service(), _record(0.9), ArtifactRecord(artifact="x"))
    assert serving_record(promoted).test_metrics is not None
    helm_changed = json.loads(json.dumps(promoted))
    config = yaml.safe_load(helm_changed["spec"]["serveConfigV2"])
    config["applications"][0]["args"]["model"] = "s3://elsewhere"
    helm_changed["spec"]["serveConfigV2"] = yaml.safe_dump(config)
    assert serving_record(helm_changed) == ArtifactRecord(artifact="s3://elsewhere")


def test_a_service_without_a_model_app_is_named() -> None:
    service = _service()
    service["spec"]["serveConfigV2"] = "applications: [{name: other, import_path: x:y}]"
    with pytest.raises(KubeError, match="0 applications take a `model` arg"):
        served_artifact(service)
    service["spec"]["serveConfigV2"] = "{unclosed"
    with pytest.raises(KubeError, match="not valid YAML"):
        served_artifact(service)


def test_read_manifest_names_what_is_wrong(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    folder.mkdir()
    with pytest.raises(ArtifactError, match=r"a/sentiray.json: cannot read the artifact's manifest"):
        read_manifest(str(folder))
    (folder / "sentiray.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="cannot read"):
        read_manifest(str(folder))
    (folder / "sentiray.json").write_text(json.dumps({"schema_version": 1}))
    with pytest.raises(ArtifactError, match="invalid manifest"):
        read_manifest(str(folder))
    (folder / "sentiray.json").write_text(_manifest().model_dump_json())
    assert record_of(str(folder), read_manifest(str(folder))).test_data == {"rows": 50, "sha256": ["2" * 64]}
    with pytest.raises(ArtifactError, match="credentials in an artifact URI are refused"):
        read_manifest("s3://KEY:SECRET@bucket/run/artifact")


def test_the_cli_offers_every_gate_metric() -> None:
    """The parser writes Metric's values out (importing sentiray.kube costs every CLI start ~0.35 s)."""
    from sentiray.cli import build_parser

    parser = build_parser()
    k8s = next(a for a in parser._subparsers._group_actions[0].choices["k8s"]._actions if a.dest == "k8s_command")
    metric = next(a for a in k8s.choices["promote"]._actions if a.dest == "metric")
    assert list(metric.choices) == [m.value for m in Metric]
