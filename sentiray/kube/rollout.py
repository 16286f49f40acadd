"""Promotion and rollback on a cluster: read the RayService, decide (sentiray.kube.promotion), write it
back in one update guarded by its resourceVersion.

A concurrent change (the operator, Helm, another promote) makes the write fail with 409 Conflict and
change nothing; the decision is then taken again on the fresh object, a few times at most.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sentiray.kube.errors import KubeError, PromotionRefusedError
from sentiray.kube.ops import HTTP_CONFLICT, Cluster, _api_errors, get_object, list_objects
from sentiray.kube.promotion import (
    PREVIOUS_ANNOTATION,
    ArtifactRecord,
    Metric,
    Verdict,
    gate,
    now,
    recorded,
    serving_record,
    with_artifact,
)
from sentiray.kube.resources import GROUP, RAYSERVICE, VERSION

ATTEMPTS = 3


@dataclass(frozen=True)
class Outcome:
    """What a promotion or rollback did."""

    service: str
    serving: ArtifactRecord
    previous: ArtifactRecord
    changed: bool
    verdict: Verdict | None = None


def find_service(cluster: Cluster, name: str | None) -> str:
    """The RayService to change: the one named, else the only one in the namespace."""
    if name:
        return name
    names = [o["metadata"]["name"] for o in list_objects(cluster, RAYSERVICE)]
    if len(names) != 1:
        found = f"found {', '.join(names)}" if names else "found none"
        raise KubeError(
            f"namespace {cluster.namespace}: expected one RayService, {found}; name it with --service"
        )
    return names[0]


def _replace(cluster: Cluster, body: dict[str, Any]) -> dict[str, Any]:
    name = body["metadata"]["name"]
    with _api_errors(f"updating RayService {name}"):
        updated: dict[str, Any] = cluster.custom.replace_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, RAYSERVICE.plural, name, body
        )
        return updated


def _write(
    cluster: Cluster, name: str, decide: Callable[[dict[str, Any]], tuple[dict[str, Any] | None, Outcome]]
) -> Outcome:
    """Read, decide, write with the read's resourceVersion; on 409 read and decide again."""
    for _ in range(ATTEMPTS):
        current = get_object(cluster, RAYSERVICE, name)
        body, outcome = decide(current)
        if body is None:
            return outcome
        try:
            _replace(cluster, body)
        except KubeError as e:
            if e.status != HTTP_CONFLICT:
                raise
            continue
        return outcome
    raise KubeError(
        f"RayService {name} changed {ATTEMPTS} times while being updated (someone else is changing it); "
        "nothing was changed by this command: try again"
    )


def promote(
    cluster: Cluster,
    new: ArtifactRecord,
    *,
    service: str | None = None,
    app: str | None = None,
    metric: Metric = Metric.ACCURACY,
    force: bool = False,
    dry_run: bool = False,
    read_record: Callable[[str], ArtifactRecord | None] | None = None,
) -> Outcome:
    """Serve `new` from the RayService unless the gate refuses it (PromotionRefusedError) and not `force`.

    `read_record` reads the record of a serving artifact that `sentiray k8s promote` did not put there
    (installed by Helm, say), so the gate can still compare; None when it cannot be read. `dry_run`
    decides (and refuses) as usual but writes nothing: `changed` is then False.
    """
    name = find_service(cluster, service)
    cache: dict[str, ArtifactRecord | None] = {}

    def decide(current: dict[str, Any]) -> tuple[dict[str, Any] | None, Outcome]:
        serving = serving_record(current, app)
        if serving.test_metrics is None and read_record is not None:
            if serving.artifact not in cache:
                cache[serving.artifact] = read_record(serving.artifact)
            serving = cache[serving.artifact] or serving
        if serving.artifact == new.artifact:
            previous = recorded(current, PREVIOUS_ANNOTATION) or ArtifactRecord(artifact="")
            return None, Outcome(name, serving, previous, changed=False)
        verdict = gate(new, serving, metric)
        if not verdict.allowed and not force:
            raise PromotionRefusedError(
                f"refusing to promote {new.artifact} to RayService {name}: {verdict.message}; "
                "nothing was changed (--force promotes it anyway)"
            )
        promoted = new.model_copy(update={"promoted_at": now()})
        if dry_run:
            return None, Outcome(name, promoted, serving, False, verdict)
        return with_artifact(current, promoted, serving, app), Outcome(name, promoted, serving, True, verdict)

    return _write(cluster, name, decide)


def rollback(cluster: Cluster, *, service: str | None = None, app: str | None = None) -> Outcome:
    """Serve the previous artifact again; the one serving becomes the previous (a second rollback undoes)."""
    name = find_service(cluster, service)

    def decide(current: dict[str, Any]) -> tuple[dict[str, Any] | None, Outcome]:
        previous = recorded(current, PREVIOUS_ANNOTATION)
        if previous is None or not previous.artifact:
            raise KubeError(
                f"RayService {name} records no previous artifact (`sentiray k8s promote` records one): "
                "nothing to roll back to; nothing was changed"
            )
        serving = serving_record(current, app)
        restored = previous.model_copy(update={"promoted_at": now()})
        return with_artifact(current, restored, serving, app), Outcome(name, restored, serving, True)

    return _write(cluster, name, decide)
