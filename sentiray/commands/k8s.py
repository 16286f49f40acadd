"""`sentiray k8s`: train as a KubeRay RayJob, promote its artifact to a RayService, roll back, report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "k8s",
        help="Train on and inspect a Kubernetes cluster with KubeRay",
        description="Create and follow a training RayJob, promote its artifact to a RayService (and "
        "roll back), show RayJob/RayService status.",
    )
    sub = parser.add_subparsers(dest="k8s_command", metavar="ACTION", required=True)

    def service_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--service", help="RayService name (default: the only one in the namespace)")
        p.add_argument("--app", help="Serve application (default: the only one with a `model` arg)")

    def cluster_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-n", "--namespace", help="Namespace (default: the kubeconfig context's, else default)"
        )
        p.add_argument("--kubeconfig", help="Kubeconfig file (default: KUBECONFIG or ~/.kube/config)")
        p.add_argument("--context", help="Kubeconfig context")

    train = sub.add_parser(
        "train",
        help="Create the training RayJob, follow it, print its metrics and artifact",
        description="Create the RayJob from a manifest or the training chart, follow its status until it "
        "completes or fails, then print the test metrics and the artifact location from the job's "
        "SENTIRAY_RESULT log line.",
    )
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("-f", "--manifest", help="YAML file holding the RayJob (and optionally its PVC)")
    source.add_argument("--chart", help="Chart folder to render (e.g. helm/sentiray-train)")
    train.add_argument("--release", default="sentiray-train", help="Release name when rendering --chart")
    train.add_argument(
        "--values", action="append", default=[], metavar="FILE", help="Values file for --chart"
    )
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="set_values",
        help="Value for --chart, Helm --set syntax",
    )
    train.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="Stop following after this long (the job keeps running)",
    )
    train.add_argument("--no-follow", action="store_true", help="Create the RayJob and return")
    train.add_argument("--attach", action="store_true", help="If the RayJob exists already, follow it")
    cluster_options(train)
    train.set_defaults(handler=_train)

    status = sub.add_parser(
        "status", help="Conditions, replicas, endpoint and serving artifact of RayJobs and RayServices"
    )
    status.add_argument("--job", help="RayJob name (default: all RayJobs of the namespace)")
    status.add_argument("--service", help="RayService name (default: all RayServices of the namespace)")
    status.add_argument("-o", "--output", choices=["text", "json"], default="text", help="Output format")
    cluster_options(status)
    status.set_defaults(handler=_status)

    promote = sub.add_parser(
        "promote",
        help="Serve an artifact from the RayService in place (metric gate, records the previous one)",
        description="Point the RayService's Serve application at ARTIFACT by changing only its "
        "serveConfigV2 builder arg `model`: KubeRay applies that to the running cluster and Serve replaces "
        "the model replicas one by one, so the endpoint keeps answering. Refused when the artifact's "
        "recorded test metric is lower than the serving artifact's on the same test data (--force to "
        "promote anyway); when the two were tested on different data they are not compared, and the "
        "command says so. The artifact serving before is recorded for `sentiray k8s rollback`.",
    )
    promote.add_argument("artifact", metavar="ARTIFACT", help="Artifact location as the cluster sees it (path or URI)")
    promote.add_argument(
        "--manifest",
        metavar="FILE",
        help="A local copy of the artifact's sentiray.json, when its location cannot be read from here "
        "(a path on a cluster volume)",
    )
    promote.add_argument(
        "--metric",
        # The values of sentiray.kube.promotion.Metric, written out: that module is not imported to build
        # the parser.
        choices=("accuracy", "f1", "roc_auc"),
        default="accuracy",
        help="Test metric the gate compares (higher is better; default accuracy)",
    )
    promote.add_argument("--force", action="store_true", help="Promote even if the gate refuses")
    promote.add_argument(
        "--dry-run",
        action="store_true",
        help="Only run the gate against the serving artifact; change nothing (e.g. before `helm upgrade`)",
    )
    service_options(promote)
    cluster_options(promote)
    promote.set_defaults(handler=_promote)

    rollback = sub.add_parser(
        "rollback",
        help="Serve the previously promoted artifact again",
        description="Return the RayService to the artifact it served before the last promotion or "
        "rollback (in place, like promote; no metric gate). Running it twice returns to where you began.",
    )
    service_options(rollback)
    cluster_options(rollback)
    rollback.set_defaults(handler=_rollback)

def _print_change(obj: dict[str, Any]) -> None:
    from sentiray.kube.ops import describe_job_change

    print(f"RayJob {obj['metadata']['name']}: {describe_job_change(obj)}", flush=True)


def _train(args: argparse.Namespace) -> int:
    from sentiray.kube import ops
    from sentiray.kube.errors import KubeError
    from sentiray.kube.manifests import load_manifests, render_chart
    from sentiray.kube.resources import RAYJOB, succeeded

    cluster = ops.connect(args.kubeconfig, args.context, args.namespace)
    if args.manifest:
        docs = load_manifests(args.manifest)
    else:
        docs = render_chart(
            args.chart,
            release=args.release,
            namespace=cluster.namespace,
            values_files=args.values,
            set_values=args.set_values,
        )
    ops.require_kuberay(cluster, RAYJOB)
    created = ops.create_objects(
        cluster, docs, attach=args.attach, release=None if args.manifest else args.release
    )
    name = created["metadata"]["name"]
    print(f"RayJob {name} in namespace {cluster.namespace}", flush=True)
    if args.no_follow:
        return 0
    final = ops.follow_rayjob(cluster, name, timeout_s=args.timeout, on_change=_print_change)
    result = ops.read_job_result(cluster, final)
    if result is not None:
        metrics = result.get("test_metrics") or {}
        if metrics:
            print("test metrics:")
            for key, value in sorted(metrics.items()):
                print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")
        print(f"artifact: {result.get('artifact')}")
    if not succeeded(final):
        status = final.get("status") or {}
        raise KubeError(
            f"RayJob {name} ended {status.get('jobDeploymentStatus')} (job {status.get('jobStatus') or '-'}"
            f"{', reason ' + status['reason'] if status.get('reason') else ''}"
            f"{': ' + status['message'] if status.get('message') else ''})"
        )
    if result is None:
        print(f"warning: no SENTIRAY_RESULT line found in the logs of RayJob {name}", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    from sentiray.kube import ops, status
    from sentiray.kube.promotion import artifact_report
    from sentiray.kube.resources import RAYJOB, RAYSERVICE

    cluster = ops.connect(args.kubeconfig, args.context, args.namespace)
    wanted = [r for r, flag in ((RAYJOB, args.job), (RAYSERVICE, args.service)) if flag] or [
        RAYJOB,
        RAYSERVICE,
    ]
    ops.require_kuberay(cluster, *wanted)
    jobs = services = []
    if RAYJOB in wanted:
        jobs = [ops.get_object(cluster, RAYJOB, args.job)] if args.job else ops.list_objects(cluster, RAYJOB)
    if RAYSERVICE in wanted:
        services = (
            [ops.get_object(cluster, RAYSERVICE, args.service)]
            if args.service
            else ops.list_objects(cluster, RAYSERVICE)
        )
    if args.output == "json":
        out = {
            "namespace": cluster.namespace,
            "rayjobs": [{"name": j["metadata"]["name"], "status": j.get("status") or {}} for j in jobs],
            "rayservices": [
                {
                    "name": s["metadata"]["name"],
                    "status": s.get("status") or {},
                    "endpoint": status.serve_endpoint(cluster, s),
                    "artifacts": artifact_report(s),
                }
                for s in services
            ],
        }
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    if not jobs and not services:
        print(f"no RayJobs or RayServices in namespace {cluster.namespace}")
    for job in jobs:
        print("\n".join(status.job_report(job)))
    for service in services:
        print("\n".join(status.service_report(cluster, service)))
    return 0


def _promote(args: argparse.Namespace) -> int:
    from sentiray.errors import ArtifactError
    from sentiray.kube import ops, rollout
    from sentiray.kube.promotion import ArtifactRecord, Metric, read_manifest, record_of
    from sentiray.kube.resources import RAYSERVICE

    # The new artifact's manifest is read before anything else: no cluster call when it is unusable.
    if "://" not in args.artifact and not Path(args.artifact).is_absolute() and Path(args.artifact).exists():
        raise ArtifactError(
            f"{args.artifact}: a path relative to this machine means nothing to the cluster's pods; give the "
            "location as they see it (an absolute path on their volume, or an s3:// URI)"
        )
    try:
        new = record_of(args.artifact, read_manifest(args.artifact, args.manifest))
    except ArtifactError as e:
        if not args.force:
            raise ArtifactError(
                f"{e}; pass --manifest with a local copy of it, or --force to promote without a metric check"
            ) from None
        print(f"warning: {e}; promoting without metrics (--force)", file=sys.stderr)
        new = ArtifactRecord(artifact=args.artifact)

    def read_serving(location: str) -> ArtifactRecord | None:
        try:
            return record_of(location, read_manifest(location))
        except ArtifactError as e:
            print(f"note: the serving artifact's metrics are unknown here: {e}", file=sys.stderr)
            return None

    cluster = ops.connect(args.kubeconfig, args.context, args.namespace)
    ops.require_kuberay(cluster, RAYSERVICE)
    outcome = rollout.promote(
        cluster,
        new,
        service=args.service,
        app=args.app,
        metric=Metric(args.metric),
        force=args.force,
        dry_run=args.dry_run,
        read_record=read_serving,
    )
    if outcome.verdict is None:
        print(f"RayService {outcome.service} already serves {new.artifact}; nothing changed")
        return 0
    if outcome.verdict is not None:
        prefix = "gate overridden (--force): " if not outcome.verdict.allowed else ""
        stream = sys.stderr if not outcome.verdict.compared or prefix else sys.stdout
        print(f"{prefix}{outcome.verdict.message}", file=stream)
    if args.dry_run:
        print(f"RayService {outcome.service}: would promote {new.artifact} (serving: {outcome.previous.artifact}); "
              "nothing changed (--dry-run)")
        return 0
    print(f"RayService {outcome.service}: promoted {outcome.serving.artifact} (previous: {outcome.previous.artifact})")
    print("Serve replaces the model replicas one by one; follow it with `sentiray k8s status`")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from sentiray.kube import ops, rollout
    from sentiray.kube.resources import RAYSERVICE

    cluster = ops.connect(args.kubeconfig, args.context, args.namespace)
    ops.require_kuberay(cluster, RAYSERVICE)
    outcome = rollout.rollback(cluster, service=args.service, app=args.app)
    print(
        f"RayService {outcome.service}: rolled back to {outcome.serving.artifact} "
        f"(previous: {outcome.previous.artifact})"
    )
    return 0
