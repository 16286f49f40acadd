"""Joining or starting the Ray cluster a job runs on (shared by every entrypoint in ray_jobs)."""

from __future__ import annotations

import logging
import os


def init_ray() -> None:
    """Join the cluster named by RAY_ADDRESS (set by `ray job submit` and KubeRay), else start a local one."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    address = os.environ.get("RAY_ADDRESS")
    runtime_env = {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}
    if address:
        ray.init(address=address, logging_level=logging.WARNING, runtime_env=runtime_env)
    else:
        # A local cluster keeps its dashboard on loopback; on a cluster the operator decides.
        ray.init(logging_level=logging.WARNING, runtime_env=runtime_env, dashboard_host="127.0.0.1")
