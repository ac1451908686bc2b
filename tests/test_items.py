"""Item titles: the three MovieLens layouts and a user's CSV, ids matched by text."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from autorec import DataError
from autorec.data import DATASETS, dataset_item_titles, read_item_titles


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_ml100k_u_item_latin1(tmp_path: Path) -> None:
    data = ("1|Toy Story (1995)|01-Jan-1995||http://x|0|0\n"
            "2|Misérables, Les (1995)|01-Jan-1995||http://y|0|1\n\n").encode("latin-1")
    titles = read_item_titles(write(tmp_path / "u.item", data))
    assert list(titles.title_of([2, "1", 3])) == ["Misérables, Les (1995)", "Toy Story (1995)",
                                                  None]


def test_ml1m_movies_dat(tmp_path: Path) -> None:
    data = ("1::Toy Story (1995)::Animation|Children's|Comedy\r\n"
            "3952::Contender, The (2000)::Drama|Thriller\r\n"
            "7::Amélie (2001)::Comedy\r\n").encode("latin-1")
    titles = read_item_titles(write(tmp_path / "movies.dat", data))
    assert list(titles.title_of(["3952", 7])) == ["Contender, The (2000)", "Amélie (2001)"]


def test_ml_latest_movies_csv_quoted(tmp_path: Path) -> None:
    data = (b'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
            b'11,"American President, The (1995)",Comedy|Drama|Romance\n'
            b'12,"Dracula: Dead and Loving It (1995)",Comedy\n')
    titles = read_item_titles(write(tmp_path / "movies.csv", data))
    assert titles.title_of([11])[0] == "American President, The (1995)"
    assert len(titles) == 3


def test_user_csv_with_text_ids_compared_as_text(tmp_path: Path) -> None:
    data = "\ufeffitem_id,title,year\nmovie-1,First,2001\n007,Bond,1962\n7,Seven,1995\n"
    titles = read_item_titles(write(tmp_path / "titles.csv", data.encode()))
    assert list(titles.title_of(["007", "7", 7, "movie-1", "+7"])) == [
        "Bond", "Seven", "Seven", "First", None]


def test_compressed_file(tmp_path: Path) -> None:
    path = write(tmp_path / "movies.csv.gz", gzip.compress(b"movieId,title\n5,Five\n"))
    assert read_item_titles(path).title_of([5])[0] == "Five"


@pytest.mark.parametrize("name, data, needles", [
    ("t.csv", b"item_id,name\n1,x\n", ["t.csv", "field 'title'", "missing column"]),
    ("t.csv", b"item_id,title\n1,ok\n2,caf\xe9\n", ["t.csv", "line 3", "not UTF-8"]),
    ("t.csv", b"item_id,title\r1,a\r2,\xe9\r", ["line 3", "not UTF-8"]),  # lines end in \r
    ("t.csv", b"item_id,title\r\n1,a\r\n2,\xe9\r\n", ["line 3", "not UTF-8"]),
    ("t.csv", b"item_id,title\n1,a\n2,b\n1,c\n", ["line 4", "repeated (first at line 2)"]),
    ("t.csv", b"item_id,title\n1,a,extra\n", ["line 2", "expected 2 fields, found 3"]),
    ("t.csv", b"item_id,title\n,a\n", ["line 2", "missing value", "field 'item id'"]),
    ("t.csv", b"item_id,title\n", ["no items"]),
    ("t.csv", b"", ["empty file"]),
    ("u.item", b"1|Toy Story\nno separator here\n", ["u.item", "line 2", "'|'"]),
])
def test_bad_files_name_file_and_line(tmp_path: Path, name: str, data: bytes,
                                      needles: list[str]) -> None:
    with pytest.raises(DataError) as caught:
        read_item_titles(write(tmp_path / name, data))
    for needle in needles:
        assert needle in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_item_titles(tmp_path / "absent.csv")


def test_builtin_sets_know_their_item_file(tmp_path: Path) -> None:
    assert DATASETS["ml-100k"].items_file == "u.item"
    assert DATASETS["ml-1m"].items_file == "movies.dat"
    assert DATASETS["ml-latest-small"].items_file == "movies.csv"
    assert DATASETS["ml-100k"].published == (100_000, 943, 1_682)
    assert dataset_item_titles("ml-1m", tmp_path) is None  # not here: None, no download
    write(tmp_path / "ml-1m" / "ratings.dat", b"1::1::5::0\n")
    write(tmp_path / "ml-1m" / "movies.dat", b"1::Toy Story (1995)::Comedy\n")
    titles = dataset_item_titles("ml-1m", tmp_path)
    assert titles is not None and titles.title_of([1])[0] == "Toy Story (1995)"


@pytest.mark.real_data
def test_real_ml100k_titles(ml100k_dir: Path) -> None:
    titles = dataset_item_titles("ml-100k", ml100k_dir)
    assert titles is not None and len(titles) == 1682
    assert titles.title_of([1, 1682])[0] == "Toy Story (1995)"
