"""Readers that turn files and DataFrames into validated :class:`Ratings`.

Every problem in the input raises :class:`~autorec.exceptions.DataError` naming the source,
the line (1-based, as a text editor counts them, header included) and the field. Text files
are read by :mod:`._csv`, Netflix Prize files by :mod:`.netflix`, Parquet files by pyarrow.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import BinaryIO, Literal, NoReturn

import pandas as pd

from ..exceptions import DataError
from ._csv import LoadProgress, TextColumns, read_text, report
from ._duplicates import merge_repeats
from ._source import (
    COMPRESSED_SUFFIXES,
    arrow_input,
    check_columns,
    check_file,
    not_for,
    read_parquet,
    read_source,
)
from .ids import IdMap, InvalidIdError, id_column
from .netflix import is_netflix, read_netflix
from .ratings import Ratings
from .values import InvalidRatingError, rating_values, show

__all__ = ["DEFAULT_COLUMNS", "DuplicatePolicy", "LoadProgress", "as_ratings", "check_separator",
           "duplicate_error", "from_dataframe", "read_pairs", "read_ratings"]

log = logging.getLogger(__name__)

DuplicatePolicy = Literal["error", "last", "mean"]
DUPLICATE_POLICIES: tuple[str, ...] = ("error", "last", "mean")
DEFAULT_COLUMNS: tuple[str, str, str] = ("user_id", "item_id", "rating")
#: Files at least this large report their progress (smaller ones take a second or two).
PROGRESS_MIN_BYTES = 64_000_000  # "64 MB" in the README
_PARQUET = (".parquet", ".pq")
_SEPARATORS = {".tsv": "\t", ".data": "\t", ".base": "\t", ".test": "\t", ".tab": "\t",
               ".dat": "::"}


def from_dataframe(
    frame: pd.DataFrame,
    *,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    duplicates: DuplicatePolicy = "error",
    source: str = "<DataFrame>",
) -> Ratings:
    """Validate a DataFrame of ratings and build :class:`Ratings` from it.

    Parameters
    ----------
    frame
        One rating per row.
    columns
        Names of the user, item and rating columns, in that order.
    duplicates
        What to do with several ratings of the same (user, item) pair: ``"error"`` (default)
        raises, ``"last"`` keeps the last one, ``"mean"`` keeps their mean.
    source
        Name used in error messages, which name the 0-based row.

    Returns
    -------
    Ratings
        Users and items are numbered in order of first appearance. Ids are stored as
        ``int64`` when every id of the column is an integer (or the text of a canonical
        integer), else as text; see :mod:`autorec.data.ids`.

    Raises
    ------
    DataError
        A column is missing, an id is missing or is not an integer or text (a float, a list,
        a date...), a rating is not a number, not finite, or too large for its square to be
        finite as ``float32``, there is no rating at all, or a (user, item) pair repeats with
        ``duplicates="error"``.
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    _check_options(duplicates, columns, 3)
    rating_col = columns[2]
    check_columns(frame.columns, columns, source)
    if len(frame) == 0:
        raise DataError("no ratings", source=source)
    user_column, item_column = _id_columns(frame, columns[:2], source)
    try:
        rating = rating_values(frame[rating_col])
    except InvalidRatingError as exc:
        raise DataError(exc.problem, source=source, line=exc.position, field=rating_col,
                        unit="row") from None

    user_idx, user_ids = pd.factorize(user_column)
    item_idx, item_ids = pd.factorize(item_column)
    users, items = IdMap(user_ids), IdMap(item_ids)

    def refuse(position: int, first: int) -> NoReturn:
        raise duplicate_error(user_column.iloc[position], item_column.iloc[position],
                              source=source, line=position, first=first, unit="row")

    user_idx, item_idx, rating = merge_repeats(user_idx, item_idx, rating, len(items),
                                               duplicates=duplicates, source=source,
                                               refuse=refuse)
    return Ratings(user_idx, item_idx, rating, users, items, source)  # gives index_dtype


def duplicate_error(user: object, item: object, *, source: str, line: int, first: int,
                    unit: str = "line") -> DataError:
    """The error for a repeated (user, item) pair at ``line``, first seen at ``first``; the
    ids are shown as stored (integers plain, text quoted). The hint gives both spellings of
    the option: ``duplicates='last'`` in Python, ``--duplicates last`` on the command line."""
    return DataError(
        f"duplicate rating of user {show(user)} for item {show(item)} (first at {unit} "
        f"{first}); to accept repeats, use duplicates='last' or 'mean' (on the command line: "
        "--duplicates last or mean)", source=source, line=line, unit=unit)


def check_separator(sep: str | None) -> str | None:
    """The field separator ``sep`` stands for; ``ValueError`` when it cannot be one.

    Accepted: ``None`` (guess from the extension), one ASCII character other than a quote
    or a line break, ``"::"``, and ``"tab"`` or ``"\\t"`` (backslash, t) for a tab.
    """
    if sep is None:
        return None
    if sep in ("tab", "\\t"):
        return "\t"
    if sep == "::" or (len(sep) == 1 and sep.isascii() and sep not in "\"\r\n"):
        return sep
    raise ValueError(f"must be one ASCII character (not a quote or line break), '::' or "
                     f"'tab', got {sep!r}")


def read_ratings(
    path: str | PathLike[str],
    *,
    sep: str | None = None,
    header: bool = True,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    names: Sequence[str] | None = None,
    duplicates: DuplicatePolicy = "error",
    progress: Callable[[LoadProgress], None] | None = None,
) -> Ratings:
    """Read ratings from a CSV, TSV, ``::``-separated or Parquet file, perhaps compressed.

    Parameters
    ----------
    path
        The file. ``.parquet``/``.pq`` files are read with pyarrow; anything else as UTF-8
        text (a byte order mark is skipped; ``\\n``, ``\\r\\n`` and ``\\r`` line ends; fields
        may be quoted). ``.gz``, ``.bz2``, ``.xz`` and single-file ``.zip`` files are
        decompressed first, and the inner name decides the format (``ratings.csv.gz``).
    sep
        Field separator for text files: one character, ``"::"``, or ``"tab"``. ``None``
        guesses from the extension: ``.tsv``, ``.tab``, ``.data``, ``.base``, ``.test`` are
        tab-separated, ``.dat`` is ``::``-separated, everything else is comma-separated.
    header
        Whether the first line of a text file names the columns (names are stripped of
        surrounding spaces). Without a header, fields are named by ``names`` (default:
        ``columns`` followed by any extra fields).
    columns
        Names of the user, item and rating columns.
    names
        Names for all fields of a headerless file, e.g.
        ``("user_id", "item_id", "rating", "timestamp")``.
    duplicates
        Policy for repeated (user, item) pairs; see :func:`from_dataframe`.
    progress
        Called with a :class:`LoadProgress` (``str()`` of it is a one-line report) about
        every tenth of a text file of 64 MB or more, and at each later stage.

    Raises
    ------
    DataError
        The file is missing, empty, corrupt or malformed (a row with more or fewer fields
        than the header, text that is not UTF-8, a bad id or rating...), naming the file,
        line and field.
    ValueError
        ``sep`` cannot be a separator.
    """
    path, sep = _check_path(path, sep)
    _check_options(duplicates, columns, 3)
    started = time.perf_counter()
    open_raw, name, size = _open(path)
    if Path(name).suffix.lower() in _PARQUET:
        not_for(path, "a Parquet file", sep=sep, header=header, names=names)
        frame = _stripped_ids(read_parquet(open_raw, path), columns[:2])
        return _loaded(from_dataframe(frame, columns=columns, duplicates=duplicates,
                                      source=str(path)), None, size, started)
    source = str(path)
    shown = progress if size >= PROGRESS_MIN_BYTES else None
    if is_netflix(_first_line(open_raw)):
        not_for(path, "a Netflix Prize file", sep=sep, header=header, names=names,
                 columns=None if tuple(columns) == DEFAULT_COLUMNS else columns)
        ratings = read_netflix(lambda: arrow_input(path, open_raw), source,
                               lambda frame: from_dataframe(frame, duplicates=duplicates,
                                                            source=source),
                               progress=shown, total=size, started=started)
        return _loaded(ratings, shown, size, started)
    read = read_text(open_raw, sep=sep or _guess_separator(name), header=header, names=names,
                     columns=columns, source=source, total=size, progress=shown,
                     started=started)
    return _checked_ratings(read, duplicates, source, size, shown, started)


def read_pairs(
    path: str | PathLike[str],
    *,
    sep: str | None = None,
    header: bool = True,
    columns: Sequence[str] = DEFAULT_COLUMNS[:2],
) -> tuple[pd.Series, pd.Series]:
    """Read (user, item) pairs to predict from a CSV, TSV, ``::``, Netflix Prize or Parquet
    file.

    The file is read like :func:`read_ratings` reads ratings (same formats, compression, line
    ends and quoting), with ``columns`` naming the user and item columns; other columns
    (a rating, a timestamp) are allowed and ignored. Ids go through
    :func:`autorec.data.ids.id_column`, so they compare by text with a model's ids.

    Returns
    -------
    user_ids, item_ids : pandas.Series
        The raw ids, one pair per row, in file order.

    Raises
    ------
    DataError
        The file is missing, empty, has no pair, lacks a column, or holds a bad id; the
        message names the file, line and field.
    """
    path, sep = _check_path(path, sep)
    _check_options("error", columns, 2)
    open_raw, name, size = _open(path)
    if Path(name).suffix.lower() in _PARQUET:
        not_for(path, "a Parquet file", sep=sep, header=header)
        frame = read_parquet(open_raw, path)
        check_columns(frame.columns, columns, path, hint=False)
        if len(frame) == 0:
            raise DataError("no pairs", source=path)
        return tuple(_id_columns(_stripped_ids(frame, columns), columns, path))
    if is_netflix(_first_line(open_raw)):  # its ids; whatever follows them is not read
        not_for(path, "a Netflix Prize file", sep=sep, header=header,
                 columns=None if tuple(columns) == DEFAULT_COLUMNS[:2] else columns)
        return read_netflix(lambda: arrow_input(path, open_raw), str(path),
                            lambda frame: tuple(_id_columns(frame, DEFAULT_COLUMNS[:2], path)),
                            "pairs", pairs=True)
    read = read_text(open_raw, sep=sep or _guess_separator(name), header=header, names=None,
                     columns=columns, source=str(path), total=size)
    return tuple(pd.Series(ids.to_raw(idx)) for idx, ids in zip(read.idx, read.maps,
                                                                strict=True))


def _id_columns(frame: pd.DataFrame, columns: Sequence[str], source: str | Path
                ) -> list[pd.Series]:
    """``columns`` of ``frame`` through :func:`id_column`; a bad id names its 0-based row."""
    ids = []
    for col in columns:
        try:
            ids.append(id_column(frame[col]))
        except InvalidIdError as exc:
            raise DataError(exc.problem, source=source, line=exc.position, field=col,
                            unit="row") from None
    return ids


def _check_path(path: str | PathLike[str], sep: str | None) -> tuple[Path, str | None]:
    path = Path(path)
    try:
        sep = check_separator(sep)
    except ValueError as exc:
        raise ValueError(f"sep {exc}") from None
    check_file(path)
    return path, sep


def _check_options(duplicates: str, columns: Sequence[str], n: int) -> None:
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_POLICIES}, got {duplicates!r}")
    if len(columns) != n or len(set(columns)) != n:
        what = "user, item and rating" if n == 3 else "user and item"
        raise ValueError(f"columns must name the {what} columns, {n} different ones, got "
                         f"{columns!r}")


def _open(path: Path) -> tuple[Callable[[], BinaryIO], str, int]:
    """A function that opens the (decompressed) bytes of ``path``, the name that decides
    their format, and their size."""
    if path.suffix.lower() in COMPRESSED_SUFFIXES:
        data, name = read_source(path)
        return (lambda: io.BytesIO(data)), name, len(data)

    def open_file() -> BinaryIO:
        try:
            return open(path, "rb")  # closed by the reader
        except OSError as exc:
            raise DataError(f"cannot be read ({exc.strerror or exc})", source=path) from None

    open_file().close()
    return open_file, path.name, path.stat().st_size


def _checked_ratings(read: TextColumns, duplicates: DuplicatePolicy, source: str, total: int,
                     progress: Callable[[LoadProgress], None] | None,
                     started: float) -> Ratings:
    """Ratings from the text reader's columns, repeated pairs refused or merged."""
    (user_idx, item_idx), (users, items), rating = read.idx, read.maps, read.rating
    assert rating is not None
    report(progress, source, "checking", total, len(rating), started)

    def refuse(position: int, first: int) -> NoReturn:
        line, first_line = read.lines([position, first])
        raise duplicate_error(users.raw_ids[user_idx[position]],
                              items.raw_ids[item_idx[position]], source=source, line=line,
                              first=first_line)

    user_idx, item_idx, rating = merge_repeats(user_idx, item_idx, rating, len(items),
                                               duplicates=duplicates, source=source,
                                               refuse=refuse)
    return _loaded(Ratings(user_idx, item_idx, rating, users, items, source), progress, total,
                   started)


def _loaded(ratings: Ratings, progress: Callable[[LoadProgress], None] | None, total: int,
            started: float) -> Ratings:
    """``ratings``, read from a file: its last progress report and its log line."""
    report(progress, ratings.source, "done", total, len(ratings), started)
    log.info("%s: %d ratings read in %.1fs", ratings.source, len(ratings),
             time.perf_counter() - started)
    return ratings


def _first_line(open_raw: Callable[[], BinaryIO]) -> bytes:
    """The first non-blank line of the file's first 4 KiB (a byte order mark dropped)."""
    with open_raw() as raw:
        head = raw.read(4096).removeprefix(b"\xef\xbb\xbf")
    return next((line for line in head.splitlines() if line.strip()), b"")


def _stripped_ids(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` with the spaces and tabs around its text ids in ``columns`` dropped, as
    the text readers drop them (``" 2 "`` and ``"2"`` are one id in every file)."""
    frame = frame.copy(deep=False)
    for col in columns:
        if col not in frame.columns:
            continue
        column = frame[col]
        if isinstance(column.dtype, pd.CategoricalDtype) and not pd.api.types.is_numeric_dtype(
                column.cat.categories.dtype):  # Parquet's dictionary-encoded text ids
            column = column.astype(object)
        if isinstance(column.dtype, pd.StringDtype):
            frame[col] = column.str.strip(" \t")
        elif column.dtype == object:  # text among other values, each checked later
            frame[col] = column.map(lambda v: v.strip(" \t") if isinstance(v, str) else v)
    return frame


def _guess_separator(name: str) -> str:
    return _SEPARATORS.get(Path(name).suffix.lower(), ",")


def as_ratings(data: Ratings | pd.DataFrame, source: str = "<DataFrame>") -> Ratings:
    """``data`` as :class:`Ratings`: itself, or a DataFrame validated by
    :func:`from_dataframe` (columns ``user_id``, ``item_id``, ``rating``; errors name
    ``source``)."""
    if isinstance(data, Ratings):
        return data
    if isinstance(data, pd.DataFrame):
        return from_dataframe(data, source=source)
    raise TypeError(f"expected Ratings or a pandas DataFrame, got {type(data).__name__}")
