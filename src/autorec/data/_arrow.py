"""Large plain-text ratings files, read block by block with pyarrow's CSV reader.

The exact reader (:mod:`._text`, then :func:`autorec.data.from_dataframe`) holds the whole
file, a pandas frame of it and the id and rating checks' copies in memory at once (1.4 GB
for the 283 MB of 10M ratings, growing with the file). This reader streams the file through
``pyarrow.csv.open_csv`` (multithreaded) and keeps, per rating, an id code per column and a
``float32`` rating; ids are checked on their distinct values, repeated pairs by sorting a
compact key.

It accepts only files on which it gives exactly what the exact reader gives, and gives up
(returns ``None``) on anything else, so that the caller reads the file again the exact way
and raises the exact reader's message (file, line, field). It gives up on:

* a quote character anywhere in the file (quoted fields, quoted header names), a tab in a
  ``::`` file, text that is not UTF-8 (checked as the bytes stream past);
* a first line that is blank, a header with repeated or empty names, a missing column;
* a row with more or fewer fields than the header, a blank line (both are rows whose
  fields do not parse), a separator field of a ``::`` file that is not empty;
* an empty id (after stripping spaces and tabs, as the exact reader does), a rating that
  is missing, not a number pyarrow reads, or not finite as ``float32``; no rating at all.

What it keeps: every row is one physical line (no quotes, no blank lines), so the line of
row ``k`` is ``k + 1`` plus the header, and repeated pairs are reported by line here.

Ids: a column stays on the integer path while every value of every block is a canonical
integer text (digits and a minus sign only, no leading zero, no ``-0``, read by pyarrow's
cast); otherwise it switches to text, dictionary-encoding each block and unifying the block
dictionaries into one, in order of first appearance. Either way the distinct ids go
through :func:`autorec.data.ids.id_column`, the rule every reader uses.
"""

from __future__ import annotations

import codecs
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .ids import IdMap, id_column
from .ratings import index_dtype

__all__ = ["BLOCK_BYTES", "MIN_BYTES", "MIN_BYTES_ENV", "PROGRESS_MIN_BYTES", "LoadProgress",
           "ReadColumns", "min_bytes", "read_columns", "report"]

log = logging.getLogger(__name__)

#: Plain text files at least this large are read block by block (smaller ones the exact way:
#: a few milliseconds either way); ``AUTOREC_FAST_READ_MIN_BYTES`` overrides it (``0``: every
#: plain text file).
MIN_BYTES = 1 << 20
MIN_BYTES_ENV = "AUTOREC_FAST_READ_MIN_BYTES"
#: Files at least this large report their progress (smaller ones take a second or two).
PROGRESS_MIN_BYTES = 64 << 20
#: Bytes per block handed to pyarrow's parser.
BLOCK_BYTES = 4 << 20  # pyarrow reads up to 32 blocks ahead
_SPACE = " \t"
_UNIFY_MIN = 1 << 16  # fewest pending dictionary entries worth a unifying pass
_HEAD_BYTES = 1 << 16
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
        (looking for repeated pairs) and ``"done"``; or ``"rereading"`` when the block
        reader gave up and the whole file is read again the exact way (which reports no
        further progress).
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
        what = {"indexing": "numbering ids", "checking": "looking for repeated pairs",
                "rereading": "reading it again line by line, to name what is wrong"}
        return f"{name}: {what.get(self.stage, self.stage)}, {self.rows:,} ratings, " \
               f"{self.seconds:.1f}s"


@dataclass
class ReadColumns:
    """What the block reader read: dense indices, ratings and id maps, not yet checked for
    repeated pairs; row ``k`` is on line ``first_line + k``."""

    user_idx: np.ndarray
    item_idx: np.ndarray
    rating: np.ndarray
    users: IdMap
    items: IdMap
    first_line: int


def report(progress: Callable[[LoadProgress], None] | None, source: str, stage: str,
           total: int, rows: int, started: float) -> None:
    """Call ``progress`` (if any) for a stage after the reading, when all bytes are read."""
    if progress is not None:
        progress(LoadProgress(source, stage, total, total, rows, time.perf_counter() - started))


class _GiveUp(Exception):
    """The file is not one this reader takes; the exact reader will say why, if anything."""


def min_bytes() -> int:
    """The size from which plain text files are read block by block."""
    text = os.environ.get(MIN_BYTES_ENV, "").strip()
    if not text:
        return MIN_BYTES
    try:
        return max(int(text), 0)
    except ValueError:
        raise ValueError(f"{MIN_BYTES_ENV} must be a number of bytes, got {text!r}") from None


def read_columns(
    path: Path,
    *,
    sep: str,
    header: bool,
    names: Sequence[str] | None,
    columns: Sequence[str],
    progress: Callable[[LoadProgress], None] | None = None,
    started: float | None = None,
) -> ReadColumns | None:
    """Read ``path`` block by block; ``None`` when the exact reader must read it instead.

    ``sep`` is one character or ``"::"``; ``header``, ``names`` and ``columns`` mean what
    they mean for :func:`autorec.data.read_ratings`. ``progress`` is called after about
    every tenth of the file and when the ids are being numbered; ``started`` (a
    ``time.perf_counter()`` value) is when the seconds it reports count from.
    """
    started = time.perf_counter() if started is None else started
    try:
        return _read(path, sep, header, names, columns, progress, started)
    except _GiveUp as exc:
        reason = str(exc)
    except (OSError, UnicodeDecodeError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # pyarrow's ArrowInvalid and kin: a row that does not parse
        if not _is_arrow_error(exc):
            raise
        reason = " ".join(str(exc).split())[:200]
    log.info("%s: not read block by block (%s); reading it whole", path, reason)
    if progress is not None:
        progress(LoadProgress(str(path), "rereading", 0, path.stat().st_size, 0,
                              time.perf_counter() - started))
    return None


def _is_arrow_error(exc: BaseException) -> bool:
    import pyarrow as pa

    return isinstance(exc, pa.ArrowException)


# -- the file ----------------------------------------------------------------------------------
class _CheckedFile:
    """The file's bytes as pyarrow reads them, checked on the way: no quote character, no
    tab in a ``::`` file, UTF-8 throughout. A failed check ends the reading with
    :class:`_GiveUp`."""

    def __init__(self, path: Path, forbidden: tuple[bytes, ...]) -> None:
        self._file = open(path, "rb", buffering=0)  # closed by close()
        self._forbidden = forbidden
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._pending = False
        self.position = 0
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self.position += len(chunk)
        for byte in self._forbidden:
            if byte in chunk:
                raise _GiveUp(f"holds {byte!r}")
        try:
            if not chunk:
                self._decoder.decode(b"", final=True)
            elif self._pending or not chunk.isascii():
                self._decoder.decode(chunk)
                self._pending = bool(self._decoder.getstate()[0])
        except UnicodeDecodeError:
            raise _GiveUp("not UTF-8") from None
        return chunk

    def tell(self) -> int:
        return self.position

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self._file.close()
        self.closed = True


def _field_names(path: Path, sep: str, header: bool, names: Sequence[str] | None,
                 columns: Sequence[str]) -> list[str]:
    """The names of the fields, as the exact reader would give them."""
    with open(path, "rb") as handle:
        head = handle.read(_HEAD_BYTES)
    if head.startswith(_BOM):
        head = head[len(_BOM):]
    ends = [k for k in (head.find(b"\n"), head.find(b"\r")) if k >= 0]
    if not ends:
        raise _GiveUp("no line end in the first 64 KiB")
    try:
        first = head[:min(ends)].decode("utf-8")
    except UnicodeDecodeError:
        raise _GiveUp("first line not UTF-8") from None
    if not first.strip():
        raise _GiveUp("blank first line")
    fields = first.split(sep)
    if header:
        found = [field.strip(_SPACE) for field in fields]
    elif names is None:
        found = [*columns, *(f"field_{k}" for k in range(len(columns) + 1, len(fields) + 1))]
    else:
        found = list(names)
    if len(set(found)) != len(found) or not all(found):
        raise _GiveUp("repeated or empty field names")
    missing = [col for col in columns if col not in found]
    if missing:
        raise _GiveUp(f"no column {missing[0]!r}")
    return found


# -- ids -------------------------------------------------------------------------------------
class _IdColumn:
    """One id column, block by block: int64 values while every id is a canonical integer
    text, else codes into the distinct (stripped) texts, in order of first appearance.

    On the text path each block is dictionary-encoded on its own; block dictionaries are
    unified with the distinct ids so far once they add up to as many entries (so the
    unifying costs a bounded number of passes over the distinct ids, whatever the number
    of blocks)."""

    def __init__(self) -> None:
        self._integers: list[np.ndarray] | None = []
        self._codes: list[np.ndarray] = []
        self._texts: Any = None  # pyarrow StringArray of the distinct ids, in code order
        self._pending: list[Any] = []  # dictionary-encoded blocks not yet unified
        self._pending_size = 0

    def add(self, strings: Any) -> None:
        if not len(strings):
            return
        if self._integers is not None:
            values = _canonical_integers(strings)
            if values is not None:
                self._integers.append(values)
                return
            self._switch_to_text()
        self._add_texts(strings)

    def finish(self) -> tuple[np.ndarray, IdMap]:
        """The dense index of every row (:func:`~autorec.data.ratings.index_dtype`) and the
        id map."""
        if self._integers is not None:
            values = np.concatenate(self._integers)
            self._integers = None
            codes, uniques = pd.factorize(values)
            del values
            return codes.astype(index_dtype(len(uniques)), copy=False), IdMap(uniques)
        self._unify()
        codes = np.concatenate(self._codes)
        self._codes = []
        texts = pd.Series(self._texts.to_numpy(zero_copy_only=False), dtype=object)
        return codes.astype(index_dtype(len(texts)), copy=False), IdMap(id_column(texts))

    def _switch_to_text(self) -> None:
        import pyarrow as pa

        assert self._integers is not None
        if self._integers:
            codes, uniques = pd.factorize(np.concatenate(self._integers))
            self._codes = [codes.astype(np.int32)]
            self._texts = pa.array(uniques.astype(str), type=pa.string())
        self._integers = None

    def _add_texts(self, strings: Any) -> None:
        import pyarrow.compute as pc

        encoded = pc.dictionary_encode(strings)
        stripped = pc.utf8_trim(encoded.dictionary, characters=_SPACE)
        if len(stripped) and pc.min(pc.binary_length(stripped)).as_py() == 0:
            raise _GiveUp("missing id")
        self._pending.append((encoded.indices, stripped))
        self._pending_size += len(stripped)
        known = 0 if self._texts is None else len(self._texts)
        if self._pending_size >= max(known, _UNIFY_MIN):
            self._unify()

    def _unify(self) -> None:
        """Give the pending blocks codes into the distinct ids (growing them)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self._pending:
            return
        known = [] if self._texts is None else [self._texts]
        unified = pc.dictionary_encode(
            pa.concat_arrays([*known, *(texts for _, texts in self._pending)]))
        self._texts = unified.dictionary
        to_code = unified.indices.to_numpy()
        start = len(known[0]) if known else 0
        for indices, texts in self._pending:
            self._codes.append(to_code[start:start + len(texts)][indices.to_numpy()])
            start += len(texts)
        self._pending, self._pending_size = [], 0


def _canonical_integers(strings: Any) -> np.ndarray | None:
    """The ids of a block as integers, when every one is a canonical integer text (as
    :data:`autorec.data.ids.INTEGER_ID` says: digits with perhaps a ``-``, no ``+``, no
    leading zero, no ``-0``, no spaces, within ``int64``); else ``None``. ``int32`` when
    they fit."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if strings.null_count or not len(strings):
        return None
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int32)[
        strings.offset:strings.offset + len(strings) + 1]
    lengths = np.diff(offsets)
    if lengths.min() == 0:
        return None
    data = np.frombuffer(strings.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    digit = (data - np.uint8(ord("0"))) < 10
    negative = not digit.all()
    if negative and not (digit | (data == ord("-"))).all():
        return None  # "0x1f", "1e3", "5.0", " 5"...: pyarrow would read some as integers
    starts = offsets[:-1] - offsets[0]
    first = data[starts]
    if ((first == ord("0")) & (lengths > 1)).any():
        return None  # "007", "00"
    if negative:
        signed = np.flatnonzero((first == ord("-")) & (lengths > 1))
        if (data[starts[signed] + 1] == ord("0")).any():
            return None  # "-0", "-07"
    try:
        values = pc.cast(strings, pa.int64()).to_numpy()
    except pa.ArrowInvalid:  # "-", "1-2", beyond int64
        return None
    if len(values) and np.iinfo(np.int32).min <= values.min() and \
            values.max() <= np.iinfo(np.int32).max:
        return values.astype(np.int32)
    return values


# -- reading ---------------------------------------------------------------------------------
def _read(path: Path, sep: str, header: bool, names: Sequence[str] | None,
          columns: Sequence[str], progress: Callable[[LoadProgress], None] | None,
          started: float) -> ReadColumns:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    fields = _field_names(path, sep, header, names, columns)
    user_col, item_col, rating_col = columns
    forbidden: tuple[bytes, ...]
    if sep == "::":  # ':' as the delimiter, every other field (between two colons) empty
        arrow_names = [name for k, field in enumerate(fields)
                       for name in ((field,) if k == 0 else (f"\0sep{k}", field))]
        gaps = arrow_names[1::2]
        delimiter, forbidden = ":", (b'"', b"\t")
    else:
        arrow_names, gaps, delimiter, forbidden = fields, [], sep, (b'"',)
    types = {user_col: pa.string(), item_col: pa.string(), rating_col: pa.float64(),
             **{gap: pa.null() for gap in gaps}}
    read_options = pacsv.ReadOptions(column_names=arrow_names, skip_rows=1 if header else 0,
                                     block_size=BLOCK_BYTES, use_threads=True)
    parse_options = pacsv.ParseOptions(delimiter=delimiter, quote_char=False,
                                       double_quote=False, escape_char=False,
                                       newlines_in_values=False, ignore_empty_lines=False)
    convert_options = pacsv.ConvertOptions(
        column_types=types, include_columns=[user_col, item_col, rating_col, *gaps],
        null_values=[""], strings_can_be_null=False, quoted_strings_can_be_null=False,
        check_utf8=False)  # the whole file is checked as it streams past

    total = path.stat().st_size
    source = str(path)
    users, items = _IdColumn(), _IdColumn()
    ratings: list[np.ndarray] = []
    rows = blocks = reported = 0
    stream = _CheckedFile(path, forbidden)
    try:
        reader = pacsv.open_csv(pa.PythonFile(stream, mode="r"), read_options=read_options,
                                parse_options=parse_options,
                                convert_options=convert_options)
        for batch in reader:
            rating = batch.column(rating_col)
            if rating.null_count:
                raise _GiveUp("missing rating")
            with np.errstate(over="ignore", invalid="ignore"):
                stored = rating.to_numpy().astype(np.float32)
            if not np.isfinite(stored).all():
                raise _GiveUp("rating not finite as float32")
            ratings.append(stored)
            users.add(batch.column(user_col))
            items.add(batch.column(item_col))
            rows += len(stored)
            blocks += 1
            parsed = min(blocks * BLOCK_BYTES, total)  # a block is a little under BLOCK_BYTES
            if progress is not None and parsed >= reported + total / 10:
                reported = parsed
                progress(LoadProgress(source, "reading", parsed, total, rows,
                                      time.perf_counter() - started))
    finally:
        stream.close()
    if progress is not None and reported < total:  # the last block was a short one
        progress(LoadProgress(source, "reading", total, total, rows,
                              time.perf_counter() - started))
    if rows == 0:
        raise _GiveUp("no ratings")

    report(progress, source, "indexing", total, rows, started)
    rating = np.concatenate(ratings)
    del ratings
    user_idx, user_map = users.finish()
    item_idx, item_map = items.finish()
    _release_memory()
    return ReadColumns(user_idx, item_idx, rating, user_map, item_map,
                       first_line=2 if header else 1)


def _release_memory() -> None:
    """Hand the reader's freed memory back to the system: pyarrow's allocator keeps its
    blocks for reuse, and glibc keeps the heap pages of the per-block arrays (about 1 GB at
    100M ratings), while what comes next (a model) is allocated by numpy and torch."""
    import pyarrow as pa

    try:
        pa.default_memory_pool().release_unused()
    except (AttributeError, NotImplementedError):  # an older pyarrow
        pass
    from ..memory import release_free_memory

    release_free_memory()
