"""Text ratings (CSV, TSV, ``::``) -> a DataFrame whose rows know their line numbers.

Line numbers are physical lines as a text editor counts them: 1-based, header included;
``\\n``, ``\\r\\n`` and a lone ``\\r`` each end a line; a row is numbered by the line it
starts on, also after a quoted field that holds a line break. A UTF-8 byte order mark is
skipped. Every row must have as many fields as the header (or ``names``): fewer is an error
as much as more, even when the missing field is one the run does not use.

Ids are read the fast way, as numbers, when that cannot lose their text; otherwise (a ``+``,
a leading zero, ``-0``, quotes, a decimal point or exponent in an id column, blank lines) the
id columns are read as text, stripped of surrounding spaces and tabs, and left to
:func:`autorec.data.ids.id_column`, which stores them as integers only when every id is a
canonical integer.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import DataError
from ._source import Payload, compression_hint

__all__ = ["read_text"]

_BOM = b"\xef\xbb\xbf"
_SPACE = " \t"
_TOKENIZE_ERROR = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_LEADING_BLANK_LINES = re.compile(rb"(?:[ \t]*\n)+")


@dataclass(frozen=True)
class _Records:
    """Every record of a file with quotes, as Python's csv module reads it."""

    start_lines: np.ndarray  # physical line each record starts on
    widths: np.ndarray  # fields per record
    blank: np.ndarray  # nothing but white space
    first: list[str]  # fields of the first record


def read_text(
    payload: Payload,
    *,
    sep: str,
    header: bool,
    names: Sequence[str] | None,
    columns: Sequence[str],
    source: str,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Parse ``data`` into a frame (blank lines dropped, names stripped) and line numbers.

    ``sep`` is one character or ``"::"``; ``columns`` names the user, item and rating columns
    (the first two are the id columns). The bytes are taken from ``payload``, so that they
    are freed as soon as a transformed copy replaces them.
    """
    data = _normalise(payload.take(), source)
    if sep == "::":
        data, sep = data.replace(b"::", b"\t"), "\t"
    data, offset = _trim_blank_lines(data)
    if not data.strip():
        raise DataError("empty file", source=source)
    records = _csv_records(data, sep, offset, source) if b'"' in data else None
    first = records.first if records is not None else _first_fields(data, sep, offset, source)
    if header:
        names = [name.strip(_SPACE) for name in first]
    elif names is None:
        extra = [f"field_{k}" for k in range(len(columns) + 1, len(first) + 1)]
        names = [*columns, *extra]
    names = list(names)
    if records is not None:
        _check_record_widths(records, header, len(names), source)
    else:
        _check_first_line_width(data, sep, len(names), header, offset, source)

    id_columns = [col for col in columns[:2] if col in names]
    text_ids = records is not None or _ids_need_text(data, sep)
    frame = _parse(data, sep, header, names, id_columns if text_ids else [], offset, source)
    if not text_ids and not all(_text_kept(frame[col]) for col in id_columns):
        # a decimal point, an exponent or a blank line made pandas read ids as floats (or
        # True/False as booleans): read them again, as text
        frame = _parse(data, sep, header, names, id_columns, offset, source)

    first_row = 1 if header else 0
    line_numbers = np.arange(len(frame), dtype=np.int64) + offset + first_row + 1
    blank = frame.isna().all(axis=1).to_numpy()
    if records is not None and len(records.start_lines) - first_row == len(frame):
        line_numbers = records.start_lines[first_row:]
        blank = records.blank[first_row:]
    elif records is None:
        blank = blank | _whitespace_rows(frame)
    if blank.any():
        frame = frame.loc[~blank]
        line_numbers = line_numbers[~blank]
    if records is None:
        _check_short_rows(frame, data, sep, len(names), line_numbers, offset, source)
    for col in id_columns:
        if pd.api.types.infer_dtype(frame[col], skipna=True) == "string":
            frame[col] = frame[col].str.strip(_SPACE)
    return frame, line_numbers


# -- bytes -----------------------------------------------------------------------------------
def _normalise(data: bytes, source: str) -> bytes:
    """Skip a UTF-8 byte order mark, refuse UTF-16, make every line end a ``\\n``."""
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError("is UTF-16 text; save it as UTF-8", source=source)
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data


def _trim_blank_lines(data: bytes) -> tuple[bytes, int]:
    """``data`` without blank lines at its start and end, and how many lines were cut
    from the start (pandas finds no header after a blank first line)."""
    offset = 0
    leading = _LEADING_BLANK_LINES.match(data)
    if leading:
        offset = data.count(b"\n", 0, leading.end())
        data = data[leading.end():]
    end = len(data)
    while end and data[end - 1] in b" \t\n":
        end -= 1
    newline = data.find(b"\n", end)
    if 0 <= newline < len(data) - 1:
        data = data[:newline + 1]
    return data, offset


def _decode_error(data: bytes, offset: int, source: str) -> DataError:
    """The first byte that is not UTF-8, with its line."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1 + offset
        return DataError(f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as "
                         f"UTF-8{compression_hint(data)}", source=source, line=line)
    return DataError("cannot be decoded as UTF-8 text", source=source)


def _first_fields(data: bytes, sep: str, offset: int, source: str) -> list[str]:
    end = data.find(b"\n")
    first = data[:end] if end >= 0 else data
    try:
        line = first.decode("utf-8")
    except UnicodeDecodeError:
        raise _decode_error(first, offset, source) from None
    return _split_fields(line, sep)


def _split_fields(line: str, sep: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=sep, strict=False), [])
    except csv.Error:
        return line.split(sep)


def _csv_records(data: bytes, sep: str, offset: int, source: str) -> _Records:
    """Read a file with quotes record by record (a quoted field may hold line breaks)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _decode_error(data, offset, source) from None
    reader = csv.reader(io.StringIO(text, newline="\n"), delimiter=sep, strict=False)
    starts: list[int] = []
    widths: list[int] = []
    blank: list[bool] = []
    first: list[str] | None = None
    previous = 0
    try:
        for row in reader:
            starts.append(previous + 1)
            previous = reader.line_num
            widths.append(len(row))
            blank.append(all(not field.strip() for field in row))
            if first is None:
                first = row
    except csv.Error as exc:
        raise DataError(f"malformed ({exc})", source=source, line=previous + 1 + offset) from None
    return _Records(np.asarray(starts, dtype=np.int64) + offset, np.asarray(widths),
                    np.asarray(blank, dtype=bool), first or [])


# -- field counts ----------------------------------------------------------------------------
def _check_record_widths(records: _Records, header: bool, expected: int, source: str) -> None:
    first_row = 1 if header else 0
    wrong = (records.widths[first_row:] != expected) & ~records.blank[first_row:]
    if wrong.any():
        k = first_row + int(wrong.argmax())
        raise DataError(f"expected {expected} fields, found {records.widths[k]}", source=source,
                        line=int(records.start_lines[k]))


def _check_first_line_width(data: bytes, sep: str, expected: int, header: bool, offset: int,
                            source: str) -> None:
    """Fail when the first data line has more fields than the header (or ``names``).

    pandas would otherwise take the extra leading field as an index and shift the columns;
    later lines are checked by the parser itself.
    """
    for line_number, line in _non_blank_lines(data, limit=2)[1 if header else 0:]:
        fields = _split_fields(line, sep)
        if len(fields) > expected:
            raise DataError(f"expected {expected} fields, found {len(fields)}", source=source,
                            line=line_number + offset)
        return


def _non_blank_lines(data: bytes, limit: int) -> list[tuple[int, str]]:
    """The first ``limit`` non-blank lines with their 1-based line numbers."""
    found: list[tuple[int, str]] = []
    start, number = 0, 0
    while start <= len(data) and len(found) < limit:
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        number += 1
        line = data[start:end].decode("utf-8", errors="replace")
        if line.strip():
            found.append((number, line))
        start = end + 1
    return found


def _whitespace_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose fields are all missing or white space (a line of spaces); only rows whose
    last field is missing are looked at, which clean files do not have."""
    result = np.zeros(len(frame), dtype=bool)
    candidates = np.flatnonzero(frame.iloc[:, -1].isna().to_numpy())
    if not len(candidates):
        return result
    rows = frame.iloc[candidates]
    empty = np.ones(len(rows), dtype=bool)
    for col in rows.columns:
        values = rows[col]
        blank = values.isna().to_numpy()
        if values.dtype.kind == "O" or pd.api.types.is_string_dtype(values.dtype):
            blank = blank | (values.str.strip() == "").fillna(False).to_numpy(dtype=bool)
        empty &= blank
    result[candidates] = empty
    return result


def _check_short_rows(frame: pd.DataFrame, data: bytes, sep: str, expected: int,
                      line_numbers: np.ndarray, offset: int, source: str) -> None:
    """Fail on the first row with fewer fields than ``expected`` (files without quotes).

    pandas fills a short row with missing values; such a row has its last field missing,
    and so has a row whose last field is present but empty (``1,2,3,``): the line tells.
    """
    if not len(frame):
        return
    candidates = frame.iloc[:, -1].isna().to_numpy()
    if not candidates.any():
        return
    array = np.frombuffer(data, dtype=np.uint8)
    line_ends = np.append(np.flatnonzero(array == ord("\n")), len(data))
    separators = np.flatnonzero(array == ord(sep))
    k = line_numbers[candidates] - offset - 1  # 0-based line within data
    begin = np.where(k > 0, line_ends[np.maximum(k - 1, 0)] + 1, 0)
    end = line_ends[k]
    found = np.searchsorted(separators, end) - np.searchsorted(separators, begin) + 1
    short = found < expected
    if short.any():
        first = int(short.argmax())
        raise DataError(f"expected {expected} fields, found {found[first]}", source=source,
                        line=int(line_numbers[candidates][first]))


# -- parsing ---------------------------------------------------------------------------------
def _ids_need_text(data: bytes, sep: str) -> bool:
    """Whether reading ids as numbers could merge ids that differ as text.

    pandas reads ``+5``, ``05`` and ``-0`` as the integers 5 and 0. Each test is a substring
    scan with a literal prefix (fast); a decimal point or exponent in an id column, and blank
    lines, show up after parsing as float columns.
    """
    if b"+" in data:
        return True
    boundaries = {b"\n", sep.encode()} | {c for c in (b" ", b"\t") if c in data}
    minus = b"-" in data
    if re.match(rb"0[0-9]|-0(?!\.)", data):
        return True
    for boundary in boundaries:
        prefix = re.escape(boundary)
        if re.search(prefix + rb"0[0-9]", data) is not None:
            return True
        if minus and re.search(prefix + rb"-0(?!\.)", data) is not None:
            return True
    return False


def _text_kept(column: pd.Series) -> bool:
    """Whether pandas' reading of an id column kept the ids' text: integers (the scan has
    ruled out non-canonical integer text) or text itself."""
    return column.dtype.kind in "iuO" or pd.api.types.is_string_dtype(column.dtype)


def _parse(data: bytes, sep: str, header: bool, names: list[str], text_columns: list[str],
           offset: int, source: str) -> pd.DataFrame:
    try:
        return pd.read_csv(
            io.BytesIO(data),
            sep=sep,
            header=0 if header else None,
            names=names,
            index_col=False,
            dtype={col: str for col in text_columns} or None,
            skip_blank_lines=False,
            keep_default_na=False,  # "NA", "null", "None"... are ids, not missing values
            na_values=[""],
            engine="c",
            low_memory=False,
        )
    except pd.errors.ParserError as exc:
        match = _TOKENIZE_ERROR.search(str(exc))
        if match:
            expected, line, saw = match.groups()
            raise DataError(f"expected {expected} fields, found {saw}", source=source,
                            line=int(line) + offset) from None
        raise DataError(f"malformed ({str(exc).strip()})", source=source) from None
    except UnicodeDecodeError:
        raise _decode_error(data, offset, source) from None
    except pd.errors.EmptyDataError:
        raise DataError("empty file", source=source) from None
    except ValueError as exc:  # e.g. "Duplicate names are not allowed."
        raise DataError(f"malformed header ({str(exc).strip()})", source=source,
                        line=offset + 1) from None
