"""`sentiray serve ARTIFACT`: start local Ray + Serve with the sentiray app and print its URL."""

from __future__ import annotations

import argparse
import math
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sentiray.errors import ConfigError

if TYPE_CHECKING:
    from serve.schemas import AppArgs

# Builder options exposed as flags (the rest keep their defaults; see serve/config.yaml for all).
_FLAGS = (
    "model_name",
    "device",
    "dtype",
    "runtime",
    "max_batch_size",
    "batch_wait_timeout_s",
    "max_inputs",
    "torch_threads",
    "min_replicas",
    "max_replicas",
    "target_ongoing_requests",
    "api_token_env",
    "api_token_file",
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="Serve an artifact over HTTP with Ray Serve (local Ray)",
        description="Start Ray and Serve locally (or join --address), deploy the app, print its URL.",
    )
    p.add_argument("artifact", metavar="ARTIFACT", help="Artifact folder, s3:// URI or Hub id")
    p.add_argument("--host", default="127.0.0.1", help="HTTP host (default: %(default)s; 0.0.0.0 to expose)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default: %(default)s)")
    p.add_argument("--address", help="Ray cluster address to join (default: start a local Ray)")
    p.add_argument(
        "--num-cpus",
        type=float,
        help="CPUs (and torch threads) per model replica (default: 1; on a local CPU-only Ray with no "
        "replica flags, the layout that fills the machine, see --min-replicas)",
    )
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per model replica (default: 0)")
    p.add_argument(
        "--no-block",
        dest="block",
        action="store_false",
        help="Return after deploying (the app lives as long as the Ray cluster)",
    )
    group = p.add_argument_group("application options (serve.app:app_builder args)")
    from serve.schemas import AppArgs

    for name in _FLAGS:
        field = AppArgs.model_fields[name]
        default = field.default.value if isinstance(field.default, StrEnum) else field.default
        kind = field.annotation
        kwargs: dict[str, Any] = {
            "dest": name,
            "default": argparse.SUPPRESS,
            "help": f"{field.description} (default: {default})",
        }
        if isinstance(field.default, StrEnum):
            kwargs["choices"] = [m.value for m in type(field.default)]
        elif kind in (int, int | None):
            kwargs["type"] = int
        elif kind in (float, float | None):
            kwargs["type"] = float
        group.add_argument("--" + name.replace("_", "-"), **kwargs)
    p.set_defaults(handler=run)


# Each replica holds its own copy of the model (a few hundred MB with its process), so the default layout
# stops adding replicas here and gives the ones it has more threads instead.
MAX_DEFAULT_REPLICAS = 4


def default_cpu_layout(cores: int) -> tuple[int, int]:
    """(model replicas, CPUs per replica) that fill a local CPU machine: one single-threaded replica per
    core up to MAX_DEFAULT_REPLICAS, then more threads per replica. On 2 cores, 2 replicas of 1 thread
    served 1.32x the requests/s of 1 replica of 2 threads (docs/benchmarks.md): a forward pass uses a
    second thread poorly, a second replica runs its own batch beside the first."""
    replicas = max(1, min(cores, MAX_DEFAULT_REPLICAS))
    return replicas, max(1, cores // replicas)


def replica_layout(args: argparse.Namespace, cores: int) -> tuple[float, dict[str, int]]:
    """CPUs per model replica and the replica-count flags to apply: the machine-filling default where
    `sentiray serve` starts its own CPU-only Ray and no layout flag is given, else the flags as given
    (1 CPU per replica, Serve's replica count, by default). A cluster (--address) or a GPU replica
    (--num-gpus) has no local machine to fill."""
    # --num-cpus defaults to None and the replica flags are absent unless given (argparse.SUPPRESS).
    asked = any(getattr(args, name, None) is not None for name in ("num_cpus", "min_replicas", "max_replicas"))
    if asked or args.address is not None or args.num_gpus > 0:
        return (1.0 if args.num_cpus is None else args.num_cpus), {}
    replicas, cpus = default_cpu_layout(cores)
    return float(cpus), {"min_replicas": replicas, "max_replicas": replicas}


def local_ray_cpus(cpus_per_replica: float, app_args: AppArgs, cores: int) -> int:
    """Logical CPUs of the local Ray: room for the most model replicas asked for plus the light ingress,
    even where they exceed the cores (otherwise a replica waits forever for CPUs Ray does not have)."""
    replicas = max(app_args.min_replicas or 1, app_args.max_replicas or 1)
    return max(cores, math.ceil(cpus_per_replica * replicas) + 1)


def run(args: argparse.Namespace) -> int:
    import os

    from pydantic import ValidationError

    from sentiray.config import format_validation_error
    from serve.schemas import AppArgs

    cores = os.cpu_count() or 1
    cpus_per_replica, layout = replica_layout(args, cores)
    try:
        app_args = AppArgs.model_validate(
            {"model": args.artifact, **layout, **{k: getattr(args, k) for k in _FLAGS if hasattr(args, k)}}
        )
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None

    import ray
    from ray import serve

    from serve.app import build_app

    if args.address is None:
        # Token auth stays as Ray sets it for a fresh local cluster: on, its token in ~/.ray/auth_token
        # (RAY_AUTH_MODE=disabled opts out). Ray binds GCS, raylet and worker ports on every interface,
        # so without the token anyone on the network could run code here. The HTTP endpoint is ours.
        ray.init(include_dashboard=False, num_cpus=local_ray_cpus(cpus_per_replica, app_args, cores))
    else:
        ray.init(address=args.address)
    serve.start(http_options={"host": args.host, "port": args.port})
    app = build_app(
        app_args, model_options={"ray_actor_options": {"num_cpus": cpus_per_replica, "num_gpus": args.num_gpus}}
    )
    serve.run(app, name="sentiray", route_prefix="/")
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{shown}:{args.port}"
    low, high = app_args.min_replicas or 1, max(app_args.min_replicas or 1, app_args.max_replicas or 1)
    replicas = f"{low}" if low == high else f"{low}-{high}"
    print(
        f"sentiray serving {args.artifact} at {url} (POST {url}/predict, docs at {url}/docs; "
        f"{replicas} model replica(s) x {cpus_per_replica:g} CPU)",
        flush=True,
    )
    if not args.block:
        return 0
    try:
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()
        ray.shutdown()
