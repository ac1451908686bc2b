"""``autorec tune --study``: study files checked before any work, studies that cannot be
continued refused in one line, and searched settings the user gives kept fixed (issue 12)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from autorec.cli.main import main
from autorec.exceptions import AutorecError

optuna = pytest.importorskip("optuna")

from autorec.tune import SEARCH_SPACE, check_study, run_study, suggest  # noqa: E402

QUICK = ("--hidden", "8", "--epochs", "2", "--device", "cpu", "--quiet")


@pytest.fixture
def ratings_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    lines = ["user_id,item_id,rating"]
    for u in range(30):
        for i in range(20):
            if rng.random() < 0.45:
                lines.append(f"{u},{i},{rng.integers(1, 6)}")
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(capsys, *argv: object) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def _study(path: Path, *, direction: str = "minimize", space: dict | None = None,
           name: str = "autorec", n: int = 2) -> None:
    """A study in ``path`` with ``n`` finished trials drawn over ``space`` (no training)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{path}",
                                direction=direction)
    study.optimize(lambda trial: float(len(suggest(trial, space))), n_trials=n)


def _tune(capsys, ratings_csv: Path, tmp_path: Path, study: Path, *extra: object
          ) -> tuple[int, str, str]:
    return _run(capsys, "tune", "--data", ratings_csv, "--study", study, "--trials", "2",
                "--out", tmp_path / "best.toml", *QUICK, *extra)


# -- study files -------------------------------------------------------------------------------
def test_not_an_sqlite_file_refused(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    study = tmp_path / "study.db"
    study.write_bytes(b"these are my notes, not a database\n" * 50)
    before = study.read_bytes()
    code, out, err = _tune(capsys, ratings_csv, tmp_path, study)
    _one_line_error(code, err, str(study), "not an SQLite database")
    assert study.read_bytes() == before and out == ""
    assert not (tmp_path / "best.toml").exists()


def test_truncated_study_file_refused(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    whole = tmp_path / "whole.db"
    _study(whole, n=3)
    data = whole.read_bytes()
    study = tmp_path / "study.db"
    study.write_bytes(data[:len(data) // 2])
    code, _, err = _tune(capsys, ratings_csv, tmp_path, study)
    _one_line_error(code, err, str(study), "damaged SQLite database")


def test_damaged_study_file_refused(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    study = tmp_path / "study.db"
    _study(study, n=3)
    data = bytearray(study.read_bytes())
    data[100:4096 * 3] = b"\x00" * (4096 * 3 - 100)  # the schema pages zeroed, header kept
    study.write_bytes(bytes(data))
    code, _, err = _tune(capsys, ratings_csv, tmp_path, study)
    _one_line_error(code, err, str(study))
    assert "sqlalchemy" not in err.lower()


def test_study_that_is_a_folder_refused(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    folder = tmp_path / "studies"
    folder.mkdir()
    code, _, err = _tune(capsys, ratings_csv, tmp_path, folder)
    _one_line_error(code, err, str(folder), "folder")
    assert list(folder.iterdir()) == []


def test_study_in_a_missing_folder_refused(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    study = tmp_path / "no" / "such" / "study.db"
    code, _, err = _tune(capsys, ratings_csv, tmp_path, study)
    _one_line_error(code, err, str(study), "does not exist")
    assert not (tmp_path / "no").exists()


def test_other_sqlite_database_refused_untouched(capsys, tmp_path: Path,
                                                 ratings_csv: Path) -> None:
    study = tmp_path / "photos.db"
    with sqlite3.connect(study) as connection:
        connection.execute("CREATE TABLE photos (name TEXT)")
        connection.execute("INSERT INTO photos VALUES ('holiday.jpg')")
    connection.close()
    before = study.read_bytes()
    code, _, err = _tune(capsys, ratings_csv, tmp_path, study)
    _one_line_error(code, err, str(study), "without Optuna's tables")
    assert study.read_bytes() == before


def test_library_refuses_the_same_files(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"junk" * 100)
    (tmp_path / "folder.db").mkdir()
    for path, needle in [(tmp_path / "junk.db", "not an SQLite database"),
                         (tmp_path / "folder.db", "is a folder"),
                         (tmp_path / "missing" / "s.db", "does not exist")]:
        with pytest.raises(AutorecError, match=needle):
            check_study(path)
    assert check_study(tmp_path / "new.db") == 0 and not (tmp_path / "new.db").exists()
    (tmp_path / "empty.db").touch()
    assert check_study(tmp_path / "empty.db") == 0


# -- studies that cannot be continued ------------------------------------------------------------
def test_maximising_study_refused(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    study = tmp_path / "study.db"
    _study(study, direction="maximize")
    before = study.read_bytes()
    code, _, err = _tune(capsys, ratings_csv, tmp_path, study)
    _one_line_error(code, err, "study 'autorec'", "maximizes its value", "--study-name")
    assert study.read_bytes() == before
    assert not (tmp_path / "best.toml").exists()
    with pytest.raises(AutorecError, match="maximizes"):
        check_study(study)


def test_multi_objective_study_refused(tmp_path: Path) -> None:
    study = tmp_path / "study.db"
    optuna.create_study(study_name="autorec", storage=f"sqlite:///{study}",
                        directions=["minimize", "minimize"])
    with pytest.raises(AutorecError, match="several objectives"):
        check_study(study)


def test_study_over_another_search_space_refused(capsys, tmp_path: Path,
                                                 ratings_csv: Path) -> None:
    study = tmp_path / "study.db"
    _study(study, space={**SEARCH_SPACE, "hidden": ("int_log", (8, 16))})
    code, _, err = _tune(capsys, ratings_csv, tmp_path, study)
    _one_line_error(code, err, "study 'autorec'", "'hidden'", "--study-name")
    _study(study, space={"momentum": ("float", (0.0, 1.0))}, name="other")
    code, _, err = _tune(capsys, ratings_csv, tmp_path, study, "--study-name", "other")
    _one_line_error(code, err, "study 'other'", "'momentum'")


def test_same_space_under_another_name_is_a_new_study(tmp_path: Path) -> None:
    study = tmp_path / "study.db"
    _study(study, direction="maximize", name="theirs")
    assert check_study(study, "autorec") == 0  # another name in the same file: new study
    _study(study, name="mine", n=3)
    assert check_study(study, "mine") == 3


# -- searched settings the user gives are fixed ---------------------------------------------
def test_hidden_given_is_fixed_not_searched(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    study = tmp_path / "study.db"
    code, out, err = _tune(capsys, ratings_csv, tmp_path, study)  # --hidden 8 (QUICK)
    assert code == 0, err
    assert "fixed by your settings, not searched: hidden=8" in out
    loaded = optuna.load_study(study_name="autorec", storage=f"sqlite:///{study}")
    assert len(loaded.trials) == 2
    assert all("hidden" not in trial.params for trial in loaded.trials)
    assert all("lr" in trial.params for trial in loaded.trials)  # the rest is searched
    best = (tmp_path / "best.toml").read_text()
    assert "\nhidden = 8\n" in best

    # continuing the study with hidden searched, or fixed to another value, is refused
    code, _, err = _run(capsys, "tune", "--data", ratings_csv, "--study", study, "--trials",
                        "3", "--out", tmp_path / "b2.toml", "--epochs", "2", "--device", "cpu",
                        "--quiet")
    _one_line_error(code, err, "fixed settings hidden=8")
    code, _, err = _tune(capsys, ratings_csv, tmp_path, study, "--hidden", "16")
    _one_line_error(code, err, "hidden=8", "hidden=16")
    # the same fixed value continues it
    code, out, err = _run(capsys, "tune", "--data", ratings_csv, "--study", study, "--trials",
                          "3", "--out", tmp_path / "b3.toml", *QUICK)
    assert code == 0, err
    assert len(optuna.load_study(study_name="autorec",
                                 storage=f"sqlite:///{study}").trials) == 3


def test_config_file_settings_are_fixed_too(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    config = tmp_path / "fixed.toml"
    config.write_text('activation = "tanh"\nvariant = "user"\n')
    code, out, err = _tune(capsys, ratings_csv, tmp_path, tmp_path / "s.db", "--config",
                           config)
    assert code == 0, err
    assert "not searched: variant=user, hidden=8, activation=tanh" in out
    best = (tmp_path / "best.toml").read_text()
    assert 'activation = "tanh"' in best and 'variant = "user"' in best


def test_a_preset_does_not_fix_the_search(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    code, out, err = _run(capsys, "tune", "--data", ratings_csv, "--study", tmp_path / "s.db",
                          "--trials", "1", "--out", tmp_path / "best.toml", "--preset",
                          "reference", "--epochs", "2", "--validation", "0.1", "--device",
                          "cpu", "--quiet")
    assert code == 0, err
    assert "fixed by your settings" not in out
    # but said: --preset best's variant both was replaced by item or user without a word
    assert ("searched, not fixed (give them as options to fix them): --preset reference's "
            "variant=item, hidden=500") in out


def test_a_preset_setting_the_search_replaces_is_named(capsys, tmp_path: Path,
                                                       ratings_csv: Path) -> None:
    code, out, err = _run(capsys, "tune", "--data", ratings_csv, "--study", tmp_path / "s.db",
                          "--trials", "1", "--out", tmp_path / "best.toml", "--preset", "best",
                          "--hidden", "4", "--epochs", "1", "--ranking", "none", "--device",
                          "cpu", "--quiet")
    assert code == 0, err
    assert "--preset best's variant=both" in out


def test_run_study_fixed_parameters(tmp_path: Path, low_rank) -> None:
    base = {"hidden": 8, "epochs": 2, "validation": 0.1, "device": "cpu", "variant": "item",
            "activation": "sigmoid", "dropout": 0.0, "input_dropout": 0.0, "l2": 1.0,
            "lr": 0.001, "batch_size": 64}
    with pytest.raises(AutorecError, match="nothing left to tune"):
        run_study(low_rank, base_params=base, n_trials=1, storage=tmp_path / "s.db",
                  fixed=tuple(SEARCH_SPACE))
    with pytest.raises(AutorecError, match="not searched parameters"):
        run_study(low_rank, base_params=base, n_trials=1, storage=tmp_path / "s.db",
                  fixed=("epochs",))
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        study = run_study(low_rank, base_params=base, n_trials=1, storage=tmp_path / "s.db",
                          fixed=("hidden", "variant"))
        # the study runs at ERROR; the user's own level is put back (it stayed at ERROR)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
        check_study(tmp_path / "s.db", "another")  # public too: it left WARNING behind
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(before)
    assert set(study.trials[0].params) == set(SEARCH_SPACE) - {"hidden", "variant"}
    assert study.user_attrs["autorec_fixed"] == {"hidden": 8, "variant": "item"}


def test_diverging_trials_are_pruned_and_the_search_ends_in_one_line(capsys, tmp_path: Path,
                                                                     ratings_csv: Path) -> None:
    """A trial whose loss diverges is pruned and the search goes on (it ended the search with
    34 lines of Optuna's traceback); a search where no trial finished says so in one line,
    exit status 1 (a failed run, not bad input), and writes no configuration."""
    code, out, err = _tune(capsys, ratings_csv, tmp_path, tmp_path / "s.db", "--lr", "1e30")
    assert code == 1, err
    assert err.strip().splitlines() == ["autorec tune: error: no trial finished (2 pruned or "
                                        "failed: one that diverges is pruned, lower --lr or "
                                        "raise --l2; one that does not fit in memory too, fix "
                                        "a smaller --hidden)"], err
    assert "Traceback" not in out + err and not (tmp_path / "best.toml").exists()
    study = optuna.load_study(study_name="autorec", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]


def test_a_study_continues_only_on_its_data_seed_and_settings(capsys, tmp_path: Path,
                                                              ratings_csv: Path) -> None:
    """A study run on other data, or with another seed or another setting not searched, was
    continued without a word, its trials ranked with the new ones (an ML-100K trial among
    another set's). Refused in one line; the same search continues."""
    study = tmp_path / "s.db"
    code, _, err = _tune(capsys, ratings_csv, tmp_path, study)
    assert code == 0, err
    other = tmp_path / "other.csv"
    other.write_text(ratings_csv.read_text().replace(",5\n", ",4\n", 3))
    for extra, needle in (
            (("--data", other), "on other training ratings (same count)"),
            (("--epochs", "3"), "with epochs 2 there, 3 here"),
            (("--seed", "7"), "with --seed 0, not 7")):  # not "other training ratings"
        args = ["tune", "--data", ratings_csv, "--study", study, "--trials", "3", "--out",
                tmp_path / "best.toml", *QUICK, *extra]
        if extra[0] == "--data":
            args[2] = other
            args = args[:-2]
        code, _, err = _run(capsys, *args)
        _one_line_error(code, err, str(study), needle, "give another --study-name")
    code, _, err = _tune(capsys, ratings_csv, tmp_path, study, "--trials", "3")
    assert code == 0, err
    assert len(optuna.load_study(study_name="autorec", storage=f"sqlite:///{study}").trials) == 3


def test_a_study_continues_with_a_default_spelled_out(capsys, tmp_path: Path,
                                                      ratings_csv: Path) -> None:
    """A rerun that names a setting's default (``--patience 10``, ``--validation 0.05``) or one
    every trial sets itself (``--no-refit``, ``--ranking none``) runs the same trials: it was
    refused as 'patience None there, 10 here'. Another value is still refused, with the
    value the study really ran with."""
    study = tmp_path / "s.db"
    code, _, err = _tune(capsys, ratings_csv, tmp_path, study)
    assert code == 0, err
    code, _, err = _tune(capsys, ratings_csv, tmp_path, study, "--trials", "3", "--patience",
                         "10", "--validation", "0.05", "--no-refit", "--ranking", "none")
    assert code == 0, err
    code, _, err = _tune(capsys, ratings_csv, tmp_path, study, "--trials", "4", "--patience",
                         "3")
    _one_line_error(code, err, "with patience 10 there, 3 here")


def test_a_list_of_l2_values_reports_each_values_epochs_once(capsys, tmp_path: Path,
                                                             ratings_csv: Path,
                                                             recwarn) -> None:
    """With ``--l2 1,10`` the first network trains once per value; each value's epochs were
    reported at the same steps, which Optuna dropped with a UserWarning printed to stderr."""
    study = tmp_path / "s.db"
    code, _, err = _tune(capsys, ratings_csv, tmp_path, study, "--l2", "1,10", "--trials", "1")
    assert code == 0, err
    assert "Warning" not in err
    assert not [w for w in recwarn if "already reported" in str(w.message)]
    trial = optuna.load_study(study_name="autorec", storage=f"sqlite:///{study}").trials[0]
    assert sorted(trial.intermediate_values) == [1, 2, 3, 4]  # epochs 1-2 of l2 1, then 10


def test_a_trial_left_running_by_a_killed_search_is_failed_not_counted(
        capsys, monkeypatch, tmp_path: Path, ratings_csv: Path) -> None:
    """A search killed mid-trial (SIGKILL) left the trial RUNNING for ever: a continued search
    counted it among the trials it reported. What such a process leaves is a trial started,
    with a heartbeat, and never finished; once the heartbeat is stale it is marked failed."""
    import time

    import autorec.tune

    study_file = tmp_path / "s.db"
    code, _, err = _tune(capsys, ratings_csv, tmp_path, study_file, "--trials", "1")
    assert code == 0, err
    with pytest.warns(optuna.exceptions.ExperimentalWarning):  # and none from autorec's
        storage = optuna.storages.RDBStorage(f"sqlite:///{study_file}", heartbeat_interval=1)
    with pytest.warns(UserWarning, match="Heartbeat"):  # meant for optimize: no heartbeats
        abandoned = optuna.load_study(study_name="autorec", storage=storage).ask()
    storage.record_heartbeat(abandoned._trial_id)
    monkeypatch.setattr(autorec.tune, "STALE_SECONDS", 1)
    time.sleep(2.5)
    code, out, err = _tune(capsys, ratings_csv, tmp_path, study_file, "--trials", "2")
    assert code == 0 and err == "", err
    states = [t.state.name for t in optuna.load_study(
        study_name="autorec", storage=f"sqlite:///{study_file}").trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"]
    # a failed trial is not a finished one (--trials counts complete and pruned ones)
    assert "top 2 of 2 trials by validation RMSE" in out
    assert "best of 2 trials" in (tmp_path / "best.toml").read_text()


def test_a_search_without_epochs_given_runs_with_the_default(capsys, tmp_path: Path,
                                                             ratings_csv: Path) -> None:
    """``autorec tune`` with no --epochs (the command as the README gives it) ended in a
    KeyError traceback at the first epoch: the trial's epochs were looked up among the
    settings the user gave."""
    code, _, err = _run(capsys, "tune", "--data", ratings_csv, "--study", tmp_path / "s.db",
                        "--trials", "1", "--out", tmp_path / "best.toml", "--hidden", "8",
                        "--patience", "2", "--device", "cpu", "--quiet")
    assert code == 0 and "Traceback" not in err, err
    assert "best of 1 trials" in (tmp_path / "best.toml").read_text()


def test_the_default_out_does_not_replace_a_file_tune_did_not_write(
        capsys, tmp_path: Path, ratings_csv: Path, monkeypatch) -> None:
    """Without --out, tune wrote ./best.toml over whatever was there (a user's own file)."""
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "best.toml"
    mine.write_text("# mine\nhidden = 99\n")
    argv = ["tune", "--data", ratings_csv, "--study", tmp_path / "s.db", "--trials", "1",
            "--hidden", "4", "--epochs", "1", "--device", "cpu", "--quiet"]
    code, out, err = _run(capsys, *argv)
    _one_line_error(code, err, "best.toml (the default --out) exists and was not written by "
                    "autorec tune")
    assert out == "" and mine.read_text() == "# mine\nhidden = 99\n"
    assert not (tmp_path / "s.db").exists()
    mine.unlink()
    assert _run(capsys, *argv)[0] == 0  # no file there: written
    assert _run(capsys, *argv)[0] == 0  # tune's own file: replaced
    assert mine.read_text().startswith("# autorec tune: best of 1 trials")
    code, _, err = _run(capsys, *argv, "--out", mine)  # named: the user's choice
    assert code == 0, err
    # named in --config too: it was taken for the default, and refused as such
    theirs = tmp_path / "theirs.toml"
    theirs.write_text("# theirs\n")
    config = tmp_path / "c.toml"
    config.write_text(f'out = "{theirs}"\n')
    code, _, err = _run(capsys, *argv, "--config", config)
    assert code == 0, err
    assert theirs.read_text().startswith("# autorec tune: best of 1 trials")


@pytest.mark.parametrize(("flags", "needle"), [
    (["--validation", "0"], "and --validation 0 leaves none"),
    (["--preset", "reference"], "and --preset reference (validation 0) leaves none"),
])
def test_no_validation_part_is_refused_before_the_data_is_read(capsys, tmp_path: Path,
                                                               flags, needle) -> None:
    """It was refused by the library after the data was read and 'tuning on ...' printed,
    without saying that the preset had set it."""
    code, out, err = _run(capsys, "tune", "--data", tmp_path / "missing.csv", "--trials", "1",
                          "--study", tmp_path / "s.db", "--out", tmp_path / "b.toml", *flags)
    _one_line_error(code, err, "tuning chooses on a validation part", needle)
    assert out == "" and not (tmp_path / "s.db").exists()


def test_the_best_settings_carry_the_seed(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    """Without it, train --config best.toml drew another split and other starting weights
    than the trial it reports (seed 0 against tune --seed 3)."""
    code, _, err = _tune(capsys, ratings_csv, tmp_path, tmp_path / "s.db", "--trials", "1",
                         "--seed", "3")
    assert code == 0, err
    from autorec.config import read_config

    assert read_config(tmp_path / "best.toml")["seed"] == 3


@pytest.mark.parametrize(("flags", "again"), [
    ((), None), (("--test-ratio", "0.3"), "--test-ratio 0.3)"),
    # printed to 6 digits (0.101667), which holds out another count of ratings
    (("--test-ratio", "0.1016666333"), "--test-ratio 0.1016666333)")])
def test_the_last_line_names_the_split_options_train_needs(capsys, tmp_path: Path,
                                                           ratings_csv: Path, flags,
                                                           again) -> None:
    """best.toml holds no split (evaluate refuses one), and said only "use it with --config":
    train then drew a 0.9/0.1 split, not the 0.7/0.3 one the search chose on."""
    code, out, err = _tune(capsys, ratings_csv, tmp_path, tmp_path / "s.db", "--trials", "1",
                           *flags)
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"wrote {tmp_path / 'best.toml'} (use it with --config")
    assert (again in last) if again else "train on this search's split" not in last


def test_a_sampled_network_too_large_for_memory_is_pruned(tmp_path: Path, low_rank,
                                                          monkeypatch) -> None:
    """A trial whose sampled --hidden did not fit in memory ended the whole search (status
    2, no best.toml); now it is pruned as a diverged one is. A size the user fixed still ends
    the search: no trial could fit."""
    import autorec.memory
    from autorec.exceptions import ResourceError

    check = autorec.memory.check_training_memory

    def room_for_small_networks(*args, hidden: int, **kwargs):  # a machine short of memory
        if hidden > 200:
            raise ResourceError(f"not enough memory: {hidden} hidden units")
        return check(*args, hidden=hidden, **kwargs)

    monkeypatch.setattr(autorec.memory, "check_training_memory", room_for_small_networks)
    base = {"epochs": 1, "validation": 0.1, "device": "cpu"}
    study = run_study(low_rank, base_params=base, n_trials=6, storage=tmp_path / "s.db",
                      random_state=0)
    states = {t.params["hidden"] > 200: t.state.name for t in study.trials}
    assert states == {True: "PRUNED", False: "COMPLETE"}, [
        (t.params["hidden"], t.state.name) for t in study.trials]
    with pytest.raises(ResourceError, match="not enough memory"):
        run_study(low_rank, base_params={**base, "hidden": 300}, n_trials=1,
                  storage=tmp_path / "t.db", fixed=("hidden",))
