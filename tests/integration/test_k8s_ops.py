"""`sentiray k8s` against a stand-in Kubernetes API server in the test process.

The server speaks the real REST paths the `kubernetes` client uses for KubeRay custom resources
(discovery, create, get, list, replace, watch as newline-delimited JSON events) and for pods and their
logs, with the API server's semantics where the client depends on them: an update must carry the
object's current resourceVersion (else 409 Conflict, or 422 without one), an update leaves the status
subresource alone, a watch from a compacted resourceVersion gets an ERROR event with 410 Gone.
A background thread plays the KubeRay operator, moving a created RayJob through its states.
No part of the kubernetes client is mocked.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from sentiray.cli import main
from tests.k8s_support import REPO, chart_objects

NS = "ml"
RESULT = {
    "run": "sentiray-imdb",
    "artifact": "/mnt/sentiray/runs/sentiray-imdb/artifact",
    "test_metrics": {"accuracy": 0.9312, "f1": 0.9301, "samples": 25000},
}


class FakeKubernetes:
    """State of the stand-in API server: custom objects, pods, logs, and the operator's script."""

    def __init__(self, *, crds: bool = True, forbidden: bool = False, outcome: str = "SUCCEEDED") -> None:
        self.crds, self.forbidden, self.outcome = crds, forbidden, outcome
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, str] = {}
        self.claims: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, plural, type, object)
        self.rv = 100
        self.cond = threading.Condition()
        self.requests: list[str] = []
        self.watching = threading.Event()  # the operator moves once the client watches: no race
        # Watches from a resourceVersion below this get 410 Gone (what etcd compaction does).
        self.compacted_rv = 0
        # (code, message): the next watch request is answered with this error instead.
        self.watch_error: tuple[int, str] | None = None
        # Called on each update before its resourceVersion is checked: another writer racing the client.
        self.before_update: Callable[[], None] | None = None
        self.updates = 0

    def put(self, plural: str, obj: dict[str, Any], event: str) -> dict[str, Any]:
        with self.cond:
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[(plural, obj["metadata"]["name"])] = obj
            self.events.append((self.rv, plural, event, json.loads(json.dumps(obj))))
            self.cond.notify_all()
        return obj

    def operate_rayjob(self, name: str) -> None:
        """What KubeRay does to a RayJob, sped up: initialize, run, finish; the submitter logs the result."""
        steps: list[dict[str, Any]] = [
            {"jobDeploymentStatus": "Initializing", "rayClusterName": f"{name}-abcde"},
            {
                "jobDeploymentStatus": "Running",
                "jobStatus": "PENDING",
                "rayClusterStatus": {"state": "ready", "readyWorkerReplicas": 2},
            },
            {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
        ]
        if self.outcome == "SUCCEEDED":
            steps.append({"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED", "succeeded": 1})
        else:
            steps.append(
                {
                    "jobDeploymentStatus": "Failed",
                    "jobStatus": "FAILED",
                    "failed": 3,
                    "reason": "AppFailed",
                    "message": "Job entrypoint command failed with exit code 1",
                }
            )
        self.watching.wait(timeout=10)
        for i, step in enumerate(steps):
            time.sleep(0.15)
            obj = json.loads(json.dumps(self.objects[("rayjobs", name)]))
            obj.setdefault("status", {}).update(step)
            if i == 1:
                pod = f"{name}-submitter-x1y2z"
                self.pods[pod] = {
                    "metadata": {
                        "name": pod,
                        "namespace": NS,
                        "labels": {"job-name": name},
                        "creationTimestamp": "2026-01-01T00:00:00Z",
                    }
                }
                tail = (
                    f"SENTIRAY_RESULT {json.dumps(RESULT)}" if self.outcome == "SUCCEEDED" else "error: boom"
                )
                self.logs[pod] = f"INFO starting\nepoch 1 loss 0.3\n{tail}\n"
            self.put("rayjobs", obj, "MODIFIED")


def _handler(state: FakeKubernetes) -> type[BaseHTTPRequestHandler]:
    custom = re.compile(
        r"^/apis/ray\.io/v1/namespaces/(?P<ns>[^/]+)/(?P<plural>rayjobs|rayservices)(?:/(?P<name>[^/]+))?$"
    )
    pods = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$")
    log = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/log$")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _status(self, code: int, reason: str, message: str) -> None:
            self._send(
                code,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": reason,
                    "message": message,
                    "code": code,
                },
            )

        def _guard(self) -> bool:
            state.requests.append(f"{self.command} {self.path}")
            if state.forbidden:
                self._status(
                    403, "Forbidden", f'rayjobs.ray.io is forbidden: User "dev" cannot {self.command.lower()}'
                )
                return False
            return True

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if not self._guard():
                return
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/apis/ray.io/v1":
                if not state.crds:
                    self._status(404, "NotFound", "the server could not find the requested resource")
                    return
                resources = [
                    {
                        "name": p,
                        "singularName": p[:-1],
                        "namespaced": True,
                        "kind": k,
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                    }
                    for p, k in (
                        ("rayjobs", "RayJob"),
                        ("rayservices", "RayService"),
                        ("rayclusters", "RayCluster"),
                    )
                ]
                self._send(
                    200,
                    {
                        "kind": "APIResourceList",
                        "apiVersion": "v1",
                        "groupVersion": "ray.io/v1",
                        "resources": resources,
                    },
                )
            elif m := custom.match(url.path):
                if not state.crds:
                    self._status(404, "NotFound", "the server could not find the requested resource")
                elif query.get("watch") in ("true", "1"):
                    self._watch(m["plural"], query)
                elif m["name"]:
                    obj = state.objects.get((m["plural"], m["name"]))
                    if obj is None:
                        self._status(404, "NotFound", f'{m["plural"]}.ray.io "{m["name"]}" not found')
                    else:
                        self._send(200, obj)
                else:
                    only = query.get("fieldSelector", "").removeprefix("metadata.name=")
                    items = [
                        o
                        for (p, n), o in state.objects.items()
                        if p == m["plural"] and (not only or n == only)
                    ]
                    self._send(
                        200,
                        {
                            "apiVersion": "ray.io/v1",
                            "kind": "List",
                            "items": items,
                            "metadata": {"resourceVersion": str(state.rv)},
                        },
                    )
            elif m := pods.match(url.path):
                selector = dict(s.split("=", 1) for s in query.get("labelSelector", "").split(",") if s)
                items = [
                    p
                    for p in state.pods.values()
                    if selector.items() <= p["metadata"].get("labels", {}).items()
                ]
                self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
            elif m := log.match(url.path):
                if m["name"] in state.logs:
                    self._send(200, state.logs[m["name"]], "text/plain")
                else:
                    self._status(404, "NotFound", f'pods "{m["name"]}" not found')
            elif url.path.endswith("/ingresses"):
                self._send(
                    200,
                    {
                        "kind": "IngressList",
                        "apiVersion": "networking.k8s.io/v1",
                        "metadata": {},
                        "items": [
                            {
                                "metadata": {"name": "sentiray"},
                                "spec": {
                                    "tls": [{"hosts": ["sentiray.example.com"]}],
                                    "rules": [
                                        {
                                            "host": "sentiray.example.com",
                                            "http": {
                                                "paths": [
                                                    {
                                                        "path": "/",
                                                        "pathType": "Prefix",
                                                        "backend": {
                                                            "service": {
                                                                "name": "sentiray-serve-svc",
                                                                "port": {"number": 8000},
                                                            }
                                                        },
                                                    }
                                                ]
                                            },
                                        }
                                    ],
                                },
                            }
                        ],
                    },
                )
            else:
                self._status(404, "NotFound", f"no route {url.path}")

        def _watch(self, plural: str, query: dict[str, str]) -> None:
            name = query.get("fieldSelector", "").removeprefix("metadata.name=")
            since = int(query.get("resourceVersion") or 0)
            deadline = time.monotonic() + float(query.get("timeoutSeconds", 5))
            if state.watch_error is not None:
                code, message = state.watch_error
                state.watch_error = None
                self._status(code, "InternalError", message)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = since
            if since and since < state.compacted_rv:
                # The API server answers an expired watch with 200 and one ERROR event holding a Status.
                gone = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "Expired",
                    "message": f"too old resource version: {since} ({state.compacted_rv})",
                    "code": 410,
                }
                line = (json.dumps({"type": "ERROR", "object": gone}) + "\n").encode()
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n0\r\n\r\n")
                return
            state.watching.set()
            while time.monotonic() < deadline:
                with state.cond:
                    pending = [
                        e
                        for e in state.events
                        if e[0] > sent and e[1] == plural and (not name or e[3]["metadata"]["name"] == name)
                    ]
                    if not pending:
                        state.cond.wait(timeout=0.2)
                        continue
                for rv, _, kind, obj in pending:
                    line = (json.dumps({"type": kind, "object": obj}) + "\n").encode()
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                    sent = rv
            self.wfile.write(b"0\r\n\r\n")

        def do_POST(self) -> None:  # noqa: N802
            if not self._guard():
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if urlparse(self.path).path == f"/api/v1/namespaces/{NS}/persistentvolumeclaims":
                name = body["metadata"]["name"]
                if name in state.claims:
                    self._status(409, "AlreadyExists", f'persistentvolumeclaims "{name}" already exists')
                else:
                    state.claims[name] = body
                    self._send(201, body)
                return
            m = custom.match(urlparse(self.path).path)
            if not m or not state.crds:
                self._status(404, "NotFound", "the server could not find the requested resource")
                return
            name = body["metadata"]["name"]
            if (m["plural"], name) in state.objects:
                self._status(409, "AlreadyExists", f'{m["plural"]}.ray.io "{name}" already exists')
                return
            body["metadata"].update(namespace=m["ns"], uid="uid-1", creationTimestamp="2026-01-01T00:00:00Z")
            created = state.put(m["plural"], body, "ADDED")
            self._send(201, created)
            if m["plural"] == "rayjobs":
                threading.Thread(target=state.operate_rayjob, args=(name,), daemon=True).start()

        def do_PUT(self) -> None:  # noqa: N802
            """Replace a custom object: optimistic concurrency on metadata.resourceVersion."""
            if not self._guard():
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            m = custom.match(urlparse(self.path).path)
            if not m or not m["name"] or not state.crds:
                self._status(404, "NotFound", "the server could not find the requested resource")
                return
            if state.before_update is not None:
                state.before_update()
            key = (m["plural"], m["name"])
            with state.cond:
                stored = state.objects.get(key)
                if stored is None:
                    self._status(404, "NotFound", f'{m["plural"]}.ray.io "{m["name"]}" not found')
                    return
                rv = body.get("metadata", {}).get("resourceVersion")
                if not rv:
                    self._status(
                        422, "Invalid", "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
                    )
                    return
                if rv != stored["metadata"]["resourceVersion"]:
                    self._status(
                        409,
                        "Conflict",
                        f'Operation cannot be fulfilled on {m["plural"]}.ray.io "{m["name"]}": the object has '
                        "been modified; please apply your changes to the latest version and try again",
                    )
                    return
                # The status subresource is written through /status only; an update keeps the stored one.
                if "status" in stored:
                    body["status"] = stored["status"]
                else:
                    body.pop("status", None)
                generation = int(stored["metadata"].get("generation", 1))
                if body.get("spec") != stored.get("spec"):
                    generation += 1
                body["metadata"]["generation"] = generation
                state.updates += 1
                updated = state.put(m["plural"], body, "MODIFIED")
            self._send(200, updated)

    return Handler


@pytest.fixture
def kube(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[FakeKubernetes]:
    state = FakeKubernetes(**getattr(request, "param", {}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    # A short poll: shutdown() waits for it, once per test.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "stand-in",
        "clusters": [{"name": "stand-in", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "dev", "user": {"token": "stand-in-token"}}],
        "contexts": [
            {"name": "stand-in", "context": {"cluster": "stand-in", "user": "dev", "namespace": NS}}
        ],
    }
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    yield state
    server.shutdown()
    server.server_close()


def _manifest(tmp_path: Path) -> Path:
    docs = [o for o in chart_objects("sentiray-train") if o["kind"] in ("RayJob", "PersistentVolumeClaim")]
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def test_train_follows_the_rayjob_and_prints_the_result(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["k8s", "train", "-f", str(_manifest(tmp_path)), "--timeout", "30"])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, captured.err
    assert "RayJob rel-sentiray-train in namespace ml" in out
    states = re.findall(r"deployment=(\w+) job=(\S+)", out)
    assert states[0] == ("New", "-")
    assert states[-1] == ("Complete", "SUCCEEDED")
    assert ("Running", "RUNNING") in states
    assert "accuracy: 0.9312" in out
    assert f"artifact: {RESULT['artifact']}" in out
    assert any("watch=true" in r for r in kube.requests), "followed with a watch, not by polling"
    assert any("/pods/rel-sentiray-train-submitter-x1y2z/log" in r for r in kube.requests)
    created = kube.objects[("rayjobs", "rel-sentiray-train")]
    assert "--resume-if-exists" in created["spec"]["entrypoint"]
    assert "sentiray-runs" in kube.claims


@pytest.mark.parametrize("kube", [{"outcome": "FAILED"}], indirect=True)
def test_a_failed_job_exits_1_with_the_reason(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["k8s", "train", "-f", str(_manifest(tmp_path)), "--timeout", "30"])
    err = capsys.readouterr().err
    assert code == 1
    assert "ended Failed" in err
    assert "AppFailed" in err
    assert "exit code 1" in err


def test_train_renders_the_chart(kube: FakeKubernetes, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "k8s",
            "train",
            "--chart",
            str(REPO / "helm" / "sentiray-train"),
            "--release",
            "exp1",
            "--set",
            "workers.replicas=3",
            "--set",
            "job.runName=exp1",
            "--no-follow",
        ]
    )
    assert code == 0, capsys.readouterr()
    job = kube.objects[("rayjobs", "exp1-sentiray-train")]
    assert job["metadata"]["namespace"] == NS
    assert "--num-workers 3" in job["spec"]["entrypoint"]
    assert "--name exp1" in job["spec"]["entrypoint"]


def test_an_existing_job_is_refused_unless_attached(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = str(_manifest(tmp_path))
    assert main(["k8s", "train", "-f", manifest, "--timeout", "30"]) == 0
    capsys.readouterr()
    assert main(["k8s", "train", "-f", manifest]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["k8s", "train", "-f", manifest, "--attach"]) == 0
    assert "artifact:" in capsys.readouterr().out


def test_status_reports_jobs_and_services(kube: FakeKubernetes, capsys: pytest.CaptureFixture[str]) -> None:
    service = next(
        o for o in chart_objects("sentiray-serve", release="sentiray") if o["kind"] == "RayService"
    )
    service["metadata"]["name"] = "sentiray"
    service["status"] = {
        "serviceStatus": "Running",
        "numServeEndpoints": 3,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "NonZeroServeEndpoints"},
            {"type": "UpgradeInProgress", "status": "False", "reason": "NoPendingCluster"},
        ],
        "activeServiceStatus": {
            "rayClusterName": "sentiray-x7k2p",
            "rayClusterStatus": {
                "readyWorkerReplicas": 2,
                "desiredWorkerReplicas": 2,
                "minWorkerReplicas": 1,
                "maxWorkerReplicas": 4,
                "desiredGPU": "2",
            },
            "applicationStatuses": {
                "sentiray": {
                    "status": "RUNNING",
                    "serveDeploymentStatuses": {
                        "SentimentIngress": {"status": "HEALTHY"},
                        "SentimentModel": {"status": "HEALTHY"},
                    },
                }
            },
        },
    }
    kube.put("rayservices", service, "ADDED")
    assert main(["k8s", "status"]) == 0
    out = capsys.readouterr().out
    assert "RayService sentiray: Running" in out
    assert "condition Ready=True NonZeroServeEndpoints" in out
    assert "workers: ready 2, desired 2 (min 1, max 4), GPUs 2" in out
    assert "application sentiray: RUNNING [SentimentIngress=HEALTHY, SentimentModel=HEALTHY]" in out
    assert "endpoint: http://sentiray-serve-svc.ml.svc:8000" in out
    assert "ingress: https://sentiray.example.com/" in out
    assert main(["k8s", "status", "--service", "sentiray", "-o", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["rayservices"][0]["endpoint"] == "http://sentiray-serve-svc.ml.svc:8000"
    assert main(["k8s", "status", "--job", "missing"]) == 1
    assert "RayJob missing not found in namespace ml" in capsys.readouterr().err


@pytest.mark.parametrize("kube", [{"crds": False}], indirect=True)
def test_missing_crds_are_named(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["k8s", "train", "-f", str(_manifest(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert "does not serve ray.io/v1" in err
    assert "KubeRay" in err


@pytest.mark.parametrize("kube", [{"forbidden": True}], indirect=True)
def test_forbidden_is_named(kube: FakeKubernetes, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["k8s", "status"]) == 1
    err = capsys.readouterr().err
    assert "forbidden" in err
    assert "RBAC" in err


def test_no_cluster_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["k8s", "status"]) == 1
    assert "no cluster configured" in capsys.readouterr().err
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
    }
    (tmp_path / "gone").write_text(yaml.safe_dump(config))
    assert main(["k8s", "status", "--kubeconfig", str(tmp_path / "gone")]) == 1
    assert "cannot reach the Kubernetes API server" in capsys.readouterr().err


# --- watch errors --------------------------------------------------------------------------------


def test_a_watch_expired_by_compaction_resumes_from_a_fresh_list(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """410 Gone on a watch: the follower lists again and watches from the list's resourceVersion.

    The RayJob exists already (--attach) and has not changed since, so its own resourceVersion is below
    the compaction point: watching from it again would get 410 forever."""
    job = next(o for o in chart_objects("sentiray-train") if o["kind"] == "RayJob")
    job["metadata"].update(namespace=NS, uid="uid-1")
    kube.put("rayjobs", job, "ADDED")
    other = json.loads(json.dumps(job))
    other["metadata"]["name"] = "unrelated"
    kube.put("rayjobs", other, "ADDED")  # the cluster moves on
    kube.compacted_rv = kube.rv
    threading.Thread(target=kube.operate_rayjob, args=(job["metadata"]["name"],), daemon=True).start()
    code = main(["k8s", "train", "-f", str(_manifest(tmp_path)), "--attach", "--timeout", "20"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "deployment=Complete job=SUCCEEDED" in captured.out
    watches = [r for r in kube.requests if "watch=true" in r]
    assert len(watches) >= 2
    assert f"resourceVersion={kube.compacted_rv}" in watches[1]


def test_an_error_that_only_mentions_410_is_not_taken_for_one(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The follower acts on the API's status code, not on words in a message."""
    kube.watch_error = (500, "etcd leader changed; earlier answer was HTTP 410 Gone")
    code = main(["k8s", "train", "-f", str(_manifest(tmp_path)), "--timeout", "20"])
    err = capsys.readouterr().err
    assert code == 1
    assert "watching RayJob rel-sentiray-train: HTTP 500" in err


# --- the PVC and Helm ----------------------------------------------------------------------------


def helm_ownership_errors(obj: dict[str, Any], release: str, namespace: str) -> list[str]:
    """Helm v4's adoption rule for an existing object (helm/helm pkg/action/validate.go,
    checkOwnership): the managed-by label and both release annotations, with these exact values."""
    meta = obj.get("metadata", {})
    wanted = [
        (meta.get("labels") or {}, "app.kubernetes.io/managed-by", "Helm"),
        (meta.get("annotations") or {}, "meta.helm.sh/release-name", release),
        (meta.get("annotations") or {}, "meta.helm.sh/release-namespace", namespace),
    ]
    return [f"{key}={got.get(key)!r}, must be {value!r}" for got, key, value in wanted if got.get(key) != value]


def test_the_created_claim_can_be_adopted_by_helm(kube: FakeKubernetes, capsys: pytest.CaptureFixture[str]) -> None:
    chart = str(REPO / "helm" / "sentiray-train")
    assert main(["k8s", "train", "--chart", chart, "--release", "exp1", "--no-follow"]) == 0, capsys.readouterr()
    claim = kube.claims["sentiray-runs"]
    assert helm_ownership_errors(claim, "exp1", NS) == []
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"  # the chart's own stays
    assert helm_ownership_errors(claim, "other", NS) != []  # the rule has teeth: another release may not


def test_a_claim_from_a_helm_template_file_takes_its_release_from_the_instance_label(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["k8s", "train", "-f", str(_manifest(tmp_path)), "--no-follow"]) == 0, capsys.readouterr()
    assert helm_ownership_errors(kube.claims["sentiray-runs"], "rel", NS) == []


# --- promotion, rollback, status -----------------------------------------------------------------

TEST_SHA = "7" * 64


def make_artifact(
    root: Path, name: str, accuracy: float | None, *, test_sha: str = TEST_SHA, test_rows: int = 500
) -> str:
    """An artifact folder with a real manifest (only the manifest is read by promotion)."""
    from sentiray.artifact import ArtifactManifest

    folder = root / name
    folder.mkdir(parents=True)
    manifest = ArtifactManifest(
        labels={0: "NEGATIVE", 1: "POSITIVE"},
        max_length=64,
        truncation="head_tail",
        base_model="tiny",
        dataset={
            "source": "folder:/data/imdb",
            "sha256": {"/data/imdb/train.parquet": "1" * 64, "/data/imdb/test.parquet": test_sha},
            "rows": {"train": 1000, "validation": 100, "test": test_rows},
        },
        test_metrics=None if accuracy is None else {"accuracy": accuracy, "f1": accuracy - 0.01, "n": test_rows},
        training_config={"data": {"max_test_samples": None, "data_seed": 42}},
        created_at="2026-01-01T00:00:00+00:00",
        files={"model.safetensors": "0" * 64},
    )
    (folder / "sentiray.json").write_text(manifest.model_dump_json())
    return str(folder)


def _model_values(model: str) -> dict[str, Any]:
    """Chart values serving `model`; a local path is mounted from its folder (the chart refuses a path
    outside modelVolume.mountPath)."""
    if model.startswith("/"):
        return {"model": {"uri": model}, "modelVolume": {"mountPath": str(Path(model).parent)}}
    return {"model": {"uri": model}}


def put_service(kube: FakeKubernetes, model: str, name: str = "sentiray") -> dict[str, Any]:
    """The serve chart's RayService, running `model`, as the operator leaves it."""
    service = next(
        o
        for o in chart_objects("sentiray-serve", _model_values(model), release=name)
        if o["kind"] == "RayService"
    )
    service["metadata"].update(name=name, namespace=NS, generation=1)
    service["status"] = {"serviceStatus": "Running", "activeServiceStatus": {"rayClusterName": f"{name}-x7k2p"}}
    return kube.put("rayservices", service, "ADDED")


def served(kube: FakeKubernetes, name: str = "sentiray") -> str:
    config = yaml.safe_load(kube.objects[("rayservices", name)]["spec"]["serveConfigV2"])
    return str(config["applications"][0]["args"]["model"])


def record(kube: FakeKubernetes, which: str, name: str = "sentiray") -> dict[str, Any]:
    annotations = kube.objects[("rayservices", name)]["metadata"].get("annotations") or {}
    return dict(json.loads(annotations[f"sentiray.io/{which}-artifact"]))


def test_promote_changes_only_the_model_arg_and_records_the_previous(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = make_artifact(tmp_path, "run-1", 0.90)
    new = make_artifact(tmp_path, "run-2", 0.92)
    before = put_service(kube, old)
    before = json.loads(json.dumps(before))
    assert main(["k8s", "promote", new]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "test accuracy 0.9200 against the serving artifact's 0.9000" in out
    after = kube.objects[("rayservices", "sentiray")]
    assert served(kube) == new
    # In place: the cluster spec (whose change would make KubeRay build a new cluster) is untouched, and
    # the Serve config differs in the model arg alone.
    assert after["spec"]["rayClusterConfig"] == before["spec"]["rayClusterConfig"]
    old_config, new_config = (yaml.safe_load(o["spec"]["serveConfigV2"]) for o in (before, after))
    old_config["applications"][0]["args"]["model"] = new
    assert new_config == old_config
    assert after["status"] == before["status"]
    assert kube.updates == 1
    assert record(kube, "serving")["artifact"] == new
    assert record(kube, "serving")["test_metrics"]["accuracy"] == 0.92
    assert record(kube, "previous")["artifact"] == old  # read from its manifest: Helm installed it
    assert record(kube, "previous")["test_metrics"]["accuracy"] == 0.90


def test_a_worse_artifact_is_refused_and_nothing_changes(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = make_artifact(tmp_path, "run-1", 0.92)
    worse = make_artifact(tmp_path, "run-2", 0.88)
    put_service(kube, good)
    stored = json.dumps(kube.objects[("rayservices", "sentiray")], sort_keys=True)
    assert main(["k8s", "promote", worse]) == 1
    err = capsys.readouterr().err
    assert "test accuracy 0.8800 is worse than the serving artifact's 0.9200" in err
    assert "nothing was changed" in err
    assert "--force" in err
    assert json.dumps(kube.objects[("rayservices", "sentiray")], sort_keys=True) == stored
    assert kube.updates == 0
    assert main(["k8s", "promote", worse, "--force"]) == 0
    assert "gate overridden (--force)" in capsys.readouterr().err
    assert served(kube) == worse
    assert record(kube, "previous")["artifact"] == good


def test_metrics_on_different_test_data_are_not_compared(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serving = make_artifact(tmp_path, "run-1", 0.95)
    other_data = make_artifact(tmp_path, "run-2", 0.80, test_sha="8" * 64)
    fewer_rows = make_artifact(tmp_path, "run-3", 0.70, test_rows=100)
    put_service(kube, serving)
    assert main(["k8s", "promote", other_data]) == 0
    err = capsys.readouterr().err
    assert "test metrics not compared: they were tested on different data" in err
    assert "sha256 888888888888" in err and "sha256 777777777777" in err
    assert served(kube) == other_data
    assert main(["k8s", "promote", fewer_rows]) == 0
    assert "100 rows" in capsys.readouterr().err
    assert served(kube) == fewer_rows


def test_an_unreadable_serving_artifact_is_said_and_not_compared(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put_service(kube, "/mnt/sentiray/runs/sentiray-imdb/artifact")  # a cluster volume: not here
    new = make_artifact(tmp_path, "run-2", 0.9)
    assert main(["k8s", "promote", new]) == 0
    err = capsys.readouterr().err
    assert "the serving artifact's metrics are unknown here" in err
    assert "has no recorded test accuracy" in err
    assert served(kube) == new


def test_an_unreadable_new_artifact_is_refused_before_any_cluster_call(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put_service(kube, make_artifact(tmp_path, "run-1", 0.9))
    missing = str(tmp_path / "nowhere")
    assert main(["k8s", "promote", missing]) == 1
    err = capsys.readouterr().err
    assert "cannot read the artifact's manifest" in err
    assert "--manifest" in err
    assert kube.requests == []
    # A local copy of the manifest stands in for a location on a cluster volume.
    copy = make_artifact(tmp_path, "copy", 0.93)
    assert main(["k8s", "promote", "/mnt/runs/run-2/artifact", "--manifest", f"{copy}/sentiray.json"]) == 0
    assert served(kube) == "/mnt/runs/run-2/artifact"
    assert record(kube, "serving")["test_metrics"]["accuracy"] == 0.93


def test_rollback_returns_to_the_previous_artifact_and_back(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = make_artifact(tmp_path, "run-1", 0.90)
    second = make_artifact(tmp_path, "run-2", 0.91)
    put_service(kube, first)
    assert main(["k8s", "rollback"]) == 1
    assert "records no previous artifact" in capsys.readouterr().err
    assert kube.updates == 0
    assert main(["k8s", "promote", second]) == 0
    assert main(["k8s", "rollback"]) == 0
    assert f"rolled back to {first}" in capsys.readouterr().out
    assert served(kube) == first
    assert record(kube, "serving")["test_metrics"]["accuracy"] == 0.90
    assert record(kube, "previous")["artifact"] == second
    assert main(["k8s", "rollback"]) == 0
    assert served(kube) == second


def test_status_shows_the_serving_and_previous_artifacts(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = make_artifact(tmp_path, "run-1", 0.90)
    second = make_artifact(tmp_path, "run-2", 0.9123)
    put_service(kube, first)
    assert main(["k8s", "status", "--service", "sentiray"]) == 0
    out = capsys.readouterr().out
    assert f"serving artifact: {first}; no test metrics recorded" in out
    assert "set outside `sentiray k8s promote`" in out
    assert "previous artifact: none recorded" in out
    assert main(["k8s", "promote", second]) == 0
    capsys.readouterr()
    assert main(["k8s", "status", "--service", "sentiray"]) == 0
    out = capsys.readouterr().out
    assert f"serving artifact: {second}; accuracy 0.9123, f1 0.9023; test data 500 rows" in out
    assert f"previous artifact: {first}; accuracy 0.9000" in out
    assert main(["k8s", "status", "--service", "sentiray", "-o", "json"]) == 0
    artifacts = json.loads(capsys.readouterr().out)["rayservices"][0]["artifacts"]
    assert artifacts["serving"]["artifact"] == second
    assert artifacts["recorded"] is True
    assert artifacts["previous"]["test_metrics"]["accuracy"] == 0.90


def test_a_concurrent_change_is_retried_on_the_fresh_object(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put_service(kube, make_artifact(tmp_path, "run-1", 0.90))
    new = make_artifact(tmp_path, "run-2", 0.91)
    raced = []

    def operator_writes_first() -> None:
        if not raced:  # once: the operator touches the object between our read and our write
            obj = json.loads(json.dumps(kube.objects[("rayservices", "sentiray")]))
            obj["metadata"].setdefault("labels", {})["touched"] = "yes"
            kube.put("rayservices", obj, "MODIFIED")
            raced.append(True)

    kube.before_update = operator_writes_first
    assert main(["k8s", "promote", new]) == 0, capsys.readouterr()
    stored = kube.objects[("rayservices", "sentiray")]
    assert stored["metadata"]["labels"]["touched"] == "yes"  # the other writer's change survives
    assert served(kube) == new
    assert sum(r.startswith("PUT") for r in kube.requests) == 2


def test_a_service_that_keeps_changing_is_left_alone(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = make_artifact(tmp_path, "run-1", 0.90)
    put_service(kube, old)
    new = make_artifact(tmp_path, "run-2", 0.91)

    def always() -> None:
        obj = json.loads(json.dumps(kube.objects[("rayservices", "sentiray")]))
        kube.put("rayservices", obj, "MODIFIED")

    kube.before_update = always
    assert main(["k8s", "promote", new]) == 1
    err = capsys.readouterr().err
    assert "changed 3 times while being updated" in err
    assert "nothing was changed" in err
    assert served(kube) == old
    assert kube.updates == 0


def test_promote_names_the_service_problems(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = make_artifact(tmp_path, "run-2", 0.91)
    assert main(["k8s", "promote", new]) == 1
    assert "expected one RayService, found none" in capsys.readouterr().err
    put_service(kube, new, name="a")
    put_service(kube, new, name="b")
    assert main(["k8s", "promote", new]) == 1
    assert "expected one RayService, found a, b; name it with --service" in capsys.readouterr().err
    assert main(["k8s", "promote", new, "--service", "missing"]) == 1
    assert "RayService missing not found in namespace ml" in capsys.readouterr().err
    assert main(["k8s", "promote", new, "--service", "a"]) == 0
    assert "already serves" in capsys.readouterr().out
    assert kube.updates == 0
    assert main(["k8s", "promote", new, "--service", "a", "--app", "other"]) == 1
    assert "no application 'other' with a `model` arg" in capsys.readouterr().err


def test_a_dry_run_runs_the_gate_and_changes_nothing(
    kube: FakeKubernetes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What to run before `helm upgrade --set model.uri=...`, which has no gate of its own."""
    serving = make_artifact(tmp_path, "run-1", 0.90)
    put_service(kube, serving)
    better, worse = make_artifact(tmp_path, "run-2", 0.91), make_artifact(tmp_path, "run-3", 0.89)
    assert main(["k8s", "promote", better, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would promote {better} (serving: {serving})" in out
    assert main(["k8s", "promote", worse, "--dry-run"]) == 1
    assert "is worse than the serving artifact's" in capsys.readouterr().err
    assert kube.updates == 0
    assert served(kube) == serving


def test_a_path_relative_to_this_machine_is_refused(
    kube: FakeKubernetes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    put_service(kube, make_artifact(tmp_path, "run-1", 0.9))
    make_artifact(tmp_path, "run-2", 0.95)
    monkeypatch.chdir(tmp_path)
    assert main(["k8s", "promote", "run-2"]) == 1
    assert "a path relative to this machine means nothing to the cluster's pods" in capsys.readouterr().err
    assert kube.updates == 0
