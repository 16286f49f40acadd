"""The Ray Serve application: a FastAPI ingress that tokenizes, in front of batching model replicas.

`serve run serve.app:app model=PATH` or `serve deploy serve/config.yaml`. The parts, one module each:
serve/checks.py (body size, JSON depth, bearer token: plain functions), serve/errors.py (typed request
errors and their status codes, one table), serve/ingress.py (the routes; validates and tokenizes),
serve/batching.py (token-budget batches), serve/model.py (the model replica and its metrics), and here
the builder.
"""

# No `from __future__ import annotations` here: Serve reads the builder's parameter annotation as a
# class to validate `args` into AppArgs.

from typing import Any

from ray import serve

from serve.checks import json_depth_exceeds as _json_depth_exceeds
from serve.errors import RETRY_AFTER_S
from serve.ingress import SentimentIngress
from serve.model import FAULT_UNHEALTHY_FILE_ENV, MAX_SURGE_PERCENT, METRIC_NAMES, SentimentModel
from serve.schemas import AppArgs

__all__ = [
    "FAULT_UNHEALTHY_FILE_ENV",
    "MAX_SURGE_PERCENT",
    "METRIC_NAMES",
    "RETRY_AFTER_S",
    "AppArgs",
    "SentimentIngress",
    "SentimentModel",
    "_json_depth_exceeds",
    "app",
    "app_builder",
    "build_app",
]


def build_app(
    args: AppArgs,
    *,
    model_options: dict[str, Any] | None = None,
    ingress_options: dict[str, Any] | None = None,
) -> serve.Application:
    """The application with deployment options layered: code defaults, builder args, explicit options."""
    model_opts: dict[str, Any] = {}
    autoscaling = args.autoscaling_overrides()
    if autoscaling:
        model_opts["autoscaling_config"] = {"min_replicas": 1, "max_replicas": 1, **autoscaling}
        model_opts["autoscaling_config"]["max_replicas"] = max(
            model_opts["autoscaling_config"]["max_replicas"], model_opts["autoscaling_config"]["min_replicas"]
        )
    model_opts.update(model_options or {})
    model = SentimentModel.options(**model_opts).bind(args)  # type: ignore[attr-defined]
    return SentimentIngress.options(**(ingress_options or {})).bind(model, args)  # type: ignore[attr-defined]


def app_builder(args: AppArgs) -> serve.Application:
    """Typed Serve app builder: `serve run serve.app:app_builder model=PATH [key=value ...]`."""
    if not isinstance(args, AppArgs):
        args = AppArgs.model_validate(args)
    return build_app(args)


# `serve run serve.app:app model=...` reads better; same builder.
app = app_builder
