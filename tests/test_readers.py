"""read_ratings and from_dataframe: formats, and errors that name the file, line and field."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from autorec import DataError, from_dataframe, read_ratings
from autorec.data.readers import check_separator, read_pairs

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


@pytest.mark.parametrize("index", ["user_id", "rating"])
def test_a_parquet_column_pandas_saved_as_the_index_is_read(tmp_path: Path, index: str) -> None:
    """pandas' metadata made the index column the frame's index: "missing column"."""
    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": [1, 2], "rating": [3.0, 4.0]})
    path = tmp_path / "r.parquet"
    frame.set_index(index).to_parquet(path)
    assert sorted(triples(read_ratings(path))) == [("a", 1, 3.0), ("b", 2, 4.0)]
    frame.to_parquet(path, index=True)  # a default index saved as a column of its own
    assert sorted(triples(read_ratings(path))) == [("a", 1, 3.0), ("b", 2, 4.0)]


def test_a_binary_file_read_as_text_is_named_so_and_long_headers_are_cut(tmp_path: Path
                                                                          ) -> None:
    """A Parquet file named .csv, or a tar archive, got its bytes shown as column names (a
    2 KB line of NULs); a 20,000-column header gave a 189 KB line."""
    parquet = tmp_path / "r.csv"
    pd.DataFrame({"user_id": ["a"], "item_id": [1], "rating": [3.0]}).to_parquet(parquet)
    with pytest.raises(DataError) as error:
        read_ratings(parquet)
    assert str(error.value).endswith("give it the .parquet extension") and "\\x" not in str(
        error.value)
    tar = tmp_path / "r.csv"
    tar.write_bytes(b"small.csv" + b"\0" * 91 + HEADER.encode() + b"1,2,3\n")
    with pytest.raises(DataError, match=r"not text; an archive \(\.tar\?\)") as error:
        read_ratings(tar)
    assert len(str(error.value)) < 200
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(20_000)) + "\n" + "1," * 19_999 + "1\n")
    with pytest.raises(DataError) as error:
        read_ratings(wide)
    assert "'c9' and 19,990 more" in str(error.value) and len(str(error.value)) < 300


# "category": Parquet's dictionary-encoded text ids were left unstripped (users out of reach)
@pytest.mark.parametrize("dtype", [object, "string", "category"])
def test_parquet_ids_are_stripped_as_text_files_ids(tmp_path: Path, dtype) -> None:
    """A text file's " 2 " is user 2; a Parquet file's was a user of its own (and a pairs
    file's " 2 " missed the model's user 2)."""
    pytest.importorskip("pyarrow")
    from autorec.data.readers import read_pairs

    frame = pd.DataFrame({"user_id": pd.Series(["\t2 ", "3", " 3", "u 4 "], dtype=dtype),
                          "item_id": pd.Series([" 1", "1", "2 ", "1"], dtype=dtype),
                          "rating": [1.0, 3.0, 4.0, 5.0]})
    path = tmp_path / "r.parquet"
    frame.to_parquet(path)
    assert triples(read_ratings(path)) == [("2", 1, 1.0), ("3", 1, 3.0), ("3", 2, 4.0),
                                           ("u 4", 1, 5.0)]  # users are text: "u 4"
    users, items = read_pairs(path)
    assert list(map(str, users)) == ["2", "3", "3", "u 4"] and list(map(str, items)) == [
        "1", "1", "2", "1"]
    text = tmp_path / "r.csv"
    text.write_text("user_id,item_id,rating\n\t2 , 1,1\n3,1,3\n 3,2 ,4\nu 4 ,1,5\n")
    assert triples(read_ratings(text)) == triples(read_ratings(path))


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
    assert "duplicates='last'" in message  # says how to accept repeats, in Python
    assert "--duplicates last" in message  # and on the command line
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


# -- issue 5: input robustness -------------------------------------------------------------------
def error_of(path: Path, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        read_ratings(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    return info.value


@pytest.mark.parametrize("first", ["# ratings of 2024\n" + HEADER, "#" + HEADER])
def test_a_first_line_starting_with_a_hash_is_named_as_such(write_file, first: str) -> None:
    """A comment line (its words one column name) was told 'is the field separator right?
    (--sep)'."""
    message = str(error_of(write_file("r.csv", first + "1,2,3\n")))
    assert "starts with '#'" in message and "--sep" not in message


@pytest.mark.parametrize("line", ['""', '" "', '"",""'])
def test_a_line_of_quoted_blanks_is_named_by_its_line(write_file, line: str) -> None:
    """The parser refuses it (quotes are not blank to it), but the pass that finds the line
    took it for blank and skipped it: the message had no line."""
    error = error_of(write_file("r.csv", HEADER + "1,2,3\n" + line + "\n1,3,4\n"))
    assert names_line(str(error), 3) and "expected 3 fields" in str(error)


def test_an_id_is_its_text(write_file) -> None:
    users = ["1000", "1e3", "5", "5.0", "+5", "7"]
    lines = "".join(f"{u},{k % 2},3\n" for k, u in enumerate(users))
    ratings = read_ratings(write_file("r.csv", HEADER + lines))
    assert ratings.users.raw_ids.tolist() == users  # six distinct ids, kept as written
    assert ratings.items.raw_ids.tolist() == [0, 1]  # canonical integers stay integers


@pytest.mark.parametrize(
    "users",
    [["18446744073709551616", "1"], ["18446744073709551615", "-1"],
     ["12345678901234567890123", "007"], ["-0", "0"]],
    ids=["beyond-uint64", "uint64-and-negative", "23-digits-and-leading-zero", "minus-zero"],
)
def test_huge_and_odd_integer_ids_are_text(write_file, users) -> None:
    lines = "".join(f"{u},1,3\n" for u in users)
    assert read_ratings(write_file("r.csv", HEADER + lines)).users.raw_ids.tolist() == users


def test_huge_user_id_next_to_a_leading_zero_item_id(write_file) -> None:
    path = write_file("r.csv", HEADER + "12345678901234567890123,007,3\n1,7,4\n")
    ratings = read_ratings(path)
    assert ratings.users.raw_ids.tolist() == ["12345678901234567890123", "1"]
    assert ratings.items.raw_ids.tolist() == ["007", "7"]


def test_ids_with_spaces_and_na_words(write_file) -> None:
    ratings = read_ratings(write_file("r.csv", HEADER + " 5 ,NA,3\n6, null ,4\n"))
    assert ratings.users.raw_ids.tolist() == [5, 6]  # surrounding spaces are not part of an id
    assert ratings.items.raw_ids.tolist() == ["NA", "null"]  # words pandas reads as missing


def test_integer_ids_stay_integers_across_middle_blank_lines_and_decimals(write_file) -> None:
    ratings = read_ratings(write_file("r.csv", HEADER + "1,10,4.5\n\n2,11,3\n"))
    assert ratings.users.raw_ids.dtype == np.int64
    assert read_ratings(write_file("d.csv", HEADER + "1.0,10,4\n")).users.raw_ids.tolist() == [
        "1.0"]


@pytest.mark.parametrize(
    ("value", "ok"), [("1e39", False), ("-1e39", False), ("1e30", False), ("3.4e38", False),
                      ("-3e38", False), ("1.9e19", False), ("1.8e19", True), ("-1e19", True)])
def test_ratings_and_their_squares_must_be_finite_as_float32(write_file, value, ok) -> None:
    path = write_file("r.csv", HEADER + f"1,1,4\n2,1,{value}\n")
    if ok:
        rating = read_ratings(path).rating
        assert np.isfinite(rating * rating).all()
        return
    error = error_of(path)
    assert error.line == 3 and error.field == "rating" and "float32" in str(error)
    frame = pd.DataFrame({"user_id": [1, 2], "item_id": [1, 1], "rating": [4.0, float(value)]})
    with pytest.raises(DataError, match=r"row 1, field 'rating': rating .* too large"):
        from_dataframe(frame)


@pytest.mark.parametrize(("values", "ok"), [
    (["20000001", "20000003", "20000005"], False),  # float32: 20000000, 20000004, 20000004
    (["1000000", "1000000.01", "1000000.02"], False),
    (["1000000", "1000000.5", "1000001"], True),  # exact in float32
    (["1e19", "1.5e19", "1.7e19"], True),  # rounded, but by a tiny share of the spread
    (["-9.95", "0.05", "9.9"], True),  # Jester's
    (["20000001", "20000001", "20000001"], True),  # no spread: nothing to lose
])
def test_ratings_that_float32_would_merge_are_refused(write_file, values, ok) -> None:
    """20000001..20000005 were read as 20000000, 20000002 and 20000004 without a word: the
    scale and the RMSE were those of other values (README: Bad input)."""
    lines = "".join(f"{u},1,{v}\n" for u, v in enumerate(values, start=1))
    path = write_file("r.csv", HEADER + lines)
    if ok:
        assert len(read_ratings(path)) == 3
        return
    error = error_of(path)
    assert error.field == "rating" and "float32" in str(error) and "offset" in str(error)
    assert "\n" not in str(error)
    frame = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [1, 1, 1],
                          "rating": [float(v) for v in values]})
    with pytest.raises(DataError, match=r"field 'rating': rating .* is stored as .* float32"):
        from_dataframe(frame)


def test_a_long_field_or_record_gives_one_line_not_a_traceback(write_file) -> None:
    """The diagnostic pass met the csv module's 128 KiB field limit (a traceback, exit 1);
    a record past pyarrow's 4 MiB block was 'malformed (straddling object...)'."""
    long_id = "a" * 200_000
    path = write_file("l.csv", HEADER + f"1,10,5\n\n2,{long_id},3\n3,4,x\n")
    error = error_of(path)
    assert error.line == 5 and error.field == "rating"
    huge = write_file("h.csv", HEADER + "1,10,5\n2," + "b" * 5_000_000 + ",3\n3,4,5\n")
    error = error_of(huge)
    assert error.line == 3 and "longer than the reader's 4 MiB blocks" in str(error)
    import csv
    assert csv.field_size_limit() == 131072  # the process's limit put back


@pytest.mark.parametrize("header", ["user_id,item_id,rating,,", "user_id,item_id,rating,x,x",
                                    "user_id,item_id,rating,x,x,x.2"])
def test_unused_columns_may_share_a_name(write_file, header) -> None:
    """A spreadsheet export's empty trailing headers (or two unused 'x') were refused as a
    'malformed header', naming no field; a used column named twice still is refused."""
    extra = header.count(",") - 2
    path = write_file("d.csv", header + "\n" + "".join(f"{u},1,{u}" + "," * extra + "\n"
                                                      for u in (1, 2)))
    assert read_ratings(path).rating.tolist() == [1.0, 2.0]
    twice = write_file("t.csv", "user_id,item_id,rating,rating\n1,1,1,2\n")
    error = error_of(twice)
    assert error.field == "rating" and "2 columns have this name" in str(error)


def test_fewer_fields_than_the_header_is_an_error(write_file) -> None:
    path = write_file("s.csv", "user_id,item_id,rating,ts\n1,1,4,9\n1,2,3,9\n2,1,5\n2,3,2,9\n")
    error = error_of(path)
    assert error.line == 4 and "expected 4 fields, found 3" in str(error)
    # an empty last field is a field
    ok = write_file("e.csv", "user_id,item_id,rating,ts\n1,1,4,\n1,2,3,9\n")
    assert len(read_ratings(ok)) == 2


def test_fewer_fields_in_a_headerless_double_colon_file(write_file) -> None:
    path = write_file("ratings.dat", "1::1::5::9\n1::2::3::9\n2::1::4\n")
    error = error_of(path, header=False)
    assert error.line == 3 and "expected 4 fields, found 3" in str(error)
    error = error_of(path, header=False, names=("user_id", "item_id", "rating", "timestamp"))
    assert error.line == 3


@pytest.mark.parametrize(
    "ending", ["\r\n", "\r"], ids=["crlf", "cr-only"])
def test_line_endings(write_file, ending) -> None:
    text = ending.join([HEADER.strip(), "1,10,4", "", "2,10,3", "3,10,x"]) + ending
    path = write_file("r.csv", text)
    assert error_of(path).line == 5
    good = write_file("g.csv", ending.join([HEADER.strip(), "1,10,4", "2,11,3"]) + ending)
    assert triples(read_ratings(good)) == [(1, 10, 4.0), (2, 11, 3.0)]


def test_bom_and_header_spaces(write_file) -> None:
    path = write_file("r.csv", "\ufeffuser_id , item_id,rating \n1,10,4\n")
    assert triples(read_ratings(path)) == [(1, 10, 4.0)]


def test_leading_and_trailing_blank_lines(write_file) -> None:
    path = write_file("r.csv", "\n  \n" + HEADER + "1,10,4\n2,10,x\n\n\n")
    assert error_of(path).line == 5
    assert len(read_ratings(write_file("ok.csv", "\n" + HEADER + "1,10,4\n\n \n"))) == 1


def test_quoted_fields_and_line_numbers_after_a_quoted_line_break(write_file) -> None:
    text = (HEADER + '1,"The Matrix, 1999",4\n2,"two\nlines",3\n"3",10,5\n'
            '4,"say ""hi""",2\n5,10,x\n')
    path = write_file("r.csv", text)
    error = error_of(path)
    assert error.line == 7 and error.field == "rating"  # line 7 as an editor counts it
    ratings = read_ratings(write_file("ok.csv", text.replace("5,10,x", "5,10,1")))
    assert ratings.items.raw_ids.tolist() == ["The Matrix, 1999", "two\nlines", "10",
                                              'say "hi"']
    assert ratings.users.raw_ids.tolist() == [1, 2, 3, 4, 5]
    short = write_file("q.csv", HEADER + '1,"a\nb",3\n2,"c"\n')
    error = error_of(short)
    assert error.line == 4 and "expected 3 fields, found 2" in str(error)
    long = write_file("l.csv", HEADER + '1,"a\nb",3\n2,"c",3,4\n')
    assert error_of(long).line == 4


def test_encoding_errors_name_the_line(write_file, tmp_path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + "1,10,4\n2,caf\xe9,3\n").encode("latin-1"))
    error = error_of(path)
    assert error.line == 3 and "UTF-8" in str(error)
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes((HEADER + "1,10,4\n").encode("utf-16"))
    assert "UTF-16" in str(error_of(utf16))


def test_gzip_named_like_plain_text_gives_a_hint(tmp_path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(gzip.compress((HEADER + "1,10,4\n").encode()))
    assert ".gz" in str(error_of(path))
    # a .gz compressed twice: "give it the .gz extension" could not help
    twice = tmp_path / "r.csv.gz"
    twice.write_bytes(gzip.compress(gzip.compress((HEADER + "1,10,4\n").encode())))
    message = str(error_of(twice))
    assert "compressed twice" in message and "extension" not in message, message


COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}


@pytest.mark.parametrize("suffix", [*COMPRESSORS, ".zip"])
def test_compressed_files(tmp_path, suffix) -> None:
    text = "1\t10\t4\t9\n2\t10\t3\t9\n"
    path = tmp_path / f"u.data{suffix}"  # the inner name decides the format: tab-separated
    if suffix == ".zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("ml/u.data", text)
    else:
        path.write_bytes(COMPRESSORS[suffix](text.encode()))
    ratings = read_ratings(path, header=False)
    assert triples(ratings) == [(1, 10, 4.0), (2, 10, 3.0)]
    assert ratings.source == str(path)


def test_compressed_parquet(tmp_path) -> None:
    pytest.importorskip("pyarrow")
    buffer = io.BytesIO()
    pd.DataFrame({"user_id": [1, 2], "item_id": ["a", "b"], "rating": [4.0, 3.0]}).to_parquet(
        buffer)
    path = tmp_path / "r.parquet.gz"
    path.write_bytes(gzip.compress(buffer.getvalue()))
    assert triples(read_ratings(path)) == [(1, "a", 4.0), (2, "b", 3.0)]


def test_bad_compressed_files(tmp_path) -> None:
    corrupt = tmp_path / "r.csv.gz"
    corrupt.write_bytes(gzip.compress((HEADER + "1,10,4\n").encode())[:-12])
    assert "gzip" in str(error_of(corrupt))
    not_zip = tmp_path / "r.csv.zip"
    not_zip.write_bytes(b"hello")
    assert "zip" in str(error_of(not_zip))
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("a.csv", HEADER + "1,10,4\n")
        archive.writestr("b.csv", HEADER + "1,10,4\n")
    message = str(error_of(two))
    assert "2 files" in message and "a.csv" in message


@pytest.mark.parametrize(
    ("sep", "expected"), [("tab", "\t"), ("\\t", "\t"), ("\t", "\t"), (";", ";"), ("::", "::"),
                          (None, None)])
def test_separator_names(sep, expected) -> None:
    assert check_separator(sep) == expected


@pytest.mark.parametrize("sep", ["", "[,", ",,", '"', "\n", "§"])
def test_bad_separators_are_refused_before_reading(tmp_path, sep) -> None:
    with pytest.raises(ValueError, match=r"^sep ") as info:
        read_ratings(tmp_path / "does-not-exist.csv", sep=sep)
    assert not isinstance(info.value, DataError)
    if sep == "§":  # one character, but not ASCII: "must be one character" was wrong
        assert "must be one ASCII character" in str(info.value)


# -- Parquet and DataFrame columns -------------------------------------------------------------
def frame_of(**columns) -> pd.DataFrame:
    base = {"user_id": [1, 2], "item_id": [10, 11], "rating": [4.0, 3.0]}
    return pd.DataFrame({**base, **columns})


@pytest.mark.parametrize(
    ("column", "values", "row", "words"),
    [
        ("user_id", [{"a": 1}, {"b": 2}], 0, "dict"),
        ("item_id", [10, [1, 2]], 1, "list"),
        ("item_id", [10.5, 11.0], 0, "floating-point"),
        ("rating", [[4.0], [3.0]], 0, "list"),
        ("rating", [4.0, {"x": 1}], 1, "dict"),
        ("rating", [True, False], None, "boolean"),
        ("rating", pd.to_datetime(["2000-01-01", "2000-01-02"]), None, "datetime64"),
        ("rating", pd.to_timedelta([1, 2], unit="s"), None, "timedelta64"),
        ("rating", [1e39, 3.0], 0, "float32"),
    ],
    ids=["dict-ids", "list-ids", "float-ids", "list-ratings", "dict-rating", "bool-ratings",
         "datetime-ratings", "timedelta-ratings", "overflow"],
)
def test_dataframe_columns_that_are_refused(column, values, row, words) -> None:
    frame = frame_of(**{column: pd.Series(values)})
    with pytest.raises(DataError) as info:
        from_dataframe(frame)
    error, message = info.value, str(info.value)
    assert error.field == column and words in message and "\n" not in message, message
    if row is not None:
        assert f"row {row}" in message


def test_parquet_columns_that_are_refused(tmp_path) -> None:
    pytest.importorskip("pyarrow")
    dated = tmp_path / "dated.parquet"
    frame_of(rating=pd.to_datetime(["2000-01-01", "2000-01-02"])).to_parquet(dated)
    assert "datetime64" in str(error_of(dated))
    listed = tmp_path / "listed.parquet"
    frame_of(rating=[[4.0, 1.0], [3.0]]).to_parquet(listed)
    error = error_of(listed)
    assert "not a number" in str(error) and error.line == 0
    dicts = tmp_path / "dicts.parquet"
    frame_of(user_id=[{"a": 1}, {"a": 2}]).to_parquet(dicts)
    error = error_of(dicts)
    assert error.field == "user_id" and "row 0" in str(error)


def test_dataframe_accepts_numbers_as_text_and_nullable_numbers() -> None:
    frame = frame_of(rating=pd.Series(["4", " 3.5"]), user_id=pd.Series([1, 2], dtype="Int64"))
    ratings = from_dataframe(frame)
    assert ratings.rating.tolist() == [4.0, 3.5] and ratings.users.raw_ids.tolist() == [1, 2]


def test_a_reader_stopped_by_an_error_is_held_and_its_stream_ended(write_file) -> None:
    """A bad line stops pyarrow's reader; its Python file, the reader and the bytes it read
    are held to the end of the process and the rest of the stream reads as empty: released
    later in a pyarrow thread while the interpreter shut down, they aborted the process
    (status 134, about 1 bad input in 10 on busy cores)."""
    from autorec.data import _csv, _source

    before = len(_source._HELD)
    path = write_file("bad.csv", "user_id,item_id,rating\n1,1,5\n,2,4\n")
    with pytest.raises(DataError, match="line 3"):
        read_ratings(path)
    assert len(_source._HELD) == before + 1 or len(_source._HELD) == _source._HELD.maxlen
    handle, reader = _source._HELD[-1]
    assert isinstance(handle, pa.PythonFile) and reader is not None
    stream = _csv._Stream(io.BytesIO(b"a,b\n"), b"", False)
    with pytest.raises(KeyError), _source.held_on_error([], stream):
        raise KeyError("x")
    assert stream.stopped and stream.read(10) == b"" and stream.ended.is_set()


def test_to_dataframe_gives_a_frame_of_its_own() -> None:
    """The frame is built without a second copy of its columns, but changing it never changes
    the ratings it came from."""
    ratings = from_dataframe(pd.DataFrame({"user_id": [1, 2, 2], "item_id": [5, 5, 6],
                                           "rating": [3.0, 4.0, 5.0]}))
    frame = ratings.to_dataframe()
    frame.loc[0, "rating"] = 1.0
    frame.loc[0, "user_id"] = 99
    assert ratings.rating.tolist() == [3.0, 4.0, 5.0]
    assert ratings.user_ids.tolist() == [1, 2, 2]


def test_from_dataframe_names_a_wrong_type() -> None:
    # was AttributeError: 'dict' object has no attribute 'columns'
    with pytest.raises(TypeError, match="expected a pandas DataFrame, got dict"):
        from_dataframe({"user_id": [1], "item_id": [1], "rating": [1.0]})


def test_a_file_without_its_header_is_told_to_use_no_header(tmp_path: Path) -> None:
    # "u.data.gz" (no header line) was refused naming its first ratings as the columns
    path = tmp_path / "u.data"
    path.write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    with pytest.raises(DataError, match=re.escape("; is the first line data, not a header? "
                                                  "(--no-header)")):
        read_ratings(path)
    named = tmp_path / "named.csv"
    named.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError) as caught:
        read_ratings(named)
    assert "--no-header" not in str(caught.value)
    with pytest.raises(DataError) as caught:  # a DataFrame's integer labels are not a line
        from_dataframe(pd.DataFrame({0: [1], 1: [2], 2: [3.0]}))
    assert "--no-header" not in str(caught.value)


@pytest.mark.parametrize("source", ["csv", "parquet", "dataframe"])
def test_unicode_spaces_around_a_rating_are_read_from_every_source(tmp_path, source) -> None:
    # the text reader (pyarrow) trims them; Parquet and DataFrames refused "3\xa0" as too large
    frame = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 1],
                          "rating": ["3\u00a0", "\u2003 4", "5"]})
    if source == "csv":
        path = tmp_path / "r.csv"
        frame.to_csv(path, index=False)
        ratings = read_ratings(path)
    elif source == "parquet":
        path = tmp_path / "r.parquet"
        frame.to_parquet(path)
        ratings = read_ratings(path)
    else:
        ratings = from_dataframe(frame)
    assert ratings.rating.tolist() == [3.0, 4.0, 5.0]
    bad = frame.assign(rating=["3", "1_000", "4"])
    with pytest.raises(DataError, match=r"row 1, field 'rating': rating '1_000' is not a number"):
        from_dataframe(bad)
    for dtype in ("string", "string[pyarrow]", object):  # a missing one is named, no traceback
        with pytest.raises(DataError, match=r"row 1, field 'rating': missing rating"):
            from_dataframe(frame.assign(rating=pd.Series(["4", None, "3\u00a0"], dtype=dtype)))


def test_one_column_for_two_roles_is_refused(tmp_path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("a,b,r\n1,2,3\n2,2,4\n")
    with pytest.raises(ValueError, match=r"3 different ones, got \('a', 'a', 'r'\)"):
        read_ratings(path, columns=("a", "a", "r"))
    with pytest.raises(ValueError, match=r"3 different ones"):
        from_dataframe(pd.read_csv(path), columns=("a", "a", "r"))
    with pytest.raises(ValueError, match=r"2 different ones"):
        read_pairs(path, columns=("a", "a"))


def test_the_data_digest_tells_a_nul_inside_an_id_from_two_ids() -> None:
    from autorec.data.ratings import sha256_of

    joined = np.array(["a\0b"], dtype=object)
    assert sha256_of(joined) != sha256_of(np.array(["a", "b"], dtype=object))
    assert sha256_of(joined) == sha256_of(joined.copy())
    # every other text keeps its digest: checkpoints and studies made before still match
    assert sha256_of(np.array(["a", "b"], dtype=object)) == (
        "65fcaae27599751b1874c9774757c525a7e3b83c5601403ea330d7997f458a91")
