"""`sentiray k8s`: run training as a KubeRay RayJob and report on RayJobs and RayServices."""

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
        description="Create and follow a training RayJob, show RayJob/RayService status, keep the "
        "Kubernetes copies of serve/config.yaml in sync.",
    )
    sub = parser.add_subparsers(dest="k8s_command", metavar="ACTION", required=True)

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

    status = sub.add_parser("status", help="Conditions, replicas and endpoint of RayJobs and RayServices")
    status.add_argument("--job", help="RayJob name (default: all RayJobs of the namespace)")
    status.add_argument("--service", help="RayService name (default: all RayServices of the namespace)")
    status.add_argument("-o", "--output", choices=["text", "json"], default="text", help="Output format")
    cluster_options(status)
    status.set_defaults(handler=_status)

    sync = sub.add_parser(
        "sync-serve-config", help="Copy serve/config.yaml into the chart and kustomize bases"
    )
    sync.add_argument("--check", action="store_true", help="Only report stale copies (exit 1 if any)")
    sync.add_argument("--repo", default=None, help="Repository root (default: the source checkout)")
    sync.set_defaults(handler=_sync)


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
    created = ops.create_objects(cluster, docs, attach=args.attach)
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
    from sentiray.kube import ops
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
                    "endpoint": ops.serve_endpoint(cluster, s),
                }
                for s in services
            ],
        }
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    if not jobs and not services:
        print(f"no RayJobs or RayServices in namespace {cluster.namespace}")
    for job in jobs:
        print("\n".join(ops.job_report(job)))
    for service in services:
        print("\n".join(ops.service_report(cluster, service)))
    return 0


def _sync(args: argparse.Namespace) -> int:
    from sentiray.kube.serveconfig import sync

    repo = Path(args.repo) if args.repo else Path(__file__).resolve().parents[2]
    stale = sync(repo, check=args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path.relative_to(repo)}")
    if not stale:
        print("the Kubernetes copies of serve/config.yaml are up to date")
    return 1 if stale and args.check else 0
