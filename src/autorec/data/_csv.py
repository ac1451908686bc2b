"""Text ratings (CSV, TSV, ``::``), read block by block with pyarrow's CSV reader: the one
path for every text file, small or large, plain or decompressed.

Each block becomes at once an id code per id column and a ``float32`` rating (about 12 bytes
per rating kept besides the result). On the way a UTF-8 byte order mark is skipped, UTF-16
refused, every byte checked to be UTF-8; ``::`` becomes a tab (as ``bytes.replace`` would:
``a:::b`` is ``a``, ``:b``); blank lines and rows whose fields are all empty are dropped;
header names and ids are stripped of spaces and tabs; every row must have as many fields as
the header. Ids follow :func:`autorec.data.ids.id_column` (:class:`._id_blocks.IdBlocks`),
ratings :func:`autorec.data.values.rating_values`.

Errors name the line as a text editor counts it (1-based, header included). While no row has
been dropped and no quote seen, row ``k`` is on line ``first_line + k``; otherwise a second
pass with Python's :mod:`csv` module (:meth:`_Reader._records`) locates the line, only once
an error has been found.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..exceptions import DataError
from ._id_blocks import IdBlocks
from ._source import check_columns, decode_error, held_on_error, line_end, read_head, unique_unused
from .ids import IdMap, InvalidIdError
from .values import InvalidRatingError, rating_values

__all__ = ["BLOCK_BYTES", "LoadProgress", "TextColumns", "read_text", "report"]

#: Bytes per block handed to pyarrow's parser.
BLOCK_BYTES = 4 << 20  # pyarrow reads up to 32 blocks ahead
_SPACE = " \t"
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class LoadProgress:
    """Where the reading of a large ratings file stands (handed to a ``progress`` callback).

    Attributes
    ----------
    source
        The file.
    stage
        ``"reading"`` (parsing blocks), ``"indexing"`` (numbering ids), ``"checking"``
        (looking for repeated pairs) and ``"done"``.
    bytes_read, bytes_total
        Bytes of the file parsed so far, and its size.
    rows
        Ratings read so far.
    seconds
        Since the reading started.
    """

    source: str
    stage: str
    bytes_read: int
    bytes_total: int
    rows: int
    seconds: float

    def __str__(self) -> str:
        name = Path(self.source).name
        if self.stage == "reading":
            share = self.bytes_read / self.bytes_total if self.bytes_total else 1.0
            return (f"{name}: read {self.bytes_read / 1e6:,.0f} of "
                    f"{self.bytes_total / 1e6:,.0f} MB ({share:.0%}), {self.rows:,} ratings, "
                    f"{self.seconds:.1f}s")
        if self.stage == "done":
            return f"{name}: {self.rows:,} ratings loaded in {self.seconds:.1f}s"
        what = {"indexing": "numbering ids", "checking": "looking for repeated pairs"}
        return f"{name}: {what.get(self.stage, self.stage)}, {self.rows:,} ratings, " \
               f"{self.seconds:.1f}s"


def report(progress: Callable[[LoadProgress], None] | None, source: str, stage: str,
           total: int, rows: int, started: float) -> None:
    """Call ``progress`` (if any) for a stage after the reading, when all bytes are read."""
    if progress is not None:
        progress(LoadProgress(source, stage, total, total, rows, time.perf_counter() - started))


@dataclass
class TextColumns:
    """What :func:`read_text` read: dense indices of the id columns (and the ratings), the
    id maps, and ``lines(rows)``, the lines of rows (0-based, blank rows not counted)."""

    idx: list[np.ndarray]
    maps: list[IdMap]
    rating: np.ndarray | None
    lines: Callable[[Sequence[int]], list[int]]


def read_text(
    open_raw: Callable[[], BinaryIO],
    *,
    sep: str,
    header: bool,
    names: Sequence[str] | None,
    columns: Sequence[str],
    source: str,
    total: int,
    progress: Callable[[LoadProgress], None] | None = None,
    started: float | None = None,
) -> TextColumns:
    """Read a text file of ids (``columns``: the user and item columns, then perhaps the
    rating column). ``open_raw()`` opens the (decompressed) bytes, again for each pass;
    ``sep`` is one character or ``"::"``; ``total`` is the size of the bytes; ``progress`` is
    called about every tenth of them. Raises :class:`DataError` naming the file, line and field."""
    started = time.perf_counter() if started is None else started
    with open_raw() as raw:
        head, skipped, fields = read_head(raw, sep, source)
        if header:
            names = unique_unused([name.strip(_SPACE) for name in fields], columns)
            head = head[line_end(head):]
        elif names is None:
            extra = [f"field_{k}" for k in range(len(columns) + 1, len(fields) + 1)]
            names = [*columns, *extra]
        names = list(names)
        check_columns(names, columns, source, line=skipped + 1 if header else None)
        reader = _Reader(raw, head, sep, names, columns, source, skipped + 1 + header, total)
        return reader.run(progress, started, open_raw)


#: Longest field the diagnostic pass reads (the csv module's own limit is 128 KiB).
_FIELD_LIMIT = 1 << 30


class _Stream:
    """The data bytes as pyarrow reads them: checked to be UTF-8 (the first bad byte is kept
    in ``bad``), ``::`` turned into tabs; ``quoted`` tells whether a quote went past."""

    def __init__(self, raw: BinaryIO, head: bytes, double_colon: bool) -> None:
        self._raw, self._head, self._double_colon = raw, head, double_colon
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._pending = False
        self._carry = b""
        self.position = 0  # bytes of data read (before "::" became tabs)
        self.quoted = False
        self.bad: int | None = None
        self.closed = False
        self.stopped = False  # set on an error: the rest reads as empty (held_on_error)
        self.ended = threading.Event()  # set once a read gave the end (or the stop)

    def read(self, size: int = -1) -> bytes:
        if self.stopped:
            self.ended.set()
            return b""
        if self._head:  # the bytes read to find the header, in pieces of the size asked
            size = len(self._head) if size < 0 else size
            chunk, self._head = self._head[:size], self._head[size:]
        else:
            chunk = self._raw.read(size)
        if not chunk:
            self.ended.set()  # pyarrow reads no more
        buffered = len(self._decoder.getstate()[0])
        try:
            if not chunk:
                self._decoder.decode(b"", final=True)
            elif self._pending or not chunk.isascii():
                self._decoder.decode(chunk)
                self._pending = bool(self._decoder.getstate()[0])
        except UnicodeDecodeError as exc:
            self.bad = self.position - buffered + exc.start
            raise OSError("not UTF-8") from None
        self.position += len(chunk)
        self.quoted = self.quoted or b'"' in chunk
        if self._double_colon:
            chunk = (self._carry + chunk).replace(b"::", b"\t")
            self._carry = b""
            if chunk.endswith(b":") and self.position:  # perhaps half of a "::"
                chunk, self._carry = chunk[:-1], b":"
            if not chunk and self._carry:  # the end
                chunk, self._carry = self._carry, b""
        return chunk

    def tell(self) -> int:
        return self.position

    def close(self) -> None:
        self.closed = True


# -- the one pass ----------------------------------------------------------------------------
class _Reader:
    def __init__(self, raw: BinaryIO, head: bytes, sep: str, names: list[str],
                 columns: Sequence[str], source: str, first_line: int, total: int) -> None:
        self.stream = _Stream(raw, head, sep == "::")
        self.sep, self.names, self.columns = "\t" if sep == "::" else sep, names, columns
        self.source, self.first_line = source, first_line
        self.dropped = False  # a blank row was dropped: lines are no longer rows + first_line
        self.total = total

    def _invalid_row(self, row: Any) -> str:
        if not row.text.strip(" \t\r\n"):
            self.dropped = True
            return "skip"
        return "error"

    def run(self, progress: Callable[[LoadProgress], None] | None, started: float,
            open_raw: Callable[[], BinaryIO]) -> TextColumns:
        self.open_raw = open_raw
        read_options = pacsv.ReadOptions(column_names=self.names, block_size=BLOCK_BYTES,
                                         use_threads=True)
        parse_options = pacsv.ParseOptions(delimiter=self.sep, newlines_in_values=True,
                                           ignore_empty_lines=False,
                                           invalid_row_handler=self._invalid_row)
        convert_options = pacsv.ConvertOptions(
            column_types={name: pa.string() for name in self.names}, null_values=[""],
            strings_can_be_null=True, check_utf8=False)  # the stream checks every byte
        used = [self.names.index(col) for col in self.columns]
        ids = [IdBlocks(), IdBlocks()]
        ratings: list[np.ndarray] = []
        rows = blocks = reported = 0
        total = self.total
        handle = pa.PythonFile(self.stream, mode="r")
        with held_on_error(held := [handle], self.stream):
            try:
                reader = pacsv.open_csv(handle, read_options=read_options,
                                        parse_options=parse_options,
                                        convert_options=convert_options)
                held.append(reader)
                for batch in reader:
                    if any(batch.column(k).null_count for k in used):
                        blank = functools.reduce(pc.and_, [pc.is_null(c) for c in batch.columns])
                        if pc.any(blank).as_py():
                            batch = batch.filter(pc.invert(blank))
                            self.dropped = True
                    field = ""
                    try:
                        for column, k in zip(ids, used, strict=False):
                            field = self.names[k]
                            column.add(batch.column(k), rows)
                        if len(used) == 3:
                            field = self.columns[2]
                            ratings.append(_ratings(batch.column(used[2])))
                    except (InvalidIdError, InvalidRatingError) as exc:
                        line = self.lines([rows + exc.position])[0]
                        raise DataError(exc.problem, source=self.source, line=line,
                                        field=field) from None
                    rows += batch.num_rows
                    blocks += 1
                    parsed = min(blocks * BLOCK_BYTES, total)  # a block is a little under it
                    if progress is not None and parsed >= reported + total / 10:
                        reported = parsed
                        progress(LoadProgress(self.source, "reading", parsed, total, rows,
                                              time.perf_counter() - started))
            except (pa.ArrowException, OSError) as exc:
                if self.stream.bad is not None or "Empty CSV file" not in str(exc):
                    raise self._parse_error(exc) from None
        if reported < total:  # the last block was a short one
            report(progress, self.source, "reading", total, rows, started)
        if rows == 0:
            raise DataError("no ratings" if len(used) == 3 else "no pairs", source=self.source)
        report(progress, self.source, "indexing", total, rows, started)
        rating = np.concatenate(ratings) if ratings else None
        del ratings
        finished = [column.finish() for column in ids]
        _release_memory()
        return TextColumns([idx for idx, _ in finished], [ids for _, ids in finished], rating,
                           self.lines)

    def lines(self, rows: Sequence[int]) -> list[int]:
        """The lines of data rows (0-based, blank rows not counted)."""
        if not (self.dropped or self.stream.quoted):
            return [self.first_line + row for row in rows]
        wanted, found = set(rows), {}
        for k, (line, _) in enumerate(self._records()):
            if k in wanted:
                found[k] = line
                if len(found) == len(wanted):
                    break
        return [found.get(row, 0) for row in rows]

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        """The diagnostic pass: the line and fields of every data record that the parsing
        pass kept (blank ones skipped)."""
        limit = csv.field_size_limit()  # the process's: put back when the pass ends
        csv.field_size_limit(max(limit, _FIELD_LIMIT))
        try:
            with self.open_raw() as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace",
                                        newline="")
                lines: Iterator[str] = itertools.islice(text, self.first_line - 1, None)
                if self.sep == "\t" and self.stream._double_colon:
                    lines = (line.replace("::", "\t") for line in lines)
                consumed: list[str] = []  # the text of the record being read
                reader = csv.reader((consumed.append(line) or line for line in lines),
                                    delimiter=self.sep, strict=False)
                previous = self.first_line - 1
                expected = len(self.names)
                for fields in reader:
                    start, previous = previous + 1, self.first_line - 1 + reader.line_num
                    text = "".join(consumed)
                    consumed.clear()
                    blank = not any(fields) and len(fields) in (0, expected)
                    if blank or (len(fields) != expected and not text.strip(" \t\r\n")):
                        continue  # dropped by the pass (all empty) or by _invalid_row
                    yield start, fields
        finally:
            csv.field_size_limit(limit)

    def _parse_error(self, exc: BaseException) -> DataError:
        """The error for a block pyarrow could not read (or a byte that is not UTF-8)."""
        if self.stream.bad is not None:
            with self.open_raw() as raw:
                data = raw.read()
            data = data[len(_BOM):] if data.startswith(_BOM) else data
            return decode_error(data, self.stream.bad + self._data_start(data), 1, self.source)
        expected = len(self.names)
        long = "straddling" in str(exc)  # a record longer than pyarrow's block
        for line, fields in self._records():
            if len(fields) != expected:
                # one field holding another separator: the usual cause
                hint = ("; is the field separator right? (--sep)" if len(fields) == 1
                        and any(c in fields[0].strip() for c in "\t;|,: ") else "")
                return DataError(f"expected {expected} fields, found {len(fields)}{hint}",
                                 source=self.source, line=line)
            if long and (size := sum(map(len, fields))) >= BLOCK_BYTES // 2:
                return DataError(f"a record of {size:,} characters, longer "
                                 f"than the reader's {BLOCK_BYTES >> 20} MiB blocks",
                                 source=self.source, line=line)
        return DataError(f"malformed ({' '.join(str(exc).split())[:200]})", source=self.source)

    def _data_start(self, data: bytes) -> int:
        """Where the bytes that the stream served start in ``data`` (after blank lines and
        the header)."""
        start = 0
        for _ in range(self.first_line - 1):
            start += line_end(data[start:start + (1 << 20)])
        return start


def _ratings(strings: Any) -> np.ndarray:
    """A block's ratings as ``float32``, as :func:`rating_values` decides: numbers where
    pyarrow reads them all (as pandas would read such a column), else the texts."""
    try:
        try:
            numbers = pc.cast(strings, pa.float64())
        except pa.ArrowInvalid:  # spaces around numbers, as pandas reads them
            numbers = pc.cast(pc.utf8_trim_whitespace(strings), pa.float64())
        numbers = numbers.to_numpy(zero_copy_only=False)
        if np.isnan(numbers).sum() > strings.null_count:
            raise pa.ArrowInvalid("'NaN' as text")  # pandas reads "nan" as text
        values = pd.Series(numbers)
    except pa.ArrowInvalid:
        values = pd.Series(strings.to_numpy(zero_copy_only=False), dtype=object)
    try:
        return rating_values(values)
    except InvalidRatingError as exc:
        if exc.position is None or values.dtype == object:
            raise
        try:  # the value named as written: "1e400" was read as inf
            rating_values(pd.Series(strings.to_numpy(zero_copy_only=False)[exc.position:],
                                    dtype=object))
        except InvalidRatingError as written:
            raise InvalidRatingError(written.problem, exc.position) from None
        raise


def _release_memory() -> None:
    """Hand the reader's freed memory back to the system: pyarrow's allocator keeps its
    blocks for reuse, and glibc keeps the heap pages of the per-block arrays (about 1 GB at
    100M ratings), while what comes next (a model) is allocated by numpy and torch."""
    pa.default_memory_pool().release_unused()
    from ..memory import release_free_memory

    release_free_memory()
