"""The HTTP API over real local Ray Serve: shapes, health, client mistakes, metrics, parity, auth."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from sentiray.model import cpu_has_fast_bf16
from sentiray.numerics import Precision, Runtime
from serve.app import METRIC_NAMES, SentimentModel, build_app
from serve.schemas import AppArgs
from tests.integration.conftest import (
    ServeInstance,
    SlowLoadModel,
    metric_sum,
    wait_for,
    wait_healthy,
)

POSITIVE = "a wonderful superb film"
NEGATIVE = "awful boring dull movie"
JSON = {"content-type": "application/json"}

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def api(serve_instance: ServeInstance, tiny_artifact: Path) -> str:
    """The app at `/`, its model slow to load so /health is first seen answering 503."""
    from ray import serve

    args = AppArgs(model=str(tiny_artifact), max_batch_size=8, batch_wait_timeout_s=0.2)
    app = build_app(
        args, model_options={"func_or_class": SlowLoadModel, "ray_actor_options": {"num_cpus": 1}}
    )
    serve.run_many(
        [serve.RunTarget(app, name="sentiray", route_prefix="/")], wait_for_applications_running=False
    )
    base = serve_instance.base_url

    def ingress_says_not_ready() -> bool:
        r = httpx.get(f"{base}/health", timeout=5)
        return r.status_code == 503 and r.json().get("error_type") == "not_ready"

    wait_for(ingress_says_not_ready, 60, "/health 503 from the ingress while the model loads", 0.2)
    return base


def _post(url: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(url, json=body, timeout=30, **kw)


def test_health_turns_200_after_load(api: str) -> None:
    wait_healthy(api, timeout_s=90)
    assert httpx.get(f"{api}/health").json() == {"status": "ok"}


def _assert_ranked(pred: list[dict[str, Any]]) -> None:
    assert [set(p) for p in pred] == [{"label", "score"}] * 2
    assert {p["label"] for p in pred} == {"NEGATIVE", "POSITIVE"}
    assert pred[0]["score"] >= pred[1]["score"]


def test_one_text(api: str) -> None:
    wait_healthy(api)
    r = _post(f"{api}/predict", {"inputs": POSITIVE})
    assert r.status_code == 200, r.text
    pred = r.json()
    _assert_ranked(pred)
    assert pred[0]["label"] == "POSITIVE"
    assert abs(sum(p["score"] for p in pred) - 1) < 1e-5


def test_batch_and_tei_nested_batch(api: str) -> None:
    wait_healthy(api)
    for inputs in ([POSITIVE, NEGATIVE], [[POSITIVE], [NEGATIVE]]):
        r = _post(f"{api}/predict", {"inputs": inputs})
        assert r.status_code == 200, r.text
        out = r.json()
        assert len(out) == 2
        for pred in out:
            _assert_ranked(pred)
        assert [pred[0]["label"] for pred in out] == ["POSITIVE", "NEGATIVE"]


def test_raw_scores_are_logits(api: str) -> None:
    wait_healthy(api)
    probs = _post(f"{api}/predict", {"inputs": POSITIVE}).json()
    logits = _post(f"{api}/predict", {"inputs": POSITIVE, "raw_scores": True}).json()
    assert logits[0]["label"] == probs[0]["label"]
    assert abs(sum(p["score"] for p in logits) - 1) > 1e-3  # not probabilities


def test_kserve_route(api: str) -> None:
    wait_healthy(api)
    r = _post(f"{api}/v1/models/sentiray:predict", {"instances": [POSITIVE, NEGATIVE]})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["label"] for p in preds] == ["POSITIVE", "NEGATIVE"]
    assert all(set(p) == {"label", "score"} and 0.5 <= p["score"] <= 1 for p in preds)


def test_info_and_openapi(api: str, tiny_artifact: Path) -> None:
    wait_healthy(api)
    info = httpx.get(f"{api}/info").json()
    manifest = json.loads((tiny_artifact / "sentiray.json").read_text())
    assert info["model_name"] == "sentiray"
    assert info["labels"] == {"0": "NEGATIVE", "1": "POSITIVE"}
    assert info["max_length"] == manifest["max_length"] == 64
    assert info["truncation"] == manifest["truncation"]
    assert info["base_model"] == manifest["base_model"]
    # Issue 14 item 5: the metrics of the runtime serving. The fixture's export ran on this machine, so it
    # scored the runtime auto serves here (int8 ONNX or bf16) beside fp32, and /info reports that one.
    assert info["test_metrics_exact"] is True
    assert info["test_metrics_runtime"] != "torch-fp32"
    assert info["test_metrics"] == manifest["runtime_metrics"][info["test_metrics_runtime"]]["metrics"]
    assert info["versions"] == manifest["versions"]
    # runtime auto follows sentiray.runtime's rule for this CPU: ONNX Runtime int8 where bf16 is slow
    # (AVX2-only), PyTorch bf16 where the CPU multiplies bf16 natively (AVX512-BF16/AMX: CI's EPYC has it).
    expected = ("torch", "bfloat16") if cpu_has_fast_bf16() else ("onnx-int8", "int8")
    assert (info["runtime"], info["dtype"]) == expected
    assert httpx.get(f"{api}/docs").status_code == 200
    spec = httpx.get(f"{api}/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "inputs" in body["properties"]
    assert "/v1/models/{name}:predict" in spec["paths"]


DEEP = b'{"inputs": ' + b"[" * 100 + b'"x"' + b"]" * 100 + b"}"
LONG_TEXT = " ".join(["wonderful film"] * 200)  # far over max_length 64

# (id, raw body, expected status, a word the error must contain)
MISTAKES: list[tuple[str, bytes, int, str]] = [
    ("malformed-json", b'{"inputs": ', 422, "JSON"),
    ("not-an-object", b'"just a string"', 422, "inputs"),
    ("missing-inputs", b'{"text": "hi"}', 422, "inputs"),
    ("wrong-type", b'{"inputs": 42}', 422, "inputs"),
    ("wrong-item-type", b'{"inputs": ["ok", 3]}', 422, "inputs"),
    ("wrong-flag-type", b'{"inputs": "ok", "truncate": "yes"}', 422, "truncate"),
    ("empty-string", b'{"inputs": ""}', 422, "empty"),
    ("whitespace", b'{"inputs": ["fine", " \\n\\t "]}', 422, "inputs[1]"),
    ("empty-list", b'{"inputs": []}', 422, "empty"),
    ("nested-two", b'{"inputs": [["a", "b"]]}', 422, "exactly one"),
    ("too-many", json.dumps({"inputs": ["a film"] * 33}).encode(), 413, "limit"),
    ("too-big", json.dumps({"inputs": "a" * 2_100_000}).encode(), 413, "limit"),
    (
        "too-long-no-truncate",
        json.dumps({"inputs": LONG_TEXT, "truncate": False}).encode(),
        422,
        "max_length",
    ),
    ("invalid-utf8", b'{"inputs": "caf\xc3\x28"}', 400, "UTF-8"),
    ("deep-json", DEEP, 400, "deeper"),
    ("lone-surrogate", b'{"inputs": "\\ud800"}', 422, "surrogate"),
]


@pytest.mark.parametrize(
    ("texts", "reason"),
    [(["fine", " \n\t "], "empty or whitespace-only text"), (["fine", LONG_TEXT], "exceed the model's max_length")],
    ids=["checked-at-the-ingress", "found-by-the-tokenizer"],
)
def test_a_refused_text_is_named_by_index_and_reason(api: str, texts: list[str], reason: str) -> None:
    """The 422 body says which text (`index`) and why (`reason`, without the `inputs[i]: ` prefix), so a
    caller marks that row and sends the rest again (the UI does) instead of parsing the message."""
    wait_healthy(api)
    r = _post(f"{api}/predict", {"inputs": texts, "truncate": False})
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["error_type"] == "invalid_input"
    assert err["index"] == 1
    assert reason in err["reason"] and not err["reason"].startswith("inputs[")
    assert err["error"] == f"inputs[1]: {err['reason']}"


@pytest.mark.parametrize(("body", "status", "word"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_client_mistakes_are_4xx_and_leave_the_replica_healthy(
    api: str, body: bytes, status: int, word: str
) -> None:
    wait_healthy(api)
    r = httpx.post(f"{api}/predict", content=body, headers=JSON, timeout=30)
    assert r.status_code == status, r.text
    err = r.json()
    assert word.lower() in err["error"].lower(), err
    assert err["error_type"]
    assert httpx.get(f"{api}/health", timeout=10).status_code == 200
    ok = _post(f"{api}/predict", {"inputs": POSITIVE})
    assert ok.status_code == 200
    assert ok.json()[0]["label"] == "POSITIVE"


def test_long_text_is_truncated_when_asked(api: str) -> None:
    wait_healthy(api)
    r = _post(f"{api}/predict", {"inputs": LONG_TEXT})
    assert r.status_code == 200, r.text


def test_kserve_mistakes(api: str) -> None:
    wait_healthy(api)
    assert _post(f"{api}/v1/models/other:predict", {"instances": ["x"]}).status_code == 404
    assert _post(f"{api}/v1/models/sentiray:predict", {"inputs": ["x"]}).status_code == 422
    assert _post(f"{api}/v1/models/sentiray:predict", {"instances": []}).status_code == 422
    assert _post(f"{api}/v1/models/sentiray:predict", {"instances": ["x"] * 33}).status_code == 413
    assert _post(f"{api}/predict", {"inputs": POSITIVE}).status_code == 200


async def _concurrent_posts(url: str, bodies: list[Any]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=len(bodies))) as client:
        return await asyncio.gather(*(client.post(url, json=b) for b in bodies))


def _batch_counts(serve_instance: ServeInstance) -> tuple[float, float, float]:
    """(forward passes, forward passes of at most 8 texts, predictions) so far.

    Counts, not the histogram's _sum: Ray rebuilds histograms from bucket counts, so sums are bucket
    midpoint approximations.
    """
    text = serve_instance.scrape()
    name = f"ray_{METRIC_NAMES['batch_size']}"
    return (
        metric_sum(text, f"{name}_count"),
        metric_sum(text, f"{name}_bucket", le="8.0"),
        metric_sum(text, f"ray_{METRIC_NAMES['predictions']}_total"),
    )


def test_requests_are_batched(api: str, serve_instance: ServeInstance) -> None:
    """32 concurrent one-text requests, max batch 8: at most 8 forward passes (read from the scrape)."""
    wait_healthy(api)
    # Settle: everything observed so far has been exported, so the deltas below are ours alone.
    before = wait_for(lambda: _stable(lambda: _batch_counts(serve_instance)), 60, "settled metrics")
    responses = asyncio.run(_concurrent_posts(f"{api}/predict", [{"inputs": POSITIVE}] * 32))
    assert [r.status_code for r in responses] == [200] * 32
    wait_for(lambda: _batch_counts(serve_instance)[2] - before[2] >= 32, 60, "32 predictions exported")
    after = wait_for(lambda: _stable(lambda: _batch_counts(serve_instance)), 60, "settled metrics")
    calls, small = after[0] - before[0], after[1] - before[1]
    assert after[2] - before[2] == 32
    assert 4 <= calls <= 8, f"{calls} forward passes for 32 requests"
    assert small == calls  # no forward pass had more than 8 texts


def _stable(read: Any, pause_s: float = 2.5) -> Any:
    import time

    first = read()
    time.sleep(pause_s)
    second = read()
    return second if first == second else None


def test_every_custom_metric_is_scraped(api: str, serve_instance: ServeInstance) -> None:
    wait_healthy(api)
    assert _post(f"{api}/predict", {"inputs": [POSITIVE, NEGATIVE]}).status_code == 200

    # Cancellations are counted once one happens (a Ray counter cannot be set to 0 up front); the
    # reliability tests scrape that one (test_serve_reliability.py, request timeout).
    expected = [name for key, name in METRIC_NAMES.items() if key != "requests_cancelled"]

    def all_present() -> bool:
        text = serve_instance.scrape()
        return all(f"ray_{name}" in text for name in expected)

    wait_for(all_present, 60, "every sentiray metric in the scrape")
    text = serve_instance.scrape()
    assert metric_sum(text, f"ray_{METRIC_NAMES['predictions']}_total", label="POSITIVE") >= 1
    assert metric_sum(text, f"ray_{METRIC_NAMES['predictions']}_total", label="NEGATIVE") >= 1
    assert "ray_serve_num_http_requests" in text  # Serve's own


def _parity_texts() -> list[str]:
    from tests.support import synthetic_reviews

    texts, _ = synthetic_reviews(24, seed=7)
    return texts + [POSITIVE, NEGATIVE, LONG_TEXT]


@pytest.fixture(scope="module")
def fp32_api(serve_instance: ServeInstance, tiny_artifact: Path) -> str:
    """A third application: PyTorch in fp32, explicitly (the CPU default is onnx-int8 or bf16, by CPU)."""
    from ray import serve

    args = AppArgs(model=str(tiny_artifact), model_name="torch-fp32", runtime=Runtime.TORCH, dtype=Precision.FP32)
    app = build_app(args, model_options={"name": "SentimentModelFp32", "ray_actor_options": {"num_cpus": 1}})
    serve.run(app, name="torch-fp32", route_prefix="/fp32")
    base = f"{serve_instance.base_url}/fp32"
    wait_healthy(base)
    return base


def test_parity_fp32_with_the_core_predictor(fp32_api: str, tiny_artifact: Path) -> None:
    from sentiray.predictor import Predictor

    assert httpx.get(f"{fp32_api}/info").json()["runtime"] == "torch"
    texts = _parity_texts()
    expected = Predictor.from_artifact(str(tiny_artifact), device="cpu", precision="fp32").predict(texts)
    got = _post(f"{fp32_api}/predict", {"inputs": texts}).json()
    for e, g in zip(expected, got, strict=True):
        assert [p["label"] for p in g] == [p["label"] for p in e]
        for pe, pg in zip(e, g, strict=True):
            assert abs(pe["score"] - pg["score"]) <= 1e-5


def test_parity_int8_default_with_the_core_predictor(api: str, tiny_artifact: Path) -> None:
    """The default CPU path (onnx-int8, or PyTorch bf16 on CPUs with fast bf16) agrees with fp32 PyTorch on
    the label, and closely on the score.

    Dynamic int8 quantizes activations per batch, so a text's score moves slightly with its batch peers:
    the tolerance is the bf16 one, not fp32's.
    """
    from sentiray.predictor import Predictor

    wait_healthy(api)
    texts = _parity_texts()
    expected = Predictor.from_artifact(str(tiny_artifact), device="cpu", precision="fp32").predict(texts)
    got = _post(f"{api}/predict", {"inputs": texts}).json()
    for e, g in zip(expected, got, strict=True):
        assert g[0]["label"] == e[0]["label"]
        assert abs(e[0]["score"] - g[0]["score"]) <= 2e-2


@pytest.fixture(scope="module")
def secured_bf16_api(serve_instance: ServeInstance, tiny_artifact: Path, tmp_path_factory: Any) -> str:
    """A second application: bf16 and a bearer token (one app for both, replicas are slow to start)."""
    from ray import serve

    token_file = tmp_path_factory.mktemp("token") / "token"
    token_file.write_text("s3cret-token\n")
    args = AppArgs(
        model=str(tiny_artifact), dtype=Precision.BF16, model_name="secured", api_token_file=str(token_file)
    )
    app = build_app(args, model_options={"name": "SentimentModelBf16", "ray_actor_options": {"num_cpus": 1}})
    serve.run(app, name="secured-bf16", route_prefix="/secured")
    base = f"{serve_instance.base_url}/secured"
    wait_healthy(base)
    return base


AUTH = {"authorization": "Bearer s3cret-token"}


def test_parity_bf16_with_the_core_predictor(secured_bf16_api: str, tiny_artifact: Path) -> None:
    from sentiray.predictor import Predictor

    base = secured_bf16_api
    assert httpx.get(f"{base}/info", headers=AUTH).json()["dtype"] == "bfloat16"
    texts = _parity_texts()
    expected = Predictor.from_artifact(str(tiny_artifact), device="cpu", precision="fp32").predict(texts)
    got = _post(f"{base}/predict", {"inputs": texts}, headers=AUTH).json()
    for e, g in zip(expected, got, strict=True):
        assert g[0]["label"] == e[0]["label"]
        assert abs(e[0]["score"] - g[0]["score"]) <= 2e-2


def test_bearer_token(secured_bf16_api: str) -> None:
    base = secured_bf16_api
    body = {"inputs": POSITIVE}
    no_token = _post(f"{base}/predict", body)
    assert no_token.status_code == 401
    assert no_token.headers["www-authenticate"] == "Bearer"
    assert _post(f"{base}/predict", body, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert _post(f"{base}/v1/models/secured:predict", {"instances": ["x"]}).status_code == 401
    assert httpx.get(f"{base}/info").status_code == 401
    assert httpx.get(f"{base}/health").status_code == 200  # probes need no token
    ok = _post(f"{base}/predict", body, headers=AUTH)
    assert ok.status_code == 200
    assert ok.json()[0]["label"] == "POSITIVE"


def test_model_that_cannot_load_fails_the_application(serve_instance: ServeInstance, tmp_path: Path) -> None:
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    args = AppArgs(model=str(tmp_path / "no-such-artifact"), model_name="broken")
    # The model deployment alone (no ingress to start): its __init__ raises ArtifactError.
    app = SentimentModel.options(  # type: ignore[attr-defined]
        name="SentimentModelBroken",
        max_constructor_retry_count=1,
        ray_actor_options={"num_cpus": 0.5},
    ).bind(args)
    # Deployed without waiting, as `serve deploy` does.
    serve.run_many(
        [serve.RunTarget(app, name="broken", route_prefix=None)], wait_for_applications_running=False
    )

    def failed() -> Any:
        app = serve.status().applications.get("broken")
        return app if app and app.status == ApplicationStatus.DEPLOY_FAILED else None

    app = wait_for(failed, 120, "the broken application to be DEPLOY_FAILED")
    messages = app.message + " ".join(d.message for d in app.deployments.values())
    assert "no such artifact folder" in messages
    serve.delete("broken")


def test_model_deployment_name_is_stable() -> None:
    # serve/config.yaml and the RayService render address deployments by these names.
    assert SentimentModel.name == "SentimentModel"  # type: ignore[attr-defined]


def test_failed_model_probes_are_logged_by_the_ingress(api: str) -> None:
    """issue 16: the fixture saw /health answer 503 while the model loaded; the ingress's log says why."""
    import ray

    logs = Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"

    def logged() -> bool:
        files = logs.glob("replica_sentiray_SentimentIngress_*.log")
        return any("model probe failed" in f.read_text(errors="replace") for f in files)

    wait_for(logged, 30, f"a 'model probe failed' line in the ingress's log under {logs}")


def test_model_replicas_take_token_ids(api: str, tiny_artifact: Path) -> None:
    """The ingress tokenizes with the artifact's encoder; the model deployment answers token ids alike."""
    from ray import serve

    from sentiray.predictor import TextEncoder

    wait_healthy(api)
    encoder = TextEncoder.from_artifact(str(tiny_artifact))
    texts = [POSITIVE, NEGATIVE, LONG_TEXT]
    ids = encoder.encode(texts)
    assert max(len(x) for x in ids) == encoder.max_length == 64
    model = serve.get_deployment_handle("SentimentModel", app_name="sentiray")
    direct = model.predict.remote(ids, False).result(timeout_s=60)
    over_http = _post(f"{api}/predict", {"inputs": texts}).json()
    assert [row[0]["label"] for row in direct] == [row[0]["label"] for row in over_http]
    info = httpx.get(f"{api}/info").json()
    assert info["artifact"] == str(tiny_artifact)
    assert info["max_batch_tokens"] == AppArgs.model_fields["max_batch_tokens"].default


def test_ids_from_another_tokenizer_are_remade_from_the_texts(api: str, tiny_artifact: Path) -> None:
    """Mid-swap an old ingress can reach a new model replica: ids made by another tokenizer (a different
    key) must not be read as this artifact's; the replica re-tokenizes the texts and answers as /predict."""
    from ray import serve

    from sentiray.predictor import TextEncoder

    wait_healthy(api)
    encoder = TextEncoder.from_artifact(str(tiny_artifact))
    texts = [POSITIVE, NEGATIVE, LONG_TEXT]
    # Another tokenizer's ids: same shape, other numbers (each id shifted within the vocabulary).
    foreign = [[(i + 7) % encoder.tokenizer.vocab_size for i in row] for row in encoder.encode(texts)]
    model = serve.get_deployment_handle("SentimentModel", app_name="sentiray")
    remade = model.predict.remote(foreign, True, encoding="another-tokenizer", texts=texts).result(timeout_s=60)
    same_key = model.predict.remote(encoder.encode(texts), True, encoding=encoder.key, texts=texts).result(
        timeout_s=60
    )
    over_http = _post(f"{api}/predict", {"inputs": texts, "raw_scores": True}).json()
    for a, b, c in zip(remade, same_key, over_http, strict=True):
        assert [p["label"] for p in a] == [p["label"] for p in b] == [p["label"] for p in c]
        for pa, pc in zip(a, c, strict=True):
            assert abs(pa["score"] - pc["score"]) <= 1e-4
    # Taken as they are, the foreign ids score differently: the re-tokenization is what made them agree.
    taken_as_is = model.predict.remote(foreign, True).result(timeout_s=60)
    assert any(
        abs(p["score"] - q["score"]) > 1e-6 for x, y in zip(taken_as_is, over_http, strict=True) for p, q in zip(x, y)
    )
