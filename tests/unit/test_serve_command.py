"""`sentiray serve`: the default replica layout, the Serve config it deploys (the packaged one with only
what its flags set replaced), a local Ray sized so every replica is placed, and a private Ray token."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from sentiray.commands.serve import (
    INGRESS,
    MAX_DEFAULT_REPLICAS,
    MODEL,
    default_cpu_layout,
    local_ray_cpus,
    packaged_config_path,
    private_token_file,
    register,
    replica_layout,
    serve_config,
)
from sentiray.errors import ConfigError


@pytest.fixture(scope="module")
def packaged() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(packaged_config_path().read_text())
    return loaded


def _parse(*flags: str) -> argparse.Namespace:
    """`sentiray serve` flags as the CLI's own parser reads them."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["serve", "artifact", *flags])


def _deployment(config: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [d for d in config["applications"][0]["deployments"] if d["name"] == name]
    return found


def test_the_packaged_config_is_the_one_in_the_source_tree() -> None:
    assert packaged_config_path() == Path(__file__).resolve().parents[2] / "serve" / "config.yaml"


def test_without_flags_only_the_model_and_the_local_layout_change(packaged: dict[str, Any]) -> None:
    config = serve_config(packaged, _parse(), cores=2)
    assert config["applications"][0]["args"] == {**packaged["applications"][0]["args"], "model": "artifact"}
    assert config["http_options"] == packaged["http_options"]  # request timeout, host, port as packaged
    assert _deployment(config, INGRESS) == _deployment(packaged, INGRESS)  # backpressure, health, shutdown
    model, packaged_model = _deployment(config, MODEL), _deployment(packaged, MODEL)
    assert model["autoscaling_config"] == {
        **packaged_model["autoscaling_config"], "min_replicas": 2, "max_replicas": 2,
    }  # fmt: skip
    assert model["ray_actor_options"] == {**packaged_model["ray_actor_options"], "num_cpus": 1.0}
    rest = {k: v for k, v in model.items() if k not in ("autoscaling_config", "ray_actor_options")}
    assert rest == {k: v for k, v in packaged_model.items() if k not in ("autoscaling_config", "ray_actor_options")}
    assert config["applications"][0]["name"] == "sentiray"


def test_flags_override_their_keys_only(packaged: dict[str, Any]) -> None:
    flags = ["--host", "0.0.0.0", "--port", "9000", "--num-cpus", "2", "--num-gpus", "0.5", "--max-replicas", "3"]
    config = serve_config(packaged, _parse(*flags, "--dtype", "fp32", "--max-batch-size", "8"), cores=2)
    assert config["http_options"] == {**packaged["http_options"], "host": "0.0.0.0", "port": 9000}
    args = config["applications"][0]["args"]
    assert args == {**packaged["applications"][0]["args"], "model": "artifact", "dtype": "fp32", "max_batch_size": 8}
    model = _deployment(config, MODEL)
    assert model["ray_actor_options"] == {"num_cpus": 2.0, "num_gpus": 0.5}
    packaged_scaling = _deployment(packaged, MODEL)["autoscaling_config"]
    assert model["autoscaling_config"] == {**packaged_scaling, "max_replicas": 3}


def test_a_local_artifact_folder_is_passed_as_an_absolute_path(
    packaged: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "art").mkdir()
    monkeypatch.chdir(tmp_path)
    config = serve_config(packaged, _parse(), cores=1)
    assert config["applications"][0]["args"]["model"] == "artifact"  # not a folder here: as given
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["serve", "art"])
    assert serve_config(packaged, args, cores=1)["applications"][0]["args"]["model"] == str(tmp_path / "art")


def test_min_replicas_above_the_configs_maximum_raises_it(packaged: dict[str, Any]) -> None:
    scaling = _deployment(serve_config(packaged, _parse("--min-replicas", "6"), cores=2), MODEL)["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"]) == (6, 6)
    with pytest.raises(ConfigError, match="min_replicas"):
        serve_config(packaged, _parse("--min-replicas", "3", "--max-replicas", "2"), cores=2)


def test_bad_flag_values_and_configs_are_refused_with_the_field_named(packaged: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="max_batch_size"):
        serve_config(packaged, _parse("--max-batch-size", "0"), cores=2)
    broken = {**packaged, "http_options": {**packaged["http_options"], "request_timeout_s": "soon"}}
    with pytest.raises(ConfigError, match="request_timeout_s"):
        serve_config(broken, _parse(), cores=2)
    with pytest.raises(ConfigError, match="one application"):
        serve_config({**packaged, "applications": []}, _parse(), cores=2)


@pytest.mark.parametrize(
    ("flags", "cores", "expected"),
    [
        ([], 2, 3),  # 2 replicas x 1 CPU + the ingress (up to 2 x 0.1 CPU)
        (["--num-cpus", "1"], 2, 5),  # the packaged autoscaling may start 4 replicas of 1 CPU
        (["--num-cpus", "2", "--max-replicas", "1"], 2, 3),  # one replica of 2 CPUs: more than the cores
        (["--num-cpus", "0.5", "--min-replicas", "1", "--max-replicas", "1"], 2, 2),  # never fewer than the cores
        ([], 16, 17),  # 4 replicas x 4 CPUs + the ingress
    ],
)
def test_local_ray_has_room_for_every_replica_the_config_may_start(flags: list[str], cores: int, expected: int) -> None:
    packaged = yaml.safe_load(packaged_config_path().read_text())
    assert local_ray_cpus(serve_config(packaged, _parse(*flags), cores), cores) == expected


@pytest.mark.parametrize(
    ("cores", "expected"),
    [(1, (1, 1)), (2, (2, 1)), (3, (3, 1)), (4, (4, 1)), (8, (4, 2)), (16, (4, 4)), (6, (4, 1))],
)
def test_default_layout_fills_the_cores_with_at_most_four_replicas(cores: int, expected: tuple[int, int]) -> None:
    replicas, cpus = default_cpu_layout(cores)
    assert (replicas, cpus) == expected
    assert replicas <= MAX_DEFAULT_REPLICAS and replicas * cpus <= cores


def test_a_local_cpu_serve_without_layout_flags_gets_one_replica_per_core() -> None:
    assert replica_layout(_parse(), cores=2) == (1.0, {"min_replicas": 2, "max_replicas": 2})


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--num-cpus", "2"], (2.0, {})),  # a CPU count alone: that size, the config's replica counts
        (["--num-cpus", "0"], (0.0, {})),  # zero is a CPU count too (Ray places such replicas anywhere)
        (["--min-replicas", "3"], (None, {})),  # replica flags alone: the config's CPUs, the flags as given
        (["--max-replicas", "2"], (None, {})),
        (["--address", "ray://head:10001"], (None, {})),  # a cluster: no local machine to fill
        (["--num-gpus", "1"], (None, {})),  # a GPU replica: one per GPU, not one per core
    ],
)
def test_explicit_flags_a_cluster_or_a_gpu_keep_the_layout_as_given(
    flags: list[str], expected: tuple[float | None, dict[str, int]]
) -> None:
    assert replica_layout(_parse(*flags), cores=8) == expected


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_ray_token_is_written_for_its_owner_only(home: Path) -> None:
    old = os.umask(0o022)  # the usual umask, under which Ray itself writes the token 0644
    try:
        path = private_token_file()
    finally:
        os.umask(old)
    assert path is not None
    assert path == home / ".ray" / "auth_token"
    assert (_mode(path), _mode(path.parent)) == (0o600, 0o700)
    token = path.read_text()
    assert len(token) == 64 and int(token, 16) >= 0
    assert private_token_file() == path and path.read_text() == token  # kept, never replaced


def test_an_existing_token_readable_by_others_is_made_private(home: Path) -> None:
    path = home / ".ray" / "auth_token"
    path.parent.mkdir()
    path.write_text("a" * 64)
    path.chmod(0o644)
    assert private_token_file() == path
    assert _mode(path) == 0o600
    assert path.read_text() == "a" * 64


def test_no_token_file_where_auth_is_off_or_the_token_is_in_the_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert private_token_file() is None
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "b" * 64)
    assert private_token_file() is None
    assert not (home / ".ray").exists()
