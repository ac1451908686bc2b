"""The block reader for large text files (pyarrow) against the exact reader.

Every file here is read twice: once the exact way (the size threshold set out of reach) and
once with the block reader forced (threshold 0). Where the block reader takes a file, the
ratings, indices, id maps and dtypes must be the same; where it gives up, the exact reader
runs and the errors must be the same; repeated pairs are reported by the block reader
itself, with the same message.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

import autorec.data.readers as readers
from autorec import DataError, read_ratings
from autorec.data import LoadProgress, _arrow

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
def both(monkeypatch: pytest.MonkeyPatch):
    """``both(path, **kwargs)``: (exact outcome, block outcome, whether the block reader
    took the file)."""

    def run(path: Path, **kwargs) -> tuple[tuple, tuple, bool]:
        monkeypatch.setenv(_arrow.MIN_BYTES_ENV, str(1 << 60))
        exact = outcome(path, **kwargs)
        taken: list[bool] = []
        original = readers.read_columns

        def spy(*args, **kw):
            result = original(*args, **kw)
            taken.append(result is not None)
            return result

        monkeypatch.setenv(_arrow.MIN_BYTES_ENV, "0")
        monkeypatch.setattr(readers, "read_columns", spy)
        fast = outcome(path, **kwargs)
        monkeypatch.setattr(readers, "read_columns", original)
        return exact, fast, taken == [True]

    return run


TAKEN = [
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
     "1,8,3.4e38\n"),
    ("crlf", HEADER.replace("\n", "\r\n") + "1,10,4\r\n2,11,3\r\n"),
    ("cr-only", HEADER.replace("\n", "\r") + "1,10,4\r2,11,3\r"),
    ("bom-and-header-spaces", "\ufeffuser_id , item_id,rating \n1,10,4\n"),
    ("no-final-line-end", HEADER + "1,10,4\n2,10,3"),
]


@pytest.mark.parametrize("content", [case[1] for case in TAKEN], ids=[case[0] for case in TAKEN])
def test_same_ratings_on_the_block_path(write_file, both, content) -> None:
    exact, fast, taken = both(write_file("r.csv", content))
    assert taken
    assert exact[0] == "ok"
    assert fast == exact


@pytest.mark.parametrize(("name", "content", "kwargs"), [
    ("ratings.dat", "1::10::4::978300760\n2::10::3.5::978300761\n1::11::5::978300762\n",
     {"sep": "::", "header": False, "names": ("user_id", "item_id", "rating", "timestamp")}),
    ("u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n", {"header": False}),
    ("r.txt", "ts;who;what;stars\n9;a;x;2\n8;b;x;4\n",
     {"sep": ";", "columns": ("who", "what", "stars")}),
    ("r.tsv", "user_id\titem_id\trating\n 1\t10 \t4\n", {}),
])
def test_same_ratings_for_other_layouts(write_file, both, name, content, kwargs) -> None:
    exact, fast, taken = both(write_file(name, content), **kwargs)
    assert taken and exact[0] == "ok"
    assert fast == exact


GIVES_UP = [
    ("too-many-fields", HEADER + "1,10,4\n2,10,3\n3,11,5,9\n"),
    ("too-few-fields", "user_id,item_id,rating,ts\n1,1,4,9\n1,2,3,9\n2,1,5\n"),
    ("non-numeric", HEADER + "1,10,4\n2,10,four\n"),
    ("empty-rating", HEADER + "1,10,4\n2,11,3\n2,10,\n"),
    ("nan-rating", HEADER + "1,10,4\n2,10,NaN\n"),
    ("inf-rating", HEADER + "1,10,4\n3,10,inf\n"),
    ("too-large-for-float32", HEADER + "1,1,4\n2,1,1e39\n"),
    ("missing-user", HEADER + "1,10,4\n,10,3\n"),
    ("blank-user", HEADER + "1,10,4\n  ,10,3\n"),
    ("missing-item", HEADER + "1,10,4\n2,11,3\n3,,3\n"),
    ("blank-lines", HEADER + "1,10,4\n\n2,10,3\n\n\n1,11,x\n"),
    ("blank-lines-and-a-repeat", HEADER + "a,10,4\n\nb,10,3\n\na,10,5\n"),
    ("leading-blank-lines", "\n  \n" + HEADER + "1,10,4\n2,10,x\n\n\n"),
    ("quotes", HEADER + '1,"The Matrix, 1999",4\n2,"two\nlines",3\n"3",10,5\n5,10,x\n'),
    ("quoted-ok", HEADER + '1,"a",4\n2,"b",3\n'),
    ("not-utf8", None),
    ("missing-column", "user_id,movie,rating\n1,10,4\n"),
    ("repeated-header-name", "user_id,item_id,rating,rating\n1,10,4,5\n"),
    ("header-only", HEADER),
    ("empty", ""),
    ("wrong-separator", "user_id\titem_id\trating\n1\t2\t3\n"),
]


@pytest.mark.parametrize("content", [case[1] for case in GIVES_UP],
                         ids=[case[0] for case in GIVES_UP])
def test_same_errors_when_the_block_reader_gives_up(write_file, tmp_path, both, content) -> None:
    if content is None:
        path = tmp_path / "latin1.csv"
        path.write_bytes((HEADER + "1,10,4\n2,caf\xe9,3\n").encode("latin-1"))
    else:
        path = write_file("r.csv", content)
    exact, fast, taken = both(path)
    assert not taken
    assert fast == exact


def test_tab_in_a_double_colon_file_is_left_to_the_exact_reader(write_file, both) -> None:
    path = write_file("ratings.dat", "1::10::4::9\t1\n2::10::3::9\n")
    exact, fast, taken = both(path, header=False)
    assert not taken and exact[0] == "error" and fast == exact
    single = write_file("single.dat", "1::10:4::9\n")  # one colon: a separator field not empty
    exact, fast, taken = both(single, header=False)
    assert not taken and fast == exact


def test_compressed_and_parquet_files_are_not_read_in_blocks(tmp_path, monkeypatch) -> None:
    import gzip

    path = tmp_path / "r.csv.gz"
    path.write_bytes(gzip.compress((HEADER + "1,10,4\n").encode()))
    monkeypatch.setenv(_arrow.MIN_BYTES_ENV, "0")
    monkeypatch.setattr(readers, "read_columns", None)  # would fail if called
    assert len(read_ratings(path)) == 1


# -- repeated pairs ----------------------------------------------------------------------------
DUPLICATED = HEADER + "1,10,4\n2,10,3\n1,11,2\n1,10,5\n1,10,1\n"


@pytest.mark.parametrize("content", [
    DUPLICATED,
    HEADER + "a,x,4\nb,x,3\na,x,5\n",  # text ids: quoted in the message
    HEADER + "01,10,4\n1,10,3\n1,10,3\n",  # leading zeros elsewhere: integers still plain
    HEADER.replace("\n", "\r\n") + "1,10,4\r\n1,10,4\r\n",
], ids=["integers", "text", "leading-zero", "crlf"])
def test_repeated_pair_is_reported_by_the_block_reader(write_file, both, content) -> None:
    exact, fast, taken = both(write_file("dup.csv", content))
    assert taken  # the block reader read the columns, then the repeat was found
    assert exact[0] == "error" and "duplicate rating" in exact[1]
    assert fast == exact


@pytest.mark.parametrize("policy", ["last", "mean"])
def test_repeats_merged_the_same_way(write_file, both, policy) -> None:
    exact, fast, taken = both(write_file("dup.csv", DUPLICATED), duplicates=policy)
    assert taken and exact[0] == "ok"
    assert fast == exact


def test_message_names_the_line_of_the_repeat(write_file, monkeypatch) -> None:
    monkeypatch.setenv(_arrow.MIN_BYTES_ENV, "0")
    path = write_file("dup.csv", DUPLICATED)
    with pytest.raises(DataError) as info:
        read_ratings(path)
    assert info.value.line == 5 and "first at line 2" in str(info.value)
    assert str(info.value) == (f"{path}, line 5: duplicate rating of user 1 for item 10 (first "
                               "at line 2); use duplicates='last' or 'mean' to accept repeats")


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
def test_many_blocks(write_file, both, monkeypatch, late, policy) -> None:
    monkeypatch.setattr(_arrow, "BLOCK_BYTES", 512)
    monkeypatch.setattr(_arrow, "_UNIFY_MIN", 16)  # unify text dictionaries often
    path = write_file("r.csv", _random_file(random.Random(7), 2000, late))
    exact, fast, taken = both(path, duplicates=policy)
    assert taken and exact[0] == "ok"
    assert fast == exact
    exact, fast, taken = both(path)  # repeats across blocks: the same first one reported
    assert taken and exact[0] == "error"
    assert fast == exact


def test_text_ids_from_the_first_block(write_file, both, monkeypatch) -> None:
    monkeypatch.setattr(_arrow, "BLOCK_BYTES", 256)
    monkeypatch.setattr(_arrow, "_UNIFY_MIN", 8)
    rng = random.Random(3)
    lines = [f"u{rng.randint(1, 500)}, i{rng.randint(1, 50)} ,{rng.randint(1, 5)}\n"
             for _ in range(3000)]
    exact, fast, taken = both(write_file("r.csv", HEADER + "".join(lines)), duplicates="mean")
    assert taken and exact[0] == "ok"
    assert fast == exact


# -- progress and the threshold ----------------------------------------------------------------
def test_progress_reports(write_file, monkeypatch) -> None:
    monkeypatch.setenv(_arrow.MIN_BYTES_ENV, "0")
    monkeypatch.setattr(_arrow, "BLOCK_BYTES", 1024)
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


def test_progress_when_the_block_reader_gives_up(write_file, monkeypatch) -> None:
    monkeypatch.setenv(_arrow.MIN_BYTES_ENV, "0")
    monkeypatch.setattr(readers, "PROGRESS_MIN_BYTES", 0)
    reports: list[LoadProgress] = []
    with pytest.raises(DataError):
        read_ratings(write_file("r.csv", HEADER + "1,10,4\n2,10,x\n"), progress=reports.append)
    assert [report.stage for report in reports] == ["rereading"]
    assert "again" in str(reports[0])


def test_no_progress_for_files_under_64_mb(write_file, monkeypatch) -> None:
    monkeypatch.setenv(_arrow.MIN_BYTES_ENV, "0")
    reports: list[LoadProgress] = []
    read_ratings(write_file("r.csv", HEADER + "1,10,4\n"), progress=reports.append)
    assert reports == [] and readers.PROGRESS_MIN_BYTES == 64 << 20


def test_small_files_are_read_the_exact_way_by_default(write_file, monkeypatch) -> None:
    monkeypatch.delenv(_arrow.MIN_BYTES_ENV, raising=False)
    monkeypatch.setattr(readers, "read_columns", None)  # would fail if called
    reports: list[LoadProgress] = []
    assert len(read_ratings(write_file("r.csv", HEADER + "1,10,4\n"),
                            progress=reports.append)) == 1
    assert reports == []
    assert _arrow.min_bytes() == _arrow.MIN_BYTES


def test_threshold_setting(monkeypatch) -> None:
    monkeypatch.setenv(_arrow.MIN_BYTES_ENV, "1000")
    assert _arrow.min_bytes() == 1000
    monkeypatch.setenv(_arrow.MIN_BYTES_ENV, "lots")
    with pytest.raises(ValueError, match=_arrow.MIN_BYTES_ENV):
        _arrow.min_bytes()


# -- random files ------------------------------------------------------------------------------
ODD_IDS = ["1", "10", "01", "+1", " 1", "1 ", "-0", "-1", "1.0", "1e3", "0x1", "a", "b c",
           "NA", "", "٣", "9223372036854775808", "-9223372036854775808", "00", "-", "1-2",
           "0", "\t2", '"3"', "é"]
ODD_RATINGS = ["4.5", " 4", "4 ", "+4", ".5", "5.", "1e39", "inf", "nan", "1_0", "0x10",
               "1e", "four", "", "-2", "1E2", "NaN", "Infinity", "04", "3.4e38", "4\t",
               "True", '"4"']


def test_random_files_read_alike(tmp_path, both) -> None:
    rng = random.Random(20261130)
    taken_count = 0
    for k in range(120):
        sep = rng.choice([",", "\t", "::", ";"])
        header, extra = rng.random() < 0.7, rng.random() < 0.3
        end = rng.choice(["\n"] * 6 + ["\r\n", "\r"])
        lines = [sep.join(["user_id", "item_id", "rating", *(["ts"] if extra else [])])] * header
        for _ in range(rng.randint(1, 8)):
            user = rng.choice(ODD_IDS) if rng.random() < 0.15 else str(rng.randint(1, 5))
            item = rng.choice(ODD_IDS) if rng.random() < 0.15 else rng.choice("789x")
            rating = rng.choice(ODD_RATINGS) if rng.random() < 0.15 else rng.choice("1235")
            lines.append(sep.join([user, item, rating, *(["9"] if extra else [])]))
        path = tmp_path / f"{k}.txt"
        path.write_bytes((end.join(lines) + end * (rng.random() < 0.9)).encode())
        kwargs = {"sep": sep, "header": header,
                  "duplicates": rng.choice(["error", "error", "last", "mean"])}
        if not header and extra:
            kwargs["names"] = ("user_id", "item_id", "rating", "ts")
        exact, fast, taken = both(path, **kwargs)
        assert fast == exact, (path.read_bytes(), kwargs)
        taken_count += taken
    assert taken_count > 50  # most files are ones the block reader takes


def test_large_arrays_keep_their_types(write_file, monkeypatch) -> None:
    monkeypatch.setenv(_arrow.MIN_BYTES_ENV, "0")
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

    monkeypatch.setenv(_arrow.MIN_BYTES_ENV, "0")
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
