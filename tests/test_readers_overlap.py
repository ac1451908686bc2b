"""A test file that repeats (user, item) pairs of the training file gets a warning (issue 12)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys

import pytest

from autorec import DataError, read_ratings
from autorec.split import align, canonical_split

HEADER = "user_id,item_id,rating\n"


def test_test_pairs_also_in_training_are_warned_about(write_file, caplog) -> None:
    train = read_ratings(write_file("train.csv", HEADER + "1,10,4\n2,10,3\n1,11,5\n"))
    test = read_ratings(write_file("test.csv", HEADER + "1,10,2\n2,11,3\nx,10,1\n"))
    with caplog.at_level(logging.WARNING):
        align(train, test)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "test.csv: 1 of its 3 ratings" in message and "train.csv" in message
    assert "\n" not in message


def test_disjoint_parts_are_not_warned_about(write_file, caplog) -> None:
    train = read_ratings(write_file("train.csv", HEADER + "1,10,4\n2,10,3\n"))
    test = read_ratings(write_file("test.csv", HEADER + "1,11,2\n3,10,3\n"))
    with caplog.at_level(logging.WARNING):
        align(train, test)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_canonical_split_parts_are_disjoint(caplog, ml100k_dir) -> None:
    with caplog.at_level(logging.WARNING):
        canonical_split("u1", ml100k_dir, download=False)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_command_line_prints_the_warning_on_one_line(write_file, tmp_path) -> None:
    lines = "".join(f"u{u},i{i},{(u * i) % 5 + 1}\n" for u in range(12) for i in range(8))
    train = write_file("train.csv", HEADER + lines)
    test = write_file("test.csv", HEADER + "u1,i1,3\nu2,i3,4\nu50,i1,2\n")
    run = subprocess.run([sys.executable, "-m", "autorec", "train", "--train", str(train),
                          "--test", str(test), "--out", str(tmp_path / "o"), "--epochs", "1",
                          "--hidden", "4"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    warned = [line for line in run.stderr.splitlines() if "training data" in line]
    assert len(warned) == 1 and "2 of its 3 ratings" in warned[0]


def test_canonical_split_reads_its_files_with_the_duplicates_policy(tmp_path, ml100k_dir,
                                                                    capsys) -> None:
    """--duplicates (and the library's ``duplicates``) had no effect on --split u1: the
    files were read with the default whatever was asked."""
    from autorec.cli.main import main

    folder = tmp_path / "ml-100k"
    folder.mkdir()
    for name in ("u.data", "u.item", "u1.base", "u1.test"):
        shutil.copy(ml100k_dir / "ml-100k" / name, folder / name)
    first = (folder / "u1.base").read_text().splitlines()[0]
    user, item, _, stamp = first.split("\t")
    with open(folder / "u1.base", "a") as handle:
        handle.write(f"{user}\t{item}\t1\t{stamp}\n")
    with pytest.raises(DataError, match="duplicate rating"):
        canonical_split("u1", tmp_path)
    train, _ = canonical_split("u1", tmp_path, duplicates="last")
    assert len(train) == 80_000
    assert main(["train", "--data-dir", str(tmp_path), "--split", "u1", "--duplicates", "mean",
                 "--hidden", "4", "--epochs", "1", "--ranking", "none", "--validation", "0",
                 "--quiet"]) == 0, capsys.readouterr().err
