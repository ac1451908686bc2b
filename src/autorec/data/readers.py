"""Readers that turn files and DataFrames into validated :class:`Ratings`.

Every problem in the input raises :class:`~autorec.exceptions.DataError` naming the source,
the line (1-based, as a text editor counts them, header included) and the field.

Ids go through :func:`autorec.data.ids.id_column` whatever the source (an id is its text);
ratings through :func:`rating_values` (numbers only, finite as ``float32``).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from os import PathLike
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
import pandas as pd

from ..exceptions import DataError
from ._arrow import PROGRESS_MIN_BYTES, LoadProgress, ReadColumns, min_bytes, read_columns, report
from ._duplicates import merge_repeats
from ._source import COMPRESSED_SUFFIXES, read_source
from ._text import read_text
from .ids import IdMap, InvalidIdError, id_column
from .ratings import Ratings, index_dtype

__all__ = ["DEFAULT_COLUMNS", "DuplicatePolicy", "LoadProgress", "as_ratings", "check_separator",
           "duplicate_error", "from_dataframe", "rating_values", "read_pairs", "read_ratings"]

log = logging.getLogger(__name__)

DuplicatePolicy = Literal["error", "last", "mean"]
DUPLICATE_POLICIES: tuple[str, ...] = ("error", "last", "mean")
DEFAULT_COLUMNS: tuple[str, str, str] = ("user_id", "item_id", "rating")
#: Names accepted for a tab separator besides the character itself.
TAB_NAMES: tuple[str, ...] = ("tab", "\\t")


def from_dataframe(
    frame: pd.DataFrame,
    *,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    duplicates: DuplicatePolicy = "error",
    source: str = "<DataFrame>",
    line_numbers: np.ndarray | None = None,
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
        Name used in error messages.
    line_numbers
        The line in ``source`` of each row, for error messages; without it, errors name the
        0-based row position.

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
        a date...), a rating is not a number or not finite as ``float32``, there is no
        rating at all, or a (user, item) pair repeats with ``duplicates="error"``.
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_POLICIES}, got {duplicates!r}")
    if len(columns) != 3:
        raise ValueError(f"columns must name the user, item and rating columns, got {columns!r}")
    user_col, item_col, rating_col = columns
    unit = "line" if line_numbers is not None else "row"

    def where(position: int) -> int:
        return int(line_numbers[position]) if line_numbers is not None else position

    for col in columns:
        if col not in frame.columns:
            present = ", ".join(repr(str(name)) for name in frame.columns)
            hint = ""
            if len(frame.columns) == 1 and any(c in str(frame.columns[0]) for c in "\t;|,: "):
                hint = "; is the field separator right? (--sep)"
            raise DataError(f"missing column (columns present: {present}){hint}",
                            source=source, field=col)
    if len(frame) == 0:
        raise DataError("no ratings", source=source)

    ids = {}
    for col in (user_col, item_col):
        try:
            ids[col] = id_column(frame[col])
        except InvalidIdError as exc:
            raise DataError(exc.problem, source=source, line=where(exc.position), field=col,
                            unit=unit) from None
    rating = rating_values(frame[rating_col], source=source, field=rating_col,
                           line_numbers=line_numbers)

    user_idx, user_ids = pd.factorize(ids[user_col])
    item_idx, item_ids = pd.factorize(ids[item_col])
    users, items = IdMap(user_ids), IdMap(item_ids)

    def refuse(position: int, first: int) -> NoReturn:
        raise duplicate_error(ids[user_col].iloc[position], ids[item_col].iloc[position],
                              source=source, line=where(position), first=where(first),
                              unit=unit)

    user_idx, item_idx, rating = merge_repeats(user_idx, item_idx, rating, len(items),
                                               duplicates=duplicates, source=source,
                                               refuse=refuse)
    return Ratings(user_idx.astype(index_dtype(len(users)), copy=False),
                   item_idx.astype(index_dtype(len(items)), copy=False),
                   rating.astype(np.float32, copy=False), users, items, source)


def duplicate_error(user: object, item: object, *, source: str, line: int, first: int,
                    unit: str = "line") -> DataError:
    """The error for a repeated (user, item) pair at ``line``, first seen at ``first``; the
    ids are shown as stored (integers plain, text quoted)."""
    return DataError(
        f"duplicate rating of user {_show(user)} for item {_show(item)} (first at {unit} "
        f"{first}); use duplicates='last' or 'mean' to accept repeats",
        source=source, line=line, unit=unit)


def rating_values(
    values: pd.Series,
    *,
    source: str = "<DataFrame>",
    field: str = "rating",
    line_numbers: np.ndarray | None = None,
) -> np.ndarray:
    """A rating column as ``float32``, checked: the one place that decides what a rating is.

    Accepted: numeric columns (integers, floats, nullable or Arrow-backed numbers) and text
    or object columns holding numbers or numeric text (``"4"``, ``" 3.5"``, ``"-2e1"``).
    Refused with :class:`DataError`: booleans, dates, durations, complex numbers, lists,
    dicts and other non-numbers, missing values, and values that are not finite once
    stored as ``float32`` (``1e39`` overflows to infinity).
    """
    unit = "line" if line_numbers is not None else "row"

    def fail(problem: str, position: int | None = None) -> DataError:
        line = None if position is None else (
            int(line_numbers[position]) if line_numbers is not None else position)
        return DataError(problem, source=source, line=line, field=field, unit=unit)

    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        values, dtype = values.astype(object), np.dtype(object)
    if pd.api.types.is_bool_dtype(dtype):
        raise fail("ratings are booleans (True/False), not numbers; convert them to 0/1 "
                   "if that is what they mean")
    if pd.api.types.is_complex_dtype(dtype):
        raise fail("ratings are complex numbers")
    if pd.api.types.is_numeric_dtype(dtype):
        rating = values.to_numpy(dtype=np.float64, na_value=np.nan)
    elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        kind = pd.api.types.infer_dtype(values, skipna=True)
        if kind not in ("string", "floating", "integer", "mixed-integer-float", "empty"):
            for position, value in enumerate(values.to_numpy(dtype=object)):
                if not _is_number_like(value):
                    raise fail(f"rating {_show(value)} is {_kind(value)}, not a number",
                               position)
        rating = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64,
                                                                  na_value=np.nan)
    else:
        raise fail(f"ratings must be numbers, got a column of {dtype} values")

    with np.errstate(over="ignore", invalid="ignore"):
        stored = rating.astype(np.float32)
    bad = ~np.isfinite(stored)
    if bad.any():
        position = int(bad.argmax())
        raw = values.iloc[position]
        if _is_missing(raw):
            problem = "missing rating"
        elif np.isfinite(rating[position]):
            problem = (f"rating {_show(raw)} is too large for float32 (largest finite value "
                       "3.4e38)")
        else:
            problem = f"rating {_show(raw)} is not a finite number"
        raise fail(problem, position)
    return stored


def _is_number_like(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return False
    if value is None or isinstance(value, str | int | float | Decimal | np.integer | np.floating):
        return True
    return _is_missing(value)


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, arrays: "truth value is ambiguous"
        return False


def _kind(value: object) -> str:
    """``"a list"``, ``"a dict"``...: what a value that is not a number is."""
    if isinstance(value, list | tuple | np.ndarray):  # Parquet lists arrive as arrays
        return "a list"
    name = type(value).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def _show(value: object) -> str:
    """A value as written in the source: strings quoted, numbers plain (no numpy repr), one
    short line whatever the value."""
    if isinstance(value, np.generic | np.ndarray):
        value = value.tolist()
    text = repr(value) if isinstance(value, str) else str(value)
    text = " ".join(text.split()) if not isinstance(value, str) else text
    return text if len(text) <= 60 else text[:57] + "..."


def check_separator(sep: str | None) -> str | None:
    """The field separator ``sep`` stands for; ``ValueError`` when it cannot be one.

    Accepted: ``None`` (guess from the extension), one ASCII character other than a quote
    or a line break, ``"::"``, and ``"tab"`` or ``"\\t"`` (backslash, t) for a tab.
    """
    if sep is None:
        return None
    if sep in TAB_NAMES:
        return "\t"
    if sep == "::" or (len(sep) == 1 and sep.isascii() and sep not in "\"\r\n"):
        return sep
    raise ValueError(f"must be one character (not a quote or line break), '::' or "
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
        every tenth of a file of 64 MB or more read block by block, and at each later stage.

    Notes
    -----
    Uncompressed text files of 1 MiB or more (``AUTOREC_FAST_READ_MIN_BYTES`` sets the
    size; ``0`` for every file) are streamed through pyarrow's multithreaded CSV parser,
    keeping about 12 bytes per rating besides the result. Whenever that reader meets
    anything unusual (quotes, blank lines, a malformed row, a bad id or rating), the file
    is read again the exact way, which names the line; results and messages are the same
    either way.

    Raises
    ------
    DataError
        The file is missing, empty, corrupt or malformed (a row with more or fewer fields
        than the header, text that is not UTF-8, a bad id or rating...), naming the file,
        line and field.
    ValueError
        ``sep`` cannot be a separator.
    """
    path = Path(path)
    try:
        sep = check_separator(sep)
    except ValueError as exc:
        raise ValueError(f"sep {exc}") from None
    if not path.exists():
        raise DataError("no such file", source=path)
    if not path.is_file():
        raise DataError("not a file", source=path)
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_POLICIES}, got {duplicates!r}")
    if len(columns) != 3:
        raise ValueError(f"columns must name the user, item and rating columns, got {columns!r}")
    size = path.stat().st_size
    if path.suffix.lower() not in (*COMPRESSED_SUFFIXES, ".parquet", ".pq") and \
            size >= min_bytes():
        started = time.perf_counter()
        shown = progress if size >= PROGRESS_MIN_BYTES else None
        read = read_columns(path, sep=sep if sep is not None else _guess_separator(path.name),
                            header=header, names=names, columns=columns, progress=shown,
                            started=started)
        if read is not None:
            return _checked_ratings(read, duplicates, str(path), shown, started)
    payload, name = read_source(path)
    if Path(name).suffix.lower() in (".parquet", ".pq"):
        return _read_parquet(payload.take(), path, columns, duplicates)
    frame, line_numbers = read_text(
        payload, sep=sep if sep is not None else _guess_separator(name), header=header,
        names=names, columns=columns, source=str(path))
    return from_dataframe(frame, columns=columns, duplicates=duplicates, source=str(path),
                          line_numbers=line_numbers)


def read_pairs(
    path: str | PathLike[str],
    *,
    sep: str | None = None,
    header: bool = True,
    columns: Sequence[str] = DEFAULT_COLUMNS[:2],
) -> tuple[pd.Series, pd.Series]:
    """Read (user, item) pairs to predict from a CSV, TSV, ``::`` or Parquet file.

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
    path = Path(path)
    try:
        sep = check_separator(sep)
    except ValueError as exc:
        raise ValueError(f"sep {exc}") from None
    if len(columns) != 2:
        raise ValueError(f"columns must name the user and item columns, got {columns!r}")
    if not path.exists():
        raise DataError("no such file", source=path)
    if not path.is_file():
        raise DataError("not a file", source=path)
    payload, name = read_source(path)
    line_numbers: np.ndarray | None = None
    if Path(name).suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(io.BytesIO(payload.take()))
        except ImportError as exc:
            raise DataError("reading Parquet needs pyarrow: pip install 'autorec[parquet]'",
                            source=path) from exc
        except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
            raise DataError(f"not a readable Parquet file ({type(exc).__name__})",
                            source=path) from None
    else:
        frame, line_numbers = read_text(
            payload, sep=sep if sep is not None else _guess_separator(name), header=header,
            names=None, columns=columns, source=str(path))
    unit = "line" if line_numbers is not None else "row"
    for col in columns:
        if col not in frame.columns:
            present = ", ".join(repr(str(c)) for c in frame.columns)
            raise DataError(f"missing column (columns present: {present})", source=path,
                            field=col)
    if len(frame) == 0:
        raise DataError("no pairs", source=path)
    ids = []
    for col in columns:
        try:
            ids.append(id_column(frame[col]))
        except InvalidIdError as exc:
            line = (int(line_numbers[exc.position]) if line_numbers is not None
                    else exc.position)
            raise DataError(exc.problem, source=path, line=line, field=col, unit=unit) from None
    return ids[0], ids[1]


def _checked_ratings(read: ReadColumns, duplicates: DuplicatePolicy, source: str,
                     progress: Callable[[LoadProgress], None] | None,
                     started: float) -> Ratings:
    """Ratings from the block reader's columns, repeated pairs refused or merged."""
    n_read = len(read.rating)
    total = Path(source).stat().st_size
    report(progress, source, "checking", total, n_read, started)

    def refuse(position: int, first: int) -> NoReturn:
        raise duplicate_error(read.users.raw_ids[read.user_idx[position]],
                              read.items.raw_ids[read.item_idx[position]], source=source,
                              line=read.first_line + position, first=read.first_line + first)

    user_idx, item_idx, rating = merge_repeats(read.user_idx, read.item_idx, read.rating,
                                               len(read.items), duplicates=duplicates,
                                               source=source, refuse=refuse)
    ratings = Ratings(user_idx, item_idx, rating, read.users, read.items, source)
    report(progress, source, "done", total, len(ratings), started)
    log.info("%s: %d ratings read block by block in %.1fs", source, len(ratings),
             time.perf_counter() - started)
    return ratings


def _read_parquet(data: bytes, path: Path, columns: Sequence[str],
                  duplicates: DuplicatePolicy) -> Ratings:
    try:
        frame = pd.read_parquet(io.BytesIO(data))
    except ImportError as exc:
        raise DataError(
            "reading Parquet needs pyarrow: pip install 'autorec[parquet]'", source=path
        ) from exc
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        problem = f"not a readable Parquet file ({type(exc).__name__})"
        raise DataError(problem, source=path) from None
    return from_dataframe(frame, columns=columns, duplicates=duplicates, source=str(path))


def _guess_separator(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in (".tsv", ".data", ".base", ".test", ".tab"):
        return "\t"
    if suffix == ".dat":
        return "::"
    return ","


def as_ratings(data: Ratings | pd.DataFrame) -> Ratings:
    """``data`` as :class:`Ratings`: itself, or a DataFrame validated by
    :func:`from_dataframe` (columns ``user_id``, ``item_id``, ``rating``)."""
    if isinstance(data, Ratings):
        return data
    if isinstance(data, pd.DataFrame):
        return from_dataframe(data)
    raise TypeError(f"expected Ratings or a pandas DataFrame, got {type(data).__name__}")
