"""The sentiray Streamlit app: classify a review, score a file, show the served model.

Run it with `sentiray ui --endpoint URL` (it sets SENTIRAY_ENDPOINT for this script). A link with
`?text=...` opens the app with that review classified.
"""

from __future__ import annotations

import os
from typing import Any

import streamlit as st

from sentiray.errors import InputError, SentirayError
from sentiray.ui.batch import BATCH_TYPES, DEFAULT_CHUNK, ERROR_COLUMN, guess_text_column, read_batch_file, score_frame
from sentiray.ui.endpoint import EndpointClient, EndpointError, Problem, UiSettings, labels_from_info

EXAMPLES = {
    "Glowing": "A wonderful, superb film. The cast is brilliant and the story stayed with me for days.",
    "Scathing": "An awful, boring, dull movie. I checked my watch every ten minutes and regretted it.",
    "Mixed": "The first hour drags badly, but the ending is so moving that I forgave it almost everything.",
    "Sarcastic": "Oh great, two more hours of my life I will never get back. A masterpiece of tedium.",
}
# The UI scores files through the endpoint, interactively; larger files belong to `python -m ray_jobs.score`.
MAX_ROWS = int(os.environ.get("SENTIRAY_UI_MAX_ROWS", "10000"))
# The binary default's colours; any other label is shown as it is named.
LABEL_BADGES = {"POSITIVE": ":green[POSITIVE]", "NEGATIVE": ":red[NEGATIVE]"}


def _explain(e: EndpointError) -> None:
    """One clear message per kind of failure."""
    if e.problem is Problem.UNREACHABLE:
        st.error(f"**Endpoint down.** {e}", icon=":material/cloud_off:")
    elif e.problem is Problem.NOT_READY:
        st.warning(f"**Model loading.** {e}", icon=":material/hourglass_top:")
    elif e.problem is Problem.UNAUTHORIZED:
        st.error(f"**Not authorized.** {e}", icon=":material/lock:")
    elif e.problem is Problem.REFUSED:
        st.warning(f"**Input refused.** {e}", icon=":material/block:")
    else:
        st.error(f"**Endpoint error.** {e}", icon=":material/error:")


def _sidebar(client: EndpointClient) -> dict[str, Any] | None:
    """Endpoint status and the served model's /info; returns the info, or None if unavailable."""
    with st.sidebar:
        st.header("Model")
        st.caption(f"Endpoint: `{client.settings.endpoint}`")
        try:
            info = client.info()
        except EndpointError as e:
            _explain(e)
            return None
        st.success("Endpoint up, model ready", icon=":material/check_circle:")
        st.markdown(f"**{info.get('model_name', 'model')}** fine-tuned from `{info.get('base_model', '?')}`")
        try:
            labels = labels_from_info(info)
        except EndpointError as e:
            _explain(e)
            return None
        kind = "any of" if labels.multi_label else "one of"
        st.markdown(f"Labels ({kind} {labels.num_labels}): " + ", ".join(f"`{n}`" for n in labels.names))
        metrics = info.get("test_metrics") or {}
        if metrics:
            cols = st.columns(2)
            for col, key in zip(cols, ("accuracy", "f1"), strict=True):
                if isinstance(metrics.get(key), int | float):
                    col.metric(f"Test {key}", f"{metrics[key]:.3f}")
            rest = {
                k: v for k, v in metrics.items() if k not in ("accuracy", "f1") and isinstance(v, int | float)
            }
            if rest:
                st.dataframe(
                    {"metric": list(rest), "value": [float(v) for v in rest.values()]}, hide_index=True
                )
        else:
            st.caption("No test metrics in this artifact.")
        st.markdown(
            f"Max length **{info.get('max_length', '?')}** tokens, "
            f"truncation **{info.get('truncation', '?')}**, "
            f"up to **{info.get('max_inputs', DEFAULT_CHUNK)}** texts per request"
        )
        with st.expander("Versions and details"):
            st.json(info, expanded=False)
        return info


def _pick_example() -> None:
    st.session_state.review = EXAMPLES[st.session_state.example]


def _single(client: EndpointClient) -> None:
    if "review" not in st.session_state:
        st.session_state.review = st.query_params.get("text") or EXAMPLES["Glowing"]
    st.selectbox(
        "Example reviews",
        list(EXAMPLES),
        key="example",
        on_change=_pick_example,
        index=None,
        placeholder="Pick an example, or type your own below",
    )
    text = st.text_area("Review", key="review", height=150)
    truncate = st.checkbox(
        "Cut reviews longer than the model's max length",
        value=True,
        key="truncate",
        help="Off: reviews that are too long are refused instead",
    )
    clicked = st.button("Classify", type="primary", key="classify")
    # A `?text=` link classifies on arrival, once.
    auto = bool(st.query_params.get("text")) and not st.session_state.get("auto_done")
    if clicked or auto:
        st.session_state.auto_done = True
        try:
            st.session_state.result = (text, client.classify(text, truncate=truncate))
        except EndpointError as e:
            st.session_state.result = None
            _explain(e)
            return
    result = st.session_state.get("result")
    if not result:
        return
    scored_text, ranked = result
    top = ranked[0]
    st.subheader(f"{LABEL_BADGES.get(top['label'], top['label'])}")
    st.progress(float(top["score"]), text=f"Confidence {top['score']:.1%}")
    # Every label the endpoint answered, highest first: two for the binary default, N in general.
    st.caption(" · ".join(f"{r['label']} {r['score']:.3f}" for r in ranked))
    if scored_text != text:
        st.caption("The review has changed since; press Classify for its label.")


def _batch(client: EndpointClient, info: dict[str, Any] | None) -> None:
    upload = st.file_uploader(
        "A file of reviews: CSV/TSV with a header, JSON lines, parquet, or text with one review per line",
        type=list(BATCH_TYPES),
        key="upload",
    )
    if upload is None:
        st.caption(f"Up to {MAX_ROWS:,} rows here; for more, run the batch job `python -m ray_jobs.score`.")
        return
    try:
        df = read_batch_file(upload.name, upload.getvalue())
        if len(df) == 0:
            raise InputError(f"{upload.name}: no rows")
        if len(df) > MAX_ROWS:
            raise InputError(
                f"{upload.name}: {len(df):,} rows is more than this app scores ({MAX_ROWS:,}); "
                "use `python -m ray_jobs.score` for large files"
            )
        guess = guess_text_column(df)
    except InputError as e:
        st.error(str(e))
        return
    columns = [str(c) for c in df.columns]
    column = st.selectbox("Column holding the review", columns, index=columns.index(guess), key="column")
    st.dataframe(df.head(5), hide_index=True)
    key = (upload.file_id, column)
    if st.button(f"Score {len(df):,} rows", type="primary", key="score"):
        bar = st.progress(0.0, text="Scoring...")

        def advance(done: int, total: int) -> None:
            bar.progress(done / total if total else 1.0, text=f"Scored {done:,} of {total:,} rows")

        chunk = int((info or {}).get("max_inputs") or DEFAULT_CHUNK)
        try:
            st.session_state.scored = (
                key,
                score_frame(
                    client,
                    df,
                    column,
                    labels=labels_from_info(info),
                    chunk_size=chunk,
                    truncate=st.session_state.get("truncate", True),
                    progress=advance,
                ),
            )
        except EndpointError as e:
            bar.empty()
            _explain(e)
            return
        except InputError as e:
            bar.empty()
            st.error(str(e))
            return
    scored = st.session_state.get("scored")
    if not scored or scored[0] != key:
        return
    table = scored[1]
    if table.bad_rows:
        examples = table.frame[table.frame[ERROR_COLUMN].notna()].head(3)
        shown = "; ".join(
            f"row {i}: {err}" for i, err in zip(examples.index, examples[ERROR_COLUMN], strict=True)
        )
        st.warning(
            f"{table.bad_rows:,} of {len(table.frame):,} rows could not be scored (see the `error` "
            f"column): {shown}"
        )
    else:
        st.success(f"Scored all {table.scored_rows:,} rows")
    st.dataframe(table.frame, hide_index=True)
    stem = upload.name.rsplit(".", 1)[0]
    st.download_button(
        "Download CSV",
        table.frame.to_csv(index=False).encode(),
        file_name=f"{stem}-scored.csv",
        mime="text/csv",
        key="download",
    )


def main() -> None:
    st.set_page_config(page_title="sentiray", page_icon=":material/reviews:", layout="wide")
    st.title("sentiray")
    st.caption("Sentiment of movie reviews, from a model fine-tuned with Ray Train and served with Ray Serve")
    try:
        settings = UiSettings.from_env()
    except SentirayError as e:
        st.error(str(e))
        st.stop()
    client = EndpointClient(settings)
    try:
        info = _sidebar(client)
        single, batch = st.tabs(["Classify a review", "Score a file"])
        with single:
            _single(client)
        with batch:
            _batch(client, info)
    finally:
        client.close()


main()
