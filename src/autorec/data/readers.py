"""Readers that turn files and DataFrames into validated :class:`Ratings`.

Every problem in the input raises :class:`~autorec.exceptions.DataError` naming the source,
the line (1-based, as a text editor counts them, header included) and the field.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..exceptions import DataError
from .ids import IdMap
from .ratings import Ratings

__all__ = ["DEFAULT_COLUMNS", "DuplicatePolicy", "from_dataframe", "read_ratings"]

log = logging.getLogger(__name__)

DuplicatePolicy = Literal["error", "last", "mean"]
DUPLICATE_POLICIES: tuple[str, ...] = ("error", "last", "mean")
DEFAULT_COLUMNS: tuple[str, str, str] = ("user_id", "item_id", "rating")

_TOKENIZE_ERROR = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


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
        Users and items are numbered in order of first appearance.

    Raises
    ------
    DataError
        A column is missing, an id is missing, a rating is not a finite number, there is no
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

    for col in (user_col, item_col):
        missing = frame[col].isna().to_numpy()
        if missing.any():
            raise DataError("missing value", source=source, line=where(int(missing.argmax())),
                            field=col, unit=unit)

    raw_rating = frame[rating_col]
    rating = pd.to_numeric(raw_rating, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(rating)
    if bad.any():
        position = int(bad.argmax())
        raw = raw_rating.iloc[position]
        problem = ("missing rating" if pd.isna(raw)
                   else f"rating {_show(raw)} is not a finite number")
        raise DataError(problem, source=source, line=where(position), field=rating_col, unit=unit)

    users = IdMap.from_values(frame[user_col].to_numpy())
    items = IdMap.from_values(frame[item_col].to_numpy())
    user_idx = users.to_index(frame[user_col].to_numpy())
    item_idx = items.to_index(frame[item_col].to_numpy())

    key = user_idx * len(items) + item_idx
    repeated = pd.Series(key).duplicated(keep="first").to_numpy()
    if repeated.any():
        if duplicates == "error":
            position = int(repeated.argmax())
            first = int(np.flatnonzero(key == key[position])[0])
            raise DataError(
                f"duplicate rating of user {_show(frame[user_col].iloc[position])} for item "
                f"{_show(frame[item_col].iloc[position])} (first at {unit} {where(first)}); "
                "use duplicates='last' or 'mean' to accept repeats",
                source=source, line=where(position), unit=unit,
            )
        n_dup = int(repeated.sum())
        log.info("%s: merging %d repeated (user, item) ratings with policy %r",
                 source, n_dup, duplicates)
        grouped = pd.DataFrame({"key": key, "rating": rating}).groupby("key", sort=False)
        merged = grouped["rating"].last() if duplicates == "last" else grouped["rating"].mean()
        key = merged.index.to_numpy()
        rating = merged.to_numpy()
        user_idx, item_idx = np.divmod(key, len(items))

    return Ratings(user_idx.astype(np.int64), item_idx.astype(np.int64),
                   rating.astype(np.float32), users, items, source)


def _show(value: object) -> str:
    """A value as written in the source: strings quoted, numbers plain (no numpy repr)."""
    if isinstance(value, str):
        return repr(value)
    return str(value.item() if isinstance(value, np.generic) else value)


def read_ratings(
    path: str | PathLike[str],
    *,
    sep: str | None = None,
    header: bool = True,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    names: Sequence[str] | None = None,
    duplicates: DuplicatePolicy = "error",
) -> Ratings:
    """Read ratings from a CSV, TSV, ``::``-separated or Parquet file.

    Parameters
    ----------
    path
        The file. ``.parquet``/``.pq`` files are read with pyarrow; anything else as text.
    sep
        Field separator for text files. ``None`` guesses from the extension: ``.tsv``,
        ``.data``, ``.base``, ``.test`` are tab-separated, ``.dat`` is ``::``-separated,
        everything else is comma-separated.
    header
        Whether the first line of a text file names the columns. Without a header, fields are
        named by ``names`` (default: ``columns`` followed by any extra fields).
    columns
        Names of the user, item and rating columns.
    names
        Names for all fields of a headerless file, e.g.
        ``("user_id", "item_id", "rating", "timestamp")``.
    duplicates
        Policy for repeated (user, item) pairs; see :func:`from_dataframe`.

    Raises
    ------
    DataError
        The file is missing, empty or malformed, naming the file, line and field.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("no such file", source=path)
    if not path.is_file():
        raise DataError("not a file", source=path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return _read_parquet(path, columns, duplicates)

    if sep is None:
        sep = _guess_separator(path)
    data = path.read_bytes()
    if not data.strip():
        raise DataError("empty file", source=path)
    if sep == "::":
        data, sep = data.replace(b"::", b"\t"), "\t"
    if not header and names is None:
        names = _headerless_names(data, sep, columns)
    _check_first_line_width(data, sep, None if header else len(names), path)  # type: ignore[arg-type]
    # Ids are read as numbers (fast) unless some field has a leading zero ("007"), which
    # numbers would merge with "7": then ids are read as text and kept as text.
    id_dtype = {col: str for col in columns[:2]} if _has_leading_zero(data, sep) else None
    try:
        frame = pd.read_csv(
            io.BytesIO(data),
            sep=sep,
            header=0 if header else None,
            names=None if header else list(names),  # type: ignore[arg-type]
            index_col=False,
            dtype=id_dtype,
            skip_blank_lines=False,
            engine="c",
            low_memory=False,
        )
    except pd.errors.ParserError as exc:
        raise _parser_error(exc, path) from None
    except (UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"cannot be read as text ratings ({exc})", source=path) from None

    blank = frame.isna().all(axis=1).to_numpy()
    line_numbers = np.arange(len(frame), dtype=np.int64) + (2 if header else 1)
    if blank.any():
        frame = frame.loc[~blank]
        line_numbers = line_numbers[~blank]
    for col in columns[:2]:
        if col in frame.columns:
            frame[col] = _integer_ids_if_possible(frame[col])
    return from_dataframe(frame, columns=columns, duplicates=duplicates, source=str(path),
                          line_numbers=line_numbers)


def _read_parquet(path: Path, columns: Sequence[str], duplicates: DuplicatePolicy) -> Ratings:
    try:
        frame = pd.read_parquet(path)
    except ImportError as exc:
        raise DataError(
            "reading Parquet needs pyarrow: pip install 'autorec[parquet]'", source=path
        ) from exc
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        problem = f"not a readable Parquet file ({type(exc).__name__})"
        raise DataError(problem, source=path) from None
    return from_dataframe(frame, columns=columns, duplicates=duplicates, source=str(path))


def _check_first_line_width(data: bytes, sep: str, n_names: int | None, path: Path) -> None:
    """Fail when the first data line has more fields than the header (or ``names``).

    pandas would otherwise take the extra leading field as an index and shift the columns;
    later lines are checked by the parser itself.
    """
    lines = _non_blank_lines(data)
    expected = n_names
    for line_number, line in lines:
        fields = _split_fields(line, sep)
        if expected is None:  # this is the header
            expected = len(fields)
            continue
        if len(fields) > expected:
            raise DataError(f"expected {expected} fields, found {len(fields)}", source=path,
                            line=line_number)
        return


def _non_blank_lines(data: bytes, limit: int = 2) -> list[tuple[int, str]]:
    """The first ``limit`` non-blank lines with their 1-based line numbers."""
    found: list[tuple[int, str]] = []
    start, number = 0, 0
    while start <= len(data) and len(found) < limit:
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        number += 1
        line = data[start:end].decode("utf-8", errors="replace").rstrip("\r")
        if line.strip():
            found.append((number, line))
        start = end + 1
    return found


def _split_fields(line: str, sep: str) -> list[str]:
    if len(sep) == 1:
        return next(csv.reader([line], delimiter=sep))
    return line.split(sep)


def _has_leading_zero(data: bytes, sep: str) -> bool:
    """Whether some field starts with ``0`` and another digit (``007``).

    One regex per field boundary: a pattern with a literal prefix is searched with a fast
    substring scan (0.15 s for 280 MB), an alternation would take 20 times longer.
    """
    if data[:1] == b"0" and data[1:2].isdigit():
        return True
    return any(re.search(re.escape(boundary) + rb"0[0-9]", data) is not None
               for boundary in (b"\n", sep.encode()))


_INTEGER_TEXT = r"-?(?:0|[1-9][0-9]*)"


def _integer_ids_if_possible(ids: pd.Series) -> pd.Series:
    """Integer ids as ``int64``: undoes float columns (caused by blank lines) and text columns
    whose every value is written as a plain integer. Anything else is left as it is."""
    if ids.isna().any():
        return ids  # reported as a missing value later
    if pd.api.types.is_float_dtype(ids.dtype):
        values = ids.to_numpy()
        if np.all(np.mod(values, 1) == 0) and np.all(np.abs(values) < 2**53):
            return ids.astype(np.int64)
        return ids
    if pd.api.types.is_string_dtype(ids.dtype) and ids.str.fullmatch(_INTEGER_TEXT).all():
        return ids.astype(np.int64)
    return ids


def _guess_separator(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".data", ".base", ".test", ".tab"):
        return "\t"
    if suffix == ".dat":
        return "::"
    return ","


def _headerless_names(data: bytes, sep: str, columns: Sequence[str]) -> list[str]:
    first = data.lstrip(b"\r\n").split(b"\n", 1)[0]
    n_fields = len(first.split(sep.encode()))
    extra = [f"field_{k}" for k in range(len(columns) + 1, n_fields + 1)]
    return [*columns, *extra]


def _parser_error(exc: Exception, path: Path) -> DataError:
    match = _TOKENIZE_ERROR.search(str(exc))
    if match:
        expected, line, saw = match.groups()
        return DataError(f"expected {expected} fields, found {saw}", source=path, line=int(line))
    return DataError(f"malformed ({str(exc).strip()})", source=path)
