"""Security defaults of the local clusters, as users start them: `sentiray serve` and a local training run.

Ray binds GCS, raylet, agent and worker ports on every interface; Ray's token (a fresh local cluster
turns token auth on and keeps the token in ~/.ray/auth_token) is what keeps them closed. Each test starts
its cluster in a child process with RAY_AUTH_MODE unset, a private HOME and Ray temp dir, lists every
TCP port the cluster's processes listen on and probes each one as a client without the token (refused)
and with it (accepted). Ray's Prometheus exporters are the only ports that answer without the token: they
serve read-only metrics. The HTTP endpoint and the dashboard bind 127.0.0.1.

Clusters are stopped by signalling their process group and then their remaining processes by id (never
`ray stop`, which would stop other clusters on the machine).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import psutil
import pytest

from tests.ray_cluster import free_port

pytestmark = pytest.mark.timeout(600)

# One harmless method of each Ray gRPC service that listens on a port: GCS, raylet (node manager and
# object manager), dashboard agent, core workers (drivers and actors), Serve replicas, Ray client server.
GRPC_PROBES = (
    "/ray.rpc.NodeInfoGcsService/GetAllNodeInfo",
    "/ray.rpc.NodeManagerService/GetSystemConfig",
    "/ray.rpc.ObjectManagerService/Pull",
    "/ray.rpc.ReporterService/HealthCheck",
    "/ray.rpc.CoreWorkerService/NumPendingTasks",
    "/ray.serve.ASGIService/HandleRequest",
    "/ray.rpc.RayletDriver/ClusterInfo",
)
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


# --- a local cluster in a child process -----------------------------------------------------------------


@dataclass
class LocalCluster:
    proc: subprocess.Popen[bytes]
    home: Path
    ray_tmp: Path
    log: Path

    @property
    def token(self) -> str:
        return (self.home / ".ray" / "auth_token").read_text().strip()

    def processes(self) -> list[psutil.Process]:
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def local_cluster(argv: list[str], ready: str, extra_env: dict[str, str] | None = None) -> Iterator[LocalCluster]:
    """Run argv (which starts a local Ray) until `ready` appears in its output; stop everything after."""
    # Short path: Ray's unix sockets live under its temp dir and have a ~100-byte path limit.
    root = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    home, ray_tmp, log = root / "home", root / "ray", root / "out.log"
    home.mkdir()
    ray_tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS")}
    env.update(HOME=str(home), RAY_TMPDIR=str(ray_tmp), RAY_USAGE_STATS_ENABLED="0", **(extra_env or {}))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    cluster = LocalCluster(proc, home, ray_tmp, log)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 300
        while ready not in cluster.output():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{argv[:3]} did not get ready (exit {proc.poll()}):\n{cluster.output()[-4000:]}")
            time.sleep(1)
        print(f"\n{argv[1]} {argv[2][:40]}: ready in {time.monotonic() - deadline + 300:.1f} s")
        yield cluster
    finally:
        with contextlib.suppress(psutil.Error):
            seen = {p.pid for p in cluster.processes()}
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        for pid in seen:  # workers that left the group
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=20)
        shutil.rmtree(root, ignore_errors=True)


# --- probing every port ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    pid: int
    title: str
    ip: str
    port: int

    @property
    def loopback(self) -> bool:
        return self.ip in LOOPBACK

    @property
    def dial(self) -> str:
        """An address that reaches it: loopback for wildcard binds (auth does not depend on the source)."""
        if self.ip in ("0.0.0.0", "::") or self.loopback:
            return "127.0.0.1"
        return self.ip.removeprefix("::ffff:")


def listeners(cluster: LocalCluster) -> list[Listener]:
    found = []
    for proc in cluster.processes():
        try:
            title = " ".join(proc.cmdline())
            conns = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        found += [Listener(proc.pid, title, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return sorted(set(found), key=lambda x: x.port)


def _grpc_code(target: str, method: str, token: str | None) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            call(b"", metadata=metadata, timeout=5)
        except grpc.RpcError as e:
            code: grpc.StatusCode = e.code()
            return code
    return grpc.StatusCode.OK


def probe(listener: Listener, token: str) -> tuple[str, str]:
    """(kind, detail): 'token' when refused without the token and accepted with it, 'metrics' for a
    Prometheus exporter, 'open' when it answers without the token, 'unknown' when no probe applies."""
    target = f"{listener.dial}:{listener.port}"
    try:
        bare = httpx.get(f"http://{target}/", timeout=5)
    except httpx.HTTPError:
        bare = None  # not HTTP/1.1: gRPC
    if bare is not None:
        if bare.status_code in (401, 403):
            authed = httpx.get(f"http://{target}/", headers={"authorization": f"Bearer {token}"}, timeout=5)
            if authed.status_code in (401, 403):
                return "unknown", f"HTTP {bare.status_code}, with the token {authed.status_code}"
            return "token", f"HTTP {bare.status_code} without the token, {authed.status_code} with it"
        if bare.status_code == 200 and bare.text.startswith(("# HELP", "# TYPE")):
            return "metrics", "Prometheus text"
        return "open", f"HTTP {bare.status_code} without the token: {bare.text[:80]!r}"
    for method in GRPC_PROBES:
        without = _grpc_code(target, method, None)
        if without == grpc.StatusCode.OK:
            return "open", f"gRPC {method} OK without the token"
        if without == grpc.StatusCode.UNAUTHENTICATED:
            with_token = _grpc_code(target, method, token)
            wrong = _grpc_code(target, method, "not-" + token)
            if with_token not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE) and (
                wrong == grpc.StatusCode.UNAUTHENTICATED
            ):
                return "token", f"gRPC {method}: UNAUTHENTICATED without the token, {with_token.name} with it"
            return "unknown", f"gRPC {method}: {with_token.name} with the token, {wrong.name} with a wrong one"
    return "unknown", "no probe applies"


def audit(cluster: LocalCluster) -> list[tuple[Listener, str, str]]:
    """Every listening port of the cluster, probed; ports that went away meanwhile (idle workers) skipped."""
    token = cluster.token
    started = time.monotonic()
    report = []
    for listener in listeners(cluster):
        kind, detail = probe(listener, token)
        if kind == "unknown" and listener not in listeners(cluster):
            continue
        report.append((listener, kind, detail))
    print(f"\n{len(report)} listening ports probed in {time.monotonic() - started:.1f} s")
    print("\n".join(f"{x.port:>6} {x.ip:<18} {kind:<8} {x.title[:60]:<60} {detail}" for x, kind, detail in report))
    return report


def assert_ray_ports_need_the_token(report: list[tuple[Listener, str, str]], loopback_http: set[int]) -> None:
    problems = [
        (x.port, x.ip, x.title[:60], kind, detail)
        for x, kind, detail in report
        if x.port not in loopback_http and kind not in ("token", "metrics")
    ]
    assert problems == [], problems
    # The control plane really is there and really is closed: GCS, raylet and a core worker at least.
    closed = " ".join(detail for _, kind, detail in report if kind == "token")
    for service in ("NodeInfoGcsService", "NodeManagerService", "CoreWorkerService"):
        assert service in closed, closed
    # What answers without the token is Ray's read-only Prometheus exporters, nothing else.
    exporters = [(x.port, x.title) for x, kind, _ in report if kind == "metrics"]
    assert len(exporters) <= 3, exporters
    for _, title in exporters:
        assert any(m in title for m in ("monitor.py", "dashboard", "DashboardAgent")), exporters
    # Ports meant for this machine only are bound to loopback only.
    for x, _, _ in report:
        if x.port in loopback_http:
            assert x.loopback, (x.port, x.ip, x.title)


# --- the tests --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def untrained_artifact(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support import write_tiny_artifact

    out = tmp_path_factory.mktemp("security") / "artifact"
    write_tiny_artifact(out, tiny_model_dir, base_model="tiny")
    return out


def test_sentiray_serve_keeps_ray_behind_its_token_and_tokens_out_of_logs(untrained_artifact: Path) -> None:
    """`sentiray serve`: Serve HTTP on 127.0.0.1, every other Ray port refuses a client without Ray's
    token; the API's bearer token works, a wrong one is refused, and neither token nor Ray's appears in
    any answer, log line or file Ray wrote."""
    port = free_port()
    api_token = "sk-" + secrets.token_hex(16)
    wrong_token = "sk-" + secrets.token_hex(16)
    argv = [
        str(Path(sys.executable).parent / "sentiray"),
        "serve",
        str(untrained_artifact),
        "--port",
        str(port),
        "--api-token-env",
        "SENTIRAY_TEST_API_TOKEN",
    ]
    with local_cluster(argv, "sentiray serving", {"SENTIRAY_TEST_API_TOKEN": api_token}) as cluster:
        base = f"http://127.0.0.1:{port}"
        assert (cluster.home / ".ray" / "auth_token").is_file()  # Ray made a token: auth is on
        report = audit(cluster)
        assert port in {x.port for x, _, _ in report}
        assert_ray_ports_need_the_token(report, loopback_http={port})

        body = {"inputs": "a fine film"}
        answers = [httpx.post(f"{base}/predict", json=body, timeout=60)]
        answers.append(httpx.post(f"{base}/predict", json=body, headers={"authorization": f"Bearer {wrong_token}"}))
        answers.append(httpx.get(f"{base}/info", headers={"authorization": wrong_token}))
        assert [a.status_code for a in answers] == [401, 401, 401]
        good = httpx.post(f"{base}/predict", json=body, headers={"authorization": f"Bearer {api_token}"})
        assert good.status_code == 200, good.text
        ray_token = cluster.token
        time.sleep(2)  # let the replicas' log lines reach their files
        texts = {f"answer {a.request.url}": a.text + str(a.headers) for a in [*answers, good]}
        texts["sentiray serve output"] = cluster.output()
        texts |= {
            str(f): f.read_text(errors="replace")
            for f in cluster.ray_tmp.rglob("*")
            if f.is_file() and not f.is_symlink() and f.stat().st_size < 50_000_000
        }
        assert len(texts) > 20  # Ray's logs are there to be searched
        for secret, what in ((api_token, "API token"), (wrong_token, "wrong token"), (ray_token, "Ray token")):
            leaks = [name for name, text in texts.items() if secret in text]
            assert leaks == [], f"the {what} appears in {leaks}"


def test_local_training_cluster_dashboard_on_loopback_and_behind_the_token() -> None:
    """ray_jobs' init_ray (what `sentiray train` runs locally): the dashboard and jobs API bind
    127.0.0.1 and, like every other Ray port, refuse a client without the token."""
    from ray.job_submission import JobSubmissionClient

    code = (
        "import time; from ray_jobs._cluster import init_ray; init_ray(); "
        "print('cluster ready', flush=True); time.sleep(3600)"
    )
    with local_cluster([sys.executable, "-c", code], "cluster ready") as cluster:
        report = audit(cluster)
        dashboards = [x for x, _, _ in report if "dashboard/dashboard.py" in x.title and _answers_api_version(x)]
        assert dashboards, "no dashboard HTTP port found"
        dash_ports = {x.port for x in dashboards}
        assert_ray_ports_need_the_token(report, loopback_http=dash_ports)

        url = f"http://127.0.0.1:{dashboards[0].port}"
        assert httpx.get(f"{url}/api/jobs/", timeout=10).status_code == 401
        wrong = {"authorization": "Bearer not-the-token"}
        assert httpx.get(f"{url}/api/jobs/", headers=wrong, timeout=10).status_code == 403
        auth = {"authorization": f"Bearer {cluster.token}"}
        assert httpx.get(f"{url}/api/jobs/", headers=auth, timeout=10).status_code == 200
        # Ray's own job client: refused without the token, served with it.
        with pytest.raises(Exception, match="401|Unauthorized|[Aa]uthentication"):
            JobSubmissionClient(url).list_jobs()
        jobs = JobSubmissionClient(url, headers=auth).list_jobs()
        assert [job.type.value for job in jobs] == ["DRIVER"]  # the training driver itself


def _answers_api_version(listener: Listener) -> bool:
    try:
        r = httpx.get(f"http://{listener.dial}:{listener.port}/api/version", timeout=5)
    except httpx.HTTPError:
        return False
    # Not a Prometheus exporter, which answers any path with its metrics.
    return r.status_code == 401 or (r.status_code == 200 and "ray_version" in r.text)
