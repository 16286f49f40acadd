"""Promotion of an artifact to a running RayService: the record kept of each artifact, the metric gate,
and the one change made to the RayService (its serveConfigV2's builder arg `model`).

Pure logic, no Kubernetes client: `sentiray.kube.rollout` applies it to a cluster. The RayService keeps
two annotations, each an `ArtifactRecord` as JSON: the artifact serving and the one before it, so
`sentiray k8s rollback` knows where to return and `sentiray k8s status` what each one scored.

Why only serveConfigV2: KubeRay applies a change that leaves rayClusterConfig alone to the running
cluster through the Serve REST API (no new cluster, no extra GPUs), and Serve replaces the replicas
of a deployment whose builder args changed one by one, starting each new one before draining an old one
(the model deployment's `max_surge_percent`), so the endpoint answers throughout.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from sentiray import storage
from sentiray.artifact import MANIFEST_NAME, ArtifactManifest, resolve_location
from sentiray.errors import ArtifactError, ConfigError
from sentiray.kube.errors import KubeError

SERVING_ANNOTATION = "sentiray.io/serving-artifact"
PREVIOUS_ANNOTATION = "sentiray.io/previous-artifact"


class Metric(StrEnum):
    """Test metrics the gate may compare; each is higher-is-better."""

    ACCURACY = "accuracy"
    F1 = "f1"
    ROC_AUC = "roc_auc"


class ArtifactRecord(BaseModel):
    """What the RayService remembers of an artifact it served or serves."""

    model_config = ConfigDict(extra="ignore")

    artifact: str
    test_metrics: dict[str, Any] | None = None
    # What identifies the test data the metrics were measured on (see identify_test_data).
    test_data: dict[str, Any] | None = None
    created_at: str = ""
    promoted_at: str = ""

    def to_annotation(self) -> str:
        return self.model_dump_json(exclude_none=True)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- reading an artifact's manifest --------------------------------------------------------------


def read_manifest(location: str, local_copy: str | None = None) -> ArtifactManifest:
    """The `sentiray.json` of the artifact at `location` (a path or URI), or of a local copy of it.

    Only the manifest is read, not the weights: promotion checks what the artifact recorded; each Serve
    replica verifies every file against the manifest when it loads it.
    """
    source = local_copy or f"{location.rstrip('/')}/{MANIFEST_NAME}"
    try:
        resolve_location(location)  # refuses credentials in a URI and locations outside the root
        raw = Path(local_copy).read_bytes() if local_copy else storage.read_bytes(
            storage.join(location, MANIFEST_NAME)
        )
        return ArtifactManifest.model_validate(json.loads(raw))
    except (OSError, ValueError, ConfigError) as e:  # ValueError: bad JSON and pydantic errors
        detail = str(e).splitlines()[0] if not isinstance(e, ValidationError) else f"invalid manifest: {e}"
        raise ArtifactError(f"{source}: cannot read the artifact's manifest ({detail})") from None


def _names_test_split(key: str, test_file: str | None) -> bool:
    return key == test_file or PurePosixPath(key).stem == "test"


def identify_test_data(manifest: ArtifactManifest) -> dict[str, Any] | None:
    """What makes two artifacts' test metrics comparable: the same test rows.

    The test file's sha256 (or, for a Hub dataset, its id and revision fingerprint), the number of test
    rows, and, when the test split was sampled, the sample size and seed. None when nothing was tested.
    """
    dataset = manifest.dataset or {}
    rows = (dataset.get("rows") or {}).get("test")
    if not rows or not manifest.test_metrics:
        return None
    data_cfg = (manifest.training_config or {}).get("data") or {}
    digests = sorted(
        digest
        for key, digest in (dataset.get("sha256") or {}).items()
        if _names_test_split(key, data_cfg.get("test_file"))
    )
    identity: dict[str, Any] = {"rows": rows}
    if digests:
        identity["sha256"] = digests
    else:
        identity["source"] = dataset.get("source")
    if data_cfg.get("max_test_samples") is not None:
        identity["sample"] = {"max_test_samples": data_cfg["max_test_samples"], "seed": data_cfg.get("data_seed")}
    return identity


def record_of(location: str, manifest: ArtifactManifest) -> ArtifactRecord:
    return ArtifactRecord(
        artifact=location,
        test_metrics=manifest.test_metrics,
        test_data=identify_test_data(manifest),
        created_at=manifest.created_at,
    )


# --- the gate ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The gate's answer: `allowed`, whether metrics were `compared`, and a sentence saying why."""

    allowed: bool
    compared: bool
    message: str


def describe_test_data(test_data: dict[str, Any] | None) -> str:
    if not test_data:
        return "none recorded"
    where = (
        f"sha256 {', '.join(d[:12] for d in test_data['sha256'])}"
        if test_data.get("sha256")
        else str(test_data.get("source"))
    )
    sample = test_data.get("sample")
    sampled = f", sampled {sample['max_test_samples']} with seed {sample['seed']}" if sample else ""
    return f"{test_data.get('rows')} rows, {where}{sampled}"


def _value(record: ArtifactRecord, metric: Metric) -> float | None:
    value = (record.test_metrics or {}).get(metric.value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def gate(new: ArtifactRecord, serving: ArtifactRecord | None, metric: Metric) -> Verdict:
    """Refuse `new` when its `metric` is lower than the serving artifact's on the same test data.

    Metrics measured on different test data say nothing about which model is better, so then (and when
    either side recorded none) the gate does not compare, and says so.
    """
    name = metric.value

    def not_compared(why: str) -> Verdict:
        return Verdict(True, False, f"test metrics not compared: {why}")

    if serving is None:
        return not_compared("no artifact is serving yet")
    new_value, serving_value = _value(new, metric), _value(serving, metric)
    if new_value is None:
        return not_compared(f"{new.artifact} recorded no test {name}")
    if serving_value is None:
        return not_compared(f"the serving artifact {serving.artifact} has no recorded test {name}")
    if new.test_data is None or serving.test_data is None or new.test_data != serving.test_data:
        return not_compared(
            f"they were tested on different data (new: {describe_test_data(new.test_data)}; "
            f"serving: {describe_test_data(serving.test_data)})"
        )
    if new_value < serving_value:
        return Verdict(
            False,
            True,
            f"test {name} {new_value:.4f} is worse than the serving artifact's {serving_value:.4f} "
            f"({serving.artifact}) on the same test data ({describe_test_data(new.test_data)})",
        )
    return Verdict(
        True,
        True,
        f"test {name} {new_value:.4f} against the serving artifact's {serving_value:.4f} on the same test data",
    )


# --- the RayService ------------------------------------------------------------------------------


def _serve_config(rayservice: dict[str, Any]) -> dict[str, Any]:
    name = rayservice["metadata"]["name"]
    text = (rayservice.get("spec") or {}).get("serveConfigV2")
    if not text:
        raise KubeError(f"RayService {name} has no spec.serveConfigV2: nothing to promote into")
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise KubeError(f"RayService {name}: spec.serveConfigV2 is not valid YAML ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("applications"), list):
        raise KubeError(f"RayService {name}: spec.serveConfigV2 has no `applications:` list")
    return config


def _model_app(config: dict[str, Any], service: str, app: str | None) -> dict[str, Any]:
    """The application whose builder args carry `model` (the one named `app`, when given)."""
    candidates = [
        a for a in config["applications"] if isinstance(a.get("args"), dict) and "model" in a["args"]
    ]
    if app is not None:
        chosen = [a for a in candidates if a.get("name") == app]
        if not chosen:
            names = [a.get("name") for a in candidates]
            raise KubeError(f"RayService {service}: no application {app!r} with a `model` arg (found {names})")
        return chosen[0]
    if len(candidates) != 1:
        names = [a.get("name") for a in candidates]
        raise KubeError(
            f"RayService {service}: {len(candidates)} applications take a `model` arg ({names}); "
            "choose one with --app"
        )
    return candidates[0]


def served_artifact(rayservice: dict[str, Any], app: str | None = None) -> str:
    """The model location the RayService's Serve config gives its application."""
    config = _serve_config(rayservice)
    return str(_model_app(config, rayservice["metadata"]["name"], app)["args"]["model"])


def recorded(rayservice: dict[str, Any], annotation: str) -> ArtifactRecord | None:
    """The record kept in `annotation`; None when absent or unreadable (a hand edit)."""
    raw = ((rayservice.get("metadata") or {}).get("annotations") or {}).get(annotation)
    if not raw:
        return None
    try:
        return ArtifactRecord.model_validate_json(raw)
    except ValidationError:
        return None


def serving_record(rayservice: dict[str, Any], app: str | None = None) -> ArtifactRecord:
    """The serving artifact's record: the annotation when it still names what serveConfigV2 serves;
    otherwise (the model was changed another way, e.g. `helm upgrade --set model.uri=...`) a bare one."""
    location = served_artifact(rayservice, app)
    kept = recorded(rayservice, SERVING_ANNOTATION)
    return kept if kept is not None and kept.artifact == location else ArtifactRecord(artifact=location)


def with_artifact(
    rayservice: dict[str, Any],
    new: ArtifactRecord,
    previous: ArtifactRecord,
    app: str | None = None,
) -> dict[str, Any]:
    """A copy of the RayService serving `new`, remembering `previous`: one object, so one write changes
    the model and both records together (or, on a conflict, nothing)."""
    out = json.loads(json.dumps(rayservice))
    config = _serve_config(out)
    _model_app(config, out["metadata"]["name"], app)["args"]["model"] = new.artifact
    out["spec"]["serveConfigV2"] = yaml.safe_dump(config, sort_keys=False)
    annotations = out["metadata"].setdefault("annotations", {}) or {}
    annotations[SERVING_ANNOTATION] = new.to_annotation()
    annotations[PREVIOUS_ANNOTATION] = previous.to_annotation()
    out["metadata"]["annotations"] = annotations
    out.pop("status", None)  # the status subresource is the operator's; a write of the object ignores it
    return out


def describe_record(record: ArtifactRecord | None) -> str:
    """One line: location, key metrics, test data, when promoted."""
    if record is None:
        return "none recorded"
    parts = [record.artifact]
    metrics = record.test_metrics or {}
    shown = [
        f"{m.value} {metrics[m.value]:.4f}"
        for m in Metric
        if isinstance(metrics.get(m.value), int | float) and not isinstance(metrics.get(m.value), bool)
    ]
    parts.append(", ".join(shown) if shown else "no test metrics recorded")
    if record.test_data:
        parts.append(f"test data {describe_test_data(record.test_data)}")
    if record.promoted_at:
        parts.append(f"promoted {record.promoted_at}")
    return "; ".join(parts)


def artifact_report(rayservice: dict[str, Any]) -> dict[str, Any]:
    """What `sentiray k8s status` shows about the artifacts: serving (with its record) and previous."""
    try:
        location = served_artifact(rayservice)
    except KubeError as e:
        return {"serving": None, "previous": None, "problem": str(e)}
    kept = recorded(rayservice, SERVING_ANNOTATION)
    serving = kept if kept is not None and kept.artifact == location else None
    return {
        "serving": (serving or ArtifactRecord(artifact=location)).model_dump(exclude_none=True),
        # False: set another way than `sentiray k8s promote` (Helm, kubectl), so no metrics are known.
        "recorded": serving is not None,
        "previous": (p.model_dump(exclude_none=True) if (p := recorded(rayservice, PREVIOUS_ANNOTATION)) else None),
    }


def artifact_lines(rayservice: dict[str, Any]) -> list[str]:
    report = artifact_report(rayservice)
    if report.get("problem"):
        return [f"  serving artifact: unknown ({report['problem']})"]
    serving = ArtifactRecord.model_validate(report["serving"])
    suffix = "" if report["recorded"] else " (set outside `sentiray k8s promote`: metrics not recorded)"
    previous = ArtifactRecord.model_validate(report["previous"]) if report["previous"] else None
    return [
        f"  serving artifact: {describe_record(serving)}{suffix}",
        f"  previous artifact: {describe_record(previous)}",
    ]
