"""A hostile client against real local Ray Serve over real HTTP: schema fuzzing, hostile sizes, bad bytes,
a trickled body. Every request gets a 4xx or a correct answer, memory stays bounded, the replicas stay up.

Raw sockets where httpx would tidy the request up (a body sent a byte at a time, chunked bodies of
100 MB); the Ray processes are found among this test's own descendants by their process titles.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from serve.app import build_app
from serve.schemas import AppArgs
from tests.fuzz import fuzz_endpoint
from tests.integration.conftest import ServeInstance, wait_healthy

pytestmark = pytest.mark.timeout(600)

APP = "hostile"
BODY_TIMEOUT_S = 3.0  # short, so the trickle test is quick; the default is 15 s
POSITIVE = "a wonderful superb film"
MB = 1_000_000


@pytest.fixture(scope="module")
def api(serve_instance: ServeInstance, tiny_artifact: Path) -> str:
    from ray import serve

    args = AppArgs(model=str(tiny_artifact), max_batch_size=8, body_timeout_s=BODY_TIMEOUT_S)
    app = build_app(args, model_options={"ray_actor_options": {"num_cpus": 1}})
    serve.run(app, name=APP, route_prefix="/")
    wait_healthy(serve_instance.base_url)
    return serve_instance.base_url


def _predict(api: str, body: Any) -> httpx.Response:
    return httpx.post(f"{api}/predict", json=body, timeout=60)


def _still_serving(api: str) -> None:
    assert httpx.get(f"{api}/health", timeout=10).status_code == 200
    ok = _predict(api, {"inputs": POSITIVE})
    assert ok.status_code == 200, ok.text
    assert ok.json()[0]["label"] == "POSITIVE"


# --- raw HTTP/1.1 ----------------------------------------------------------------------------------------


@dataclass
class RawReply:
    status: int | None  # None: no HTTP answer at all
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes sent before the server answered
    seconds: float  # from the request line to the end of the answer
    closed: bool  # the server closed the connection after answering


def raw_post(
    base_url: str,
    path: str,
    body: bytes,
    *,
    chunked: bool = False,
    piece: int = 1 << 16,
    pause_s: float = 0.0,
    extra_headers: dict[str, str] | None = None,
    give_up_s: float = 120.0,
) -> RawReply:
    """POST body in pieces of `piece` bytes, `pause_s` apart, and read the answer whenever it comes.

    Sending stops as soon as the server answers: it may answer (413, 408) before the body is all in.
    """
    url = urlsplit(base_url)
    headers = {"Host": "x", "Content-Type": "application/json", **(extra_headers or {})}
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
    else:
        headers["Content-Length"] = str(len(body))
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    started = time.monotonic()
    sent = 0
    with socket.create_connection((url.hostname, url.port), timeout=give_up_s) as sock:
        sock.sendall(head.encode())
        while sent <= len(body) and time.monotonic() - started < give_up_s:
            if select.select([sock], [], [], pause_s)[0]:
                break  # the server answered (or closed) before the whole body went out
            if sent == len(body):
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
                break
            data = body[sent : sent + piece]
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            except (BrokenPipeError, ConnectionResetError):
                break  # closed after answering; the answer is still in our receive buffer
            sent += len(data)
        status, reply_headers, reply_body = _read_response(sock, started + give_up_s)
        sock.settimeout(10)
        try:
            closed = sock.recv(1) == b""
        except (ConnectionResetError, TimeoutError):
            closed = isinstance(sys.exc_info()[1], ConnectionResetError)
    return RawReply(status, reply_headers, reply_body, sent, time.monotonic() - started, closed)


def _read_response(sock: socket.socket, deadline: float) -> tuple[int | None, dict[str, str], bytes]:
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(1 << 16)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            if len(rest) >= int(headers.get("content-length", "0")):
                return int(lines[0].split()[1]), headers, rest
    return None, {}, data


# --- the Ray processes behind the endpoint ----------------------------------------------------------------

_TITLES = {
    "proxy": "ray::ProxyActor",
    "ingress": f"ray::ServeReplica:{APP}:SentimentIngress",
    "model": f"ray::ServeReplica:{APP}:SentimentModel",
}


def serve_processes() -> dict[str, psutil.Process]:
    """The HTTP proxy and this app's replicas, among the Ray processes this test started (by title)."""
    found: dict[str, psutil.Process] = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            title = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        for role, prefix in _TITLES.items():
            if title.startswith(prefix):
                assert role not in found, f"two {role} processes: {found[role].pid}, {proc.pid}"
                found[role] = proc
    assert set(found) == set(_TITLES), f"found {sorted(found)}"
    return found


def rss_mb(procs: dict[str, psutil.Process]) -> dict[str, float]:
    return {role: round(p.memory_info().rss / 2**20, 1) for role, p in procs.items()}


# --- fuzzing the served OpenAPI schema -----------------------------------------------------------------

FUZZ_EXAMPLES = 15  # per operation and mode here; bench/fuzz_serve.py runs thousands


def test_fuzzed_requests_never_get_a_5xx(api: str) -> None:
    """Schema-valid and schema-breaking requests to every operation: no 5xx, every answer as documented."""
    report = fuzz_endpoint(api, examples=FUZZ_EXAMPLES)
    operations = {key.rsplit(" ", 1)[0] for key in report.statuses}
    assert operations >= {"POST /predict", "POST /v1/models/{name}:predict", "GET /health", "GET /info"}
    assert report.server_errors == 0, report.statuses
    assert report.failures == [], "\n---\n".join(report.failures[:5])
    assert report.requests >= 4 * FUZZ_EXAMPLES
    assert any(key.endswith(" 200") for key in report.statuses)  # not only refusals
    _still_serving(api)


# --- hostile sizes and bytes ----------------------------------------------------------------------------

KSERVE = "/v1/models/sentiray:predict"


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# (id, route, raw body, status, error_type)
REFUSED: list[tuple[str, str, bytes, int, str]] = [
    ("10k-texts", "/predict", _json({"inputs": ["a film"] * 10_000}), 413, "too_many_inputs"),
    ("10k-tei-nested", "/predict", _json({"inputs": [["a film"]] * 10_000}), 413, "too_many_inputs"),
    ("10k-instances", KSERVE, _json({"instances": ["a film"] * 10_000}), 413, "too_many_inputs"),
    ("10k-texts-over-the-size-limit", "/predict", _json({"inputs": ["a long film " * 20] * 10_000}), 413, "too_large"),
    ("900k-deep-lists", "/predict", b'{"inputs": ' + b"[" * 900_000 + b'"x"' + b"]" * 900_000 + b"}", 400, "too_deep"),
    ("1.9M-unclosed-brackets", "/predict", b"[" * 1_900_000, 400, "too_deep"),
    ("300k-deep-objects", KSERVE, b'{"a":' * 300_000 + b"1" + b"}" * 300_000, 400, "too_deep"),
    ("raw-nul-in-string", "/predict", b'{"inputs": "good\x00film"}', 422, "malformed_json"),
    ("raw-control-chars", "/predict", b'{"inputs": "a\x01\x1b[31mred\x7f"}', 422, "malformed_json"),
    ("lone-high-surrogate", "/predict", b'{"inputs": "\\ud800 film"}', 422, "invalid_input"),
    ("lone-low-surrogate-in-batch", "/predict", b'{"inputs": ["ok", "film \\udfff"]}', 422, "invalid_input"),
    ("lone-surrogate-kserve", KSERVE, b'{"instances": ["\\udbff"]}', 422, "invalid_input"),
    ("invalid-utf8-byte", "/predict", b'{"inputs": "caf\xff"}', 400, "invalid_utf8"),
    ("truncated-utf8-sequence", "/predict", b'{"inputs": "caf\xe2\x82"}', 400, "invalid_utf8"),
    ("overlong-utf8", "/predict", b'{"inputs": "\xc0\xaf"}', 400, "invalid_utf8"),
    ("utf8-encoded-surrogate", "/predict", b'{"inputs": "\xed\xa0\x80"}', 400, "invalid_utf8"),
    ("utf16-body", "/predict", '{"inputs": "good"}'.encode("utf-16"), 400, "invalid_utf8"),
    (
        "integer-of-5000-digits",
        "/predict",
        b'{"inputs": "x", "truncate": 1' + b"0" * 5000 + b"}",
        422,
        "malformed_json",
    ),
    ("nan", "/predict", b'{"inputs": NaN}', 422, "invalid_request"),
    ("empty-body", "/predict", b"", 422, "malformed_json"),
]


@pytest.mark.parametrize(
    ("route", "body", "status", "error_type"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_hostile_body_is_refused_with_a_4xx(api: str, route: str, body: bytes, status: int, error_type: str) -> None:
    r = httpx.post(f"{api}{route}", content=body, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == status, r.text[:300]
    err = r.json()
    assert err["error_type"] == error_type, err
    assert err["error"]
    _still_serving(api)


def test_control_and_invisible_characters_get_the_answer_of_the_visible_text(api: str) -> None:
    """Escaped NUL, C0 controls, DEL, zero-width and bidi overrides: the tokenizer drops them, as in training."""
    noisy = "a\u0000 wonderful\u0007\u001f superb\u200b\u202e\u2066 film\u007f\u0001"
    clean, dirty = _predict(api, {"inputs": [POSITIVE]}), _predict(api, {"inputs": [noisy]})
    assert clean.status_code == dirty.status_code == 200, dirty.text
    for c, d in zip(clean.json()[0], dirty.json()[0], strict=True):
        assert c["label"] == d["label"]
        assert abs(c["score"] - d["score"]) <= 1e-4
    assert dirty.json()[0][0]["label"] == "POSITIVE"
    # Nothing left once they are dropped: still an answer, the same for each such text.
    empties = _predict(api, {"inputs": ["\u0000", "\u0001\u0002\u200b"]})
    assert empties.status_code == 200, empties.text
    first, second = empties.json()
    assert [p["label"] for p in first] == [p["label"] for p in second]


def test_brackets_inside_strings_are_text_not_nesting(api: str) -> None:
    r = _predict(api, {"inputs": "[" * 100_000 + "{" * 100_000})
    assert r.status_code == 200, r.text[:300]
    assert {p["label"] for p in r.json()} == {"NEGATIVE", "POSITIVE"}


def test_hostile_sizes_leave_memory_bounded_and_the_replicas_up(api: str) -> None:
    """100 MB bodies, declared and chunked, are refused before they are read and the connection closed;
    the RSS of the proxy, the ingress and the model replica is measured before and after, and the same
    processes still answer."""
    procs = serve_processes()
    _still_serving(api)  # every path warmed up before the first measurement
    before = rss_mb(procs)
    huge = b'{"inputs": "' + b"a" * (100 * MB) + b'"}'
    for _ in range(3):
        declared = raw_post(api, "/predict", huge, piece=MB)
        assert declared.status == 413, declared
        assert json.loads(declared.body)["error_type"] == "too_large"
        chunked = raw_post(api, "/predict", huge, piece=MB, chunked=True)
        assert chunked.status == 411, chunked
        assert json.loads(chunked.body)["error_type"] == "length_required"
        for reply in (declared, chunked):
            assert reply.closed  # the rest of the body is never read
            assert reply.sent < 100 * MB  # the answer came while the client was still sending
    after_refusals = rss_mb(procs)

    # The largest body the endpoint takes: one 1.9 MB text, tokenized whole, then truncated.
    largest = _predict(api, {"inputs": "a fine film " * 158_000})
    assert largest.status_code == 200, largest.text[:300]
    after_largest = rss_mb(procs)

    print(f"RSS MiB before {before}, after 6 x 100 MB {after_refusals}, after a 1.9 MB text {after_largest}")
    for role in procs:
        assert procs[role].is_running()
        # Far below one 100 MB body: none was held.
        assert after_refusals[role] - before[role] < 64, (role, before, after_refusals)
        assert after_largest[role] - before[role] < 512, (role, before, after_largest)
    assert serve_processes() == procs  # no replica was replaced
    _still_serving(api)


def test_a_trickled_body_is_cut_off_and_others_are_served_meanwhile(api: str) -> None:
    """A byte every 0.5 s, or nothing after the headers: after body_timeout_s the ingress answers 408 and
    the connection closes, even when the client turns Serve's own request timeout off; other clients are
    answered all along."""
    one = _json({"inputs": POSITIVE})
    trickles = {  # route, body, headers, seconds between bytes
        "a byte at a time": ("/predict", one, {}, 0.5),
        "proxy timeout turned off": ("/predict", one, {"x-request-timeout-seconds": "0"}, 0.5),
        "kserve": (KSERVE, _json({"instances": [POSITIVE]}), {}, 0.5),
        "stalled after the headers": ("/predict", one, {}, 30.0),
    }
    replies: dict[str, RawReply] = {}

    def trickle(name: str) -> None:
        route, body, headers, pause_s = trickles[name]
        replies[name] = raw_post(api, route, body, piece=1, pause_s=pause_s, extra_headers=headers, give_up_s=60)

    threads = [threading.Thread(target=trickle, args=(name,)) for name in trickles]
    for t in threads:
        t.start()
    served = []
    while any(t.is_alive() for t in threads):
        served.append(_predict(api, {"inputs": POSITIVE}).status_code)
        time.sleep(0.3)
    for t in threads:
        t.join()
    assert len(served) >= 3 and set(served) == {200}, served
    for name, reply in replies.items():
        route, body, _, _ = trickles[name]
        assert reply.status == 408, (name, reply)
        assert json.loads(reply.body)["error_type"] == "body_timeout"
        assert reply.sent < len(body), (name, reply)  # cut off mid-body
        assert reply.seconds >= BODY_TIMEOUT_S
        assert reply.closed, name
    _still_serving(api)
