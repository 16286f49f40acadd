"""`python -m ray_jobs.score` end to end on a local Ray: parquet/CSV/JSON lines in, parquet out, bad rows
kept and reported, scores equal to the Predictor's, input order kept with --preserve-order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_jobs.score import RESULT_PREFIX, main
from tests.label_models import THREE, write_labelled_artifact
from tests.support import synthetic_reviews

pytestmark = pytest.mark.timeout(400)

POSITIVE = "a wonderful superb film"
NEGATIVE = "awful boring dull movie"


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The actors' Hugging Face cache (offline): a Hub id resolves to what a test puts here."""
    return tmp_path_factory.mktemp("hf-cache")


@pytest.fixture(scope="module")
def local_ray(hub_cache: Path) -> Iterator[None]:
    """One local Ray for the module; the job joins it instead of starting its own."""
    import ray

    # Workers get two Arrow CPU threads (Ray would default them to one, from the task's CPU): with more
    # than one, Arrow's threaded dataset writer reorders rows within a file, the CI failure that
    # --preserve-order now guards against; with one the bug hides.
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="warning",
        runtime_env={
            "env_vars": {"OMP_NUM_THREADS": "2", "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
        },
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()


def _read(folder: Path) -> pd.DataFrame:
    """The output's rows as --preserve-order defines their order: files by name, then rows within a file."""
    return pa.concat_tables([pq.read_table(f) for f in sorted(folder.glob("*.parquet"))]).to_pandas()


def _result(out: str) -> dict[str, object]:
    lines = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
    assert len(lines) == 1, out
    result: dict[str, object] = json.loads(lines[0].removeprefix(RESULT_PREFIX))
    return result


def test_parquet_folder_scored_in_order_with_bad_rows_kept(
    local_ray: None, tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sentiray.predictor import Predictor

    texts, labels = synthetic_reviews(150, seed=7)
    texts[3], texts[40], texts[77] = "", "   ", None  # type: ignore[call-overload]
    src = tmp_path / "in"
    src.mkdir()
    table = pa.table({"id": list(range(150)), "text": texts, "gold": labels})
    pq.write_table(table.slice(0, 100), src / "part-0.parquet")
    pq.write_table(table.slice(100), src / "part-1.parquet")
    out = tmp_path / "scored"

    code = main(
        [
            "--model",
            str(tiny_artifact),
            "--input",
            str(src),
            "--output",
            str(out),
            "--batch-size",
            "16",
            "--max-actors",
            "2",
            "--preserve-order",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    df = _read(out)
    # The binary default's columns, exactly as before label sets.
    assert list(df.columns) == ["id", "text", "gold", "label", "score", "score_negative", "score_positive", "error"]
    assert df["id"].tolist() == list(range(150))  # nothing dropped, input order
    bad = df[df["error"].notna()]
    assert bad["id"].tolist() == [3, 40, 77]
    assert bad["error"].tolist() == [
        "empty or whitespace-only text",
        "empty or whitespace-only text",
        "missing text",
    ]
    assert bad["label"].isna().all()
    assert bad["score"].isna().all()

    good = df[df["error"].isna()]
    predictor = Predictor.from_artifact(str(tiny_artifact), device="cpu")
    expected = predictor.predict(good["text"].tolist())
    assert good["label"].tolist() == [p[0]["label"] for p in expected]
    assert good["score"].to_numpy() == pytest.approx([p[0]["score"] for p in expected], abs=1e-3)
    assert (good["score_positive"] + good["score_negative"]).to_numpy() == pytest.approx(1.0, abs=1e-5)
    # The tiny model separates the synthetic classes.
    assert (good["label"] == good["gold"].map({0: "NEGATIVE", 1: "POSITIVE"})).mean() > 0.9

    assert "scored 150 rows in" in printed
    assert "rows/s" in printed
    assert "3 bad row(s)" in printed
    assert "'': empty or whitespace-only text" in printed
    assert _result(printed)["bad_rows"] == 3
    # An existing output is not overwritten silently.
    assert main(["--model", str(tiny_artifact), "--input", str(src), "--output", str(out)]) == 1
    assert "exists and is not empty; pass --overwrite" in capsys.readouterr().err


def test_csv_and_jsonl_inputs(
    local_ray: None, tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "reviews.csv"
    pd.DataFrame({"review": [POSITIVE, NEGATIVE, POSITIVE], "stars": [5, 1, 4]}).to_csv(csv, index=False)
    code = main(
        [
            "--model",
            str(tiny_artifact),
            "--input",
            str(csv),
            "--output",
            str(tmp_path / "csv-out"),
            "--text-column",
            "review",
            "--max-actors",
            "1",
        ]
    )
    assert code == 0, capsys.readouterr()
    df = _read(tmp_path / "csv-out").sort_values("stars")
    assert df["label"].tolist() == ["NEGATIVE", "POSITIVE", "POSITIVE"]
    assert df["stars"].tolist() == [1, 4, 5]

    # JSON lines, truncation off: the over-long review is a bad row, and --fail-on-bad-rows exits 1
    # after writing everything, in input order (CI once got 0, 2, 1 here, before the ordered writer).
    jsonl = tmp_path / "reviews.jsonl"
    rows = [{"n": 0, "text": POSITIVE}, {"n": 1, "text": " ".join([NEGATIVE] * 60)}, {"n": 2, "text": NEGATIVE}]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    capsys.readouterr()
    code = main(
        [
            "--model",
            str(tiny_artifact),
            "--input",
            str(jsonl),
            "--output",
            str(tmp_path / "jsonl-out"),
            "--no-truncate",
            "--fail-on-bad-rows",
            "--max-actors",
            "1",
            "--preserve-order",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "1 row(s) could not be scored" in captured.err
    df = _read(tmp_path / "jsonl-out")
    assert df["n"].tolist() == [0, 1, 2]
    assert df["label"].fillna("-").tolist() == ["POSITIVE", "-", "NEGATIVE"]
    assert "exceed the model's max_length" in df["error"][1]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_preserve_order_keeps_file_then_row_order(
    fmt: str, local_ray: None, tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Many small files, small batches, two actors (half a CPU each, so reads and writes still get one of
    the two): the output is files in path order, rows in file order."""
    src = tmp_path / "in"
    src.mkdir()
    names = sorted(f"part-{i}" for i in range(12))  # part-0, part-1, part-10, part-11, part-2, ...
    expected: list[int] = []
    for i, name in enumerate(names):
        ids = list(range(len(expected), len(expected) + 2 + i % 3))
        expected += ids
        table = pa.table({"id": ids, "text": [POSITIVE if k % 2 else NEGATIVE for k in ids]})
        if fmt == "parquet":
            pq.write_table(table, src / f"{name}.parquet", row_group_size=2)
        elif fmt == "csv":
            table.to_pandas().to_csv(src / f"{name}.csv", index=False)
        else:
            (src / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))
    out = tmp_path / "out"
    code = main(
        [
            "--model", str(tiny_artifact), "--input", str(src), "--output", str(out),
            "--batch-size", "3", "--min-actors", "2", "--max-actors", "2", "--cpus-per-actor", "0.5",
            "--preserve-order",
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr()
    df = _read(out)
    assert df["id"].tolist() == expected
    assert df["label"].tolist() == ["POSITIVE" if k % 2 else "NEGATIVE" for k in expected]


def test_ordered_write_keeps_rows_of_multi_chunk_blocks(local_ray: None, tmp_path: Path) -> None:
    """The writer behind --preserve-order keeps rows of blocks made of many chunks (as batches of 1-row
    blocks are) in order. Ray's `write_parquet` (Arrow's threaded writer) misorders some of these 40 blocks
    in nearly every run with two Arrow threads: the cause of the CI failure."""
    import pyarrow.fs as pafs
    import ray.data

    from ray_jobs.score import write_output

    ctx = ray.data.DataContext.get_current()
    saved = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True
    try:
        blocks = [
            pa.concat_tables([pa.table({"n": [b * 64 + i], "text": ["x" * i]}) for i in range(64)]) for b in range(40)
        ]
        assert blocks[0].column("n").num_chunks == 64
        out = tmp_path / "out"
        write_output(ray.data.from_arrow(blocks), pafs.LocalFileSystem(), str(out), overwrite=False)
    finally:
        ctx.execution_options.preserve_order = saved
    assert _read(out)["n"].tolist() == list(range(40 * 64))


def test_bad_options_fail_before_scoring(
    local_ray: None,
    tiny_artifact: Path,
    synthetic_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = str(synthetic_data_dir / "test.parquet")
    assert (
        main(
            [
                "--model",
                str(tiny_artifact),
                "--input",
                src,
                "--output",
                str(tmp_path / "o"),
                "--text-column",
                "body",
            ]
        )
        == 1
    )
    assert "text_column: 'body' is not a column" in capsys.readouterr().err
    assert main(["--model", str(tmp_path), "--input", src, "--output", str(tmp_path / "o")]) == 1
    assert "no sentiray.json" in capsys.readouterr().err
    assert (
        main(
            [
                "--model",
                str(tiny_artifact),
                "--input",
                str(tmp_path / "missing"),
                "--output",
                str(tmp_path / "o"),
            ]
        )
        == 1
    )
    assert "does not exist" in capsys.readouterr().err


def test_a_gpu_run_on_a_cluster_without_gpus_fails_at_once(
    local_ray: None, tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ray Data would wait forever for a GPU actor; the job says why it cannot run instead."""
    src = str(tmp_path / "in.parquet")
    pq.write_table(pa.table({"text": [POSITIVE, NEGATIVE]}), src)
    for pool in ([], ["--max-actors", "2"]):
        args = ["--model", str(tiny_artifact), "--input", src, "--output", str(tmp_path / "o"), "--use-gpu", *pool]
        assert main(args) == 1
        assert (
            "use_gpu: 1 actor(s) need 1 GPU(s) and the Ray cluster has 0, so scoring would wait forever; "
            "run without --use-gpu, or on a cluster with GPU nodes" in capsys.readouterr().err
        )
    # The same for CPUs: the module's Ray has 2.
    args = ["--model", str(tiny_artifact), "--input", src, "--output", str(tmp_path / "o"), "--min-actors", "3"]
    assert main(args) == 1
    assert "min_actors: 3 actor(s) need 3 CPU(s) and the Ray cluster has 2" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_hub_id_is_scored_like_its_local_artifact(
    local_ray: None,
    hub_cache: Path,
    tiny_artifact: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--model namespace/name`: the driver and every actor fetch the artifact from the Hub (its cache here)."""
    import shutil

    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub_cache / "models--sentiray-test--tiny"
    shutil.copytree(tiny_artifact, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    # The driver is this process, whose huggingface_hub read its environment at import.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)  # no local folder sentiray-test/tiny
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in (POSITIVE, NEGATIVE, POSITIVE)))
    code = main(["--model", "sentiray-test/tiny", "--input", str(src), "--output", str(tmp_path / "o"),
                 "--max-actors", "1", "--preserve-order"])  # fmt: skip
    assert code == 0, capsys.readouterr()
    assert _read(tmp_path / "o")["label"].tolist() == ["POSITIVE", "NEGATIVE", "POSITIVE"]


def test_rayjob_manifest_is_valid_and_runs_this_entrypoint() -> None:
    """k8s/score: strict against the KubeRay CRD, its pods against Kubernetes, hardened, a valid command."""
    import shlex

    from ray_jobs.score import ScoreConfig, build_parser
    from tests.k8s_support import REPO, core_errors, embedded_pods, kustomize_objects, validate_objects

    objects = kustomize_objects(REPO / "k8s" / "score")
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [("RayJob", "sentiray-score")]
    assert validate_objects(objects) == []
    job = objects[0]
    pods = list(embedded_pods(job))
    assert {p["metadata"]["name"] for p in pods} == {
        "sentiray-score-head",
        "sentiray-score-scorers",
        "sentiray-score-submitter",
    }
    for pod in pods:
        assert core_errors(pod) == [], pod["metadata"]["name"]
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert container["image"] == "sentiray:0.1.0"
            assert container["resources"]["limits"]
    # The PVC is the one k8s/base creates.
    base_pvcs = [o for o in kustomize_objects(REPO / "k8s" / "base") if o["kind"] == "PersistentVolumeClaim"]
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for p in pods
        for v in p["spec"].get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    assert claims <= {o["metadata"]["name"] for o in base_pvcs}
    # The entrypoint is a valid command line of this job; a retried attempt overwrites its partial output.
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "ray_jobs.score"]
    cfg = ScoreConfig.from_args(build_parser().parse_args(argv[3:]))
    assert cfg.overwrite
    assert cfg.model.startswith("/mnt/sentiray/")


@pytest.fixture(scope="module")
def three_label_artifact(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("three-labels") / "artifact"
    write_labelled_artifact(out, tiny_model_dir, THREE)
    return out


def test_a_three_label_artifact_gets_a_score_column_per_label(
    local_ray: None, three_label_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The label set comes from the artifact's model config; scores are the model's own (Hugging Face's
    forward pass, not sentiray's), one column per label in id order."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts, _ = synthetic_reviews(12, seed=5)
    texts[4] = "  "
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": list(range(12)), "text": texts}), src)
    out = tmp_path / "out"
    args = ["--model", str(three_label_artifact), "--input", str(src), "--output", str(out), "--batch-size", "5",
            "--max-actors", "1", "--preserve-order",
            # fp32 PyTorch, as the reference below: `auto` may pick bf16 or int8 on this CPU.
            "--precision", "fp32", "--runtime", "torch"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr()
    df = _read(out)
    assert list(df.columns) == [
        "id", "text", "label", "score", "score_negative", "score_neutral", "score_positive", "error",
    ]  # fmt: skip
    assert df["id"].tolist() == list(range(12))
    assert df["error"][4] == "empty or whitespace-only text"
    assert df.loc[4, ["label", "score", "score_neutral"]].isna().all()

    good = df[df["error"].isna()]
    tokenizer = AutoTokenizer.from_pretrained(three_label_artifact)
    model = AutoModelForSequenceClassification.from_pretrained(three_label_artifact).eval()
    with torch.no_grad():
        batch = tokenizer(good["text"].tolist(), return_tensors="pt", padding=True)
        expected = torch.softmax(model(**batch).logits, dim=-1).numpy()
    got = good[["score_negative", "score_neutral", "score_positive"]].to_numpy()
    assert got == pytest.approx(expected, abs=1e-4)
    assert good["label"].tolist() == [THREE.names[j] for j in expected.argmax(axis=1)]
    assert good["score"].to_numpy() == pytest.approx(expected.max(axis=1), abs=1e-4)
    assert np.allclose(got.sum(axis=1), 1.0, atol=1e-5)
