"""``autorec predict``, ``recommend`` and ``datasets`` on real files and real model folders."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autorec import AutoRec, read_ratings
from autorec.cli.main import main

FAST = {"hidden": 8, "epochs": 2, "batch_size": 16, "random_state": 0, "device": "cpu",
        "validation": 0.0}


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse exits by itself
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def ratings_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 users (text ids) x 25 items (integer ids), about half observed, 1-5 stars."""
    rng = np.random.default_rng(3)
    lines = ["user_id,item_id,rating"]
    for u in range(40):
        for i in range(25):
            if rng.random() < 0.5 or i == u % 25:
                lines.append(f"u{u},{i + 1},{rng.integers(1, 6)}")
    path = tmp_path_factory.mktemp("data") / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def model_dir(ratings_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = AutoRec(**FAST).fit(read_ratings(ratings_file))
    return model.save(tmp_path_factory.mktemp("models") / "model")


@pytest.fixture(scope="module")
def model(model_dir: Path) -> AutoRec:
    return AutoRec.load(model_dir)


# -- predict ------------------------------------------------------------------------------------
def test_predict_writes_predictions_and_flags_fallbacks(capsys, tmp_path, model_dir, model):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user_id,item_id,rating\nu1,3,4\nu2,5,1\nstranger,3,2\nu1,999,5\n"
                     "u3,007,1\n")
    out = tmp_path / "out" / "predictions.csv"
    out.parent.mkdir()  # a file output's folder must exist (a typo makes no new folders)
    code, stdout, err = run_cli(capsys, "predict", "--model", model_dir, "--input", pairs,
                                "--output", out)
    assert code == 0, err
    assert "wrote 5 predictions" in stdout and "3 fallback" in stdout
    frame = pd.read_csv(out, dtype={"user_id": str, "item_id": str})
    assert list(frame.columns) == ["user_id", "item_id", "prediction", "fallback"]
    assert list(frame["user_id"]) == ["u1", "u2", "stranger", "u1", "u3"]
    assert list(frame["item_id"]) == ["3", "5", "3", "999", "007"]  # ids as written
    assert list(frame["fallback"]) == [False, False, True, True, True]  # 007 is not item 7
    expected = model.predict(["u1", "u2", "stranger", "u1", "u3"], ["3", "5", "3", "999", "007"])
    np.testing.assert_array_equal(frame["prediction"].to_numpy(), expected)  # exact round trip
    assert "true" in out.read_text() and "True" not in out.read_text()


def test_dot_slash_dash_is_a_file_or_folder_named_dash(capsys, tmp_path, model_dir,
                                                        ratings_file, monkeypatch):
    """The refusal of "-" says "./- for a file named -", but Path("./-") is "-": predict and
    recommend wrote standard output instead, and --out/--plot refused ./- as they refuse -."""
    monkeypatch.chdir(tmp_path)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user_id,item_id\nu1,3\n")
    code, stdout, err = run_cli(capsys, "predict", "--model", model_dir, "--input", pairs,
                                "--output", "./-")
    assert code == 0, err
    assert "u1,3," in (tmp_path / "-").read_text() and "u1,3," not in stdout
    (tmp_path / "-").unlink()
    code, stdout, err = run_cli(capsys, "recommend", "--model", model_dir, "--user", "u1",
                                "--n", "2", "--output", "./-")
    assert code == 0, err
    assert (tmp_path / "-").read_text().startswith("user_id,rank,item_id")
    (tmp_path / "-").unlink()
    code, _, err = run_cli(capsys, "train", "--data", ratings_file, "--hidden", "4", "--epochs",
                           "1", "--ranking", "none", "--device", "cpu", "--quiet", "--out", "./-")
    assert code == 0, err
    assert (tmp_path / "-" / "metrics.json").is_file()


def test_sigterm_while_writing_leaves_no_temporary_file(tmp_path, model_dir):
    """SIGTERM (timeout, docker stop, a batch scheduler) ended the process where it stood: a
    partial hidden .NAME.*.tmp of tens of MB stayed beside the output."""
    import os
    import signal
    import subprocess
    import sys
    import time

    rng = np.random.default_rng(0)
    n = 2_000_000
    pd.DataFrame({"user_id": np.char.add("u", rng.integers(0, 40, n).astype(str)),
                  "item_id": rng.integers(1, 26, n)}).to_csv(tmp_path / "pairs.csv",
                                                             index=False)
    (tmp_path / "out").mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "autorec", "predict", "--model", str(model_dir), "--input",
         str(tmp_path / "pairs.csv"), "--output", str(tmp_path / "out" / "pred.csv")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob(".pred.csv.*")) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the file was written before the signal came")  # too fast to catch
    assert process.returncode == 143, err
    assert err.strip().splitlines() == ["autorec: terminated"], err
    assert list((tmp_path / "out").iterdir()) == []


def test_sigterm_during_the_first_imports_says_terminated(tmp_path):
    """The handler came after the command's imports (about 1.5 s): a SIGTERM before then
    ended the command with no line (status -15)."""
    import subprocess
    import sys

    script = """
import builtins, os, signal, sys
from autorec.cli import main as cli_main
real_import, sent = builtins.__import__, []
def signalling_import(name, *args, **kwargs):
    if name == "numpy" and not sent:
        sent.append(name)
        os.kill(os.getpid(), signal.SIGTERM)
    return real_import(name, *args, **kwargs)
builtins.__import__ = signalling_import
sys.exit(cli_main.main(["datasets"]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 143, (done.returncode, done.stderr)
    assert done.stderr.strip().splitlines() == ["autorec: terminated"], done.stderr
    assert done.stdout == ""


def test_a_signal_while_train_writes_comes_after_all_its_outputs(tmp_path):
    """SIGTERM (or Ctrl-C) while train wrote its outputs, one after another, left the new
    model beside the last run's metrics.json (or neither): they are now written with the
    signals held, and the signal is acted on after them."""
    import subprocess
    import sys

    rows = [f"{u},{i},{1 + (u * i) % 5}" for u in range(12) for i in range(5)]
    (tmp_path / "r.csv").write_text("user_id,item_id,rating\n" + "\n".join(rows) + "\n")
    script = """
import os, signal, sys
from autorec.cli import main as cli_main
from autorec.estimator import AutoRec
save = AutoRec.save
def signalled_save(self, *args, **kwargs):  # a real SIGTERM, as the save starts
    os.kill(os.getpid(), signal.SIGTERM)
    return save(self, *args, **kwargs)
AutoRec.save = signalled_save
sys.exit(cli_main.main(["train", "--data", "r.csv", "--epochs", "1", "--hidden", "4",
                        "--ranking", "none", "--device", "cpu", "--quiet", "--save", "m",
                        "--out", "o"]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 143, done.stderr
    assert done.stderr.strip().splitlines() == ["autorec: terminated"], done.stderr
    assert (tmp_path / "m" / "model.json").is_file()
    assert (tmp_path / "o" / "metrics.json").is_file()
    assert "saved the model to m" in done.stdout and "wrote o/metrics.json" in done.stdout


def test_predict_tab_separated_without_header(capsys, tmp_path, model_dir):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("u1\t3\nu4\t4\n")
    out = tmp_path / "p.csv"
    code, _, err = run_cli(capsys, "predict", "--model", model_dir, "--input", pairs,
                           "--output", out, "--no-header")
    assert code == 0, err
    assert len(pd.read_csv(out)) == 2
    # the fields are taken in order: a --columns that names them (swapped, say) is refused
    code, _, err = run_cli(capsys, "predict", "--model", model_dir, "--input", pairs,
                           "--output", tmp_path / "q.csv", "--no-header", "--columns",
                           "item_id,user_id")
    assert code == 2 and "names header columns" in err
    assert not (tmp_path / "q.csv").exists()


@pytest.mark.parametrize("content, needles", [
    ("user,item_id\nu1,3\n", ["pairs.csv", "field 'user_id'", "missing column"]),
    ("user_id,item_id\nu1,3\nu2,caf\xe9\n", ["pairs.csv", "line 3", "not UTF-8"]),
    ("user_id,item_id\nu1,3\n,4\n", ["line 3", "field 'user_id'", "missing value"]),
    ("user_id,item_id\nu1,3,9\n", ["line 2", "expected 2 fields, found 3"]),
    ("user_id,item_id\n", ["pairs.csv", "no pairs"]),
    ("", ["pairs.csv", "empty file"]),
])
def test_predict_bad_input_one_line_nothing_written(capsys, tmp_path, model_dir, content,
                                                    needles):
    pairs = tmp_path / "pairs.csv"
    pairs.write_bytes(content.encode("latin-1"))
    out = tmp_path / "predictions.csv"
    out.write_text("earlier\n")
    code, _, err = run_cli(capsys, "predict", "--model", model_dir, "--input", pairs,
                           "--output", out)
    assert_one_line_error(code, err, "autorec predict: error:", *needles)
    assert out.read_text() == "earlier\n"  # left as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.csv", "predictions.csv"]


def test_predict_refuses_bad_model_folders(capsys, tmp_path, model_dir):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user_id,item_id\nu1,3\n")
    out = tmp_path / "p.csv"
    code, _, err = run_cli(capsys, "predict", "--model", tmp_path / "nope", "--input", pairs,
                           "--output", out)
    assert_one_line_error(code, err, "no such model folder")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in ("model.json", "model.safetensors"):
        (damaged / name).write_bytes((model_dir / name).read_bytes())
    data = bytearray((damaged / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (damaged / "model.safetensors").write_bytes(bytes(data))
    code, _, err = run_cli(capsys, "predict", "--model", damaged, "--input", pairs,
                           "--output", out)
    assert_one_line_error(code, err, "model.safetensors", "checksum mismatch")
    code, _, err = run_cli(capsys, "predict", "--model", model_dir, "--input",
                           tmp_path / "absent.csv", "--output", out)
    assert_one_line_error(code, err, "absent.csv", "no such file")
    assert not out.exists()


def test_predict_option_errors(capsys, tmp_path, model_dir):
    code, _, err = run_cli(capsys, "predict", "--model", model_dir, "--input", "x.csv")
    assert_one_line_error(code, err, "--output")
    code, _, err = run_cli(capsys, "predict", "--model", model_dir, "--input", "x.csv",
                           "--output", "y.csv", "--columns", "a,b,c")
    assert_one_line_error(code, err, "--columns")
    code, _, err = run_cli(capsys, "predict", "--model", model_dir, "--input", "x.csv",
                           "--output", "y.csv", "--columns", "")  # was the default, silently
    assert_one_line_error(code, err, "--columns", "got ''")


# -- recommend ----------------------------------------------------------------------------------
def test_recommend_prints_rank_item_score_title(capsys, tmp_path, model_dir, model,
                                                ratings_file):
    titles = tmp_path / "titles.csv"
    titles.write_text("item_id,title\n" + "".join(f'{i},"Film {i}, the"\n' for i in range(1, 26)))
    out = tmp_path / "recs.csv"
    code, stdout, err = run_cli(capsys, "recommend", "--model", model_dir, "--user", "u1",
                                "--user", "stranger", "--n", "4", "--items", titles,
                                "--output", out)
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0] == "user u1:"
    assert lines[5].startswith("user stranger (unknown to the model")
    expected = model.recommend(["u1"], n=4)
    for line, row in zip(lines[1:5], expected.itertuples(), strict=True):
        rank, item, score, rating, title = line.split(maxsplit=4)
        assert (int(rank), item, title) == (row.rank, str(row.item_id),
                                            f"Film {row.item_id}, the")
        assert float(score) == pytest.approx(row.score, abs=1e-4)
        assert float(rating) == pytest.approx(row.predicted_rating, abs=0.005)
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["user_id", "rank", "item_id", "score", "predicted_rating", "title",
                             "fallback"]
    assert len(rows) == 8 and rows[0]["title"] == f"Film {expected['item_id'][0]}, the"
    assert [r["fallback"] for r in rows] == ["false"] * 4 + ["true"] * 4
    rated = set(read_ratings(ratings_file).to_dataframe().query("user_id == 'u1'")["item_id"])
    assert not {int(r["item_id"]) for r in rows[:4]} & rated  # seen items left out


def test_recommend_include_seen_and_titles_from_builtin_set(capsys, tmp_path, ratings_file):
    model = AutoRec(**FAST).fit(read_ratings(ratings_file))
    folder = model.save(tmp_path / "model", dataset="ml-100k")
    data = tmp_path / "data" / "ml-100k"
    data.mkdir(parents=True)
    (data / "u.data").write_text("1\t1\t5\t0\n")
    (data / "u.item").write_bytes("".join(f"{i}|Café {i} (1995)|01-Jan-1995||http://x|0\n"
                                          for i in range(1, 26)).encode("latin-1"))
    code, stdout, err = run_cli(capsys, "recommend", "--model", folder, "--user", "u1",
                                "--n", "25", "--include-seen", "--data-dir", tmp_path / "data")
    assert code == 0, err
    lines = stdout.splitlines()
    assert len(lines) == 26 and all("Café" in line for line in lines[1:])
    code, stdout, _ = run_cli(capsys, "recommend", "--model", folder, "--user", "u1",
                              "--n", "25", "--data-dir", tmp_path / "data")
    assert 1 < len(stdout.splitlines()) < 26  # seen items left out by default
    # a --data-dir without the data set was ignored without a word (no titles, status 0)
    (tmp_path / "other").mkdir()
    code, _, err = run_cli(capsys, "recommend", "--model", folder, "--user", "u1",
                           "--data-dir", tmp_path / "other")
    assert code == 2 and f"--data-dir {tmp_path / 'other'} holds no copy of ml-100k" in err, err


def test_recommend_without_titles(capsys, model_dir):
    code, stdout, _ = run_cli(capsys, "recommend", "--model", model_dir, "--user", "u2",
                              "--n", "2")
    assert code == 0
    assert [len(line.split()) for line in stdout.splitlines()[1:]] == [4, 4]


def test_recommend_bad_items_file_writes_nothing(capsys, tmp_path, model_dir):
    titles = tmp_path / "titles.csv"
    titles.write_text("id,name\n1,x\n")
    out = tmp_path / "recs.csv"
    code, _, err = run_cli(capsys, "recommend", "--model", model_dir, "--user", "u1",
                           "--items", titles, "--output", out)
    assert_one_line_error(code, err, "autorec recommend: error:", "titles.csv",
                          "missing column")
    assert not out.exists()
    code, _, err = run_cli(capsys, "recommend", "--model", model_dir, "--user", "u1",
                           "--n", "0")
    assert_one_line_error(code, err, "--n")
    code, _, err = run_cli(capsys, "recommend", "--model", model_dir)
    assert_one_line_error(code, err, "--user")


# -- datasets -----------------------------------------------------------------------------------
def test_datasets_lists_builtin_sets_and_local_copies(capsys, tmp_path):
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "ratings.dat").write_text("1::1::5::0\n")
    code, stdout, _ = run_cli(capsys, "datasets", "--data-dir", tmp_path)
    assert code == 0
    lines = {line.split()[0]: line for line in stdout.splitlines()[1:]}
    assert set(lines) == {"ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m",
                          "ml-latest-small"}
    assert "100,000" in lines["ml-100k"] and "943" in lines["ml-100k"]
    assert f"yes ({tmp_path / 'ml-1m'})" in lines["ml-1m"]
    assert " no " in lines["ml-100k"] + " "


def test_model_json_is_what_the_cli_reads(model_dir):
    info = json.loads((model_dir / "model.json").read_text())
    assert info["users"]["storage"] == "text" and info["items"]["storage"] == "int64"


@pytest.mark.parametrize("command", [["datasets"], ["train", "--epochs", "1"],
                                     ["recommend", "--model", "m", "--user", "1"]])
def test_a_data_dir_that_is_not_a_folder_is_refused(capsys, tmp_path, command):
    """A misspelt --data-dir was passed over without a word: datasets listed everything as
    'no', train went on to download (or reported the data set missing)."""
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for path, needle in ((tmp_path / "missing", "no such folder"), (a_file, "not a folder"),
                         ("", "expected a folder, got ''")):  # "" was the current folder
        code, stdout, err = run_cli(capsys, *command, "--data-dir", path)
        assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1, err
        assert "--data-dir" in err and needle in err and str(path) in err


def test_recommend_prints_an_id_with_a_line_break_on_its_own_line(capsys, tmp_path):
    """"n\\nl7" split an item's line in two ("one line per item" in --help)."""
    rows = [f'u{u},"n\nl{i}",{1 + (u * i) % 5}' for u in range(6) for i in range(9)]
    data = tmp_path / "nl.csv"
    data.write_text("user_id,item_id,rating\n" + "\n".join(rows) + "\n")
    model = tmp_path / "m"
    code, _, err = run_cli(capsys, "train", "--data", data, "--epochs", "1", "--hidden", "4",
                           "--ranking", "none", "--validation", "0", "--device", "cpu",
                           "--quiet", "--save", model, "--test-ratio", "0.5")
    assert code == 0, err
    code, out, err = run_cli(capsys, "recommend", "--model", model, "--user", "u0", "--n", "3")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "user u0:" and len(lines) == 4, out
    assert all("'n\\nl" in line for line in lines[1:]), out


@pytest.mark.parametrize("command", [["predict", "--model", "m", "--input", "p.csv"],
                                     ["recommend", "--model", "m", "--user", "1"],
                                     ["train", "--data", "r.csv", "--plot"],
                                     ["tune", "--data", "r.csv", "--study"]])
def test_an_empty_output_file_name_is_refused(capsys, command):
    # "" was the current folder: "--output: . is a folder; give a file name"
    args = [*command, ""] if command[-1].startswith("--") else [*command, "--output", ""]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1, err
    assert "expected a file name, got ''" in err


@pytest.mark.parametrize("flag", [["--data-dir", "."], ["--download"], ["--no-download"]])
def test_builtin_data_set_options_with_a_ratings_file_are_refused(capsys, tmp_path, flag):
    # they were ignored without a word (as --sep with a builtin set is refused)
    code, stdout, err = run_cli(capsys, "train", "--data", tmp_path / "r.csv", *flag,
                                "--epochs", "1")
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1, err
    assert "is for builtin data sets (--dataset)" in err and flag[0].split("/")[0] in err


def test_recommend_strips_a_user_id_as_the_readers_do(capsys, tmp_path):
    """--user stripped every Unicode space: "x\\u00a0" (an id of the file) became "x", another
    user, whose list was printed, with items "x\\u00a0" had rated."""
    from autorec import load_model

    rows = [f"{uid},{i},{1 + (u * i) % 5}" for u, uid in enumerate(["x", "x\u00a0", "y"])
            for i in range(6) if (u + i) % 3]
    data = tmp_path / "nbsp.csv"
    data.write_text("user_id,item_id,rating\n" + "\n".join(rows) + "\n", encoding="utf-8")
    model = tmp_path / "m"
    code, _, err = run_cli(capsys, "train", "--data", data, "--epochs", "1", "--hidden", "4",
                           "--ranking", "none", "--validation", "0", "--device", "cpu",
                           "--quiet", "--save", model, "--test-ratio", "0.2")
    assert code == 0, err
    code, out, err = run_cli(capsys, "recommend", "--model", model, "--user", "x\u00a0 ",
                             "--n", "2")
    assert code == 0, err
    expected = load_model(model).recommend(["x\u00a0"], n=2)["item_id"].tolist()
    assert [int(line.split()[1]) for line in out.strip().splitlines()[1:]] == expected, out


def test_kfold_ranking_means_leave_out_folds_without_a_relevant_rating(capsys, tmp_path):
    """One fold without a relevant test rating made every ranking mean null in metrics.json
    (evaluate averaged over the others)."""
    data = tmp_path / "r5.csv"
    data.write_text("user_id,item_id,rating\n1,1,3\n2,1,4\n1,2,5\n2,2,1\n3,1,2\n")
    code, out, err = run_cli(capsys, "train", "--data", data, "--split", "kfold", "--epochs",
                             "1", "--hidden", "4", "--device", "cpu", "--quiet", "--out",
                             tmp_path / "k")
    assert code == 0, err
    metrics = json.loads((tmp_path / "k" / "metrics.json").read_text())
    folds = [fold["ndcg@10"] for fold in metrics["folds"]]
    ranked = [value for value in folds if value is not None]
    assert 0 < len(ranked) < len(folds)
    assert metrics["n_ranked_splits"] == len(ranked)
    assert metrics["ndcg@10"] == pytest.approx(sum(ranked) / len(ranked))
    assert f"mean over the {len(ranked)} of {len(folds)} folds with a relevant" in out
    # the users each fold's ranking figures averaged over (n_users is the model's count)
    assert [fold["n_ranked_users"] > 0 for fold in metrics["folds"]] == [
        value is not None for value in folds]
    assert all(fold["n_users"] >= fold["n_ranked_users"] for fold in metrics["folds"])


def test_train_says_when_no_test_user_has_a_relevant_rating(capsys, tmp_path):
    """It printed 'precision nan, recall nan, ...'."""
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("user_id,item_id,rating\n1,1,5\n1,2,1\n2,1,4\n2,2,2\n3,1,1\n3,3,5\n")
    test.write_text("user_id,item_id,rating\n1,3,1\n2,3,2\n")
    code, out, err = run_cli(capsys, "train", "--train", train, "--test", test, "--epochs", "1",
                             "--hidden", "4", "--validation", "0", "--ranking", "none",
                             "--device", "cpu", "--quiet")
    assert code == 0, err
    assert "ranking at 10: no test user has a relevant rating (at least 4); no figures" in out
    assert "nan" not in out


def test_a_failed_write_to_standard_output_is_named(monkeypatch) -> None:
    """``--output - > /dev/full`` said only 'No space left on device'."""
    import errno
    import io
    import sys

    import pandas as pd

    from autorec.cli import _common

    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sys, "stdout", Full())
    with pytest.raises(OSError, match=r"^\[Errno 28\] cannot write to standard output "
                                      r"\(--output -\): No space left on device$"):
        _common.write_csv(pd.DataFrame({"a": [1]}), None)


def test_fold_sizes_and_the_split_are_reported_as_they_were(capsys, tmp_path):
    """'N train / M test ratings per fold' gave the first fold's sizes when folds differ by
    one; metrics.json's config.split was null for the default random split."""
    rows = [f"{u},{i},{1 + (u * i) % 5}" for u in range(12) for i in range(5)]  # 60 ratings
    data = tmp_path / "r.csv"
    data.write_text("user_id,item_id,rating\n" + "\n".join(rows) + "\n")
    common = ["--data", str(data), "--epochs", "1", "--hidden", "4", "--ranking", "none",
              "--device", "cpu", "--quiet"]
    code, out, err = run_cli(capsys, "train", *common, "--split", "kfold", "--folds", "7",
                             "--out", str(tmp_path / "k"))
    assert code == 0, err
    assert "7-fold: 51-52 train / 8-9 test ratings per fold" in out.splitlines()[0]
    assert json.loads((tmp_path / "k" / "metrics.json").read_text())["config"]["split"] == "kfold"
    code, out, err = run_cli(capsys, "train", *common, "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["config"]["split"] == "random"


def test_recommend_titles_stay_on_their_line_and_data_dir_is_not_ignored(capsys, tmp_path,
                                                                          model_dir):
    """A title with a line break split its item's line (ids were already shown with
    repr); a UTF-16 titles file was 'not UTF-8 text (byte 0xff)'; --data-dir was ignored
    without a word beside --items or for a model of no builtin data set."""
    titles = tmp_path / "titles.csv"
    titles.write_text("item_id,title\n" + "".join(f'{i},"Two\nLines {i}"\n'
                                                  for i in range(1, 26)))
    code, out, err = run_cli(capsys, "recommend", "--model", model_dir, "--user", "u1",
                             "--n", "3", "--items", titles)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 4 and all("'Two\\nLines " in line for line in lines[1:]), out
    wide = tmp_path / "u16.csv"
    wide.write_bytes("item_id,title\n1,Hello\n".encode("utf-16"))
    code, _, err = run_cli(capsys, "recommend", "--model", model_dir, "--user", "u1",
                           "--items", wide)
    assert code == 2 and f"{wide}: is UTF-16 text; save it as UTF-8" in err, err
    for extra in ([], ["--items", titles]):
        code, _, err = run_cli(capsys, "recommend", "--model", model_dir, "--user", "u1",
                               "--data-dir", tmp_path, *extra)
        assert code == 2 and "--data-dir" in err, err


def test_outputs_named_as_another_format_or_to_a_closed_stdout_are_refused(capsys, tmp_path,
                                                                           model_dir,
                                                                           ratings_file):
    """out.csv.gz and out.parquet got plain CSV that autorec's readers then refused; with
    standard output closed, --output - was a traceback and recommend said nothing, status 0."""
    import os
    import subprocess
    import sys

    for command in (["predict", "--model", model_dir, "--input", ratings_file],
                    ["recommend", "--model", model_dir, "--user", "u1"]):
        for name in ("out.csv.gz", "out.parquet", "out.ZIP"):
            target = tmp_path / name
            code, _, err = run_cli(capsys, *command, "--output", target)
            assert code == 2 and "the output is plain CSV text" in err, err
            assert not target.exists()
    for extra in (["--output", "-"], []):
        for command in (["predict", "--model", str(model_dir), "--input", str(ratings_file)],
                        ["recommend", "--model", str(model_dir), "--user", "u1"]):
            if command[0] == "predict" and not extra:
                continue  # predict always names its --output
            done = subprocess.run([sys.executable, "-m", "autorec", *command, *extra],
                                  stdout=None, stderr=subprocess.PIPE, text=True, timeout=120,
                                  preexec_fn=lambda: os.close(1))
            assert done.returncode == 2, (command, extra, done.stderr)
            assert "standard output" in done.stderr and "closed" in done.stderr
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
