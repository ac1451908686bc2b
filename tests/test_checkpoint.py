"""Checkpoints and exact resume (issue 8): a run killed with SIGKILL and resumed ends with the
same metrics as an uninterrupted one, bitwise on CPU; corrupted or mismatched checkpoints are
refused in one line."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from autorec import AutoRec
from autorec.checkpoint import MANIFEST, NetworkCheckpoint, Session, describe
from autorec.cli.main import main
from autorec.exceptions import CheckpointError


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread here and in the processes started (``OMP_NUM_THREADS=1``): tiny
    networks train faster so on shared cores, and the runs compared must use the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- the command line, killed for real ---------------------------------------------------------
CLI_RUN = ["--no-refit", "--hidden", "8", "--epochs", "40", "--patience", "40",
           "--validation", "0.1", "--device", "cpu", "--seed", "3", "--quiet"]


def synthetic_csv(path: Path, n_users: int = 200, n_items: int = 100, density: float = 0.1,
                  seed: int = 0) -> Path:
    """Ratings 1-5 from a planted rank-3 model, string user ids."""
    rng = np.random.default_rng(seed)
    users, items = rng.normal(size=(n_users, 3)), rng.normal(size=(n_items, 3))
    user_idx, item_idx = np.nonzero(rng.random((n_users, n_items)) < density)
    rating = np.clip(np.rint(3 + (users[user_idx] * items[item_idx]).sum(1)), 1, 5)
    frame = pd.DataFrame({"user_id": [f"u{u}" for u in user_idx], "item_id": item_idx,
                          "rating": rating})
    frame.to_csv(path, index=False)
    return path


def train_process(csv: Path, *extra: str) -> subprocess.Popen[bytes]:
    # one thread: on shared cores it is faster; the runs compared all use the same setting
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "autorec", "train", "--data", str(csv),
                             *CLI_RUN, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def checkpointed_epochs(folder: Path) -> int:
    """Epochs of the network in training in the last checkpoint (0: none yet)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return 0
    current = manifest.get("current")
    return 10**6 if current is None else int(current["epoch"])


def test_sigkill_then_resume_gives_the_uninterrupted_metrics(tmp_path, one_thread):
    csv = synthetic_csv(tmp_path / "ratings.csv")
    folder = tmp_path / "ckpt"
    victim = train_process(csv, "--out", str(tmp_path / "victim"), "--checkpoint-dir",
                           str(folder))
    try:
        # the uninterrupted run, in this process (one thread, as the victim) while that starts
        assert main(["train", "--data", str(csv), *CLI_RUN, "--out",
                     str(tmp_path / "reference")]) == 0
        deadline = time.monotonic() + 120
        while checkpointed_epochs(folder) < 2 and victim.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint of epoch 2 within 120 s"
            time.sleep(0.005)
        assert victim.poll() is None, f"it ended before it was killed: {victim.stderr.read()}"
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "victim" / "metrics.json").exists()
    killed_at = describe(folder)
    assert killed_at is not None and "epoch" in killed_at

    # the resumed run, in this process too: the same code path as a command, without the
    # seconds of starting one
    assert main(["train", "--data", str(csv), *CLI_RUN, "--out", str(tmp_path / "victim"),
                 "--checkpoint-dir", str(folder), "--resume"]) == 0
    got = json.loads((tmp_path / "victim" / "metrics.json").read_text())
    want = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    assert got["rmse"] == want["rmse"] and got["mae"] == want["mae"], killed_at
    assert ([h["validation_rmse"] for h in got["history"]]
            == [h["validation_rmse"] for h in want["history"]])
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["complete"] and manifest["current"] is None
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST,
                                                        "net-select-c1-n1.safetensors"]


# -- the Python API, interrupted at chosen places ----------------------------------------------
@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n_users, n_items = 80, 40
    users, items = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    user_idx, item_idx = np.nonzero(rng.random((n_users, n_items)) < 0.3)
    rating = np.clip(np.rint(3 + (users[user_idx] * items[item_idx]).sum(1)), 1, 5)
    return pd.DataFrame({"user_id": user_idx, "item_id": [f"i{i}" for i in item_idx],
                         "rating": rating})


SETTINGS: dict[str, Any] = dict(variant="both", l2=[1.0, 10.0], refit=True, hidden=6, epochs=4,
                                patience=2, lr=0.02, validation=0.2, random_state=1,
                                device="cpu")


class Killed(Exception):
    """Stands for the process dying right after a checkpoint was written."""


def kill_after(monkeypatch: pytest.MonkeyPatch, position: str) -> None:
    """Interrupt the fit right after the checkpoint whose position starts with ``position``."""
    commit = Session.commit

    def commit_then_die(self: Session, *args: Any, **kwargs: Any) -> None:
        commit(self, *args, **kwargs)
        if args[1].startswith(position):
            raise Killed(args[1])

    monkeypatch.setattr(Session, "commit", commit_then_die)


def predictions(model: AutoRec, frame: pd.DataFrame) -> np.ndarray:
    return model.predict(frame.user_id, frame.item_id)


@pytest.fixture(scope="module")
def uninterrupted(ratings) -> AutoRec:
    model = AutoRec(**SETTINGS)
    model.epochs_trained = []  # every epoch of every network, l2 value and refit
    return model.fit(ratings, on_epoch_end=model.epochs_trained.append)


@pytest.mark.parametrize("position", [
    "l2 value 1, network 1, epoch 2",      # in the middle of a network
    "l2 value 1, network 1 finished",      # at a network boundary
    "l2 value 2, network 2, epoch 1",      # in the middle of the l2 list
    "refit, network 2, epoch 1",            # while refitting
])
def test_resume_anywhere_is_exact(tmp_path, monkeypatch, ratings, uninterrupted, position):
    with monkeypatch.context() as patch:
        kill_after(patch, position)
        with pytest.raises(Killed):
            AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=tmp_path)
    assert describe(tmp_path).startswith(position)
    seen: list[dict[str, Any]] = []
    model = AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=tmp_path, resume=True,
                                    on_epoch_end=seen.append)
    assert np.array_equal(predictions(model, ratings), predictions(uninterrupted, ratings))
    assert model.l2_ == uninterrupted.l2_ and np.array_equal(model.blend_, uninterrupted.blend_)
    assert model.validation_rmse_ == uninterrupted.validation_rmse_
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in uninterrupted.history_]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in model.history_] == strip
    assert len(seen) < len(uninterrupted.epochs_trained)  # only the epochs left


def test_best_weights_held_in_a_file_give_the_same_model_and_resume(
        tmp_path, monkeypatch, ratings, uninterrupted):
    """Every best-weights copy in a temporary file (autorec.selection.SPILL_BYTES = 0): the
    checkpoints save them from there, a resumed run reads them back, and the model is the
    one of the uninterrupted in-memory run, bit for bit."""
    from autorec import selection

    monkeypatch.setattr(selection, "SPILL_BYTES", 0)
    with monkeypatch.context() as patch:
        kill_after(patch, "l2 value 1, network 1, epoch 2")
        with pytest.raises(Killed):
            AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=tmp_path)
    model = AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=tmp_path, resume=True)
    assert np.array_equal(predictions(model, ratings), predictions(uninterrupted, ratings))
    assert model.validation_rmse_ == uninterrupted.validation_rmse_


def test_killed_after_early_stopping_decided_before_the_network_was_recorded(
        tmp_path, monkeypatch, ratings, uninterrupted):
    """The last checkpoint of network 1 says 'stop'; resuming trains it no further."""
    with monkeypatch.context() as patch:
        def die(self: NetworkCheckpoint, *args: Any) -> None:
            raise Killed(self.tag)

        patch.setattr(NetworkCheckpoint, "finish", die)
        with pytest.raises(Killed, match="select-c1-n1"):
            AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=tmp_path)
    current = json.loads((tmp_path / MANIFEST).read_text())["current"]
    assert current["network"] == "select-c1-n1" and current["stop"]
    assert current["epoch"] < SETTINGS["epochs"]  # it stopped early
    seen: list[dict[str, Any]] = []
    model = AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=tmp_path, resume=True,
                                    on_epoch_end=seen.append)
    assert (seen[0]["member"], seen[0]["epoch"]) == (2, 1)
    assert np.array_equal(predictions(model, ratings), predictions(uninterrupted, ratings))


def test_a_finished_checkpoint_reproduces_the_model_without_training(tmp_path, ratings,
                                                                     uninterrupted):
    AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=tmp_path)
    assert describe(tmp_path).startswith("complete")
    seen: list[dict[str, Any]] = []
    model = AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=tmp_path, resume=True,
                                    on_epoch_end=seen.append)
    assert seen == []
    assert np.array_equal(predictions(model, ratings), predictions(uninterrupted, ratings))


def test_resume_without_a_checkpoint_starts_from_the_beginning(tmp_path, ratings, uninterrupted,
                                                               caplog):
    with caplog.at_level(logging.INFO, logger="autorec"):
        model = AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=tmp_path / "new", resume=True)
    assert "no checkpoint" in caplog.text
    assert np.array_equal(predictions(model, ratings), predictions(uninterrupted, ratings))


# -- refusals ----------------------------------------------------------------------------------
@pytest.fixture
def interrupted(tmp_path, monkeypatch, ratings) -> Path:
    """A checkpoint folder of a fit killed in network 2 of the first l2 value."""
    with monkeypatch.context() as patch:
        kill_after(patch, "l2 value 1, network 2, epoch 2")
        with pytest.raises(Killed):
            AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=tmp_path / "ck")
    return tmp_path / "ck"


def refusal(folder: Path, ratings: pd.DataFrame, **changes: Any) -> str:
    with pytest.raises(CheckpointError) as info:
        AutoRec(**{**SETTINGS, **changes}).fit(ratings, checkpoint_dir=folder, resume=True)
    message = str(info.value)
    assert "\n" not in message and str(folder) in message
    return message


def test_refuses_truncated_and_tampered_files(interrupted, ratings):
    trained = interrupted / "net-select-c1-n1.safetensors"
    content = trained.read_bytes()
    trained.write_bytes(content[:-10])
    assert "truncated" in refusal(interrupted, ratings)
    altered = bytearray(content)
    altered[-3] ^= 0xFF
    trained.write_bytes(bytes(altered))
    assert "corrupted or altered" in refusal(interrupted, ratings)
    trained.write_bytes(content)
    state = next(interrupted.glob("train-*.safetensors"))
    state.unlink()
    assert "missing" in refusal(interrupted, ratings)


def test_refuses_an_altered_or_truncated_manifest(interrupted, ratings):
    path = interrupted / MANIFEST
    text = path.read_text()
    path.write_text(text.replace('"epoch": 2', '"epoch": 1', 1))
    assert "altered" in refusal(interrupted, ratings)
    path.write_text(text[: len(text) // 2])
    assert "unreadable" in refusal(interrupted, ratings)


def test_refuses_other_data_and_other_settings(interrupted, ratings):
    message = refusal(interrupted, ratings, hidden=7)
    assert "another configuration" in message and "hidden 6 there, 7 here" in message
    assert "random_state 1 there, 2 here" in refusal(interrupted, ratings, random_state=2)
    changed = ratings.copy()
    changed.loc[0, "rating"] = 6 - changed.loc[0, "rating"]
    with pytest.raises(CheckpointError, match="other data"):
        AutoRec(**SETTINGS).fit(changed, checkpoint_dir=interrupted, resume=True)
    with pytest.raises(CheckpointError, match="other data"):
        AutoRec(**SETTINGS).fit(ratings.iloc[1:], checkpoint_dir=interrupted, resume=True)


def test_a_folder_holding_a_checkpoint_needs_resume(interrupted, ratings):
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=interrupted)
    with pytest.raises(ValueError, match="random_state"):
        AutoRec(**{**SETTINGS, "random_state": None}).fit(ratings, checkpoint_dir=interrupted,
                                                          resume=True)


def test_cli_refusals_are_one_line_exit_2(tmp_path, capsys):
    csv = synthetic_csv(tmp_path / "r.csv", n_users=40, n_items=20, density=0.4)
    folder = tmp_path / "ck"
    run = ["train", "--data", str(csv), "--hidden", "4", "--epochs", "2", "--device", "cpu",
           "--quiet", "--checkpoint-dir", str(folder)]
    assert main(run) == 0
    capsys.readouterr()
    for extra, needle in ((["--hidden", "5"], "hidden 4 there, 5 here"),
                          (["--test-ratio", "0.2"], "test_ratio 0.1 there, 0.2 here"),
                          ([], "")):
        code = main([*run, *extra, "--resume"])
        out, err = capsys.readouterr()
        if not needle:  # the same run: reproduced from the finished checkpoint
            assert code == 0, err
            assert f"resuming from {folder}: complete" in out, out
            continue
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert str(folder) in err and needle in err, err
        # "resuming from" came before the check that refused the checkpoint
        assert "resuming" not in out, out
    assert main(run) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["train", "--data", str(csv), "--resume"])
    assert exited.value.code == 2
    assert "--resume needs --checkpoint-dir" in capsys.readouterr().err
    (folder / "net-select-c1-n1.safetensors").write_bytes(b"\0" * 10)
    assert main([*run, "--resume"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "truncated" in err, err
    assert not any(name.endswith(".tmp") for name in os.listdir(folder))


def test_the_cli_says_once_that_there_is_no_checkpoint_to_resume(tmp_path):
    # a real process: under pytest the CLI's logging set-up finds pytest's handler in place
    csv = synthetic_csv(tmp_path / "r.csv", n_users=40, n_items=20)
    done = subprocess.run([sys.executable, "-m", "autorec", "train", "--data", str(csv),
                           *CLI_RUN, "--epochs", "1", "--ranking", "none", "--checkpoint-dir",
                           str(tmp_path / "new"), "--resume"], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert done.returncode == 0, done.stderr
    assert (done.stdout + done.stderr).count("no checkpoint in") == 1, done


def test_resume_refuses_a_checkpoint_of_the_other_split_layout(tmp_path, capsys):
    """A k-fold checkpoint resumed by a one-split run (or the reverse) was passed over as "no
    checkpoint", and a second checkpoint written beside it."""
    csv = synthetic_csv(tmp_path / "r.csv", n_users=40, n_items=20)
    run = ["train", "--data", str(csv), *CLI_RUN, "--epochs", "1", "--ranking", "none"]
    kfold = ["--split", "kfold", "--folds", "2"]
    for first, second in ((kfold, []), ([], kfold)):
        folder = tmp_path / f"ck{len(first)}"
        assert main([*run, *first, "--checkpoint-dir", str(folder)]) == 0
        before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
        capsys.readouterr()
        assert main([*run, *second, "--checkpoint-dir", str(folder), "--resume"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "holds a checkpoint of" in err, err
        assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


def test_resume_removes_a_killed_writers_temporary_files(tmp_path):
    """A writer killed mid-write leaves a temporary file (ours, or safetensors' own
    ``.tmpXXXXXX``); resuming deletes it and leaves everything else alone."""
    from autorec.checkpoint.manifest import remove_stale_temporaries

    for name in (".tmpAb12Cd", ".ckpt-x1y2.tmp", ".checkpoint.json.z9.tmp", "notes.txt",
                 "net-select-c1-n1.safetensors"):
        (tmp_path / name).write_text("x")
    remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net-select-c1-n1.safetensors",
                                                          "notes.txt"]


def test_a_folder_holding_files_autorec_did_not_write_is_refused(tmp_path, ratings):
    """A user's files in the checkpoint folder (named like a checkpoint's or not) make the fit
    stop before training, and stay as they were: a new manifest deleted the files of ours
    it does not name, a user's ``best-1.safetensors`` among them. A network file a fit killed
    before its first manifest left (marked inside as ours) and a ``fold-K`` folder of the same
    kind are accepted."""
    from autorec.checkpoint.manifest import write_tensors

    for name in ("best-1.safetensors", "train-7.safetensors", "notes.txt"):
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        (folder / name).write_text("mine\n")
        for resume in (False, True):
            refused = re.escape(f"holds {name}, which autorec did not")
            with pytest.raises(CheckpointError, match=refused):
                AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=folder, resume=resume)
        assert os.listdir(folder) == [name] and (folder / name).read_text() == "mine\n"
    nested = tmp_path / "evaluate" / "fold-2"
    nested.mkdir(parents=True)
    (nested / "net-select-c1-n1.safetensors").write_text("mine\n")
    refused = re.escape("holds fold-2/net-select-c1-n1.safetensors")
    with pytest.raises(CheckpointError, match=refused):
        AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=tmp_path / "evaluate")
    killed = tmp_path / "killed"
    killed.mkdir()
    write_tensors(killed, "net-select-c1-n1.safetensors", {"w": torch.zeros(2)})
    AutoRec(**{**SETTINGS, "epochs": 1}).fit(ratings, checkpoint_dir=killed)
    assert (killed / "checkpoint.json").is_file()


def test_a_folder_with_a_manifest_and_a_users_files_is_refused_too(interrupted, ratings):
    """A folder with a manifest was taken whole as autorec's: the resume accepted a user's
    files beside it, and its next manifest deleted those named like a checkpoint's (a text
    best-000001.safetensors). Only the files the manifest names (and the temporaries and
    marked network files of a killed fit) are its own."""
    before = sorted(os.listdir(interrupted))
    for name in ("best-000001.safetensors", "notes.txt"):
        (interrupted / name).write_text("mine\n")
        with pytest.raises(CheckpointError, match=re.escape(f"holds {name}, which autorec")):
            AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=interrupted, resume=True)
        assert (interrupted / name).read_text() == "mine\n"
        (interrupted / name).unlink()
    assert sorted(os.listdir(interrupted)) == before
    AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=interrupted, resume=True)  # its own: fine


def test_a_folder_another_fit_trains_into_is_refused(tmp_path, ratings) -> None:
    """Two fits on one checkpoint folder at once overwrote each other's files; the second
    failed with a missing file or wrote a mix. A fit holds the folder (flock) while it runs
    and gives it back when it ends; fits one after another in one process share it."""
    fcntl = pytest.importorskip("fcntl")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    other = os.open(folder, os.O_RDONLY)  # as another process's fit holds it
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        with pytest.raises(CheckpointError, match="is in use by another fit"):
            AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=folder)
    finally:
        os.close(other)
    first = AutoRec(**{**SETTINGS, "epochs": 1}).fit(ratings, checkpoint_dir=folder)
    probe = os.open(folder, os.O_RDONLY)  # given back at the fit's end, the model alive
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(probe)
    assert first.fitted_ is not None


def test_the_folder_is_let_go_when_a_fit_fails_and_a_thread_is_refused(tmp_path, ratings,
                                                                       monkeypatch) -> None:
    """A fit ended by an exception kept the folder's lock while anything held the exception
    (Jupyter's sys.last_value): another process was told a fit trains into it. And a second
    fit in another thread of the same process shared the lock, and one of them failed with
    a missing file."""
    import threading

    fcntl = pytest.importorskip("fcntl")
    folder = tmp_path / "ck"

    def stop(entry: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as kept:  # the exception and its frames kept
        AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=folder, on_epoch_end=stop)
    probe = os.open(folder, os.O_RDONLY)  # as another process would take it
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(probe)
    assert kept.value is not None

    started, release = threading.Event(), threading.Event()

    def hold(entry: dict[str, Any]) -> None:
        started.set()
        release.wait(30)

    errors: list[BaseException] = []

    def first() -> None:
        try:
            AutoRec(**{**SETTINGS, "epochs": 1}).fit(ratings, checkpoint_dir=tmp_path / "t",
                                                      on_epoch_end=hold)
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(60)
        with pytest.raises(CheckpointError, match=r"in use by another fit \(another thread"):
            AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=tmp_path / "t", resume=True)
    finally:
        release.set()
        thread.join(60)
    assert errors == []


def test_a_failed_checkpoint_write_names_the_file(tmp_path, ratings, monkeypatch) -> None:
    """safetensors' own error on a full disk escaped: a traceback, status 1."""
    import safetensors.torch
    from safetensors import SafetensorError

    def full(*args: Any, **kwargs: Any) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(OSError, match=r"cannot write .*ck/train-000001\.safetensors: .*No "
                                      r"space left on device"):
        AutoRec(**SETTINGS).fit(ratings, checkpoint_dir=tmp_path / "ck")


def test_the_write_checks_probe_is_a_temporary_of_ours() -> None:
    """A process killed between making and deleting the write check's probe left a folder
    every later --resume refused as holding a file autorec did not write."""
    from autorec.checkpoint.manifest import _STALE

    assert _STALE.fullmatch(".autorec-probe-abc123.tmp")
