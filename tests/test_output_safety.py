"""No user file is ever lost: every output path is checked before any work (issue 12, item 3).

Refused with exit status 2 and one line naming the option and the path, before any data is
read: an output that is one of the command's inputs or inside the model folder it reads, a
device, a named pipe, a folder that is not an autorec model's for ``--save``, a file or folder
under a file or in a missing or unwritable folder, and outputs that collide. Symbolic links
are written through; ``-`` is standard output for ``predict`` and ``recommend``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autorec import AutoRec, load_model, read_ratings
from autorec._io import OutputPathError, atomic_write, check_output_file, check_output_folder
from autorec.cli.main import main
from autorec.exceptions import ModelFileError
from autorec.persist import JSON_FILE, WEIGHTS_FILE, save_model

FAST = ["--hidden", "8", "--epochs", "1", "--device", "cpu", "--quiet"]


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse exits by itself
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(code: int, out: str, err: str, *needles: str) -> None:
    """Exit 2, one line on stderr holding every needle, and no work done (no data read)."""
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "data:" not in out and "epoch" not in out and "tuning on" not in out, out


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry under ``folder``: file bytes, or the kind of anything else."""
    result: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            result[key] = f"link to {os.readlink(path)}"
        elif path.is_file():
            result[key] = path.read_bytes()
        else:
            result[key] = "folder" if path.is_dir() else "special"
    return result


@pytest.fixture(scope="module")
def ratings_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 users x 20 items, text user ids, about half observed, 1-5 stars."""
    rng = np.random.default_rng(5)
    lines = ["user_id,item_id,rating"]
    for u in range(30):
        for i in range(20):
            if rng.random() < 0.5 or i == u % 20:
                lines.append(f"u{u},{i + 1},{rng.integers(1, 6)}")
    path = tmp_path_factory.mktemp("data") / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def fitted(ratings_file: Path) -> AutoRec:
    return AutoRec(hidden=8, epochs=1, random_state=0, device="cpu",
                   validation=0.0).fit(read_ratings(ratings_file))


@pytest.fixture
def model_dir(fitted: AutoRec, tmp_path: Path) -> Path:
    return save_model(fitted, tmp_path / "model")


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.csv"
    path.write_text("user_id,item_id\nu1,3\nnobody,3\n")
    return path


# -- --save writes only autorec's files ------------------------------------------------------
def test_save_refuses_a_model_folder_that_also_holds_user_files(capsys, tmp_path, fitted,
                                                                ratings_file):
    folder = save_model(fitted, tmp_path / "mixed")
    (folder / "notes.txt").write_text("mine")
    (folder / "sub").mkdir()
    (folder / "sub" / "data.csv").write_text("also mine")
    before = snapshot(folder)
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", "--data", ratings_file, "--save", folder,
                                "--out", out, *FAST)
    assert_refused(code, stdout, err, "--save", str(folder), "notes.txt")
    assert snapshot(folder) == before
    assert not out.exists()  # nothing written, not even the metrics
    with pytest.raises(ModelFileError, match="holds other files"):
        save_model(fitted, folder)  # the library refuses too
    assert snapshot(folder) == before


@pytest.mark.parametrize("content", ['{"format": "someone-else"}', "not json", "[1, 2]"])
def test_save_refuses_a_model_json_that_is_not_autorec(tmp_path, fitted, content):
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / JSON_FILE).write_text(content)
    with pytest.raises(ModelFileError, match="not an autorec model"):
        save_model(fitted, folder)
    assert sorted(p.name for p in folder.iterdir()) == [JSON_FILE]
    assert (folder / JSON_FILE).read_text() == content


def test_save_refuses_lone_weights_and_foreign_metrics(tmp_path, fitted):
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / WEIGHTS_FILE).write_bytes(b"someone's weights")
    with pytest.raises(ModelFileError, match=f"no {JSON_FILE}"):
        save_model(fitted, lone)
    assert (lone / WEIGHTS_FILE).read_bytes() == b"someone's weights"
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(3, dtype=np.float32)}, lone / WEIGHTS_FILE,
              metadata={"format": "pytorch"})  # a real safetensors file, not autorec's
    with pytest.raises(ModelFileError, match=f"no {JSON_FILE}"):
        save_model(fitted, lone)
    ours = save_model(fitted, tmp_path / "ours")
    (ours / JSON_FILE).unlink()  # a save killed between its two renames, into an empty folder
    save_model(fitted, ours)  # recognised as autorec's weights: saved again
    load_model(ours)
    (ours / JSON_FILE).unlink()
    weights = (ours / WEIGHTS_FILE).read_bytes()
    (ours / WEIGHTS_FILE).write_bytes(weights[:len(weights) // 2])  # and cut short
    save_model(fitted, ours)  # still autorec's (its header says so): replaced
    load_model(ours)
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.json").write_text('{"accuracy": 0.9}')
    with pytest.raises(ModelFileError, match="not written by autorec"):
        save_model(fitted, other)
    assert sorted(p.name for p in other.iterdir()) == ["metrics.json"]
    # JSON nested past Python's stack: a RecursionError traceback from the probes
    deep = "[" * 100_000 + "]" * 100_000
    (other / "metrics.json").write_text(deep)
    with pytest.raises(ModelFileError, match="not written by autorec"):
        save_model(fitted, other)
    (other / "metrics.json").unlink()
    header = deep.encode()
    (other / WEIGHTS_FILE).write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(ModelFileError, match=f"no {JSON_FILE}"):
        save_model(fitted, other)


def test_replacing_a_model_keeps_the_metrics_beside_it(capsys, tmp_path, ratings_file):
    folder = tmp_path / "model"
    code, _, err = run_cli(capsys, "train", "--data", ratings_file, "--save", folder, "--out",
                           folder, *FAST)  # the same folder for both: their files differ
    assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.json", JSON_FILE, WEIGHTS_FILE]
    metrics = (folder / "metrics.json").read_bytes()
    code, _, err = run_cli(capsys, "train", "--data", ratings_file, "--save", folder,
                           "--hidden", "6", "--epochs", "1", "--device", "cpu", "--quiet")
    assert code == 0, err
    assert (folder / "metrics.json").read_bytes() == metrics  # not touched
    assert load_model(folder).get_params()["hidden"] == 6  # the model was replaced
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.json", JSON_FILE, WEIGHTS_FILE]
    code, _, err = run_cli(capsys, "train", "--data", ratings_file, "--save", folder, "--out",
                           folder, *FAST)  # and the first command again
    assert code == 0, err
    assert load_model(folder).get_params()["hidden"] == 8


def test_a_save_killed_while_writing_keeps_the_old_model(tmp_path, model_dir, fitted):
    before = snapshot(model_dir)
    script = f"""
import os, autorec, autorec.persist as persist, autorec.persist.folder as folder
model = autorec.load_model({str(model_dir)!r})
model.hidden = 4
real = folder._write_file
def die(path, content):
    real(path, content[:len(content) // 2])
    os._exit(9)
folder._write_file = die
persist.save_model(model, {str(model_dir)!r})
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == 9, result.stderr.decode()
    leftovers = [p.name for p in model_dir.iterdir() if p.name.startswith(".")]
    assert leftovers, "the killed writer's temporary file"
    assert {k: v for k, v in snapshot(model_dir).items() if not k.startswith(".")} == before
    load_model(model_dir)  # the old model, whole
    save_model(fitted, model_dir)  # a later save accepts the folder and clears the leftovers
    assert sorted(p.name for p in model_dir.iterdir()) == [JSON_FILE, WEIGHTS_FILE]


# -- no output over an input -----------------------------------------------------------------
def test_predict_output_equal_to_input_is_refused(capsys, tmp_path, model_dir, pairs):
    before = pairs.read_bytes()
    hard = tmp_path / "hard.csv"
    os.link(pairs, hard)
    soft = tmp_path / "soft.csv"
    soft.symlink_to(pairs)
    for output in (pairs, tmp_path / "." / "pairs.csv", hard, soft):
        code, out, err = run_cli(capsys, "predict", "--model", model_dir, "--input", pairs,
                                 "--output", output)
        assert_refused(code, out, err, "--output", str(output), "--input")
        assert pairs.read_bytes() == before


@pytest.mark.parametrize("name", [JSON_FILE, WEIGHTS_FILE, "recommendations.csv"])
def test_recommend_output_inside_the_model_folder_is_refused(capsys, model_dir, name):
    before = snapshot(model_dir)
    code, out, err = run_cli(capsys, "recommend", "--model", model_dir, "--user", "u1",
                             "--output", model_dir / name)
    assert_refused(code, out, err, "--output", str(model_dir / name), "--model")
    assert snapshot(model_dir) == before
    load_model(model_dir)


def test_predict_output_inside_the_model_folder_is_refused(capsys, model_dir, pairs):
    before = snapshot(model_dir)
    code, out, err = run_cli(capsys, "predict", "--model", model_dir, "--input", pairs,
                             "--output", model_dir / JSON_FILE)
    assert_refused(code, out, err, "--output", "--model")
    assert snapshot(model_dir) == before


def test_recommend_output_equal_to_items_is_refused(capsys, tmp_path, model_dir):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n1,One\n")
    code, out, err = run_cli(capsys, "recommend", "--model", model_dir, "--user", "u1",
                             "--items", items, "--output", items)
    assert_refused(code, out, err, "--output", "--items")
    assert items.read_text() == "item_id,title\n1,One\n"


def test_recommend_output_equal_to_the_data_sets_title_file_is_refused(capsys, tmp_path,
                                                                       ml100k_dir):
    """The titles of a builtin data set's model come from its item file in the data folder
    (--data-dir or $AUTOREC_DATA_DIR): an input too, which --output replaced."""
    data = tmp_path / "data"
    (data / "ml-100k").mkdir(parents=True)
    for name in ("u.data", "u.item"):
        (data / "ml-100k" / name).write_bytes((ml100k_dir / "ml-100k" / name).read_bytes())
    model = tmp_path / "model"
    assert main(["train", "--dataset", "ml-100k", "--data-dir", str(data), "--epochs", "1",
                 "--hidden", "4", "--ranking", "none", "--validation", "0",
                 "--quiet", "--device", "cpu", "--save", str(model)]) == 0
    capsys.readouterr()
    titles = data / "ml-100k" / "u.item"
    before = titles.read_bytes()
    code, out, err = run_cli(capsys, "recommend", "--model", model, "--user", "196",
                             "--data-dir", data, "--output", titles)
    assert_refused(code, out, err, "--output", "--data-dir", str(titles))
    assert titles.read_bytes() == before
    code, out, _ = run_cli(capsys, "recommend", "--model", model, "--user", "196",
                           "--data-dir", data, "--n", "2", "--output", tmp_path / "top.csv")
    assert code == 0, out
    import pandas as pd

    written = pd.read_csv(tmp_path / "top.csv")
    assert len(written) == 2 and written["title"].notna().all()  # the titles are still read


# -- devices, pipes, standard output -----------------------------------------------------------
def test_devices_and_pipes_are_refused(capsys, tmp_path, model_dir, pairs):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    null_link = tmp_path / "null.csv"
    null_link.symlink_to("/dev/null")
    for output in (fifo, Path("/dev/null"), null_link):
        code, out, err = run_cli(capsys, "predict", "--model", model_dir, "--input", pairs,
                                 "--output", output)
        assert_refused(code, out, err, "--output", str(output), "not a regular file",
                       "--output -")
        code, out, err = run_cli(capsys, "recommend", "--model", model_dir, "--user", "u1",
                                 "--output", output)
        assert_refused(code, out, err, "--output", str(output), "not a regular file")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert null_link.is_symlink()


def test_a_stream_of_the_process_is_refused_and_the_redirected_file_kept(tmp_path, model_dir,
                                                                        pairs):
    """``--output /dev/stdout`` with standard output appended to a log (``>> log``): the path
    leads through /proc/self/fd/1 to the log, which a write through it replaced whole (its
    earlier lines lost). Refused, as /dev/fd/N and a link to /dev/stdout are; the log is
    kept. A real process: the redirection is the point."""
    log = tmp_path / "log.txt"
    link = tmp_path / "out.csv"
    link.symlink_to("/dev/stdout")
    for output in ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1", str(link)):
        log.write_text("earlier line\n")
        with log.open("a") as handle:
            done = subprocess.run([sys.executable, "-m", "autorec", "predict", "--model",
                                   str(model_dir), "--input", str(pairs), "--output", output],
                                  stdout=handle, stderr=subprocess.PIPE, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert log.read_text() == "earlier line\n"
        assert "a stream of this process" in done.stderr and "--output -" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert link.is_symlink()


def test_the_library_never_replaces_a_pipe(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputPathError, match="named pipe"):
        atomic_write(fifo, lambda handle: handle.write("x"))
    with pytest.raises(OutputPathError, match="named pipe"):
        check_output_file(fifo)
    with pytest.raises(OutputPathError, match="not a folder"):
        check_output_folder(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_dash_writes_csv_to_standard_output(capsys, tmp_path, model_dir, pairs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "predict", "--model", model_dir, "--input", pairs,
                             "--output", "-")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "user_id,item_id,prediction,fallback" and len(lines) == 3
    assert lines[2].startswith("nobody,3,") and lines[2].endswith(",true")
    assert "wrote 2 predictions to standard output" in err
    code, out, err = run_cli(capsys, "recommend", "--model", model_dir, "--user", "u1",
                             "--n", "3", "--output", "-")
    assert code == 0, err
    lines = out.splitlines()  # the CSV alone, without the listing for people
    assert lines[0] == "user_id,rank,item_id,score,predicted_rating,title,fallback"
    assert len(lines) == 4
    assert all(line.startswith("u1,") for line in lines[1:])
    assert not (tmp_path / "-").exists()


def test_dash_is_refused_where_it_means_nothing(capsys, ratings_file):
    for option in ("--save", "--out", "--checkpoint-dir", "--plot"):
        code, out, err = run_cli(capsys, "train", "--data", ratings_file, option, "-", *FAST)
        assert_refused(code, out, err, option, "standard output")


# -- symbolic links: written through ---------------------------------------------------------
def test_a_link_to_a_file_is_written_through(capsys, tmp_path, model_dir, pairs):
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    real.chmod(0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    code, _, err = run_cli(capsys, "predict", "--model", model_dir, "--input", pairs,
                           "--output", link)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text().startswith("user_id,item_id,prediction,fallback")
    assert stat.S_IMODE(real.stat().st_mode) == 0o640  # a replaced file keeps its mode
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "new.csv")
    code, _, err = run_cli(capsys, "predict", "--model", model_dir, "--input", pairs,
                           "--output", dangling)
    assert code == 0, err
    assert dangling.is_symlink() and (tmp_path / "new.csv").is_file()


def test_a_link_to_a_folder_is_saved_into(capsys, tmp_path, ratings_file):
    real = tmp_path / "real-model"
    real.mkdir()
    link = tmp_path / "model-link"
    link.symlink_to(real)
    out = tmp_path / "out-link"
    out.symlink_to(real)
    code, _, err = run_cli(capsys, "train", "--data", ratings_file, "--save", link, "--out",
                           out, *FAST)
    assert code == 0, err
    assert link.is_symlink() and out.is_symlink()
    assert sorted(p.name for p in real.iterdir()) == ["metrics.json", JSON_FILE, WEIGHTS_FILE]
    load_model(link)


# -- bad places, checked before training ----------------------------------------------------
def test_save_under_a_file_is_refused_before_any_data_is_read(capsys, tmp_path, ml100k_dir):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", "--data-dir", ml100k_dir, "--save",
                                afile / "sub", "--out", out, *FAST)
    assert_refused(code, stdout, err, "--save", str(afile / "sub"), "not a folder")
    assert not out.exists() and afile.read_text() == "mine"


@pytest.mark.parametrize("option", ["--save", "--out", "--checkpoint-dir"])
def test_a_folder_path_going_up_from_a_missing_folder_is_refused(capsys, tmp_path,
                                                                 ratings_file, option):
    """missing/../other passed the check as a new folder (missing does not exist, so neither
    did the path); the run trained, then failed with 'Directory not empty' for a folder of
    the user's files, or left an empty missing/ beside a model it did not replace."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    given = tmp_path / "missing" / ".." / "other"
    code, out, err = run_cli(capsys, "train", "--data", ratings_file, option, given, *FAST)
    assert_refused(code, out, err, option, str(given), "goes up ('..') from")
    assert not (tmp_path / "missing").exists()
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("option", ["--save", "--out", "--checkpoint-dir"])
def test_folders_under_a_file_are_refused(capsys, tmp_path, ratings_file, option):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    code, out, err = run_cli(capsys, "train", "--data", ratings_file, option,
                             afile / "sub" / "deeper", *FAST)
    assert_refused(code, out, err, option, str(afile / "sub" / "deeper"), "not a folder")
    assert afile.read_text() == "mine"


def test_unwritable_places_are_refused_even_as_root(capsys, tmp_path, ratings_file, model_dir,
                                                    pairs):
    # /proc takes no new file, whoever asks (os.access says yes to root: the probe file tells)
    code, out, err = run_cli(capsys, "predict", "--model", model_dir, "--input", pairs,
                             "--output", "/proc/autorec-predictions.csv")
    assert_refused(code, out, err, "--output", "/proc", "not writable")
    for option in ("--save", "--out", "--checkpoint-dir"):
        code, out, err = run_cli(capsys, "train", "--data", ratings_file, option,
                                 "/proc/autorec-run", *FAST)
        assert_refused(code, out, err, option, "/proc", "not writable")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o555 folder")
def test_a_read_only_folder_is_refused(capsys, tmp_path, ratings_file):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, out, err = run_cli(capsys, "train", "--data", ratings_file, "--out", folder,
                                 *FAST)
        assert_refused(code, out, err, "--out", str(folder), "not writable")
    finally:
        folder.chmod(0o755)


def test_a_file_output_needs_its_folder(capsys, tmp_path, model_dir, pairs):
    output = tmp_path / "missing" / "p.csv"
    code, out, err = run_cli(capsys, "predict", "--model", model_dir, "--input", pairs,
                             "--output", output)
    assert_refused(code, out, err, "--output", str(output), "does not exist")
    assert not (tmp_path / "missing").exists()
    code, out, err = run_cli(capsys, "predict", "--model", model_dir, "--input", pairs,
                             "--output", pairs / "p.csv")
    assert_refused(code, out, err, "--output", "not a folder")


@pytest.mark.parametrize("checkpoint", ["same", "inside", "around"])
def test_save_and_checkpoint_folders_must_be_apart(capsys, tmp_path, ratings_file, checkpoint):
    save = tmp_path / "model"
    folder = {"same": save, "inside": save / "ckpt", "around": tmp_path}[checkpoint]
    code, out, err = run_cli(capsys, "train", "--data", ratings_file, "--save", save,
                             "--checkpoint-dir", folder, *FAST)
    assert_refused(code, out, err, "--checkpoint-dir", "--save", str(save))
    assert not save.exists()


def test_out_inside_the_model_folder_is_refused(capsys, tmp_path, ratings_file):
    save = tmp_path / "model"
    code, out, err = run_cli(capsys, "train", "--data", ratings_file, "--save", save, "--out",
                             save / "run", *FAST)
    assert_refused(code, out, err, "--out", "--save", str(save))


def test_plot_inside_the_model_folder_is_refused(capsys, tmp_path, ratings_file):
    pytest.importorskip("matplotlib")
    save = tmp_path / "model"
    code, out, err = run_cli(capsys, "train", "--data", ratings_file, "--save", save, "--plot",
                             save / "curves.png", *FAST)
    assert_refused(code, out, err, "--plot", "--save", str(save))


@pytest.mark.parametrize(("command", "folder_option"), [("train", "--out"),
                                                       ("train", "--save"),
                                                       ("evaluate", "--out")])
def test_a_file_output_on_a_folder_outputs_path_is_refused(capsys, tmp_path, ratings_file,
                                                           command, folder_option):
    """--out X --plot X trained in full, wrote the figure to the file X, then failed
    writing X/metrics.json (the figure left behind). Refused before any work, as is a
    folder output under a file output's path."""
    pytest.importorskip("matplotlib")
    same = tmp_path / "o1"
    code, out, err = run_cli(capsys, command, "--data", ratings_file, folder_option, same,
                             "--plot", same, *FAST)
    assert_refused(code, out, err, "--plot", folder_option,
                   "model folder" if folder_option == "--save" else "a folder this command")
    code, out, err = run_cli(capsys, command, "--data", ratings_file, folder_option,
                             tmp_path / "p.png" / "sub", "--plot", tmp_path / "p.png", *FAST)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert os.listdir(tmp_path) == []


def test_out_over_the_data_file_is_refused(capsys, tmp_path, ratings_file):
    folder = tmp_path / "d"
    folder.mkdir()
    data = folder / "metrics.json"  # a data file that happens to have --out's file name
    data.write_text("user_id,item_id,rating\n" + ratings_file.read_text().split("\n", 1)[1])
    before = data.read_bytes()
    code, out, err = run_cli(capsys, "train", "--data", data, "--sep", ",", "--out", folder,
                             *FAST)
    assert_refused(code, out, err, "--out", "--data")
    assert data.read_bytes() == before


def test_evaluate_checks_its_outputs_first(capsys, tmp_path, ratings_file):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    code, out, err = run_cli(capsys, "evaluate", "--data", ratings_file, "--out",
                             afile / "run", *FAST)
    assert_refused(code, out, err, "--out", "not a folder")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").mkdir()  # a folder where the file goes
    code, out, err = run_cli(capsys, "evaluate", "--data", ratings_file, "--out",
                             tmp_path / "run", *FAST)
    assert_refused(code, out, err, "--out", "results.json", "is a folder")


# -- tune ------------------------------------------------------------------------------------
@pytest.fixture
def tune_args(ratings_file: Path) -> list[object]:
    pytest.importorskip("optuna")
    return ["tune", "--data", ratings_file, "--trials", "1", *FAST]


def test_tune_out_into_a_missing_folder_or_a_pipe_is_refused(capsys, tmp_path, tune_args):
    study = tmp_path / "study.db"
    missing = tmp_path / "missing" / "best.toml"
    code, out, err = run_cli(capsys, *tune_args, "--study", study, "--out", missing)
    assert_refused(code, out, err, "--out", str(missing), "does not exist")
    fifo = tmp_path / "best.toml"
    os.mkfifo(fifo)
    code, out, err = run_cli(capsys, *tune_args, "--study", study, "--out", fifo)
    assert_refused(code, out, err, "--out", str(fifo), "named pipe")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert not study.exists()  # refused before the study was opened


def test_tune_study_paths_are_checked(capsys, tmp_path, tune_args):
    out = tmp_path / "best.toml"
    for study, needle in ((tmp_path / "missing" / "s.db", "does not exist"),
                          (tmp_path, "is a folder")):
        code, stdout, err = run_cli(capsys, *tune_args, "--study", study, "--out", out)
        assert_refused(code, stdout, err, "--study", str(study), needle)
    config = tmp_path / "mine.toml"
    config.write_text("hidden = 8\n")
    code, stdout, err = run_cli(capsys, *tune_args, "--study", tmp_path / "s.db", "--config",
                                config, "--out", config)
    assert_refused(code, stdout, err, "--out", "--config")
    assert config.read_text() == "hidden = 8\n"
    code, stdout, err = run_cli(capsys, *tune_args, "--study", tmp_path / "x.toml", "--out",
                                tmp_path / "x.toml")
    assert_refused(code, stdout, err, "--out", "--study")
    assert not out.exists()


def test_metrics_json_stays_standard_json_through_a_link(capsys, tmp_path, ratings_file):
    real = tmp_path / "kept.json"
    real.write_text("{}")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.json").symlink_to(real)
    code, _, err = run_cli(capsys, "train", "--data", ratings_file, "--out", folder, *FAST)
    assert code == 0, err
    assert (folder / "metrics.json").is_symlink()
    assert "rmse" in json.loads(real.read_text())


def test_a_plot_may_go_into_the_folder_out_makes(capsys, tmp_path, ratings_file):
    pytest.importorskip("matplotlib")
    out = tmp_path / "runs" / "one"
    code, _, err = run_cli(capsys, "train", "--data", ratings_file, "--out", out, "--plot",
                           out / "curves.png", *FAST)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "metrics.json"]
    code, stdout, err = run_cli(capsys, "train", "--data", ratings_file, "--plot",
                                tmp_path / "nowhere" / "curves.png", *FAST)
    assert_refused(code, stdout, err, "--plot", "does not exist")


@pytest.mark.parametrize("option, name", [("--plot", "fold-2"), ("--plot", "curves.png"),
                                          ("--out", "run")])
def test_an_output_inside_the_checkpoint_folder_is_refused(capsys, tmp_path, ratings_file,
                                                           option, name):
    """``--split kfold --checkpoint-dir CK --plot CK/fold-2`` trained every fold, then failed
    (fold 2's checkpoints are a folder there); any other file in CK stops the next
    ``--resume`` (it refuses files autorec did not write there)."""
    folder = tmp_path / "ck"
    folder.mkdir()  # an empty folder is a checkpoint folder to start
    code, out, err = run_cli(capsys, "train", "--data", ratings_file, "--split", "kfold",
                             "--folds", "2", "--checkpoint-dir", folder, option,
                             folder / name, *FAST)
    assert_refused(code, out, err, option, "--checkpoint-dir", str(folder))
    assert list(folder.iterdir()) == []
    # a checkpoint folder yet to be made: was "its folder ck2 does not exist"
    fresh = tmp_path / "ck2"
    code, out, err = run_cli(capsys, "train", "--data", ratings_file, "--checkpoint-dir",
                             fresh, option, fresh / name, *FAST)
    assert_refused(code, out, err, option, "inside the checkpoint folder")
    assert not fresh.exists()


def test_an_output_folder_given_as_a_link_to_a_folder_not_made_yet(capsys, tmp_path,
                                                                   ratings_file):
    """--out and --checkpoint-dir passed the checks, trained, then failed with 'cannot write
    outlink/metrics.json: File exists' (--save made the folder the link points to)."""
    out, checkpoints = tmp_path / "outlink", tmp_path / "cklink"
    out.symlink_to(tmp_path / "made-out")
    checkpoints.symlink_to(tmp_path / "made-ck")
    code, _, err = run_cli(capsys, "train", "--data", ratings_file, "--out", out,
                           "--checkpoint-dir", checkpoints, *FAST)
    assert code == 0, err
    assert (tmp_path / "made-out" / "metrics.json").is_file()
    assert (tmp_path / "made-ck" / "checkpoint.json").is_file()
    assert out.is_symlink() and checkpoints.is_symlink()


def test_an_output_file_ending_in_a_separator_is_refused(capsys, tmp_path, model_dir,
                                                          ratings_file):
    """``x.csv/`` is ``x.csv`` to ``Path``: an existing file was silently replaced, and a new
    name became a file where the slash asked for a folder."""
    kept = tmp_path / "x.csv"
    kept.write_text("keep\n")
    for output in (f"{kept}/", f"{tmp_path / 'newout'}/"):
        code, _, err = run_cli(capsys, "predict", "--model", model_dir, "--input",
                                 ratings_file, "--output", output)
        assert code == 2 and "ends with a separator, so it names a folder" in err, err
        assert len(err.strip().splitlines()) == 1
    assert kept.read_text() == "keep\n" and not (tmp_path / "newout").exists()
    with pytest.raises(OutputPathError, match="names a folder"):
        check_output_file(f"{kept}/")
