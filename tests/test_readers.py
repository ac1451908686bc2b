"""read_ratings and from_dataframe: formats, and errors that name the file, line and field."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autorec import DataError, from_dataframe, read_ratings

HEADER = "user_id,item_id,rating\n"


def triples(ratings) -> list[tuple]:
    """(raw user, raw item, rating) of every rating, in stored order."""
    return list(zip(ratings.user_ids.tolist(), ratings.item_ids.tolist(),
                    ratings.rating.tolist(), strict=True))


def names_line(message: str, line: int) -> bool:
    return re.search(rf"\bline {line}\b", message) is not None


# -- formats -------------------------------------------------------------------------------------
def test_csv_with_default_header(write_file) -> None:
    path = write_file("r.csv", HEADER + "1,10,4\n2,10,3\n1,11,5\n")
    ratings = read_ratings(path)
    assert triples(ratings) == [(1, 10, 4.0), (2, 10, 3.0), (1, 11, 5.0)]
    assert (ratings.n_users, ratings.n_items) == (2, 2)
    assert ratings.user_idx.tolist() == [0, 1, 0]
    assert ratings.item_idx.tolist() == [0, 0, 1]
    assert ratings.rating.dtype == np.float32
    assert ratings.source == str(path)


def test_custom_column_names_and_extra_columns(write_file) -> None:
    path = write_file("r.csv", "ts,who,what,stars\n9,a,x,2\n8,b,x,4\n")
    ratings = read_ratings(path, columns=("who", "what", "stars"))
    assert triples(ratings) == [("a", "x", 2.0), ("b", "x", 4.0)]


def test_string_ids(write_file) -> None:
    path = write_file("r.csv", HEADER + "alice,The Matrix,5\nbob,Up,3\nalice,Up,4\n")
    ratings = read_ratings(path)
    assert ratings.users.raw_ids.tolist() == ["alice", "bob"]
    assert ratings.items.raw_ids.tolist() == ["The Matrix", "Up"]
    assert ratings.item_idx.tolist() == [0, 1, 1]


@pytest.mark.parametrize(
    "values",
    [[0.5, 1.5, 2.5, 3.5, 4.5, 5.0], [1, 37, 64, 100, 99, 2]],
    ids=["half-star", "1-100"],
)
def test_rating_scales_kept_exactly(write_file, values: list) -> None:
    lines = "".join(f"{u},{u % 2},{v}\n" for u, v in enumerate(values))
    ratings = read_ratings(write_file("r.csv", HEADER + lines))
    assert ratings.rating.tolist() == [float(v) for v in values]
    assert ratings.rating_scale() == (min(values), max(values))


def test_tsv_by_extension(write_file) -> None:
    path = write_file("r.tsv", "user_id\titem_id\trating\n1\t10\t4\n2\t10\t3.5\n")
    assert triples(read_ratings(path)) == [(1, 10, 4.0), (2, 10, 3.5)]


def test_explicit_separator(write_file) -> None:
    path = write_file("r.txt", "user_id;item_id;rating\n1;10;4\n2;10;3\n")
    assert triples(read_ratings(path, sep=";")) == [(1, 10, 4.0), (2, 10, 3.0)]


def test_double_colon_dat(write_file) -> None:
    path = write_file("ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n"
                                     "2::1193::4::978298413\n")
    ratings = read_ratings(path, header=False,
                           names=("user_id", "item_id", "rating", "timestamp"))
    assert triples(ratings) == [(1, 1193, 5.0), (1, 661, 3.0), (2, 1193, 4.0)]


def test_headerless_with_names(write_file) -> None:
    path = write_file("u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    ratings = read_ratings(path, header=False, names=("u", "i", "r", "t"), columns=("u", "i", "r"))
    assert triples(ratings) == [(196, 242, 3.0), (186, 302, 3.0)]


def test_headerless_without_names_uses_columns(write_file) -> None:
    path = write_file("r.csv", "7,8,2,123\n9,8,1,456\n")
    assert triples(read_ratings(path, header=False)) == [(7, 8, 2.0), (9, 8, 1.0)]


def test_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"user_id": ["u1", "u2", "u1"], "item_id": [10, 10, 11],
                          "rating": [4.5, 3.0, 1.0], "timestamp": [1, 2, 3]})
    path = tmp_path / "r.parquet"
    frame.to_parquet(path)
    ratings = read_ratings(path)
    assert triples(ratings) == [("u1", 10, 4.5), ("u2", 10, 3.0), ("u1", 11, 1.0)]


def test_parquet_errors_name_file(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=re.escape(str(path))):
        read_ratings(path)
    path = tmp_path / "nocol.parquet"
    pd.DataFrame({"user_id": [1], "item": [2], "rating": [3.0]}).to_parquet(path)
    with pytest.raises(DataError) as info:
        read_ratings(path)
    assert str(path) in str(info.value) and info.value.field == "item_id"


def test_dataframe_input() -> None:
    frame = pd.DataFrame({"user_id": ["a", "b", "a"], "item_id": ["x", "x", "y"],
                          "rating": [1, 2, 3]})
    ratings = from_dataframe(frame)
    assert triples(ratings) == [("a", "x", 1.0), ("b", "x", 2.0), ("a", "y", 3.0)]
    assert ratings.source == "<DataFrame>"
    assert ratings.to_dataframe().equals(
        pd.DataFrame({"user_id": ["a", "b", "a"], "item_id": ["x", "x", "y"],
                      "rating": np.array([1, 2, 3], dtype=np.float32)}))


def test_dataframe_errors_name_row_and_field() -> None:
    frame = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [1, 1, 1],
                          "rating": [4.0, np.nan, 3.0]})
    with pytest.raises(DataError) as info:
        from_dataframe(frame)
    message = str(info.value)
    assert "<DataFrame>" in message and "row 1" in message and "'rating'" in message


def test_to_csr_orientations(write_file) -> None:
    ratings = read_ratings(write_file("r.csv", HEADER + "1,10,4\n2,10,3\n1,11,5\n"))
    assert ratings.to_csr("item").toarray().tolist() == [[4, 3], [5, 0]]
    assert ratings.to_csr("user").toarray().tolist() == [[4, 5], [3, 0]]


# -- duplicates ----------------------------------------------------------------------------------
DUPLICATED = HEADER + "1,10,4\n2,10,3\n1,11,2\n1,10,5\n1,10,1\n"


def test_duplicate_is_error_by_default(write_file) -> None:
    path = write_file("dup.csv", DUPLICATED)
    with pytest.raises(DataError) as info:
        read_ratings(path)
    message = str(info.value)
    assert str(path) in message
    assert info.value.line == 5
    assert names_line(message, 5)  # the repeat
    assert "first at line 2" in message  # the first occurrence
    assert "duplicates=" in message  # says how to accept repeats
    assert "\n" not in message


def test_duplicates_last(write_file) -> None:
    ratings = read_ratings(write_file("dup.csv", DUPLICATED), duplicates="last")
    assert sorted(triples(ratings)) == [(1, 10, 1.0), (1, 11, 2.0), (2, 10, 3.0)]


def test_duplicates_mean(write_file) -> None:
    ratings = read_ratings(write_file("dup.csv", DUPLICATED), duplicates="mean")
    got = {(u, i): r for u, i, r in triples(ratings)}
    assert got.keys() == {(1, 10), (2, 10), (1, 11)}
    assert got[(1, 10)] == pytest.approx(10.0 / 3.0)
    assert got[(2, 10)] == 3.0 and got[(1, 11)] == 2.0
    # id maps still index the merged triples correctly
    assert ratings.users.to_raw(ratings.user_idx).tolist() == [u for u, _, _ in triples(ratings)]


def test_bad_duplicates_policy(write_file) -> None:
    with pytest.raises(ValueError, match="duplicates"):
        read_ratings(write_file("r.csv", HEADER + "1,1,1\n"), duplicates="first")  # type: ignore[arg-type]


# -- errors --------------------------------------------------------------------------------------
BAD_FILES = [
    # (id, content, line, field, words in the message)
    ("too-many-fields", HEADER + "1,10,4\n2,10,3\n3,11,5,9\n", 4, None, "fields"),
    ("non-numeric", HEADER + "1,10,4\n2,10,four\n", 3, "rating", "four"),
    ("empty-rating", HEADER + "1,10,4\n2,11,3\n2,10,\n", 4, "rating", "missing"),
    ("nan-rating", HEADER + "1,10,4\n2,10,NaN\n", 3, "rating", ""),
    ("inf-rating", HEADER + "1,10,4\n2,10,3\n3,10,inf\n", 4, "rating", "finite"),
    ("missing-user", HEADER + "1,10,4\n,10,3\n", 3, "user_id", "missing"),
    ("missing-item", HEADER + "1,10,4\n2,11,3\n3,,3\n", 4, "item_id", "missing"),
    ("blank-lines-before", HEADER + "1,10,4\n\n2,10,3\n\n\n1,11,x\n", 7, "rating", "x"),
    ("headerless", "1\t10\t4\n2\t10\t3\n3\t10\tbad\n", 3, "rating", "bad"),
]


@pytest.mark.parametrize(("content", "line", "field", "words"),
                         [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES])
def test_bad_file_names_file_line_and_field(write_file, content, line, field, words) -> None:
    name = "bad.tsv" if content.startswith("1\t") else "bad.csv"
    path = write_file(name, content)
    with pytest.raises(DataError) as info:
        read_ratings(path, header=not content.startswith("1\t"))
    error, message = info.value, str(info.value)
    assert str(path) in message
    assert error.line == line, message
    assert names_line(message, line), message
    assert error.field == field
    if field is not None:
        assert repr(field) in message
    assert words in message
    assert "\n" not in message


def test_crlf_line_numbers(write_file) -> None:
    path = write_file("r.csv", "user_id,item_id,rating\r\n1,10,4\r\n2,10,x\r\n")
    with pytest.raises(DataError) as info:
        read_ratings(path)
    assert info.value.line == 3


def test_missing_column_names_field_and_present_columns(write_file) -> None:
    path = write_file("r.csv", "user_id,movie,rating\n1,10,4\n")
    with pytest.raises(DataError) as info:
        read_ratings(path)
    message = str(info.value)
    assert str(path) in message and info.value.field == "item_id" and "'item_id'" in message
    assert "movie" in message  # lists the columns that are there
    assert "\n" not in message


@pytest.mark.parametrize("content", ["", "\n\n  \n"], ids=["empty", "whitespace"])
def test_empty_file(write_file, content: str) -> None:
    path = write_file("empty.csv", content)
    with pytest.raises(DataError, match="empty") as info:
        read_ratings(path)
    assert str(path) in str(info.value)


def test_header_only_file(write_file) -> None:
    path = write_file("r.csv", HEADER)
    with pytest.raises(DataError, match="no ratings") as info:
        read_ratings(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="no such file") as info:
        read_ratings(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_blank_lines_are_skipped(write_file) -> None:
    path = write_file("r.csv", HEADER + "a,10,4\n\nb,10,3\n\n\na,11,5\n\n")
    ratings = read_ratings(path)
    assert len(ratings) == 3
    assert [(u, r) for u, _, r in triples(ratings)] == [("a", 4.0), ("b", 3.0), ("a", 5.0)]


def test_duplicate_line_numbers_after_blank_lines(write_file) -> None:
    path = write_file("dup.csv", HEADER + "a,10,4\n\nb,10,3\n\na,10,5\n")
    with pytest.raises(DataError) as info:
        read_ratings(path)
    assert info.value.line == 6
    assert "first at line 2" in str(info.value)


def test_data_error_is_value_error() -> None:
    assert issubclass(DataError, ValueError)


# -- regressions: blank lines, leading zeros, extra fields, message values ---------------------
def test_blank_line_keeps_integer_ids_integer(write_file) -> None:
    path = write_file("r.csv", HEADER + "1,10,4\n\n2,11,3\n")
    ratings = read_ratings(path)
    assert np.issubdtype(ratings.users.raw_ids.dtype, np.integer)
    assert np.issubdtype(ratings.items.raw_ids.dtype, np.integer)


def test_ids_with_leading_zeros_stay_distinct(write_file) -> None:
    path = write_file("r.csv", HEADER + "01,10,4\n1,10,3\n")
    ratings = read_ratings(path)
    assert ratings.n_users == 2
    assert sorted(ratings.users.raw_ids) == ["01", "1"]  # kept as text, as written
    assert np.issubdtype(ratings.items.raw_ids.dtype, np.integer)  # plain integers stay ints


def test_too_many_fields_on_first_data_line(write_file) -> None:
    path = write_file("r.csv", HEADER + "1,10,4,9\n2,10,3\n")
    with pytest.raises(DataError) as info:
        read_ratings(path)
    assert info.value.line == 2


def test_extra_field_on_every_line_is_not_silently_shifted(write_file) -> None:
    path = write_file("r.csv", HEADER + "1,10,4,9\n2,10,3,1\n")
    with pytest.raises(DataError):
        read_ratings(path)


@pytest.mark.parametrize("content", [HEADER + "1,10,inf\n", HEADER + "1,10,4\n1,10,5\n"],
                         ids=["inf", "duplicate"])
def test_messages_show_plain_values(write_file, content: str) -> None:
    with pytest.raises(DataError) as info:
        read_ratings(write_file("r.csv", content))
    assert "np." not in str(info.value)


def test_wrong_separator_hints_at_sep(write_file) -> None:
    path = write_file("r.csv", "user_id\titem_id\trating\n1\t2\t3\n")
    with pytest.raises(DataError) as info:
        read_ratings(path)
    assert "--sep" in str(info.value) and "\\t" in str(info.value)
    assert "\n" not in str(info.value) and "\t" not in str(info.value)


def test_folder_is_not_a_file(tmp_path) -> None:
    with pytest.raises(DataError, match="not a file"):
        read_ratings(tmp_path)
