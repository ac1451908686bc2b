"""The Netflix Prize's rating files (``MOVIE:`` blocks of ``customer,rating,date`` lines),
recognised by their first line, read block by block, errors named by file line."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pandas as pd
import pytest

from autorec import read_ratings
from autorec.cli.main import main
from autorec.data import netflix
from autorec.exceptions import DataError

PRIZE = ("1:\n1488844,3,2005-09-06\n822109,5,2005-05-13\n885013,4,2005-10-19\n"
         "2:\r\n2059652,4,2005-09-05\r\n1488844,2,2005-04-18\r\n\n"
         "30:\n822109,1,2004-02-02\n")


def triples(ratings) -> list[tuple]:
    return list(zip(ratings.user_ids.tolist(), ratings.item_ids.tolist(),
                    ratings.rating.tolist(), strict=True))


def test_the_prize_format_is_read_as_movie_blocks(write_file) -> None:
    expected = [(1488844, 1, 3.0), (822109, 1, 5.0), (885013, 1, 4.0), (2059652, 2, 4.0),
                (1488844, 2, 2.0), (822109, 30, 1.0)]
    path = write_file("combined_data_1.txt", PRIZE)
    ratings = read_ratings(path)
    assert triples(ratings) == expected
    assert ratings.users.raw_ids.dtype.kind == "i" and ratings.items.raw_ids.dtype.kind == "i"
    packed = path.with_suffix(".txt.gz")
    packed.write_bytes(gzip.compress(PRIZE.encode()))
    assert triples(read_ratings(packed)) == expected
    assert triples(read_ratings(write_file("mv_0000001.txt", "\ufeff" + PRIZE))) == expected


def test_blocks_carry_the_movie_over_and_text_customers_stay_text(write_file,
                                                                   monkeypatch) -> None:
    """A movie's ratings cut between two of pyarrow's blocks keep their movie; one customer
    id that is not an integer makes the column text (ids compare by text)."""
    from pyarrow import csv

    opened = csv.open_csv

    def small_blocks(raw, read_options, **kwargs):
        read_options.block_size = 64
        return opened(raw, read_options=read_options, **kwargs)

    monkeypatch.setattr(csv, "open_csv", small_blocks)
    lines = ["7:"] + [f"{u},{1 + u % 5},2005-01-01" for u in range(40)] + ["8:", "c-9,5"]
    ratings = read_ratings(write_file("r.txt", "\n".join(lines) + "\n"))
    assert triples(ratings)[:40] == [(str(u), 7, float(1 + u % 5)) for u in range(40)]
    assert triples(ratings)[40] == ("c-9", 8, 5.0)


@pytest.mark.parametrize(("text", "line", "words"), [
    ("1:\n5,3,2005\n6,x,2005\n", 3, "'x' is not a number"),
    # text pandas reads and pyarrow does not: an IndexError traceback
    ("1:\n5,3\v,2005\n6,4,2005\n", 2, "'3\\x0b' is not a number"),
    ("1:\n5,3,2005\n6,4\f,2005\n7,x,2005\n", 3, "'4\\x0c' is not a number"),
    ("1:\n5,3,2005\n\n6\n", 4, "found 1"),
    ("1:\n5,3,2005,extra\n", 2, "found 4"),
    ("1:\n5,3\nx2:\n", 3, "movie line"),
    ("1:\n5,3\n2:\n5,4\n5,1\n", 5, "duplicate rating of user 5 for item 2 (first at line 4)"),
    ("1:\n5,nan\n", 2, "missing rating"),
    ("1:\n5,1e39\n", 2, ""),
])
def test_errors_name_the_file_line(write_file, text: str, line: int, words: str) -> None:
    path = write_file("bad.txt", text)
    with pytest.raises(DataError) as caught:
        read_ratings(path)
    message = str(caught.value)
    assert str(path) in message and re.search(rf"\bline {line}\b", message), message
    assert words in message and "\n" not in message


def test_other_text_files_are_not_taken_for_the_prize_format() -> None:
    assert netflix.is_netflix(b"123:") and netflix.is_netflix(b" 7: \r")
    for line in (b"user_id,item_id,rating", b"1:2", b"a:", b"1::2::5", b":"):
        assert not netflix.is_netflix(line)


def test_train_reads_a_prize_file(capsys, tmp_path) -> None:
    rng = np.random.default_rng(0)
    blocks = []
    for movie in range(1, 21):
        users = rng.choice(60, 25, replace=False)
        blocks.append(f"{movie}:\n" + "".join(f"{u},{rng.integers(1, 6)},2005-01-01\n"
                                                for u in users))
    path = tmp_path / "combined_data_1.txt"
    path.write_text("".join(blocks))
    assert main(["train", "--data", str(path), "--epochs", "2", "--hidden", "8", "--quiet",
                 "--device", "cpu", "--ranking", "none", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "combined_data_1.txt, random 0.9/0.1 split: 450 train / 50 test" in out
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["n_train"] + metrics["n_test"] == 500


def test_ids_that_are_not_canonical_integers_stay_text(write_file) -> None:
    """The reader cast ids to integers: 0100 and 100 became one customer (a duplicate
    rating), 01: and 1: one movie; in every other reader they are two ids (README)."""
    ratings = read_ratings(write_file("z.txt", "1:\n0100,3,2005\n100,5,2005\n01:\n100,2\n"))
    assert triples(ratings) == [("0100", "1", 3.0), ("100", "1", 5.0), ("100", "01", 2.0)]
    plain = read_ratings(write_file("p.txt", "1:\n100,3,2005\n2:\n7,4\n"))
    assert plain.users.raw_ids.dtype.kind == "i" and plain.items.raw_ids.dtype.kind == "i"


@pytest.mark.parametrize("packed", [False, True])
def test_a_byte_that_is_not_utf8_is_named_by_its_line(tmp_path, packed) -> None:
    """It was 'not a readable Netflix Prize file (... invalid UTF8 data)', with no line."""
    data = b"1:\n100,3,2005-09-06\n2:\n10\xe90,4,2005-01-01\n300,2,2005\n"
    path = tmp_path / ("u.txt.gz" if packed else "u.txt")
    path.write_bytes(gzip.compress(data) if packed else data)
    with pytest.raises(DataError) as caught:
        read_ratings(path)
    message = str(caught.value)
    assert re.search(r"\bline 4\b", message) and "not UTF-8" in message and "0xe9" in message


def test_predict_reads_pairs_from_a_prize_file(write_file) -> None:
    """`predict --input` takes any file --data takes; a prize file was read as a CSV with a
    column named '1:'."""
    from autorec.data.readers import read_pairs

    users, items = read_pairs(write_file("pairs.txt", "1:\n196,3,2005\n2:\n0186,4\n"))
    assert users.tolist() == ["196", "0186"] and items.tolist() == [1, 2]


def test_pairs_read_the_prizes_probe_and_qualifying_files(write_file) -> None:
    """probe.txt (customer lines) and qualifying.txt (customer,date) were refused: the
    'ratings ignored' of a pairs file were read and checked."""
    from autorec.data.readers import read_pairs

    for text in ("1:\n10\n11\n2:\n10\n", "1:\n10,2005-09-06\n11,2005-01-01\n2:\n10,2005\n",
                 "1:\n10,x,2005\n11,,2005\n2:\n10,5\n"):
        users, items = read_pairs(write_file("q.txt", text))
        assert users.tolist() == [10, 11, 10] and items.tolist() == [1, 1, 2], text
    with pytest.raises(DataError, match="line 2"):
        read_pairs(write_file("q.txt", "1:\n10,a,b,c\n"))


def test_text_file_options_for_another_format_are_refused(write_file, tmp_path) -> None:
    """--sep, --no-header and --columns were ignored without a word for a Netflix Prize or
    Parquet file (as they are refused for a builtin data set)."""
    from autorec.data.readers import read_pairs

    prize = write_file("r.txt", "1:\n5,3,2005\n6,4,2005\n")
    for options, words in (({"sep": ";"}, "sep (--sep) does not apply"),
                           ({"header": False}, "header (--no-header) does not apply"),
                           ({"columns": ("u", "i", "r")}, "columns (--columns) does not apply")):
        with pytest.raises(ValueError, match=re.escape(words)):
            read_ratings(prize, **options)
    with pytest.raises(ValueError, match="is a Netflix Prize file, read in its own format"):
        read_pairs(prize, sep=";")
    parquet = tmp_path / "r.parquet"
    pd.DataFrame({"user_id": [1, 2], "item_id": [1, 1], "rating": [3.0, 4.0]}).to_parquet(parquet)
    with pytest.raises(ValueError, match=r"is a Parquet file, read in its own format: sep "
                                         r"\(--sep\), header \(--no-header\) do not apply"):
        read_ratings(parquet, sep=";", header=False)
    assert len(read_ratings(prize)) == 2 and len(read_ratings(parquet)) == 2


def test_a_large_netflix_file_reports_its_progress_and_logs(tmp_path, monkeypatch, caplog) -> None:
    # as a large CSV does (it said nothing while it read, and logged no "ratings read" line)
    from autorec.data import readers

    monkeypatch.setattr(netflix, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(readers, "PROGRESS_MIN_BYTES", 0)
    path = tmp_path / "big.txt"
    path.write_text("".join(f"{m}:\n" + "".join(f"{u},{(u + m) % 5 + 1},2005-09-06\n"
                                                for u in range(1, 301)) for m in range(1, 41)))
    reports = []
    with caplog.at_level("INFO", logger="autorec.data.readers"):
        ratings = read_ratings(path, progress=reports.append)
    stages = [report.stage for report in reports]
    assert stages[0] == "reading" and stages[-2:] == ["checking", "done"]
    assert 5 <= stages.count("reading") <= 11  # about every tenth of the file
    reading = [report for report in reports if report.stage == "reading"]
    assert reading[-1].bytes_read == reading[-1].bytes_total == path.stat().st_size
    assert [r.rows for r in reading] == sorted(r.rows for r in reading)
    assert reports[-1].rows == len(ratings) == 12_000
    assert f"{path}: 12000 ratings read" in caplog.text
