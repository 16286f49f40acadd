"""Model building: labels on every model, safetensors only, no remote code, devices and precision."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from sentiray.artifact import write_artifact
from sentiray.errors import ConfigError, ModelLoadError
from sentiray.labels import ID2LABEL, LABEL2ID
from sentiray.model import (
    freeze_lower_layers,
    load_model,
    load_tokenizer,
    model_depth,
    resolve_device,
    resolve_precision,
)
from sentiray.numerics import Precision
from sentiray.predictor import Predictor


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def pickle_only_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its weights as pytorch_model.bin only (a pickle).

    transformers 5 writes safetensors even with safe_serialization=False, so the pickle is written
    with torch.save, as older checkpoints on the Hub were.
    """
    folder = tmp_path_factory.mktemp("pickle-only")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, folder / name)
    model = load_model(str(tiny_model_dir))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def test_base_model_gets_the_project_labels(tiny_model_dir: Path) -> None:
    # The tiny base model was saved with transformers' default LABEL_0/LABEL_1.
    saved = json.loads((tiny_model_dir / "config.json").read_text())
    assert saved.get("id2label", {}) != {"0": "NEGATIVE", "1": "POSITIVE"}
    model = load_model(str(tiny_model_dir))
    assert model.config.id2label == ID2LABEL == {0: "NEGATIVE", 1: "POSITIVE"}
    assert model.config.label2id == LABEL2ID == {"NEGATIVE": 0, "POSITIVE": 1}
    assert model.config.num_labels == 2
    assert model.classifier.out_features == 2


def test_artifact_model_keeps_the_labels(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = load_model(str(tiny_model_dir))
    tokenizer = load_tokenizer(str(tiny_model_dir))
    out = write_artifact(
        str(tmp_path / "a"), model, tokenizer, max_length=32, truncation="head", base_model="tiny"
    )
    saved = json.loads(Path(out, "config.json").read_text())
    assert saved["id2label"] == {"0": "NEGATIVE", "1": "POSITIVE"}
    predictor = Predictor.from_artifact(out, device="cpu", precision="fp32")
    assert predictor.model.config.id2label == ID2LABEL
    assert predictor.model.config.label2id == LABEL2ID
    [ranked] = predictor.predict(["a wonderful film"])
    assert sorted(r["label"] for r in ranked) == ["NEGATIVE", "POSITIVE"]
    assert sum(r["score"] for r in ranked) == pytest.approx(1.0)
    assert _state_equal(predictor.model, model)


def test_pickle_weights_are_refused(pickle_only_dir: Path) -> None:
    with pytest.raises(ModelLoadError) as excinfo:
        load_model(str(pickle_only_dir))
    message = str(excinfo.value)
    assert str(pickle_only_dir) in message
    assert "pytorch_model.bin" in message
    assert "--allow-pickle" in message


def test_pickle_weights_load_when_allowed(pickle_only_dir: Path, tiny_model_dir: Path) -> None:
    model = load_model(str(pickle_only_dir), allow_pickle=True)
    assert _state_equal(model, load_model(str(tiny_model_dir)))
    assert model.config.id2label == ID2LABEL


def test_safetensors_win_over_a_pickle_beside_them(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "both"
    shutil.copytree(tiny_model_dir, folder)
    poisoned = {k: torch.zeros_like(v) for k, v in load_model(str(tiny_model_dir)).state_dict().items()}
    torch.save(poisoned, folder / "pytorch_model.bin")
    model = load_model(str(folder))
    assert _state_equal(model, load_model(str(tiny_model_dir)))


def test_folder_without_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-weights"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "config.json", folder / "config.json")
    with pytest.raises(ModelLoadError, match="cannot load") as excinfo:
        load_model(str(folder))
    assert "model.safetensors" in str(excinfo.value)


def _with_remote_code(tiny_model_dir: Path, folder: Path, marker: Path, model_type: str | None) -> Path:
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "custom.CustomConfig",
        "AutoModelForSequenceClassification": "custom.CustomModel",
    }
    if model_type:
        config["model_type"] = model_type
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "custom.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('remote code ran')\n"
        "from transformers import DistilBertConfig as CustomConfig\n"
        "from transformers import DistilBertForSequenceClassification as CustomModel\n"
    )
    return folder


def test_remote_code_never_runs_for_a_known_architecture(tiny_model_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    folder = _with_remote_code(tiny_model_dir, tmp_path / "m", marker, model_type=None)
    model = load_model(str(folder))
    assert type(model).__name__ == "DistilBertForSequenceClassification"
    assert type(model).__module__.startswith("transformers.")
    assert not marker.exists()


def test_remote_code_only_architecture_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    folder = _with_remote_code(tiny_model_dir, tmp_path / "m", marker, model_type="custom-bert")
    with pytest.raises(ModelLoadError, match="custom code"):
        load_model(str(folder))
    assert not marker.exists()


def test_missing_tokenizer(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="tokenizer"):
        load_tokenizer(str(tmp_path))


def test_load_in_a_dtype(tiny_model_dir: Path) -> None:
    model = load_model(str(tiny_model_dir), dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16


def test_fp16_on_cpu_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="fp16 is for GPUs; use bf16 or fp32 on CPU"):
        resolve_precision(Precision.FP16, torch.device("cpu"))


def test_cpu_precisions() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == torch.float32
    assert resolve_precision("bf16", cpu) == torch.bfloat16
    assert resolve_precision("auto", cpu) in (torch.float32, torch.bfloat16)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_gpu_requested_without_cuda() -> None:
    assert resolve_device(False) == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(ModelLoadError, match="GPU was requested but CUDA is not available"):
        resolve_device(True)


# --- freeze_layers: the embeddings and the lowest layers take no gradient --------------------------------


def _tiny_bert(tmp_path: Path) -> Path:
    """A 3-layer BERT (the MiniLM architecture) from a config, saved as a base model folder."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32
    )
    BertModel(config).save_pretrained(tmp_path, safe_serialization=True)
    return tmp_path


def _trainable_prefixes(model: torch.nn.Module) -> dict[str, bool]:
    """For each weight: does it still train?"""
    return {name: p.requires_grad for name, p in model.named_parameters()}


def test_freeze_layers_on_bert_and_distilbert(tiny_model_dir: Path, tmp_path: Path) -> None:
    cases = [
        (_tiny_bert(tmp_path), "bert.embeddings.", "bert.encoder.layer.{}.", 3),
        (tiny_model_dir, "distilbert.embeddings.", "distilbert.transformer.layer.{}.", 2),
    ]
    for folder, embeddings, layer, depth in cases:
        assert model_depth(str(folder)) == depth
        model = load_model(str(folder))
        freeze_lower_layers(model, 1)
        trains = _trainable_prefixes(model)
        frozen = {n for n, t in trains.items() if not t}
        expected = {n for n in trains if n.startswith(embeddings) or n.startswith(layer.format(0))}
        assert frozen == expected and expected
        assert all(trains[n] for n in trains if n.startswith(layer.format(depth - 1)))
        assert all(trains[n] for n in trains if n.startswith("classifier."))
        # 0 freezes nothing.
        model = load_model(str(folder))
        freeze_lower_layers(model, 0)
        assert all(_trainable_prefixes(model).values())


def test_freeze_layers_must_leave_a_layer_to_train(tiny_model_dir: Path) -> None:
    model = load_model(str(tiny_model_dir))
    expected = "freeze_layers: 2 would freeze every layer of this 2-layer model; use at most 1"
    with pytest.raises(ConfigError, match=expected):
        freeze_lower_layers(model, 2)
    assert all(_trainable_prefixes(model).values())  # refused before anything was frozen


def test_freeze_layers_refuses_a_model_it_cannot_read(tmp_path: Path) -> None:
    # GPT-2 keeps its embeddings as wte/wpe, not an `embeddings` module: refused, not half-frozen.
    from transformers import GPT2Config, GPT2Model

    GPT2Model(GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2, pad_token_id=0)).save_pretrained(tmp_path)
    model = load_model(str(tmp_path))
    expected = "cannot find the embeddings and transformer layers of GPT2ForSequenceClassification"
    with pytest.raises(ConfigError, match=expected):
        freeze_lower_layers(model, 1)
    assert all(_trainable_prefixes(model).values())


def test_model_depth_of_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot read its config"):
        model_depth(str(tmp_path / "absent"))
