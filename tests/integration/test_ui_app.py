"""The Streamlit app (Streamlit's AppTest) and its endpoint client, against a real local Serve endpoint."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from sentiray.labels import BINARY
from sentiray.ui import APP_PATH
from sentiray.ui.batch import score_frame
from sentiray.ui.endpoint import (
    ENV_ENDPOINT,
    ENV_TOKEN,
    EndpointClient,
    EndpointError,
    Problem,
    UiSettings,
    labels_from_info,
)
from tests.integration.conftest import ServeInstance, free_port, wait_healthy
from tests.label_models import THREE, write_labelled_artifact

POSITIVE = "a wonderful superb film"
NEGATIVE = "awful boring dull movie"
TOKEN = "ui-test-token"

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def endpoint(
    serve_instance: ServeInstance, tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The serving app with the tiny artifact at `/`; a bearer token and 3 texts per request at most."""
    from ray import serve

    from serve.app import build_app
    from serve.schemas import AppArgs

    token_file = tmp_path_factory.mktemp("ui-token") / "token"
    token_file.write_text(TOKEN + "\n")
    args = AppArgs(model=str(tiny_artifact), max_batch_size=8, max_inputs=3, api_token_file=str(token_file))
    app = build_app(args, model_options={"ray_actor_options": {"num_cpus": 1}})
    serve.run(app, name="sentiray", route_prefix="/")
    wait_healthy(serve_instance.base_url)
    return serve_instance.base_url


@pytest.fixture
def ui_env(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(ENV_ENDPOINT, endpoint)
    monkeypatch.setenv(ENV_TOKEN, TOKEN)
    return endpoint


def _app() -> AppTest:
    return AppTest.from_file(str(APP_PATH), default_timeout=60)


def _shown(at: AppTest) -> str:
    """Every message and heading the page shows, as one text."""
    parts = [e.value for e in (*at.subheader, *at.markdown, *at.caption)]
    parts += [e.value for e in (*at.error, *at.warning, *at.success, *at.info)]
    return "\n".join(str(p) for p in parts)


def test_classify_a_review_shows_label_confidence_and_info(ui_env: str) -> None:
    at = _app().run()
    assert not at.exception, at.exception
    # The sidebar shows the model's /info.
    sidebar = "\n".join(str(m.value) for m in at.sidebar.markdown)
    assert "fine-tuned from" in sidebar
    assert "tiny-model" in sidebar
    assert [m.label for m in at.sidebar.metric][:1] == ["Test accuracy"]
    at.text_area(key="review").input(POSITIVE)
    at.button(key="classify").click().run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert "POSITIVE" in at.subheader[0].value
    assert at.get("progress")[0].proto.text.startswith("Confidence")

    at.text_area(key="review").input(NEGATIVE)
    at.button(key="classify").click().run()
    assert "NEGATIVE" in at.subheader[0].value


def test_example_picker_and_query_link(ui_env: str) -> None:
    at = _app()
    at.query_params["text"] = POSITIVE
    at.run()
    # A ?text= link classifies on arrival.
    assert at.text_area(key="review").value == POSITIVE
    assert "POSITIVE" in at.subheader[0].value
    at.selectbox(key="example").select("Scathing").run()
    assert at.text_area(key="review").value.startswith("An awful, boring")


def test_input_refused_is_explained(ui_env: str) -> None:
    at = _app().run()
    at.text_area(key="review").input("   ")
    at.button(key="classify").click().run()
    assert not at.exception
    assert "Input refused" in _shown(at)
    assert "empty or whitespace-only" in _shown(at)
    assert "inputs[0]" not in _shown(at)  # the reason alone: the user sent one text, not a list


def test_batch_file_scored_with_bad_rows_kept_and_downloadable(ui_env: str) -> None:
    rows = [POSITIVE, NEGATIVE, "", POSITIVE + " indeed", NEGATIVE + " again", "   ", POSITIVE]
    csv = pd.DataFrame({"id": range(len(rows)), "review": rows}).to_csv(index=False).encode()
    at = _app().run()
    at.file_uploader(key="upload").upload("reviews.csv", csv, "text/csv")
    at.run()
    assert at.selectbox(key="column").value == "review"
    at.button(key="score").click().run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert "2 of 7 rows could not be scored" in _shown(at)
    table = at.main.dataframe[-1].value
    # The binary default's columns, exactly as before label sets.
    assert list(table.columns) == ["id", "review", "label", "score", "score_negative", "score_positive", "error"]
    assert table["label"].fillna("-").tolist() == [
        "POSITIVE",
        "NEGATIVE",
        "-",
        "POSITIVE",
        "NEGATIVE",
        "-",
        "POSITIVE",
    ]
    assert table["error"].notna().sum() == 2
    assert (table["score"].dropna() >= 0.5).all()
    assert at.get("download_button")[0].proto.label == "Download CSV"


def test_text_file_batch(ui_env: str) -> None:
    at = _app().run()
    at.file_uploader(key="upload").upload("reviews.txt", f"{POSITIVE}\n\n{NEGATIVE}\n".encode(), "text/plain")
    at.run()
    at.button(key="score").click().run()
    table = at.main.dataframe[-1].value
    assert table["label"].tolist() == ["POSITIVE", "NEGATIVE"]
    assert "Scored all 2 rows" in _shown(at)


def test_wrong_token_and_down_endpoint_are_explained(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_ENDPOINT, endpoint)
    monkeypatch.setenv(ENV_TOKEN, "wrong")
    at = _app().run()
    assert "Not authorized" in _shown(at)

    monkeypatch.setenv(ENV_ENDPOINT, f"http://127.0.0.1:{free_port()}")
    at = _app().run()
    assert not at.exception
    assert "Endpoint down" in _shown(at)
    assert "not reachable" in _shown(at)
    at.button(key="classify").click().run()
    assert "Endpoint down" in _shown(at)


def test_client_chunks_and_attributes_refusals_to_rows(endpoint: str) -> None:
    client = EndpointClient(UiSettings(endpoint=endpoint, token=TOKEN))
    try:
        assert client.health()
        assert client.info()["max_inputs"] == 3
        with pytest.raises(EndpointError) as err:
            client.predict([POSITIVE] * 4)
        assert err.value.problem is Problem.REFUSED
        assert err.value.status == 413
        # A text too long with truncation off is refused by the endpoint only; the row carries the reason.
        long_text = " ".join([POSITIVE] * 100)
        df = pd.DataFrame({"text": [POSITIVE, long_text, NEGATIVE, None, NEGATIVE]})
        seen: list[tuple[int, int]] = []
        table = score_frame(
            client, df, "text", chunk_size=3, truncate=False, progress=lambda d, t: seen.append((d, t))
        )
        assert table.frame["label"].fillna("-").tolist() == ["POSITIVE", "-", "NEGATIVE", "-", "NEGATIVE"]
        assert (table.bad_rows, table.scored_rows) == (2, 3)
        assert table.frame["error"][3] == "missing text"
        # The endpoint's reason alone: the row's position in a request means nothing to the user.
        assert table.frame["error"][1].startswith("refused by the endpoint: ")
        assert "exceed the model's max_length" in table.frame["error"][1]
        assert "inputs[" not in table.frame["error"][1]
        assert seen[-1] == (5, 5)
        # The scores round-trip through CSV as numbers.
        back = pd.read_csv(io.StringIO(table.frame.to_csv(index=False)))
        assert back["score_positive"].notna().sum() == 3
    finally:
        client.close()


# --- a three-label model ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_label_endpoint(
    endpoint: str, serve_instance: ServeInstance, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The serving app with a three-label artifact, deployed beside `endpoint`'s on the same Serve under
    its own route prefix (no token, 3 texts per request at most)."""
    from ray import serve

    from serve.app import build_app
    from serve.schemas import AppArgs

    artifact = write_labelled_artifact(tmp_path_factory.mktemp("three-labels") / "artifact", tiny_model_dir, THREE)
    args = AppArgs(model=artifact, max_batch_size=8, max_inputs=3)
    app = build_app(args, model_options={"ray_actor_options": {"num_cpus": 1}})
    serve.run(app, name="three-labels", route_prefix="/three-labels")
    url = f"{serve_instance.base_url}/three-labels"
    wait_healthy(url)
    return url


def test_a_three_label_model_is_shown_and_scored_with_all_its_labels(
    three_label_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_ENDPOINT, three_label_endpoint)
    monkeypatch.delenv(ENV_TOKEN, raising=False)
    at = _app().run()
    assert not at.exception, at.exception
    sidebar = "\n".join(str(m.value) for m in at.sidebar.markdown)
    assert "Labels (one of 3): `negative`, `neutral`, `positive`" in sidebar

    at.text_area(key="review").input(POSITIVE)
    at.button(key="classify").click().run()
    assert not at.error, [e.value for e in at.error]
    answer = httpx.post(f"{three_label_endpoint}/predict", json={"inputs": [POSITIVE]})
    assert answer.status_code == 200, answer.text
    ranked = answer.json()[0]
    assert at.subheader[0].value == ranked[0]["label"]
    shown = " ".join(str(c.value) for c in at.caption)
    assert all(f"{r['label']} {r['score']:.3f}" in shown for r in ranked)
    assert len(ranked) == 3

    rows = [POSITIVE, "", NEGATIVE, "the plot was fine", POSITIVE + " again"]
    at.file_uploader(key="upload").upload(
        "reviews.csv", pd.DataFrame({"id": range(5), "review": rows}).to_csv(index=False).encode(), "text/csv"
    )
    at.run()
    at.button(key="score").click().run()
    assert not at.exception
    assert "1 of 5 rows could not be scored" in _shown(at)
    table = at.main.dataframe[-1].value
    assert list(table.columns) == [
        "id", "review", "label", "score", "score_negative", "score_neutral", "score_positive", "error",
    ]  # fmt: skip
    assert table["error"][1] == "empty or whitespace-only text"
    good = table[table["error"].isna()]
    reviews = good["review"].tolist()
    answers = [  # 3 texts per request at most (the app's max_inputs)
        a for i in range(0, len(reviews), 3)
        for a in httpx.post(f"{three_label_endpoint}/predict", json={"inputs": reviews[i : i + 3]}).json()
    ]  # fmt: skip
    assert good["label"].tolist() == [a[0]["label"] for a in answers]
    for (_, row), ranked_row in zip(good.iterrows(), answers, strict=True):
        for entry in ranked_row:
            assert row[f"score_{entry['label']}"] == pytest.approx(entry["score"])
    sums = good[["score_negative", "score_neutral", "score_positive"]].sum(axis=1)
    assert sums.to_numpy() == pytest.approx(1.0, abs=1e-5)


def test_rows_refused_by_a_three_label_endpoint_carry_its_reason(three_label_endpoint: str) -> None:
    client = EndpointClient(UiSettings(endpoint=three_label_endpoint))
    try:
        labels = labels_from_info(client.info())
        assert labels == THREE
        long_text = " ".join([POSITIVE] * 100)
        df = pd.DataFrame({"text": [NEGATIVE, long_text, POSITIVE]})
        table = score_frame(client, df, "text", labels=labels, chunk_size=3, truncate=False)
        assert table.frame["label"].isna().tolist() == [False, True, False]
        error = table.frame["error"][1]
        assert error.startswith("refused by the endpoint: ")
        assert "exceed the model's max_length" in error and "inputs[" not in error
        # A label set the endpoint does not answer with is a broken endpoint, not a bad row.
        with pytest.raises(EndpointError) as err:
            score_frame(client, df.head(1), "text", labels=BINARY)
        assert err.value.problem is Problem.SERVER
        assert "not the model's ['NEGATIVE', 'POSITIVE']" in str(err.value)
    finally:
        client.close()
