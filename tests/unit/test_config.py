"""Typed config: validation messages, presets, precedence, generated CLI flags and the entrypoints' exits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sentiray.config import (
    FIELD_SECTION,
    PRESETS,
    SECTIONS,
    Truncation,
    add_config_arguments,
    build_config,
    config_from_namespace,
    load_yaml_config,
)
from sentiray.errors import ConfigError
from sentiray.numerics import Precision

REPO_ROOT = Path(__file__).resolve().parents[2]


def _config_error(**overrides: object) -> str:
    with pytest.raises(ConfigError) as excinfo:
        build_config(overrides=overrides)
    return str(excinfo.value)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- validation --------------------------------------------------------------------------------------


def test_defaults_build() -> None:
    cfg = build_config()
    assert cfg.model.truncation is Truncation.HEAD_TAIL
    assert cfg.optim.precision is Precision.AUTO
    assert cfg.data.dataset == "imdb"


@pytest.mark.parametrize(
    ("overrides", "field", "allowed"),
    [
        ({"truncation": "tail"}, "model.truncation", ["'head'", "'head_tail'"]),
        ({"max_length": 5}, "model.max_length", ["16"]),
        ({"max_length": 100_000}, "model.max_length", ["8192"]),
        ({"num_workers": -1}, "run.num_workers", ["greater than or equal to 1"]),
        ({"batch_size": 0}, "optim.batch_size", ["greater than or equal to 1"]),
        ({"precision": "fp8"}, "optim.precision", ["'auto'", "'fp32'", "'bf16'", "'fp16'"]),
        ({"scheduler": "step"}, "optim.scheduler", ["'linear'", "'cosine'", "'constant'"]),
        ({"validation_fraction": 0.7}, "data.validation_fraction", ["less than 0.5"]),
        ({"learning_rate": 0}, "optim.learning_rate", ["greater than 0"]),
        ({"name": "bad name!"}, "run.name", ["pattern"]),
        ({"freeze_layers": -1}, "optim.freeze_layers", ["greater than or equal to 0"]),
    ],
)
def test_bad_value_names_field_and_allowed(
    overrides: dict[str, object], field: str, allowed: list[str]
) -> None:
    message = _config_error(**overrides)
    assert field in message
    bad_value = next(iter(overrides.values()))
    assert repr(bad_value) in message
    for fragment in allowed:
        assert fragment in message


def test_several_bad_values_are_all_reported() -> None:
    message = _config_error(max_length=5, num_workers=0)
    assert "model.max_length" in message
    assert "run.num_workers" in message


def test_unknown_option_is_refused_with_the_allowed_ones() -> None:
    message = _config_error(max_lenght=128)
    assert message.startswith("max_lenght: unknown option")
    assert "did you mean max_length?" in message
    listed = message.split("allowed: ", 1)[1].split(", ")
    assert listed == list(FIELD_SECTION)


def test_name_and_resume_must_name_the_same_run() -> None:
    message = _config_error(name="run-a", resume="run-b")
    assert "run-a" in message
    assert "run-b" in message
    assert "different runs" in message
    assert build_config(overrides={"name": "run-a", "resume": "run-a"}).run.resume == "run-a"


def test_config_is_frozen() -> None:
    cfg = build_config()
    with pytest.raises(ValueError, match="frozen"):
        cfg.model.max_length = 64


# --- presets and precedence --------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["quick", "cpu"])
def test_a_preset_applies_its_values(preset: str) -> None:
    cfg = build_config(preset)
    for section, values in PRESETS[preset].items():
        for key, value in values.items():
            assert getattr(getattr(cfg, section), key) == value, f"{section}.{key}"
    assert build_config("default") == build_config()


def test_unknown_preset_names_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match=r"preset: unknown preset 'fast'.*default.*quick"):
        build_config("fast")


def test_precedence_preset_then_yaml_then_flags(tmp_path: Path) -> None:
    yaml_file = _write(
        tmp_path / "job.yaml",
        "model:\n  max_length: 200\noptim:\n  batch_size: 8\n  learning_rate: 0.001\n",
    )
    cfg = build_config("quick", yaml_file, {"batch_size": 4})
    assert cfg.model.max_length == 200  # YAML over preset (128)
    assert cfg.optim.learning_rate == 0.001  # YAML over preset (1e-4)
    assert cfg.optim.batch_size == 4  # flag over YAML (8) and preset (16)
    assert cfg.optim.epochs == 1  # preset over default (2)
    assert cfg.data.max_train_samples == 1200  # preset, untouched by YAML
    assert cfg.optim.weight_decay == 0.01  # default


def test_cli_flags_left_unset_do_not_override_yaml(tmp_path: Path) -> None:
    import argparse

    yaml_file = _write(tmp_path / "job.yaml", "model:\n  max_length: 200\nrun:\n  use_gpu: true\n")
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(
        ["--preset", "quick", "--config", str(yaml_file), "--batch-size", "4", "--truncation", "head"]
    )
    cfg = config_from_namespace(args)
    assert cfg.model.max_length == 200
    assert cfg.run.use_gpu is True
    assert cfg.optim.batch_size == 4
    assert cfg.model.truncation is Truncation.HEAD
    assert cfg.optim.epochs == 1
    args = parser.parse_args(["--config", str(yaml_file), "--no-use-gpu", "--max-length", "64"])
    cfg = config_from_namespace(args)
    assert cfg.run.use_gpu is False
    assert cfg.model.max_length == 64


def test_fingerprint_ignores_where_the_run_lives_but_not_what_it_trains() -> None:
    base = build_config()
    moved = build_config(
        overrides={"name": "x", "storage_path": "s3://b/runs", "output": "/tmp/a", "push_to_hub": "org/model"}
    )
    assert moved.fingerprint() == base.fingerprint()
    assert build_config(overrides={"learning_rate": 1e-3}).fingerprint() != base.fingerprint()
    assert build_config(overrides={"num_workers": 4}).fingerprint() != base.fingerprint()


def test_flat_holds_every_field_once() -> None:
    flat = build_config().flat()
    assert set(flat) == set(FIELD_SECTION)
    assert flat["max_length"] == 256
    assert sum(len(model.model_fields) for model in SECTIONS.values()) == len(FIELD_SECTION)


# --- YAML -------------------------------------------------------------------------------------------


def test_yaml_round_trip_of_a_dumped_config(tmp_path: Path) -> None:
    import yaml

    cfg = build_config("quick", overrides={"truncation": "head", "name": "r1"})
    path = _write(tmp_path / "dump.yaml", yaml.safe_dump(cfg.model_dump(mode="json")))
    assert build_config(yaml_path=path) == cfg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("training:\n  epochs: 1\n", r"unknown section\(s\) \['training'\]; allowed: \['data', 'model'"),
        ("model: {max_length: 64\n", "is not valid YAML"),
        ("- data\n- model\n", "must hold a mapping of sections"),
    ],
)
def test_bad_yaml_file_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError, match=expected) as excinfo:
        build_config(yaml_path=path)
    assert str(path) in str(excinfo.value)


def test_unknown_key_in_a_yaml_section_names_it_and_the_allowed_keys(tmp_path: Path) -> None:
    path = _write(tmp_path / "typo.yaml", "optim:\n  epoch: 3\n")
    with pytest.raises(ConfigError) as excinfo:
        build_config(yaml_path=path)
    message = str(excinfo.value)
    assert "optim.epoch: unknown option" in message
    listed = message.split("allowed: ", 1)[1].split(", ")
    assert listed == list(SECTIONS["optim"].model_fields)


def test_bad_value_in_yaml_names_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.yaml", "model:\n  truncation: tail\n")
    with pytest.raises(ConfigError, match=r"model\.truncation: Input should be 'head' or 'head_tail'"):
        build_config(yaml_path=path)


def test_missing_yaml_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="config file not found") as excinfo:
        load_yaml_config(missing)
    assert str(missing) in str(excinfo.value)


def test_empty_yaml_is_the_preset(tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.yaml", "")
    assert build_config("quick", path) == build_config("quick")


# --- generated CLI ----------------------------------------------------------------------------------


def test_train_help_documents_every_field(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray_jobs.train import main

    monkeypatch.setenv("COLUMNS", "400")  # no wrapping, so descriptions can be found whole
    with pytest.raises(SystemExit) as excinfo:
        main(["--help"])
    assert excinfo.value.code == 0
    text = capsys.readouterr().out
    for section, model in SECTIONS.items():
        assert f"{section} options" in text
        for name, field in model.model_fields.items():
            flag = "--" + name.replace("_", "-")
            assert flag in text, f"{flag} missing from --help"
            assert field.description, f"{name}: no description"
            assert field.description in text, f"{name}: description missing from --help"
    assert "--preset" in text
    assert "--config" in text


def test_sentiray_train_refuses_a_bad_choice(capsys: pytest.CaptureFixture[str]) -> None:
    from sentiray.cli import main

    with pytest.raises(SystemExit) as excinfo:
        main(["train", "--truncation", "tail"])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert "--truncation" in err
    assert "'head'" in err
    assert "'head_tail'" in err


def _run_train_cli(args: list[str], tmp_path: Path) -> tuple[int, str, set[str]]:
    """`python -m ray_jobs.train ARGS`: exit code, stderr less the import log, packages imported."""
    env = {
        **os.environ,
        "RAY_TMPDIR": str(tmp_path / "ray-tmp"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": str(REPO_ROOT),
    }
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "ray_jobs.train",
            *args,
            "--storage-path",
            str(tmp_path / "runs"),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    imported, message = set(), []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:"):
            imported.add(line.rsplit("|", 1)[-1].strip().split(".")[0])
        else:
            message.append(line)
    return proc.returncode, "\n".join(message), imported


@pytest.mark.parametrize(
    ("args", "expected", "refused_by_config"),
    [
        (["--max-length", "5"], ["model.max_length", "greater than or equal to 16", "(got 5)"], True),
        (
            ["--dataset", "/nonexistent/folder/x"],
            ["/nonexistent/folder/x", "no such folder"],
            True,
        ),
    ],
    ids=["max-length", "dataset"],
)
def test_train_entrypoint_exits_1_before_ray(
    tmp_path: Path, args: list[str], expected: list[str], refused_by_config: bool
) -> None:
    code, stderr, imported = _run_train_cli(args, tmp_path)
    assert code == 1, stderr
    assert stderr.startswith("error: ")
    for fragment in expected:
        assert fragment in stderr
    assert "Traceback" not in stderr
    # Refused before Ray starts: no session folder (ray.init makes $RAY_TMPDIR/ray), no run state.
    assert not (tmp_path / "ray-tmp").exists()
    assert not (tmp_path / "runs").exists()
    assert "sentiray" in imported  # the import log is read right
    if refused_by_config:  # a bad flag is refused before the job even imports Ray
        assert "ray" not in imported


def test_train_entrypoint_refuses_freezing_every_layer_before_ray(
    tmp_path: Path, tiny_model_dir: Path, synthetic_data_dir: Path
) -> None:
    # The value is valid as a number; only the base model's depth (2 layers) makes it wrong.
    args = ["--dataset", str(synthetic_data_dir), "--base-model", str(tiny_model_dir), "--freeze-layers", "2"]
    code, stderr, imported = _run_train_cli(args, tmp_path)
    assert code == 1, stderr
    assert "freeze_layers: 2 would freeze every layer of this 2-layer model; use at most 1" in stderr
    assert "Traceback" not in stderr
    assert "ray" not in imported and not (tmp_path / "ray-tmp").exists()
