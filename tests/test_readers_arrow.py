"""The one reader of text files (pyarrow's CSV reader, block by block): the same results and
the same messages (file, line as an editor counts them, field) whatever the block size, and
whether or not a file holds quotes, blank lines or odd line ends.

Files are read with the default block (one block for these small files) and with blocks of
a few hundred bytes (many blocks: ids switching from integers to text late, dictionaries
unified often, blank rows and line numbers across blocks).
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import autorec.data.readers as readers
from autorec import DataError, read_ratings
from autorec.data import LoadProgress, _csv, _id_blocks

HEADER = "user_id,item_id,rating\n"


def outcome(path: Path, **kwargs) -> tuple:
    """What reading gives: the arrays, id maps and dtypes, or the error and its fields."""
    try:
        ratings = read_ratings(path, **kwargs)
    except DataError as error:
        return ("error", str(error), error.line, error.field)
    return ("ok", ratings.user_idx.tolist(), ratings.item_idx.tolist(), ratings.rating.tolist(),
            ratings.user_idx.dtype.str, ratings.item_idx.dtype.str, ratings.rating.dtype.str,
            ratings.users.raw_ids.tolist(), ratings.users.raw_ids.dtype.str,
            ratings.items.raw_ids.tolist(), ratings.items.raw_ids.dtype.str, ratings.source)


@pytest.fixture
def blocks(monkeypatch: pytest.MonkeyPatch):
    """``blocks(path, **kwargs)``: (outcome with one block, outcome with blocks of 256 bytes
    and dictionaries unified every 8 ids)."""

    def run(path: Path, **kwargs) -> tuple[tuple, tuple]:
        whole = outcome(path, **kwargs)
        with monkeypatch.context() as patch:
            patch.setattr(_csv, "BLOCK_BYTES", 256)
            patch.setattr(_id_blocks, "_UNIFY_MIN", 8)
            return whole, outcome(path, **kwargs)

    return run


FILES = [
    ("integer-ids", HEADER + "1,10,4\n2,10,3\n1,11,5\n"),
    ("text-ids", HEADER + "alice,The Matrix,5\nbob,Up,3\nalice,Up,4\n"),
    ("leading-zeros", HEADER + "01,10,4\n1,10,3\n007,7,2\n"),
    ("odd-integers", HEADER + "1000,1,3\n1e3,1,3\n5,0,3\n5.0,0,3\n+5,1,3\n-0,1,3\n0x1,1,3\n"),
    ("negative-ids", HEADER + "-1,-10,4\n2,-10,3\n-3,11,5\n"),
    ("huge-ids", HEADER + "18446744073709551616,1,3\n9223372036854775807,2,4\n-1,1,2\n"),
    ("int64-bounds", HEADER + "9223372036854775807,1,3\n-9223372036854775808,1,4\n"),
    ("spaces-and-na-words", HEADER + " 5 ,NA,3\n6, null ,4\n5,xx ,2\n"),
    ("unicode", HEADER + "é,٣,3\nü,x,4\n"),
    ("ratings", HEADER + "1,1, 4\n1,2,+4\n1,3,.5\n1,4,5.\n1,5,1E2\n1,6,-2\n1,7,1e-50\n"
     "1,8,1.8e19\n1,9,04\n1,10,4 \n"),
    ("crlf", HEADER.replace("\n", "\r\n") + "1,10,4\r\n2,11,3\r\n"),
    ("cr-only", HEADER.replace("\n", "\r") + "1,10,4\r2,11,3\r"),
    ("bom-and-header-spaces", "\ufeffuser_id , item_id,rating \n1,10,4\n"),
    ("no-final-line-end", HEADER + "1,10,4\n2,10,3"),
    ("quoted", HEADER + '1,"a",4\n"2","b, c",3\n3,"say ""hi""",2\n'),
    ("quoted-line-breaks", HEADER + '1,"a\r\nb",4\n2,"a\rb",3\n3,"a\nb",2\n'),
    ("blank-lines", "\n \n" + HEADER + "1,10,4\n\n\t\n2,10,3\n,,\n\n"),
]


@pytest.mark.parametrize("content", [case[1] for case in FILES], ids=[case[0] for case in FILES])
def test_same_ratings_whatever_the_blocks(write_file, blocks, content) -> None:
    whole, small = blocks(write_file("r.csv", content))
    assert whole[0] == "ok"
    assert small == whole


def test_quoted_line_breaks_become_newlines(write_file) -> None:
    ratings = read_ratings(write_file("r.csv", FILES[15][1]))
    assert ratings.items.raw_ids.tolist() == ["a\nb"]  # \r\n, \r and \n: one id, as before


@pytest.mark.parametrize(("name", "content", "kwargs"), [
    ("ratings.dat", "1::10::4::978300760\n2::10::3.5::978300761\n1::11::5::978300762\n",
     {"sep": "::", "header": False, "names": ("user_id", "item_id", "rating", "timestamp")}),
    ("u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n", {"header": False}),
    ("r.txt", "ts;who;what;stars\n9;a;x;2\n8;b;x;4\n",
     {"sep": ";", "columns": ("who", "what", "stars")}),
    ("r.tsv", "user_id\titem_id\trating\n 1\t10 \t4\n", {}),
    ("odd.dat", "1:::10::4\n", {"header": False}),  # "::" then ":10": as str.replace reads it
])
def test_same_ratings_for_other_layouts(write_file, blocks, name, content, kwargs) -> None:
    whole, small = blocks(write_file(name, content), **kwargs)
    assert whole[0] == "ok"
    assert small == whole
    if name == "odd.dat":
        assert whole[9] == [":10"]


ERRORS = [  # content, line, field, message (after "line N[, field F]: ")
    (HEADER + "1,10,4\n2,10,3\n3,11,5,9\n", 4, None, "expected 3 fields, found 4"),
    ("user_id,item_id,rating,ts\n1,1,4,9\n1,2,3,9\n2,1,5\n", 4, None,
     "expected 4 fields, found 3"),
    (HEADER + "1,10,4\n2,10,four\n", 3, "rating", "rating 'four' is not a number"),
    (HEADER + "1,10,4\n2,11,3\n2,10,\n", 4, "rating", "missing rating"),
    (HEADER + "1,10,4\n2,10,NaN\n", 3, "rating", "rating 'NaN' is not a finite number"),
    (HEADER + "1,10,4\n3,10,inf\n", 3, "rating", "rating inf is not a finite number"),
    # a numeral past float64's range is too large, named as written (it was "rating inf")
    (HEADER + "1,10,4\n3,10,1e400\n", 3, "rating", "rating 1e400 is too large"),
    (HEADER + "1,10,4\n3,10, -1E+400\n", 3, "rating", "rating -1E+400 is too large"),
    # what Python's Decimal reads but pandas and pyarrow do not is no number (was "too large")
    (HEADER + "1,10,4\n3,10,1_000\n", 3, "rating", "rating '1_000' is not a number"),
    (HEADER + "1,10,4\n3,10,\u0663\n", 3, "rating", "rating '\u0663' is not a number"),
    (HEADER + "1,10,4\n,10,3\n", 3, "user_id", "missing value"),
    (HEADER + "1,10,4\n  ,10,3\n", 3, "user_id", "missing value"),
    (HEADER + "1,10,4\n2,11,3\n3,,3\n", 4, "item_id", "missing value"),
    (HEADER + "1,10,4\n\n2,10,3\n\n\n1,11,x\n", 7, "rating", "rating 'x' is not a number"),
    ("\n  \n" + HEADER + "1,10,4\n2,10,x\n\n\n", 5, "rating", "rating 'x' is not a number"),
    (HEADER + '1,"The Matrix, 1999",4\n2,"two\nlines",3\n"3",10,5\n5,10,x\n', 6, "rating",
     "rating 'x' is not a number"),
    (HEADER + "a,10,4\n\nb,10,3\n\na,10,5\n", 6, None,
     "duplicate rating of user 'a' for item 10 (first at line 2)"),
    ("user_id,item_id,rating,rating\n1,10,4,5\n", 1, "rating",
     "2 columns have this name: which one holds the values is unclear"),
    (HEADER + "1,2,3\n,,,9\n", 3, None, "expected 3 fields, found 4"),
    ("user_id,item_id,rating,ts\n1,2,3,4\n,,,9\n", 3, "user_id", "missing value"),
    (HEADER + "1,10,4\n\t\n2,10,3,1\n", 4, None, "expected 3 fields, found 4"),
    # one field with another separator in it: a hint (a space-separated file read as CSV)
    (HEADER + "1,10,4\n2 10 3\n", 3, None,
     "expected 3 fields, found 1; is the field separator right? (--sep)"),
]


@pytest.mark.parametrize(("content", "line", "field", "message"), ERRORS)
def test_errors_name_the_line_whatever_the_blocks(write_file, blocks, content, line, field,
                                                  message) -> None:
    path = write_file("r.csv", content)
    whole, small = blocks(path)
    assert whole[0] == "error" and whole[2:] == (line, field), whole
    where = f"{path}, line {line}" + (f", field {field!r}" if field else "")
    assert whole[1].startswith(f"{where}: {message}"), whole[1]
    assert small == whole


@pytest.mark.parametrize(("content", "message"), [
    ("", "empty file"), ("\n \n", "empty file"), (HEADER, "no ratings"),
    (HEADER + "\n\n", "no ratings"),
    ("user_id,movie,rating\n1,10,4\n", "missing column (columns present: 'user_id', 'movie', "
     "'rating')"),
    ("user_id\titem_id\trating\n1\t2\t3\n", "is the field separator right? (--sep)"),
])
def test_errors_without_a_line(write_file, content, message) -> None:
    path = write_file("r.csv", content)
    error = outcome(path)
    assert error[0] == "error" and message in error[1] and error[2] is None


@pytest.mark.parametrize("late", [False, True], ids=["early", "after-many-blocks"])
def test_not_utf8_names_the_line_of_the_byte(tmp_path, blocks, late) -> None:
    path = tmp_path / "latin1.csv"
    good = "".join(f"{k},{k % 7},4\n" for k in range(300)) if late else ""
    path.write_bytes((HEADER + good + '1,"x\ny",4\n\n2,caf\xe9,3\n').encode("latin-1"))
    whole, small = blocks(path)
    assert whole[0] == "error" and "not UTF-8 text (byte 0xe9)" in whole[1]
    assert whole[2] == (302 if late else 2) + 3
    assert small == whole


def test_double_colon_files(write_file, blocks) -> None:
    tab = write_file("ratings.dat", "1::10::4::9\t1\n2::10::3::9\n")  # a tab is a separator
    whole, small = blocks(tab, header=False)
    assert whole[2] == 2 and "expected 5 fields, found 4" in whole[1] and small == whole
    single = write_file("single.dat", "1::10::4::9\n1::10:4::9\n")  # one colon: not one
    whole, small = blocks(single, header=False)
    assert whole[2] == 2 and "expected 4 fields, found 3" in whole[1] and small == whole


def test_compressed_files_go_the_same_way(tmp_path) -> None:
    import gzip

    text = HEADER + "1,10,4\n\n2,\"a\nb\",3\n1,10,5\n"
    path = tmp_path / "r.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    error = outcome(path)
    assert error[2] == 6 and "first at line 2" in error[1]
    assert triples_of(read_ratings(path, duplicates="last")) == [(1, "10", 5.0),
                                                                 (2, "a\nb", 3.0)]


def triples_of(ratings) -> list[tuple]:
    return list(zip(ratings.user_ids.tolist(), ratings.item_ids.tolist(),
                    ratings.rating.tolist(), strict=True))


# -- repeated pairs ----------------------------------------------------------------------------
DUPLICATED = HEADER + "1,10,4\n2,10,3\n1,11,2\n1,10,5\n1,10,1\n"


@pytest.mark.parametrize("content", [
    DUPLICATED,
    HEADER + "a,x,4\nb,x,3\na,x,5\n",  # text ids: quoted in the message
    HEADER + "01,10,4\n1,10,3\n1,10,3\n",  # leading zeros elsewhere: integers still plain
    HEADER.replace("\n", "\r\n") + "1,10,4\r\n1,10,4\r\n",
    HEADER + '1,"a\nb",4\n2,x,3\n1,"a\nb",4\n',  # lines found by the second pass
], ids=["integers", "text", "leading-zero", "crlf", "quoted"])
def test_repeated_pair_is_reported_by_line(write_file, blocks, content) -> None:
    whole, small = blocks(write_file("dup.csv", content))
    assert whole[0] == "error" and "duplicate rating" in whole[1]
    assert small == whole


@pytest.mark.parametrize("policy", ["last", "mean"])
def test_repeats_merged_the_same_way(write_file, blocks, policy) -> None:
    whole, small = blocks(write_file("dup.csv", DUPLICATED), duplicates=policy)
    assert whole[0] == "ok" and small == whole


def test_message_names_the_line_of_the_repeat_and_both_spellings(write_file) -> None:
    path = write_file("dup.csv", DUPLICATED)
    with pytest.raises(DataError) as info:
        read_ratings(path)
    assert info.value.line == 5
    assert str(info.value) == (
        f"{path}, line 5: duplicate rating of user 1 for item 10 (first at line 2); to accept "
        "repeats, use duplicates='last' or 'mean' (on the command line: --duplicates last or "
        "mean)")


# -- many blocks -------------------------------------------------------------------------------
def _random_file(rng: random.Random, n: int, late: dict[int, tuple[str, str]]) -> str:
    lines = [HEADER]
    for k in range(n):
        user, item = late.get(k, (str(rng.randint(1, 300)), str(rng.randint(1, 40))))
        lines.append(f"{user},{item},{rng.choice(['1', '2.5', '3', '4', '5'])}\n")
    return "".join(lines)


@pytest.mark.parametrize(("late", "policy"), [
    ({}, "last"),
    ({1500: ("u17", "7")}, "mean"),  # the user column turns to text after many blocks
    ({1700: ("17", "007")}, "last"),  # a leading zero late in the item column
    ({1200: ("-0", "x")}, "mean"),
], ids=["integers", "text-late", "leading-zero-late", "both-late"])
def test_many_blocks(write_file, blocks, late, policy) -> None:
    path = write_file("r.csv", _random_file(random.Random(7), 2000, late))
    whole, small = blocks(path, duplicates=policy)
    assert whole[0] == "ok" and small == whole
    whole, small = blocks(path)  # repeats across blocks: the same first one reported
    assert whole[0] == "error" and small == whole


def test_text_ids_from_the_first_block(write_file, blocks) -> None:
    rng = random.Random(3)
    lines = [f"u{rng.randint(1, 500)}, i{rng.randint(1, 50)} ,{rng.randint(1, 5)}\n"
             for _ in range(3000)]
    whole, small = blocks(write_file("r.csv", HEADER + "".join(lines)), duplicates="mean")
    assert whole[0] == "ok" and small == whole
    assert "u1" not in whole[7] or whole[7].index("u1") >= 0  # text ids, stripped
    assert all(not item.startswith(" ") for item in whole[9])


# -- progress ----------------------------------------------------------------------------------
def test_progress_reports(write_file, monkeypatch) -> None:
    monkeypatch.setattr(_csv, "BLOCK_BYTES", 1024)
    monkeypatch.setattr(readers, "PROGRESS_MIN_BYTES", 0)
    path = write_file("r.csv", _random_file(random.Random(1), 3000, {}))
    reports: list[LoadProgress] = []
    ratings = read_ratings(path, duplicates="last", progress=reports.append)
    stages = [report.stage for report in reports]
    assert stages[0] == "reading" and stages[-3:] == ["indexing", "checking", "done"]
    assert 5 <= stages.count("reading") <= 11  # about every tenth of the file
    reading = [report for report in reports if report.stage == "reading"]
    assert [r.rows for r in reading] == sorted(r.rows for r in reading)
    assert reading[-1].bytes_read == reading[-1].bytes_total == path.stat().st_size
    assert reports[-1].rows == len(ratings) and reports[-1].source == str(path)
    for report in reports:
        text = str(report)
        assert text.startswith("r.csv: ") and "\n" not in text
    assert "ratings loaded in" in str(reports[-1])
    assert "%" in str(reading[0])


def test_no_progress_for_files_under_64_mb(write_file) -> None:
    reports: list[LoadProgress] = []
    read_ratings(write_file("r.csv", HEADER + "1,10,4\n"), progress=reports.append)
    assert reports == [] and readers.PROGRESS_MIN_BYTES == 64_000_000  # as the README says


# -- random files ------------------------------------------------------------------------------
ODD_IDS = ["1", "10", "01", "+1", " 1", "1 ", "-0", "-1", "1.0", "1e3", "0x1", "a", "b c",
           "NA", "", "٣", "9223372036854775808", "-9223372036854775808", "00", "-", "1-2",
           "0", "\t2", '"3"', "é"]
ODD_RATINGS = ["4.5", " 4", "4 ", "+4", ".5", "5.", "1e39", "inf", "nan", "1_0", "0x10",
               "1e", "four", "", "-2", "1E2", "NaN", "Infinity", "04", "3.4e38", "4\t",
               "True", '"4"', "-3e38"]


def test_random_files_read_alike_whatever_the_blocks(tmp_path, blocks) -> None:
    rng = random.Random(20261130)
    for k in range(100):
        sep = rng.choice([",", "\t", "::", ";"])
        header, extra = rng.random() < 0.7, rng.random() < 0.3
        end = rng.choice(["\n"] * 6 + ["\r\n", "\r"])
        lines = [sep.join(["user_id", "item_id", "rating", *(["ts"] if extra else [])])] * header
        for _ in range(rng.randint(1, 30)):
            user = rng.choice(ODD_IDS) if rng.random() < 0.15 else str(rng.randint(1, 5))
            item = rng.choice(ODD_IDS) if rng.random() < 0.15 else rng.choice("789x")
            rating = rng.choice(ODD_RATINGS) if rng.random() < 0.1 else rng.choice("1235")
            if rng.random() < 0.05 and sep != "::":
                item = f'"a{end}b"'
            lines.append(sep.join([user, item, rating, *(["9"] if extra else [])]))
            if rng.random() < 0.1:
                lines.append(rng.choice(["", "  ", "\t"]))
        path = tmp_path / f"{k}.txt"
        path.write_bytes((end.join(lines) + end * (rng.random() < 0.9)).encode())
        kwargs = {"sep": sep, "header": header,
                  "duplicates": rng.choice(["error", "error", "last", "mean"])}
        if not header and extra:
            kwargs["names"] = ("user_id", "item_id", "rating", "ts")
        whole, small = blocks(path, **kwargs)
        assert small == whole, (path.read_bytes(), kwargs)


def test_large_arrays_keep_their_types(write_file) -> None:
    ratings = read_ratings(write_file("r.csv", HEADER + "3000000000,1,4\n1,2,3\n"))
    # dense indices are int32 (the raw ids keep int64)
    assert ratings.user_idx.dtype == np.int32 and ratings.item_idx.dtype == np.int32
    assert ratings.rating.dtype == np.float32
    assert ratings.users.raw_ids.tolist() == [3000000000, 1]
    assert ratings.users.raw_ids.dtype == np.int64


# -- the command line prints the reports -------------------------------------------------------
def test_command_line_prints_loading_progress(write_file, monkeypatch, capsys) -> None:
    import argparse

    from autorec.cli import _options

    monkeypatch.setattr(readers, "PROGRESS_MIN_BYTES", 0)
    monkeypatch.delenv("RANK", raising=False)
    path = write_file("r.csv", HEADER + "1,10,4\n2,10,3\n")
    args = argparse.Namespace(sep=None, no_header=False, columns=("user_id", "item_id", "rating"),
                              duplicates="error", quiet=None)
    assert len(_options.read_file(path, args)) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("r.csv: read ") and err[-1].startswith("r.csv: 2 ratings loaded")
    args.quiet = True
    assert _options.load_progress(args) is None
    args.quiet = None
    monkeypatch.setenv("RANK", "1")  # a data-parallel process other than rank 0
    assert _options.load_progress(args) is None


def test_duplicate_hint_on_the_command_line(write_file, tmp_path) -> None:
    data = write_file("dup.csv", DUPLICATED * 1)
    run = subprocess.run([sys.executable, "-m", "autorec", "train", "--data", str(data),
                          "--out", str(tmp_path / "o"), "--epochs", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert "--duplicates last" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
