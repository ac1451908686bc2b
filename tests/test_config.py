"""Presets, configuration files and their precedence (flags > --config > --preset > defaults)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autorec import AutoRec
from autorec.cli.main import main
from autorec.config import PRESETS, ConfigError, read_config, resolve_params, settings_toml


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
    ("twice.json", '{"hidden": 3, "hidden": 4}', "setting 'hidden' is given twice"),
    ("nan.json", '{"l2": [1.0, NaN]}', "setting 'l2' is not finite"),
    ("nested.json", '{"l2": [[1.0]]}', "nested list"),
    # Python's own limits: a RecursionError and a ValueError that named no file
    ("deep.json", '{"l2": ' + "[" * 100_000 + "]" * 100_000 + "}",
     r"deep.json: cannot be read as JSON \(values nested too deeply to read\)"),
    ("deep.toml", "l2 = " + "[" * 100_000 + "]" * 100_000 + "\n",
     r"deep.toml: cannot be read as TOML \(values nested too deeply to read\)"),
    ("long.json", '{"hidden": ' + "4" * 5_000 + "}", "an integer of over 4,300 digits"),
    ("long.toml", "hidden = " + "4" * 5_000 + "\n", "an integer of over 4,300 digits"),
])
def test_bad_config_files_one_line(tmp_path: Path, name: str, text: str, needle: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        read_config(path)


@pytest.mark.parametrize(("suffix", "text"), [(".toml", "hidden = 4\n"),
                                              (".json", '{"hidden": 4}')])
def test_a_byte_order_mark_is_read_as_in_data_files(tmp_path: Path, suffix: str,
                                                    text: str) -> None:
    """An editor's BOM: 'not valid TOML (Invalid statement)', 'Unexpected UTF-8 BOM'."""
    path = tmp_path / f"bom{suffix}"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert read_config(path) == {"hidden": 4}


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


@pytest.mark.parametrize(("text", "needle"), [
    ('columns = "a,b"\n', "columns in {config} names the user, item and rating columns"),
    ("resume = true\n", "resume in {config} needs --checkpoint-dir"),
    ('preset = "reference"\npatience = 5\n',
     "patience in {config} acts on the validation part, and preset = reference in {config} "
     "(validation 0) holds none"),
])
def test_cli_names_a_setting_of_the_config_file_as_such(capsys, tmp_path: Path,
                                                        ratings_csv: Path, text: str,
                                                        needle: str) -> None:
    """These named --columns, --resume and --preset, flags the user never gave."""
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(SystemExit) as exited:
        main(["train", "--data", str(ratings_csv), "--config", str(config), "--quiet"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and needle.format(config=config) in err, err


def test_cli_a_default_spelled_out_is_no_file_option(capsys, tmp_path: Path,
                                                     ml100k_dir: Path) -> None:
    """no_header = false with a builtin data set was refused as describing a ratings file."""
    config = tmp_path / "c.toml"
    config.write_text("no_header = false\n")
    code = main(["train", "--data-dir", str(ml100k_dir), "--config", str(config), "--hidden",
                 "4", "--epochs", "1", "--ranking", "none", "--validation", "0", "--quiet"])
    assert code == 0, capsys.readouterr().err
    config.write_text("no_header = true\n")
    with pytest.raises(SystemExit):
        main(["train", "--data-dir", str(ml100k_dir), "--config", str(config)])
    assert "no_header in" in capsys.readouterr().err


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


# -- configuration files checked like the command line (issue 12) --------------------------
def _run(capsys, *argv: object) -> tuple[int, str, str]:
    """``autorec ARGV``: exit status, stdout, stderr (argparse errors exit through SystemExit)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _config(tmp_path: Path, settings: dict, suffix: str = ".json") -> Path:
    path = tmp_path / f"settings{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(settings))
    else:
        path.write_text("".join(f"{key} = {json.dumps(value)}\n"
                                for key, value in settings.items()))
    return path


@pytest.mark.parametrize(("settings", "needle"), [
    ({"nproc": 0}, "setting 'nproc': expected a positive integer, got '0'"),
    ({"nproc": "2"}, "setting 'nproc' must be an integer, got '2'"),
    ({"nproc": 2.0}, "setting 'nproc' must be an integer, got 2.0"),
    ({"resume": "no"}, "setting 'resume' must be true or false, got 'no'"),
    ({"quiet": 1}, "setting 'quiet' must be true or false, got 1"),
    ({"refit": "yes"}, "setting 'refit' must be true or false, got 'yes'"),
    ({"out": 5}, "setting 'out' must be a string (a path), got 5"),
    ({"plot": ["a.png"]}, "setting 'plot' must be a string (a path), got ['a.png']"),
    ({"save": True}, "setting 'save' must be a string (a path), got True"),
    ({"k": 0}, "setting 'k': expected a positive integer, got '0'"),
    ({"hidden": "20"}, "setting 'hidden' must be an integer, got '20'"),
    ({"hidden": True}, "setting 'hidden' must be an integer, got True"),
    ({"lr": "fast"}, "setting 'lr' must be a number, got 'fast'"),
    ({"lr": -1}, "setting 'lr': expected a number > 0, got '-1'"),
    ({"dist_timeout": "30"}, "setting 'dist_timeout' must be a number, got '30'"),
    ({"dist_timeout": 1e14}, "setting 'dist_timeout': expected a number of seconds >= 1 and "
                             "at most 1e+06"),
    ({"test_ratio": 1.5}, "setting 'test_ratio': expected a number strictly between 0 and 1"),
    ({"seed": -1}, "setting 'seed': expected an integer from 0"),
    ({"l2": [1, "x"]}, "setting 'l2': expected a number, got 'x'"),
    ({"variant": "items"}, "setting 'variant' must be one of item, user, both, got 'items'"),
    ({"dataset": "ml-200k"}, "setting 'dataset' must be one of ml-100k"),
    ({"split": 3}, "setting 'split' must be a string, got 3"),
    ({"trials": 5}, "unknown setting 'trials' for autorec train (an option of autorec tune"),
    ({"protocol": "paper"}, "unknown setting 'protocol' for autorec train (an option of "
                            "autorec evaluate"),
    ({"hiden": 20}, "unknown setting 'hiden' for autorec train (did you mean 'hidden'"),
    # was the library's "device must be 'cpu', 'cuda' or 'cuda:N'", without the file or auto
    ({"device": "gpu"}, "setting 'device': expected auto, cpu, cuda or cuda:N, got 'gpu'"),
    # was "(an option of autorec evaluate and autorec tune and ...; train does not use it)"
    ({"help": True}, "unknown setting 'help' for autorec train; --help is a flag, not a setting"),
    ({"config": "other.toml"}, "a configuration file cannot name another one"),
    ({"test-ratio": 0.2, "test_ratio": 0.3}, "setting 'test_ratio' is set twice"),
    ({"preset": 3}, "unknown preset 3"),
])
@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_config_values_checked_like_flags(capsys, tmp_path: Path, ratings_csv: Path,
                                          settings: dict, needle: str, suffix: str) -> None:
    config = _config(tmp_path, settings, suffix)
    out = tmp_path / "run"
    code, stdout, err = _run(capsys, "train", "--data", ratings_csv, "--config", config,
                             "--hidden", "4", "--epochs", "1", "--device", "cpu", "--quiet",
                             *(["--out", out] if "out" not in settings else []))
    assert code == 2, (stdout, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert needle in err and str(config) in err
    assert stdout == "" and not out.exists()


@pytest.mark.parametrize(("command", "settings", "needle"), [
    ("evaluate", {"repeats": "2"}, "setting 'repeats' must be an integer"),
    ("evaluate", {"protocol": "bogus"}, "setting 'protocol' must be one of holdout"),
    ("evaluate", {"save": "m"}, "unknown setting 'save' for autorec evaluate (an option of "
                                "autorec train"),
    ("evaluate", {"nproc": 2}, "(an option of autorec train"),
    ("tune", {"trials": 0}, "setting 'trials': expected a positive integer"),
    ("tune", {"study": 1}, "setting 'study' must be a string (a path)"),
    ("tune", {"folds": 3}, "unknown setting 'folds' for autorec tune (an option of autorec "
                           "train and autorec evaluate"),
])
def test_config_checked_against_the_command_run(capsys, tmp_path: Path, ratings_csv: Path,
                                                command: str, settings: dict,
                                                needle: str) -> None:
    pytest.importorskip("optuna") if command == "tune" else None
    config = _config(tmp_path, settings)
    code, _, err = _run(capsys, command, "--data", ratings_csv, "--config", config,
                        "--device", "cpu", "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert needle in err


def test_config_dataset_is_honoured(capsys, tmp_path: Path) -> None:
    """``dataset`` in a train config names the data trained on (it used to be replaced by the
    default, ML-100K, before the file was read)."""
    empty = tmp_path / "data"
    empty.mkdir()
    config = _config(tmp_path, {"dataset": "ml-latest-small", "download": False}, ".toml")
    code, _, err = _run(capsys, "train", "--config", config, "--data-dir", empty,
                        "--device", "cpu", "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "ml-latest-small" in err and "ml-100k" not in err


def test_dataset_and_data_conflict_within_one_source(capsys, tmp_path: Path,
                                                     ratings_csv: Path) -> None:
    """Two sources on the command line, or two in the file, are refused; a flag and the
    file's key are not two sources (the flag replaces the file's source, see
    test_a_source_flag_replaces_the_files_source)."""
    code, _, err = _run(capsys, "train", "--data", ratings_csv, "--dataset", "ml-100k")
    assert code == 2 and "either --dataset or ratings files" in err
    config = _config(tmp_path, {"dataset": "ml-100k", "data": str(ratings_csv)})
    code, _, err = _run(capsys, "train", "--config", config)
    assert code == 2 and "either --dataset or ratings files" in err


def test_config_command_options_are_honoured(capsys, tmp_path: Path, ratings_csv: Path
                                             ) -> None:
    out = tmp_path / "run"
    config = _config(tmp_path, {"k": 3, "out": str(out), "quiet": True, "hidden": 4,
                                "epochs": 2, "device": "cpu", "l2": [1, 10],
                                "refit": False}, ".toml")
    code, _, err = _run(capsys, "train", "--data", ratings_csv, "--config", config)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert "ndcg@3" in metrics and "ndcg@10" not in metrics  # k from the file, not 10
    assert metrics["model_params"]["l2"] == [1.0, 10.0]
    assert metrics["model_params"]["refit"] is False
    # a flag beats the file for a command option too
    code, _, err = _run(capsys, "train", "--data", ratings_csv, "--config", config, "--k", "4",
                        "--out", tmp_path / "run2")
    assert code == 0, err
    assert "ndcg@4" in json.loads((tmp_path / "run2" / "metrics.json").read_text())


# -- help texts and the summary line (issue 12, minor) ---------------------------------------
def _help(capsys, command: str) -> str:
    code, out, _ = _run(capsys, command, "--help")
    assert code == 0
    return " ".join(out.split())


def test_evaluate_help_prints_one_percent_sign(capsys) -> None:
    text = _help(capsys, "evaluate")
    assert "95% confidence" in text and "%%" not in text


def test_train_help_gives_the_refit_default_once(capsys) -> None:
    text = _help(capsys, "train")
    start = text.index("--refit, --no-refit")
    refit = text[start:text.index("--cold {", start)]
    assert refit.count("default") == 1, refit


def test_help_shows_the_defaults_of_config_settable_options(capsys) -> None:
    assert "(default: 10)" in _help(capsys, "train")
    text = _help(capsys, "tune")
    for shown in ("(default: 30)", "(default: autorec-study.db)", "(default: best.toml)",
                  "(default: 5)", "(default: autorec)"):
        assert shown in text
    assert "None" not in text


def test_summary_gives_every_network_its_best_epoch(capsys, tmp_path: Path,
                                                    ratings_csv: Path) -> None:
    out = tmp_path / "run"
    code, stdout, err = _run(capsys, "train", "--data", ratings_csv, "--variant", "both",
                             "--ensemble", "2", "--hidden", "4", "--epochs", "3",
                             "--validation", "0.2", "--device", "cpu", "--quiet",
                             "--out", out)
    assert code == 0, err
    epochs = json.loads((out / "metrics.json").read_text())["best_epochs"]
    assert len(epochs) == 4
    shown = ", ".join(map(str, epochs))
    assert f"best validation epochs {shown} (one per network)" in stdout
    assert "best validation epoch " not in stdout


def test_summary_gives_a_range_for_many_networks() -> None:
    from autorec.cli.train import _best_epochs

    assert _best_epochs([7]) == "best validation epoch 7"
    assert _best_epochs([3, 9, 4, 5, 6, 7, 8, 9, 2, 5]) == \
        "best validation epochs 2 to 9 over 10 networks"


@pytest.mark.parametrize(("command", "settings", "needle"), [
    ("train", {"split": "kfold", "test_ratio": 0.3}, "test_ratio in {config} sets the random"),
    # the split the file chose is named as the file's (it was called "--split kfold")
    ("train", {"split": "kfold", "test_ratio": 0.3}, "; split = kfold in {config} does not"),
    ("evaluate", {"protocol": "kfold", "test_ratio": 0.3},
     "; protocol = kfold in {config} does not"),
    ("tune", {"split": "u1", "test_ratio": 0.3}, "; split = u1 in {config} does not"),
    ("train", {"folds": 3}, "folds in {config} is the number of folds of --split kfold"),
    ("evaluate", {"folds": 3}, "folds in {config} is the number of folds of --protocol kfold"),
    ("evaluate", {"protocol": "paper", "test_ratio": 0.2},
     "test_ratio in {config} sets the holdout protocol's test part"),
    ("tune", {"split": "u1", "test_ratio": 0.3}, "test_ratio in {config} sets the random"),
])
def test_split_settings_a_config_file_does_not_use_are_refused(
        capsys, tmp_path: Path, ratings_csv: Path, command: str, settings: dict,
        needle: str) -> None:
    """A config's split setting that the split does not use ran without a word (the same
    flag was refused): the check ran on the flags before the file filled them in."""
    pytest.importorskip("optuna") if command == "tune" else None
    config = _config(tmp_path, settings, ".toml")
    data = [] if command == "tune" and "split" in settings else ["--data", ratings_csv]
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, command, *data, "--config", config, "--hidden", "4",
                             "--epochs", "1", "--device", "cpu", "--quiet",
                             *(["--out", out] if command != "tune" else []))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert needle.format(config=config) in err
    assert stdout == "" and not out.exists()


@pytest.mark.parametrize(("command", "settings"), [
    ("train", {"split": "kfold"}), ("evaluate", {"protocol": "kfold"})])
def test_folds_flag_goes_with_a_split_chosen_in_the_config(capsys, tmp_path: Path,
                                                           ratings_csv: Path, command: str,
                                                           settings: dict) -> None:
    """``--folds 2`` with ``split = "kfold"`` in the file was refused ("--folds is the number
    of folds of --split kfold"): the check did not see the file's split."""
    config = _config(tmp_path, settings, ".toml")
    out = tmp_path / "out"
    code, _, err = _run(capsys, command, "--data", ratings_csv, "--config", config, "--folds",
                        "2", "--hidden", "4", "--epochs", "1", "--device", "cpu", "--quiet",
                        "--ranking", "none", "--out", out)
    assert code == 0, err
    written = json.loads((out / ("metrics.json" if command == "train"
                                 else "results.json")).read_text())
    assert len(written["folds"] if command == "train" else written["splits"]) == 2


def test_a_folder_given_as_config_is_named_a_folder(capsys, tmp_path: Path,
                                                    ratings_csv: Path) -> None:
    folder = tmp_path / "settings.toml"
    folder.mkdir()
    code, _, err = _run(capsys, "train", "--data", ratings_csv, "--config", folder)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "a folder, not a configuration file" in err and "no such file" not in err


@pytest.mark.parametrize("source", ["flags", "config"])
def test_columns_without_a_header_are_refused(capsys, tmp_path: Path, ratings_csv: Path,
                                              source: str) -> None:
    """With --no-header the fields are taken in order: --columns cannot name them, and a
    swapped --columns item_id,user_id was silently ignored."""
    if source == "flags":
        extra = ["--no-header", "--columns", "item_id,user_id,rating"]
    else:
        extra = ["--config", _config(tmp_path, {"no_header": True,
                                                "columns": "item_id,user_id,rating"}, ".toml")]
    code, _, err = _run(capsys, "train", "--data", ratings_csv, *extra, "--epochs", "1")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "names header columns" in err
    assert ("columns in" in err) == (source == "config")


@pytest.mark.parametrize("flags", [["--dataset", "ml-100k"], ["--data", "FLAG"]])
def test_a_source_flag_replaces_the_files_source(capsys, tmp_path, ml100k_dir, flags) -> None:
    """data = "x.csv" in the file with --dataset on the command line was refused ('give
    either --dataset or ratings files'): flags override the file, the source included."""
    ratings = tmp_path / "r.csv"
    ratings.write_text("user_id,item_id,rating\n" + "".join(
        f"{u},{i},{1 + (u * i) % 5}\n" for u in range(12) for i in range(10)))
    config = _config(tmp_path, {"data": str(tmp_path / "missing.csv")}, ".toml")
    flags = [str(ratings) if f == "FLAG" else f for f in flags]
    where = ["--data-dir", ml100k_dir] if "--dataset" in flags else []  # a file: refused
    code, out, err = _run(capsys, "train", "--config", config, *flags, *where,
                          "--epochs", "1", "--hidden", "4", "--ranking", "none", "--quiet",
                          "--device", "cpu")
    assert code == 0, err
    assert ("ml-100k" if "--dataset" in flags else "r.csv") in out


def test_a_config_file_train_without_test_is_named_as_the_files(capsys, tmp_path: Path,
                                                               ratings_csv: Path) -> None:
    """It was reported as the flags': "--train and --test go together"."""
    config = _config(tmp_path, {"train": str(ratings_csv)}, ".toml")
    code, stdout, err = _run(capsys, "train", "--config", config, "--out", tmp_path / "o")
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1, err
    assert f"train in {config} needs --test: --train and --test go together" in err


def test_settings_toml_writes_numpy_scalars_as_toml(tmp_path: Path) -> None:
    settings = {"lr": np.float64(0.5), "hidden": np.int64(3), "refit": np.bool_(True),
                "l2": [np.float32(0.25), 1.0], "activation": np.str_("sigmoid"),
                "seed": np.array([1, 2])}
    path = tmp_path / "s.toml"
    path.write_text(settings_toml(settings))
    assert read_config(path) == {"lr": 0.5, "hidden": 3, "refit": True, "l2": [0.25, 1.0],
                                 "activation": "sigmoid", "seed": [1, 2]}


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_config_dist_timeout_is_a_number(capsys, tmp_path: Path, ratings_csv: Path,
                                         suffix: str) -> None:
    # a number was refused as "must be a string"; only the text "30" was taken
    config = _config(tmp_path, {"dist_timeout": 30}, suffix)
    code, _, err = _run(capsys, "train", "--data", ratings_csv, "--config", config,
                        "--hidden", "4", "--epochs", "1", "--device", "cpu", "--quiet",
                        "--ranking", "none", "--out", tmp_path / "run")
    assert code == 0, err


@pytest.mark.parametrize(("command", "settings", "extra", "needle"), [
    ("train", {"split": "kfold"}, ["--train", "TRAIN", "--test", "TRAIN"],
     "already split the data; drop split in "),
    ("train", {"split": "u1"}, ["--data", "TRAIN"], "split = u1 in "),
    ("tune", {"split": "u1"}, ["--data", "TRAIN", "--trials", "1"], "split = u1 in "),
])
def test_a_config_files_split_is_named_as_the_files(capsys, tmp_path: Path, ratings_csv: Path,
                                                    command, settings, extra, needle) -> None:
    # they were named as the flag (--split), which the user never gave
    if command == "tune":
        pytest.importorskip("optuna")
    config = _config(tmp_path, settings, ".toml")
    extra = [str(ratings_csv) if value == "TRAIN" else value for value in extra]
    code, _, err = _run(capsys, command, "--config", config, *extra, "--device", "cpu",
                        "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert needle + str(config) in err and "--split" not in err


@pytest.mark.parametrize(("settings", "extra", "needle"), [
    ({"protocol": "u1", "repeats": 2}, [], "protocol = u1 in {c} is one fixed split; drop "
                                           "repeats in {c}"),
    ({"protocol": "u1"}, ["--data", "TRAIN"], "protocol = u1 in {c} is a canonical"),
])
def test_evaluate_names_a_config_files_protocol_as_the_files(capsys, tmp_path: Path,
                                                             ratings_csv: Path, settings,
                                                             extra, needle) -> None:
    # they were named as flags (--protocol u1, --repeats) the user never gave
    config = _config(tmp_path, settings, ".toml")
    extra = [str(ratings_csv) if value == "TRAIN" else value for value in extra]
    code, _, err = _run(capsys, "evaluate", "--config", config, *extra, "--device", "cpu")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert needle.format(c=config) in err and "--protocol" not in err


@pytest.mark.parametrize(("settings", "flags", "needle"), [
    ({"validation": 0.0, "patience": 5}, [],
     "patience in {c} acts on the validation part, and validation = 0 in {c} holds none"),
    ({"validation": 0.0}, ["--no-refit"],
     "--refit/--no-refit acts on the validation part, and validation = 0 in {c} holds none"),
    ({"patience": 5}, ["--preset", "reference"],
     "patience in {c} acts on the validation part, and --preset reference (validation 0)"),
])
def test_model_settings_from_a_file_are_named_as_the_files(capsys, tmp_path: Path,
                                                           ratings_csv: Path, settings, flags,
                                                           needle) -> None:
    # they were named as flags (--patience, --validation 0) the user never gave
    config = _config(tmp_path, settings, ".toml")
    code, _, err = _run(capsys, "train", "--data", ratings_csv, "--config", config, *flags,
                        "--device", "cpu", "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert needle.format(c=config) in err
