"""`sentiray serve ARTIFACT`: start local Ray + Serve, deploy the sentiray app from the packaged Serve
config (serve/config.yaml, the file `serve deploy` and the RayService use), print its URL, and stop
cleanly on SIGTERM or Ctrl-C.

Over 350 lines because it owns the whole local lifecycle in one place: the machine-filling replica
layout, the local Ray with its owner-only token file, the deploy from the packaged config, and the
signal handling that drains requests and stops Serve and Ray.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import signal
import threading
from pathlib import Path
from typing import Any

from sentiray.errors import ConfigError, SentirayError

APP_NAME = "sentiray"
INGRESS, MODEL = "SentimentIngress", "SentimentModel"

# Builder options exposed as flags (the rest come from the Serve config; see serve/config.yaml for all).
_FLAGS = (
    "model_name",
    "device",
    "dtype",
    "runtime",
    "max_batch_size",
    "max_batch_tokens",
    "batch_wait_timeout_s",
    "max_inputs",
    "torch_threads",
    "min_replicas",
    "max_replicas",
    "target_ongoing_requests",
    "api_token_env",
    "api_token_file",
)
# Flags that shape the model deployment's autoscaling_config rather than the builder's args: options
# under the config's `deployments:` take precedence over what the builder sets in code.
_AUTOSCALING_FLAGS = ("min_replicas", "max_replicas", "target_ongoing_requests")

# Serve settings of the local Ray that `sentiray serve` starts, as the RayService sets them on its Ray
# containers (helm/sentiray-serve values, k8s/base): env vars read when Serve's processes start.
# A value already in the environment wins.
SERVE_ENV: dict[str, str] = {
    # serve/slow_clients.py: a request head not received within SENTIRAY_HEADER_TIMEOUT_S gets 408.
    "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "serve.slow_clients:install",
}


def packaged_config_path() -> Path:
    """serve/config.yaml as installed with the `serve` package."""
    import serve

    return Path(serve.__file__).resolve().parent / "config.yaml"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="Serve an artifact over HTTP with Ray Serve (local Ray)",
        description="Start Ray and Serve locally (or join --address) and deploy the app from the packaged "
        "Serve config (serve/config.yaml: request timeout, backpressure, autoscaling, health checks, "
        "graceful shutdown), overriding only what the flags set; print its URL. SIGTERM or Ctrl-C lets "
        "requests in flight finish, then stops Serve and the local Ray.",
    )
    p.add_argument("artifact", metavar="ARTIFACT", help="Artifact folder, s3:// URI or Hub id")
    p.add_argument(
        "--config",
        type=Path,
        help="Serve config to deploy from (default: the packaged serve/config.yaml); the same flags override it",
    )
    p.add_argument("--host", help="HTTP host (default: the config's, 127.0.0.1; 0.0.0.0 to expose)")
    p.add_argument("--port", type=int, help="HTTP port (default: the config's, 8000)")
    p.add_argument("--address", help="Ray cluster address to join (default: start a local Ray)")
    p.add_argument(
        "--num-cpus",
        type=float,
        help="CPUs (and torch threads) per model replica (default: the config's, 1; on a local CPU-only "
        "Ray with no replica flags, the layout that fills the machine, see --min-replicas)",
    )
    p.add_argument("--num-gpus", type=float, help="GPUs per model replica (default: the config's, 0)")
    p.add_argument(
        "--no-block",
        dest="block",
        action="store_false",
        help="Return after deploying (the app lives as long as the Ray cluster)",
    )
    group = p.add_argument_group("application options (serve.app:app_builder args)")
    from sentiray.config import add_model_arguments
    from serve.schemas import AppArgs

    # The packaged Serve config sets the autoscaling options of the model deployment.
    config_set = dict.fromkeys(_AUTOSCALING_FLAGS, "the config's")
    add_model_arguments(group, AppArgs, fields=_FLAGS, defaults_shown=config_set)
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


def replica_layout(args: argparse.Namespace, cores: int) -> tuple[float | None, dict[str, int]]:
    """CPUs per model replica (None: the config's) and the replica counts to apply: the machine-filling
    default where `sentiray serve` starts its own CPU-only Ray and no layout flag is given, else the flags
    as given (the config's values for the rest). A cluster (--address) or a GPU replica (--num-gpus) has
    no local machine to fill."""
    # --num-cpus/--num-gpus default to None and the replica flags are absent unless given (SUPPRESS).
    asked = any(getattr(args, name, None) is not None for name in ("num_cpus", "min_replicas", "max_replicas"))
    if asked or args.address is not None or (args.num_gpus or 0) > 0:
        return args.num_cpus, {}
    replicas, cpus = default_cpu_layout(cores)
    return float(cpus), {"min_replicas": replicas, "max_replicas": replicas}


def _artifact_location(artifact: str) -> str:
    """A local folder as an absolute path (replicas do not run in this directory); URIs and Hub ids as is."""
    if "://" not in artifact and Path(artifact).exists():
        return str(Path(artifact).resolve())
    return artifact


def serve_config(
    base: dict[str, Any],
    args: argparse.Namespace,
    cores: int,
) -> dict[str, Any]:
    """The Serve config to deploy: `base` (the packaged serve/config.yaml) with only what the flags set
    replaced: args.model and the builder options given, http host and port, and the model deployment's
    layout (num_cpus, num_gpus, replica counts). Validated as `serve deploy` validates it."""
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    from sentiray.config import format_validation_error
    from serve.schemas import AppArgs

    config = copy.deepcopy(base)
    apps = config.get("applications") or []
    if len(apps) != 1:
        raise ConfigError(f"serve config: expected one application, found {len(apps)}")
    app = apps[0]
    app["name"] = APP_NAME
    given = {k: getattr(args, k) for k in _FLAGS if hasattr(args, k)}
    app_args = dict(app.get("args") or {})
    app_args.update({k: v for k, v in given.items() if k not in _AUTOSCALING_FLAGS})
    app_args["model"] = _artifact_location(args.artifact)
    try:
        AppArgs.model_validate(app_args)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None
    app["args"] = app_args

    http = config.setdefault("http_options", {})
    if args.host is not None:
        http["host"] = args.host
    if args.port is not None:
        http["port"] = args.port

    deployments = {d.get("name"): d for d in app.setdefault("deployments", [])}
    model = deployments.get(MODEL)
    if model is None:
        model = {"name": MODEL}
        app["deployments"].append(model)
    cpus, layout = replica_layout(args, cores)
    actor = model.setdefault("ray_actor_options", {})
    if cpus is not None:
        actor["num_cpus"] = cpus
    if args.num_gpus is not None:
        actor["num_gpus"] = args.num_gpus
    scaling = {**layout, **{k: v for k, v in given.items() if k in _AUTOSCALING_FLAGS}}
    if scaling:
        if "num_replicas" in model:  # a fixed count in the config: the flags turn autoscaling on
            del model["num_replicas"]
        auto = model.setdefault("autoscaling_config", {})
        auto.update(scaling)
        low, high = auto.get("min_replicas", 1), auto.get("max_replicas", 1)
        if "max_replicas" not in scaling and low > high:
            auto["max_replicas"] = low  # --min-replicas above the config's maximum raises it
        elif "min_replicas" not in scaling and low > high:
            auto["min_replicas"] = high
        if auto["min_replicas"] > auto["max_replicas"]:
            raise ConfigError(
                f"min_replicas ({auto['min_replicas']}) is larger than max_replicas ({auto['max_replicas']})"
            )
    try:
        ServeDeploySchema.model_validate(config)
    except ValidationError as e:
        raise ConfigError("serve config: " + format_validation_error(e)) from None
    return config


def _replica_bounds(deployment: dict[str, Any]) -> tuple[int, int]:
    auto = deployment.get("autoscaling_config")
    if auto:
        low = int(auto.get("min_replicas", 1))
        return low, max(low, int(auto.get("max_replicas", 1)), int(auto.get("initial_replicas") or 0))
    n = deployment.get("num_replicas", 1)
    return (1, 1) if n == "auto" else (int(n), int(n))


def local_ray_cpus(config: dict[str, Any], cores: int) -> int:
    """Logical CPUs of the local Ray: room for the most replicas of every deployment the config may start,
    even where they exceed the cores (otherwise a replica waits forever for CPUs Ray does not have)."""
    need = 0.0
    for d in config["applications"][0]["deployments"]:
        need += float(d.get("ray_actor_options", {}).get("num_cpus", 1)) * _replica_bounds(d)[1]
    return max(cores, math.ceil(need - 1e-9))


def private_token_file() -> Path | None:
    """Make the token a fresh local Ray will use readable by its owner only, and return its path.

    Ray writes a missing ~/.ray/auth_token with the process umask (0644 usually): any local user could
    read it and run code on the cluster. Written here first, 0600, in a 0700 folder; an existing file
    of ours with group or other bits loses them. None where token auth is off or the token comes from
    RAY_AUTH_TOKEN."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled" or os.environ.get("RAY_AUTH_TOKEN"):
        return None
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if path.exists():
        if path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return path
    import secrets

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # As Ray's own token: 256 random bits, hex (ray._private.authentication.authentication_token_generator).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path


class _StopSignal:
    """SIGTERM / SIGINT set an event the main thread waits on, instead of Ray's handlers (which kill the
    local Ray at once and exit 1, dropping requests in flight)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.name = ""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting
        self.name = signal.Signals(signum).name
        self.event.set()


def _wait_running(stop: threading.Event) -> None:
    """Block until the app is RUNNING; DEPLOY_FAILED raises with Serve's message (the load error)."""
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    while not stop.wait(0.5):
        status = serve.status().applications.get(APP_NAME)
        if status is None:
            continue
        if status.status == ApplicationStatus.RUNNING:
            return
        if status.status == ApplicationStatus.DEPLOY_FAILED:
            detail = " ".join(d.message for d in status.deployments.values() if d.message)
            raise SentirayError(f"the application failed to deploy: {status.message} {detail}".strip())


def run(args: argparse.Namespace) -> int:
    import yaml

    path = args.config or packaged_config_path()
    try:
        base = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"--config: cannot read {path}: {e}") from None
    if not isinstance(base, dict):
        raise ConfigError(f"--config: {path} is not a Serve config (a YAML mapping)")
    cores = os.cpu_count() or 1
    config = serve_config(base, args, cores)

    import ray
    from ray import serve
    from ray.serve._private import api as serve_api
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(config)
    if args.address is None:
        for key, value in SERVE_ENV.items():
            os.environ.setdefault(key, value)  # inherited by the Ray processes started here
        # Token auth stays as Ray sets it for a fresh local cluster: on, its token in ~/.ray/auth_token
        # (RAY_AUTH_MODE=disabled opts out). Ray binds GCS, raylet and worker ports on every interface,
        # so without the token anyone on the network could run code here. The HTTP endpoint is ours.
        private_token_file()
        ray.init(include_dashboard=False, num_cpus=local_ray_cpus(config, cores))
    else:
        ray.init(address=args.address)
    stop = _StopSignal()  # after ray.init, which installs its own handlers
    # As `serve run CONFIG` and `serve deploy` do: Serve started with the config's HTTP options, the
    # application deployed declaratively, so `deployments:` options take precedence over the code's.
    client = serve_api.serve_start(
        http_options=schema.http_options.model_dump(),
        grpc_options=schema.grpc_options.model_dump(),
        proxy_location=schema.proxy_location,
    )
    try:
        client.deploy_apps(schema)
        _wait_running(stop.event)
        if not stop.event.is_set():
            _announce(args.artifact, config)
            if not args.block:
                return 0
            stop.event.wait()
        print(f"sentiray: {stop.name or 'stop'} received; finishing the requests in flight", flush=True)
        # Deleting the app drains it first: each replica stops taking requests and waits for the ones it
        # has (graceful_shutdown_timeout_s of the config), then the proxy and the local Ray go.
        serve.delete(APP_NAME)
    finally:
        if args.block or stop.event.is_set():
            serve.shutdown()
            ray.shutdown()
    print("sentiray: stopped", flush=True)
    return 0


def _announce(artifact: str, config: dict[str, Any]) -> None:
    http = config["http_options"]
    host, port = http.get("host", "127.0.0.1"), http.get("port", 8000)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}"
    model = next(d for d in config["applications"][0]["deployments"] if d["name"] == MODEL)
    low, high = _replica_bounds(model)
    replicas = f"{low}" if low == high else f"{low}-{high}"
    cpus = model.get("ray_actor_options", {}).get("num_cpus", 1)
    print(
        f"sentiray serving {artifact} at {url} (POST {url}/predict, docs at {url}/docs; "
        f"{replicas} model replica(s) x {cpus:g} CPU)",
        flush=True,
    )
