"""Builtin MovieLens data sets: local lookup, environment variables, layouts, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autorec import DatasetUnavailableError, load_dataset
from autorec.data import DATASETS, dataset_path

ML1M_LINES = "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"
LATEST_CSV = ("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n"
              "2,1,2.5,964982224\n")


@pytest.fixture(autouse=True)
def _no_data_dir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests here set AUTOREC_DATA_DIR themselves when they want it."""
    monkeypatch.delenv("AUTOREC_DATA_DIR", raising=False)


@pytest.mark.real_data
def test_ml100k_counts(ml100k_dir: Path) -> None:
    ratings = load_dataset("ml-100k", data_dir=ml100k_dir, download=False)
    assert len(ratings) == 100_000
    assert ratings.n_users == 943
    assert ratings.n_items == 1682
    assert ratings.rating_scale() == (1.0, 5.0)
    # first line of u.data is "196 242 3 881250949"
    assert (ratings.user_ids[0], ratings.item_ids[0], ratings.rating[0]) == (196, 242, 3.0)


@pytest.mark.real_data
def test_env_var_is_honoured(ml100k_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOREC_DATA_DIR", str(ml100k_dir))
    assert dataset_path("ml-100k", download=False) == ml100k_dir / "ml-100k"
    assert len(load_dataset("ml-100k", download=False)) == 100_000


def test_env_var_is_honoured_synthetic(tmp_path: Path, write_file,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    write_file("data/ml-1m/ratings.dat", ML1M_LINES)
    monkeypatch.setenv("AUTOREC_DATA_DIR", str(tmp_path / "data"))
    assert len(load_dataset("ml-1m", download=False)) == 3


def test_data_dir_argument_beats_env_var(tmp_path: Path, write_file,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    write_file("a/ml-1m/ratings.dat", ML1M_LINES)
    write_file("b/ml-1m/ratings.dat", ML1M_LINES.splitlines(keepends=True)[0])
    monkeypatch.setenv("AUTOREC_DATA_DIR", str(tmp_path / "b"))
    assert len(load_dataset("ml-1m", tmp_path / "a", download=False)) == 3
    assert len(load_dataset("ml-1m", download=False)) == 1


def test_a_data_dir_that_is_not_a_folder_is_refused(tmp_path: Path, write_file,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """$AUTOREC_DATA_DIR misspelt was passed over without a word (--data-dir is refused)."""
    monkeypatch.setenv("AUTOREC_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(DatasetUnavailableError, match=r"AUTOREC_DATA_DIR=.*missing is no such "
                                                      r"folder"):
        load_dataset("ml-1m", download=False)
    a_file = write_file("a-file", "x")
    with pytest.raises(DatasetUnavailableError, match=r"data dir .*a-file is not a folder"):
        load_dataset("ml-1m", a_file, download=False)


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(ValueError) as info:
        load_dataset("ml-7k", download=False)
    message = str(info.value)
    assert "ml-7k" in message
    for name in DATASETS:
        assert name in message
    with pytest.raises(ValueError, match=r"unknown data set 'ML-100K' \(did you mean "
                                         r"'ml-100k'\?\)"):
        load_dataset("ML-100K")


def test_bad_download_and_data_dir_values_are_refused(tmp_path: Path, _isolated_cache: Path
                                                      ) -> None:
    with pytest.raises(ValueError, match=r"download must be None, True or False, got 'no'"):
        load_dataset("ml-100k", download="no")  # type: ignore[arg-type]
    with pytest.raises(DatasetUnavailableError, match=r"data dir  is an empty path"):
        load_dataset("ml-100k", "", download=False)  # it meant the current folder


@pytest.mark.parametrize("damage", ["folder", "missing", "broken link"])
def test_a_damaged_copy_in_the_data_dir_is_named_not_passed_over(
        tmp_path: Path, _isolated_cache: Path, write_file, damage: str) -> None:
    """DIR/ml-100k without a readable u.data was passed over for the cache's copy (or a
    download), so another copy's files were used without a word."""
    folder = tmp_path / "dd" / "ml-100k"
    folder.mkdir(parents=True)
    if damage == "folder":
        (folder / "u.data").mkdir()
    elif damage == "broken link":
        (folder / "u.data").symlink_to(tmp_path / "gone")
    cached = _isolated_cache / "ml-100k"
    cached.mkdir()
    (cached / "u.data").write_text("1\t2\t3\t4\n")
    with pytest.raises(DatasetUnavailableError,
                       match=rf"{folder / 'u.data'} is (a )?{damage}: the copy of ml-100k in "):
        load_dataset("ml-100k", tmp_path / "dd")


def test_absent_without_download(tmp_path: Path, _isolated_cache: Path) -> None:
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("ml-100k", tmp_path, download=False)
    message = str(info.value)
    assert "--data-dir" in message
    assert "AUTOREC_DATA_DIR" in message
    assert "ml-100k/u.data" in message
    assert str(tmp_path) in message
    assert isinstance(info.value, ValueError)
    # nothing was downloaded or unpacked into the cache
    assert list(_isolated_cache.iterdir()) == []


def test_ml1m_layout(tmp_path: Path, write_file) -> None:
    write_file("ml-1m/ratings.dat", ML1M_LINES)
    ratings = load_dataset("ml-1m", tmp_path, download=False)
    assert ratings.user_ids.tolist() == [1, 1, 2]
    assert ratings.item_ids.tolist() == [1193, 661, 1193]
    assert ratings.rating.tolist() == [5.0, 3.0, 4.0]


def test_archive_folder_name_is_accepted(tmp_path: Path, write_file) -> None:
    # the ml-10m archive unpacks into ml-10M100K
    write_file("ml-10M100K/ratings.dat", ML1M_LINES)
    assert dataset_path("ml-10m", tmp_path, download=False) == tmp_path / "ml-10M100K"
    assert len(load_dataset("ml-10m", tmp_path, download=False)) == 3


def test_latest_small_csv_layout(tmp_path: Path, write_file) -> None:
    write_file("ml-latest-small/ratings.csv", LATEST_CSV)
    ratings = load_dataset("ml-latest-small", tmp_path, download=False)
    assert ratings.user_ids.tolist() == [1, 1, 2]
    assert ratings.item_ids.tolist() == [1, 3, 1]
    np.testing.assert_array_equal(ratings.rating, np.array([4.0, 4.5, 2.5], dtype=np.float32))


def test_cache_dir_is_searched(_isolated_cache: Path, tmp_path: Path) -> None:
    folder = _isolated_cache / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text(ML1M_LINES)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert dataset_path("ml-1m", empty, download=False) == folder


def test_data_errors_in_builtin_files_name_the_file(tmp_path: Path, write_file) -> None:
    path = write_file("ml-1m/ratings.dat", ML1M_LINES + "3::5::x::1\n")
    with pytest.raises(ValueError) as info:
        load_dataset("ml-1m", tmp_path, download=False)
    assert str(path) in str(info.value) and "line 4" in str(info.value)


def test_a_damaged_copy_is_a_row_of_the_listing_and_either_name_of_ml10m_counts(
        tmp_path: Path, _isolated_cache: Path, capsys) -> None:
    """The damaged-copy refusal stopped `autorec datasets` listing, and refused a whole
    ml-10M100K copy when an ml-10m folder stood beside it."""
    from autorec.cli.main import main

    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "README.txt").write_text("notes")
    (tmp_path / "ml-10m").mkdir()
    (tmp_path / "ml-10M100K").mkdir()
    (tmp_path / "ml-10M100K" / "ratings.dat").write_text("1::1::5::0\n")
    assert dataset_path("ml-10m", tmp_path, download=False) == tmp_path / "ml-10M100K"
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"no: {tmp_path / 'ml-1m' / 'ratings.dat'} is missing" in out
    assert f"yes ({tmp_path / 'ml-10M100K'})" in out
