"""The RayService's serveConfigV2 from serve/config.yaml, and the copies kept of it.

Only these may differ from serve/config.yaml: the builder args that locate the model and the API
token (`model`, `api_token_file`), each deployment's `ray_actor_options`, and `http_options.host`
(0.0.0.0 on a cluster, so the Kubernetes Service reaches the proxies). Everything else — routes,
batching, autoscaling, timeouts — comes from the one file the serving code is tested with.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from sentiray.kube.errors import KubeError

ALLOWED_ARG_OVERRIDES = ("model", "api_token_file")
CLUSTER_HTTP_HOST = "0.0.0.0"

SOURCE = "serve/config.yaml"
CHART_COPY = "helm/sentiray-serve/files/serve-config.yaml"
# Default model location of the plain manifests: the training RayJob's run on the shared PVC.
KUSTOMIZE_MODEL_URI = "/mnt/sentiray/runs/sentiray-imdb/artifact"
# The serve configs the kustomize bases embed (through a replacement), with their actor options.
KUSTOMIZE_VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "k8s/base/serve-config.yaml": {
        "SentimentIngress": {"num_cpus": 0.1},
        "SentimentModel": {"num_cpus": 2, "num_gpus": 0},
    },
    "k8s/overlays/gpu/serve-config.yaml": {
        "SentimentIngress": {"num_cpus": 0.1},
        "SentimentModel": {"num_cpus": 2, "num_gpus": 1},
    },
}
GENERATED_HEADER = (
    "# Generated from serve/config.yaml by `make sync-serve-config`; do not edit.\n"
    "# Differs only in builder args (model), ray_actor_options and http_options.host.\n"
)


def load_serve_config(path: str | Path) -> dict[str, Any]:
    """Parse a Serve config file (a mapping with `applications:`)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise KubeError(f"serve config {p}: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("applications"), list):
        raise KubeError(f"serve config {p}: expected a mapping with an `applications:` list")
    return data


def apply_overrides(
    config: dict[str, Any],
    *,
    model_uri: str,
    ray_actor_options: dict[str, dict[str, Any]] | None = None,
    api_token_file: str | None = None,
    http_host: str = CLUSTER_HTTP_HOST,
) -> dict[str, Any]:
    """A copy of `config` with the allowed overrides applied (the chart's template does the same)."""
    out = copy.deepcopy(config)
    out.setdefault("http_options", {})["host"] = http_host
    for app in out["applications"]:
        args = app.setdefault("args", {})
        args["model"] = model_uri
        if api_token_file:
            args["api_token_file"] = api_token_file
        for deployment in app.get("deployments", []):
            options = (ray_actor_options or {}).get(deployment.get("name"))
            if options is not None:
                deployment["ray_actor_options"] = copy.deepcopy(options)
    return out


def _strip_allowed(config: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(config)
    out.get("http_options", {}).pop("host", None)
    for app in out.get("applications", []):
        for key in ALLOWED_ARG_OVERRIDES:
            app.get("args", {}).pop(key, None)
        for deployment in app.get("deployments", []):
            deployment.pop("ray_actor_options", None)
    return out


def _diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in a:
                out.append(f"{sub}: only in the rendered config ({b[key]!r})")
            elif key not in b:
                out.append(f"{sub}: missing from the rendered config (source: {a[key]!r})")
            else:
                _diff(a[key], b[key], sub, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} items in the source, {len(b)} rendered")
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _diff(x, y, f"{path}[{i}]", out)
    elif a != b or type(a) is not type(b):
        out.append(f"{path}: source {a!r}, rendered {b!r}")


def serve_config_differences(source: dict[str, Any], rendered: dict[str, Any]) -> list[str]:
    """Differences between two Serve configs outside the allowed overrides (empty: they match)."""
    out: list[str] = []
    _diff(_strip_allowed(source), _strip_allowed(rendered), "", out)
    return out


def expected_files(repo: Path) -> dict[Path, str]:
    """Every copy of serve/config.yaml kept in the tree, with the text it must have."""
    source_path = repo / SOURCE
    source_text = source_path.read_text()
    source = load_serve_config(source_path)
    files = {repo / CHART_COPY: source_text}
    for rel, options in KUSTOMIZE_VARIANTS.items():
        rendered = apply_overrides(source, model_uri=KUSTOMIZE_MODEL_URI, ray_actor_options=options)
        files[repo / rel] = GENERATED_HEADER + yaml.safe_dump(rendered, sort_keys=False)
    return files


def sync(repo: Path, *, check: bool = False) -> list[Path]:
    """Write (or with `check`, only list) the copies that differ from what serve/config.yaml implies."""
    stale = []
    for path, text in expected_files(repo).items():
        if not path.is_file() or path.read_text() != text:
            stale.append(path)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    return stale
