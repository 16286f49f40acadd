"""`sentiray k8s` against a stand-in Kubernetes API server in the test process.

The server speaks the real REST paths the `kubernetes` client uses for KubeRay custom resources
(discovery, create, get, list, watch as newline-delimited JSON events) and for pods and their logs;
a background thread plays the KubeRay operator, moving a created RayJob through its states.
No part of the kubernetes client is mocked.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
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
                    items = [o for (p, _), o in state.objects.items() if p == m["plural"]]
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
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = since
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

    return Handler


@pytest.fixture
def kube(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[FakeKubernetes]:
    state = FakeKubernetes(**getattr(request, "param", {}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
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
