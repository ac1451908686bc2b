"""Presets, configuration files and their precedence (flags > --config > --preset > defaults)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autorec import AutoRec
from autorec.cli.main import main
from autorec.config import PRESETS, ConfigError, read_config, resolve_params


@pytest.fixture
def ratings_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(2)
    lines = ["user_id,item_id,rating"]
    for u in range(40):
        for i in range(25):
            if rng.random() < 0.4:
                lines.append(f"{u},{i},{rng.integers(1, 6)}")
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_preset_is_a_valid_parameter_set() -> None:
    valid = AutoRec().get_params()
    for name, params in PRESETS.items():
        assert set(params) <= set(valid), name
        model = AutoRec(**{**params, "device": "cpu"})
        model._validate_params()


def test_reference_preset_is_the_chapter_recipe() -> None:
    reference = PRESETS["reference"]
    assert reference["hidden"] == 500 and reference["activation"] == "sigmoid"
    assert reference["dropout"] == 0.05 and reference["lr"] == 0.002
    assert reference["weight_decay"] == 1e-5 and reference["epochs"] == 25
    assert reference["batch_size"] == 256 and reference["validation"] == 0.0
    assert reference["baseline"] == "none" and reference["l2"] == 0.0


def test_resolve_precedence() -> None:
    params = resolve_params("reference", {"hidden": 50, "epochs": 7}, {"epochs": 3})
    assert params["hidden"] == 50  # the file beats the preset
    assert params["epochs"] == 3  # the flag beats the file
    assert params["lr"] == 0.002  # the preset fills the rest
    with pytest.raises(ConfigError, match="hiden"):
        resolve_params(None, {"hiden": 3})
    with pytest.raises(ConfigError, match="preset"):
        resolve_params("fastest")


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_read_config_formats(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"c{suffix}"
    if suffix == ".toml":
        path.write_text('hidden = 40\nvariant = "user"\nl2 = [1.0, 10.0]\nrefit = true\n')
    else:
        path.write_text(json.dumps({"hidden": 40, "variant": "user", "l2": [1.0, 10.0],
                                    "refit": True}))
    assert read_config(path) == {"hidden": 40, "variant": "user", "l2": [1.0, 10.0],
                                 "refit": True}


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("bad.toml", "hidden = = 3\n", "not valid TOML"),
    ("bad.json", "{\"hidden\": 3,\n}", "line 2"),
    ("bad.yaml", "hidden: 3\n", ".toml or .json"),
    ("nested.toml", "[model]\nhidden = 3\n", "flat"),
])
def test_bad_config_files_one_line(tmp_path: Path, name: str, text: str, needle: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        read_config(path)


def test_cli_flag_beats_config_beats_preset(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text('preset = "reference"\nhidden = 12\nepochs = 4\nseed = 5\n'
                      'test_ratio = 0.2\n')
    out = tmp_path / "run"
    code = main(["train", "--data", str(ratings_csv), "--config", str(config), "--epochs", "2",
                 "--device", "cpu", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    params = metrics["model_params"]
    assert params["epochs"] == 2  # flag
    assert params["hidden"] == 12  # file
    assert params["weight_decay"] == 1e-5 and params["validation"] == 0.0  # preset (from file)
    assert metrics["preset"] == "reference"
    assert metrics["config"]["seed"] == 5 and params["random_state"] == 5  # a non-model option
    assert metrics["n_test"] == round(0.2 * (metrics["n_train"] + metrics["n_test"]))
    assert metrics["config"]["hidden"] == 12


def test_cli_unknown_setting_in_config(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"hiddn": 12}))
    with pytest.raises(SystemExit) as info:
        main(["train", "--data", str(ratings_csv), "--config", str(config)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "hiddn" in err and len(err.strip().splitlines()) == 1


def test_cli_missing_config_file(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    code = main(["train", "--data", str(ratings_csv), "--config", str(tmp_path / "no.toml")])
    assert code == 2
    assert "no.toml" in capsys.readouterr().err


def test_cli_l2_list_and_validation(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    out = tmp_path / "run"
    code = main(["train", "--data", str(ratings_csv), "--l2", "1,100", "--hidden", "8",
                 "--epochs", "3", "--device", "cpu", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["l2"] in (1.0, 100.0)
    assert metrics["model_params"]["l2"] == [1.0, 100.0]


def test_cli_diverging_run_exit_1_no_metrics(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    out = tmp_path / "run"
    code = main(["train", "--data", str(ratings_csv), "--preset", "reference", "--lr", "1e30",
                 "--hidden", "8", "--epochs", "3", "--device", "cpu", "--quiet",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "diverged" in err and "--lr" in err
    assert not (out / "metrics.json").exists()
