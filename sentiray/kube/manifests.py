"""Manifests for `sentiray k8s train`: a YAML file, or a chart rendered with the Helm engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sentiray.kube.errors import KubeError


def load_manifests(path: str | Path) -> list[dict[str, Any]]:
    """The objects of a (multi-document) YAML file."""
    p = Path(path)
    try:
        docs = [d for d in yaml.safe_load_all(p.read_text()) if d]
    except (OSError, yaml.YAMLError) as e:
        raise KubeError(f"manifest {p}: {e}") from None
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "metadata" not in d:
            raise KubeError(f"manifest {p}: every document must be a Kubernetes object (kind, metadata)")
    return docs


def render_chart(
    chart: str | Path,
    *,
    release: str,
    namespace: str,
    values_files: list[str] | None = None,
    set_values: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Render a chart offline with the Helm v4 engine (helm-python-sdk); test hooks are left out."""
    try:
        import helm_python as helm
    except ImportError:
        raise KubeError(
            "rendering a chart needs helm-python-sdk (pip install helm-python-sdk); "
            "or render it with `helm template` and pass the file with --manifest"
        ) from None
    values: dict[str, Any] = {}
    try:
        for f in values_files or []:
            values = _merge(values, helm.values_from_yaml(Path(f).read_text()))
        for expr in set_values or []:
            values = _merge(values, helm.parse_set_string(expr))
        with helm.Chart.load(str(chart)) as loaded:
            rendered = loaded.render(values, name=release, namespace=namespace, is_install=True)
    except OSError as e:
        raise KubeError(f"chart values: {e}") from None
    except helm.HelmError as e:
        raise KubeError(f"chart {chart}: {e}") from None
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc and "helm.sh/hook" not in (doc.get("metadata", {}).get("annotations") or {}):
                docs.append(doc)
    return docs


# Helm v4 adopts an existing object into a release only when it carries these, with these values
# (helm/helm pkg/action/validate.go, checkOwnership); otherwise `helm install` stops with "exists and
# cannot be imported into the current release: invalid ownership metadata".
HELM_MANAGED_BY = ("app.kubernetes.io/managed-by", "Helm")
HELM_RELEASE_NAME = "meta.helm.sh/release-name"
HELM_RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"


def add_helm_ownership(doc: dict[str, Any], *, release: str | None, namespace: str) -> dict[str, Any]:
    """Mark an object the chart renders as the release's, so a later `helm install` of the same release
    in the same namespace adopts it instead of failing on it.

    With `release` None (a manifest file), an object already labelled managed-by Helm takes its release
    from its `app.kubernetes.io/instance` label (the chart's `.Release.Name`); others stay untouched.
    """
    meta = doc.setdefault("metadata", {})
    labels = meta.get("labels") or {}
    if release is None:
        if labels.get(HELM_MANAGED_BY[0]) != HELM_MANAGED_BY[1] or not labels.get("app.kubernetes.io/instance"):
            return doc
        release = str(labels["app.kubernetes.io/instance"])
    meta["labels"] = {**labels, HELM_MANAGED_BY[0]: HELM_MANAGED_BY[1]}
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        HELM_RELEASE_NAME: release,
        HELM_RELEASE_NAMESPACE: namespace,
    }
    return doc


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
