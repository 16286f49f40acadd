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
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per model replica (default: 1)")
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

    try:
        app_args = AppArgs.model_validate(
            {"model": args.artifact, **{k: getattr(args, k) for k in _FLAGS if hasattr(args, k)}}
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
        ray.init(include_dashboard=False, num_cpus=local_ray_cpus(args.num_cpus, app_args, os.cpu_count() or 1))
    else:
        ray.init(address=args.address)
    serve.start(http_options={"host": args.host, "port": args.port})
    app = build_app(
        app_args, model_options={"ray_actor_options": {"num_cpus": args.num_cpus, "num_gpus": args.num_gpus}}
    )
    serve.run(app, name="sentiray", route_prefix="/")
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{shown}:{args.port}"
    print(f"sentiray serving {args.artifact} at {url} (POST {url}/predict, docs at {url}/docs)", flush=True)
    if not args.block:
        return 0
    try:
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()
        ray.shutdown()
